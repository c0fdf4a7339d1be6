"""The training loop shared by `memorize` and `unlearn`: accelerate, checkpoints, resume.

It runs anything that turns a step number into a loss. accelerate supplies devices, mixed
precision and multi-process runs (`accelerate launch` with DDP, DeepSpeed or FSDP); the loop
adds what a long unlearning run needs: progress with loss and tokens/s, a checkpoint every
`save_every` steps, resume from the last checkpoint when the settings match,
and a clean stop on a NaN or infinite loss that keeps the last good checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lume.errors import LumeError, set_resume_note
from lume.io import write_json_atomic
from lume.progress import progress_bar

IGNORE = -100  # label of tokens that carry no loss
MIXED_PRECISION = ("bf16", "fp16", "no")


@dataclass
class Example:
    """One training sequence: token ids and their labels (IGNORE where no loss is taken)."""

    input_ids: list[int]
    labels: list[int]
    prompt: str = ""  # the text before the answer, for methods that swap answers (IdkDPO)


def prompt_answer_example(tokenizer, prompt: str, answer: str, prompt_loss: bool = False) -> Example:
    """`prompt` then ` answer` then EOS, tokenised as generation will see the prompt.

    The prompt is tokenised alone (as at evaluation time) and the answer after it with a
    leading space; the loss covers the answer and EOS (and the prompt when `prompt_loss`).
    """
    prompt_ids = tokenizer(prompt).input_ids
    answer_ids = tokenizer(" " + answer.lstrip(), add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    prompt_labels = list(prompt_ids) if prompt_loss else [IGNORE] * len(prompt_ids)
    return Example(prompt_ids + answer_ids, prompt_labels + answer_ids, prompt)


def collate(examples: list[Example], pad_id: int, device=None) -> dict[str, torch.Tensor]:
    """Right-padded batch with attention mask; padding carries no loss."""
    width = max(len(e.input_ids) for e in examples)
    batch = {
        "input_ids": torch.tensor([e.input_ids + [pad_id] * (width - len(e.input_ids)) for e in examples]),
        "attention_mask": torch.tensor([[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in examples]),
        "labels": torch.tensor([e.labels + [IGNORE] * (width - len(e.labels)) for e in examples]),
    }
    return {k: v.to(device) for k, v in batch.items()} if device is not None else batch


def sequence_log_likelihoods(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-likelihood summed over each sequence's labelled tokens, how many there are)."""
    targets = labels[:, 1:]
    mask = targets != IGNORE
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1), mask.sum(-1)


@dataclass
class TrainSettings:
    learning_rate: float = 1e-4
    max_steps: int = 100
    warmup_steps: int = 0
    weight_decay: float = 0.0
    scheduler: str = "linear"  # any transformers scheduler name: linear, cosine, constant ...
    gradient_accumulation: int = 1
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    lora_rank: int = 0  # 0 = full fine-tuning
    lora_alpha: int = 32
    save_every: int = 0  # checkpoint every N optimiser steps; 0 = none (a rerun starts over)
    seed: int = 0
    mixed_precision: str = "bf16"  # bf16 | fp16 | no (accelerate autocast; bf16 is ~2x faster on a CPU too)
    extra: dict = field(default_factory=dict)  # method settings that change the run

    def key(self) -> str:
        """What decides the trained weights (how often checkpoints are saved does not)."""
        decisive = {k: v for k, v in asdict(self).items() if k != "save_every"}
        return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def without_autocast(model):
    """The model without accelerate's mixed-precision wrapper for a while: scoring in the middle
    of training (memorisation checks) sees the precision evaluation uses."""
    original = model.__dict__.get("_original_forward")
    if original is None:
        yield model
        return
    wrapped = model.__dict__["forward"]
    model.forward = original
    try:
        yield model
    finally:
        model.forward = wrapped


