"""How a stage trains: one settings type, nested as `training` in the configs of target
building, unlearning and the relearning attack, so each field is set the same way everywhere
(Python, YAML `training:`, CLI flags or `--setting training.NAME=VALUE`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lume.errors import LumeError
from lume.config import MAX_BATCH, MAX_SEED, check_settings, identity_key, setting
from lume.training.distributed import check_tracker
from lume.training.precision import CHOICES as MIXED_PRECISION


# transformers' schedulers that need nothing but the warm-up and the run's length (the others ask
# for a metric each step or extra arguments lume does not pass)
SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
              "inverse_sqrt")


@dataclass
class TrainingSettings:
    batch_size: int = setting(4, "Examples per micro-batch (unlearning: forget ones, with the retain ones the "
                                 "schedule pairs with them); a step takes batch_size × gradient_accumulation, on any "
                                 "number of processes", at_least=1, at_most=MAX_BATCH)
    learning_rate: float = setting(5e-5, "AdamW's learning rate", at_least=0)
    scheduler: str = setting("constant", "Learning-rate schedule (transformers' scheduler of that name)",
                             choices=SCHEDULERS)
    warmup_steps: int = setting(0, "Warm-up steps", at_least=0)
    warmup_ratio: float = setting(0.0, "The warm-up as a share of the run's steps, when warmup_steps is 0",
                                  between=(0, 1))
    weight_decay: float = setting(0.0, "AdamW's weight decay", at_least=0)
    max_grad_norm: float = setting(1.0, "Gradient clipping norm; 0 = none", at_least=0)
    gradient_accumulation: int = setting(1, "Micro-batches per optimiser step, all processes together: each "
                                            "process accumulates an equal share (a multiple of the process count)",
                                         at_least=1, at_most=MAX_BATCH)
    lora_rank: int = setting(0, "LoRA rank; 0 = full fine-tuning", at_least=0)
    lora_alpha: int = setting(32, "LoRA alpha", above=0)
    lora_dropout: float = setting(0.0, "LoRA dropout", between=(0, 1))
    layers: list[int] | None = setting(None, "Decoder layers that train (negative: from the last; None = all weights; "
                                             "lume.training.scope); with LoRA, their linear layers get the adapters")
    modules: list[str] | None = setting(None, "Within those layers, the modules that train by name (mlp, self_attn, "
                                              "down_proj ...; None = all)")
    also_train: list[str] | None = setting(None, "Outside those layers, weights that train too, by name part "
                                                 "(embed_tokens, lm_head; full fine-tuning only)")
    gradient_checkpointing: bool = setting(False, "Recompute activations in the backward pass (less memory, slower)")
    compile: bool = setting(False, "Compile the training step (torch.compile, inductor; eager again if it fails): "
                                   "faster steps once compiled, after minutes of compiling")
    mixed_precision: str = setting("auto", "auto (bf16 autocast where the device computes bf16 natively, else "
                                           "float32), bf16, fp16 or no", choices=MIXED_PRECISION)
    seed: int = setting(0, "Seed of the training (and of the stage's draws)", at_least=0, at_most=MAX_SEED)
    save_every: int | None = setting(None, "Checkpoint every N optimiser steps to resume from; 0 = never; None = the "
                                           "stage's default (memorize: each epoch; unlearn and relearning: never)",
                                     at_least=0, decides=False)
    log_with: str | None = setting(None, "Log training to an accelerate tracker (tensorboard, wandb, mlflow ...) under "
                                         "OUT/logs; off by default", check=check_tracker,
                                     decides=False)

    @property
    def examples_per_step(self) -> int:
        """Examples an optimiser step takes, all processes together."""
        return self.batch_size * self.gradient_accumulation

    def __post_init__(self):
        check_settings(self)
        if self.also_train and self.lora_rank > 0:
            raise LumeError(f"also_train {self.also_train} trains whole weights: it needs full fine-tuning "
                            f"(lora_rank 0, not {self.lora_rank})")


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
        return identity_key(self.settings, max_steps=self.max_steps, identity=self.identity,
                            **({"segments": self.segments} if self.segments else {}))
