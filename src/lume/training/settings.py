"""How a stage trains: one settings type, nested as `training` in the configs of target
building, unlearning and the relearning attack, so each field is set the same way everywhere
(Python, YAML `training:`, CLI flags or `--setting training.NAME=VALUE`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from lume.config import MAX_BATCH, at_least, at_most, between, one_of, seed_range
from lume.training.precision import CHOICES as MIXED_PRECISION


@dataclass
class TrainingSettings:
    batch_size: int = 4  # examples per micro-step and process (unlearning: forget ones, and as many retain)
    learning_rate: float = 5e-5
    scheduler: str = "constant"  # any transformers scheduler name: linear, cosine, constant ...
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # the warm-up as a share of the run's steps, when warmup_steps is 0
    weight_decay: float = 0.0  # AdamW's
    max_grad_norm: float = 1.0  # gradient clipping; 0 = none
    gradient_accumulation: int = 1
    lora_rank: int = 0  # 0 = full fine-tuning
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    # which weights train (lume.training.scope): decoder layers (negative from the last; None = all
    # weights) and, within them, modules by name (mlp, self_attn, down_proj ...; None = all); with
    # LoRA, the linear layers among them get the adapters
    layers: list[int] | None = None
    modules: list[str] | None = None
    gradient_checkpointing: bool = False
    # auto: bf16 autocast where the device computes bf16 natively, else float32 ("no"); or bf16, fp16, no
    mixed_precision: str = "auto"
    seed: int = 0
    # checkpoint every N optimiser steps, to resume an interrupted run; 0 = never (in every stage);
    # None = the stage's default (memorize: each epoch; unlearn and relearning: never)
    save_every: int | None = None
    log_with: str | None = None  # an accelerate tracker (tensorboard, wandb, mlflow ...) for OUT/logs; off by default

    def __post_init__(self):
        at_least(self, 1, "batch_size", "gradient_accumulation")
        at_most(self, MAX_BATCH, "batch_size", "gradient_accumulation")
        seed_range(self, "seed")
        at_least(self, 0, "learning_rate", "warmup_steps", "weight_decay", "max_grad_norm", "lora_rank", "save_every")
        between(self, 0, 1, "lora_dropout", "warmup_ratio")
        one_of(self, "mixed_precision", MIXED_PRECISION)


@dataclass
class TrainingRun:
    """One run of the loop: its settings, its length, and what else decides its weights
    (method, input model, data), which together key its checkpoints."""

    settings: TrainingSettings
    max_steps: int
    identity: dict = field(default_factory=dict)
    # lengths of consecutive segments, each starting with fresh optimiser moments and its own
    # learning-rate schedule (a new trainer per chunk of the forget set); None = one segment
    segments: list[int] | None = None

    def segment_starts(self) -> list[int]:
        """The step each segment starts at ([0] for one segment)."""
        starts = [0]
        for length in (self.segments or [])[:-1]:
            starts.append(starts[-1] + length)
        return starts

    def key(self) -> str:
        """What decides the trained weights (checkpoint interval and logging do not)."""
        decisive = {**asdict(self.settings), "save_every": None, "log_with": None, "max_steps": self.max_steps,
                    "identity": self.identity, **({"segments": self.segments} if self.segments else {})}
        return hashlib.sha256(json.dumps(decisive, sort_keys=True, default=str).encode()).hexdigest()[:16]