def make_accelerator(mixed_precision: str, gradient_accumulation: int = 1, cpu: bool = False):
    """accelerate's Accelerator; one process keeps one mixed-precision setting, said clearly if mixed."""
    from accelerate import Accelerator

    try:
        return Accelerator(gradient_accumulation_steps=gradient_accumulation, mixed_precision=mixed_precision, cpu=cpu)
    except ValueError as error:
        if "already been initialized" not in str(error):
            raise
        raise LumeError("this process already trained with another mixed-precision or device setting; accelerate "
                        f"allows one per process (asked for mixed_precision={mixed_precision!r}, cpu={cpu})") from None


def with_lora(model, settings: TrainSettings):
    """Wrap the model in a LoRA adapter on all linear layers when `lora_rank` > 0."""
    if settings.lora_rank <= 0:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=settings.lora_rank, lora_alpha=settings.lora_alpha, target_modules="all-linear",
                        lora_dropout=0.0, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


@dataclass
class TrainResult:
    steps: int
    losses: list[dict]
    seconds: float
    tokens: int
    stopped: str  # "max_steps" or whatever `after_step` returned
    peak_memory_mb: float | None


def _peak_memory_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    except ImportError:
        return None


STATE_NAME = "lume_state.json"


def saved_checkpoints(checkpoint_dir: Path) -> list[tuple[int, Path, dict]]:
    """Complete checkpoints, oldest first: (step, folder, state).

    Each checkpoint is its own folder `step-NNNNNNNN`; its state file is written last, so a
    folder without one was cut off mid-save and is ignored.
    """
    found = []
    for folder in sorted(checkpoint_dir.glob("step-*")) if checkpoint_dir.is_dir() else []:
        try:
            state = json.loads((folder / STATE_NAME).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        found.append((state["step"], folder, state))
    return found


def is_unfinished_run(out_dir: Path, key: str) -> bool:
    """OUT holds nothing but checkpoints of a run with this settings key (so resuming is safe)."""
    if any(entry.name != "checkpoints" for entry in out_dir.iterdir()):
        return False
    saved = saved_checkpoints(out_dir / "checkpoints")
    return not saved or saved[-1][2]["key"] == key


def _kept_note(checkpoint_dir: Path, save_every: int) -> str:
    saved = saved_checkpoints(checkpoint_dir)
    if saved:
        return (f"the last checkpoint (finite weights) is step {saved[-1][0]} in {checkpoint_dir}; "
                "a rerun resumes from it")
    if not save_every:
        return "no checkpoint was kept (checkpoints are off: save every 0 steps); a rerun starts over"
    return "no checkpoint was saved yet; a rerun starts over"


class _Checkpoints:
    """Crash-safe checkpoints: write a new step folder, mark it complete, then drop older ones.

    A kill at any point leaves the last complete checkpoint intact and findable.
    """

    def __init__(self, accelerator, checkpoint_dir: Path, settings: TrainSettings, trainable: list):
        self.accelerator, self.dir, self.settings, self.trainable = accelerator, checkpoint_dir, settings, trainable

    def resume(self) -> dict | None:
        saved = saved_checkpoints(self.dir)
        if not saved or saved[-1][2]["key"] != self.settings.key():
            return None
        step, folder, state = saved[-1]
        self.accelerator.load_state(str(folder / "accelerate"))
        self.accelerator.print(f"resuming from step {step} ({self.dir})")
        return state

    def stop(self, reason: str) -> LumeError:
        return LumeError(f"{reason}; stopped. {_kept_note(self.dir, self.settings.save_every)} "
                         "(lower the learning rate?)")

    def save(self, state: dict) -> None:
        if not all(bool(torch.isfinite(p).all()) for p in self.trainable):
            raise self.stop(f"the weights became non-finite at step {state['step']}")
        self.accelerator.wait_for_everyone()
        folder = self.dir / f"step-{state['step']:08d}"
        self.accelerator.save_state(str(folder / "accelerate"))
        if self.accelerator.is_main_process:
            write_json_atomic(folder / STATE_NAME, {"key": self.settings.key(), **state})
            for _, older, _ in saved_checkpoints(self.dir)[:-1]:
                shutil.rmtree(older, ignore_errors=True)
            for partial in self.dir.glob("step-*"):
                if not (partial / STATE_NAME).is_file():
                    shutil.rmtree(partial, ignore_errors=True)
        set_resume_note(f"interrupted: {_kept_note(self.dir, self.settings.save_every)}")


def _prepared(model, settings: TrainSettings, accelerator):
    """The model, optimiser and scheduler after accelerate's prepare, and the trainable weights."""
    from transformers import get_scheduler

    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if settings.lora_rank > 0:
            model.enable_input_require_grads()
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = get_scheduler(settings.scheduler, optimizer, num_warmup_steps=settings.warmup_steps,
                              num_training_steps=settings.max_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    return model, optimizer, scheduler, trainable


def train(model, settings: TrainSettings, step_loss: Callable[[object, int], tuple[torch.Tensor, dict]],
          checkpoint_dir: Path, *, after_step: Callable[[int], str | None] = lambda _s: None,
          description: str = "training", show_progress: bool = True, accelerator=None) -> TrainResult:
    """Run `step_loss(model, step) -> (loss, logs)` for up to `settings.max_steps` optimiser steps.

    `logs` may hold floats to record and `tokens` (tokens processed, for tokens/s).
    `after_step(step)` may return a reason to stop early. Resumes from `checkpoint_dir`;
    time and tokens count every segment of a resumed run.
    """
    from accelerate.utils import set_seed

    accelerator = accelerator or make_accelerator(settings.mixed_precision, settings.gradient_accumulation)
    set_seed(settings.seed)
    model, optimizer, scheduler, trainable = _prepared(model, settings, accelerator)
    checkpoints = _Checkpoints(accelerator, checkpoint_dir, settings, trainable)
    state = checkpoints.resume() or {"step": 0, "losses": [], "seconds": 0.0, "tokens": 0}
    start, losses, tokens = state["step"], state["losses"], state.get("tokens", 0)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    set_resume_note(f"interrupted: {_kept_note(checkpoint_dir, settings.save_every)}")
    started, stopped = time.time() - state.get("seconds", 0.0), "max_steps"
    with progress_bar(description, settings.max_steps - start, "steps",
                      show_progress and accelerator.is_main_process) as advance:
        for step in range(start, settings.max_steps):
            logs: dict = {}
            for micro in range(settings.gradient_accumulation):
                with accelerator.accumulate(model):
                    loss, micro_logs = step_loss(model, step * settings.gradient_accumulation + micro)
                    if not math.isfinite(loss.item()):
                        raise checkpoints.stop(f"the loss became {loss.item()} at step {step + 1}")
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and settings.max_grad_norm:
                        accelerator.clip_grad_norm_(trainable, settings.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                tokens += int(micro_logs.pop("tokens", 0))
                for name, value in micro_logs.items():
                    logs[name] = logs.get(name, 0.0) + float(value) / settings.gradient_accumulation
            losses.append({"step": step + 1, **logs})
            elapsed = time.time() - started
            advance(info=f"loss {logs.get('loss', float('nan')):.4f}  {tokens / max(elapsed, 1e-9):.0f} tok/s")
            if settings.save_every and (step + 1) % settings.save_every == 0:
                checkpoints.save({"step": step + 1, "losses": losses, "seconds": elapsed, "tokens": tokens})
            reason = after_step(step + 1)
            if reason:
                stopped = reason
                break
    set_resume_note(None)
    # accelerate wrapped `forward` in autocast in place; scoring after training must see the
    # model in its own precision, as evaluation does, so the wrapper comes off here.
    accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    return TrainResult(len(losses), losses, time.time() - started, tokens, stopped,
                       _peak_memory_mb(accelerator.device))
