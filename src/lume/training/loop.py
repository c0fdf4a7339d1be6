"""The training loop shared by target building, unlearning and relearning: accelerate, checkpoints, resume.

It runs anything that turns a step number into a loss. accelerate supplies devices, mixed
precision and multi-process runs (`accelerate launch` with DDP, DeepSpeed or FSDP); the loop
adds what a long unlearning run needs: progress with loss and tokens/s, a checkpoint every
`save_every` steps, resume from the last checkpoint when the settings match,
and a clean stop on a NaN or infinite loss that keeps the last good checkpoint.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lume.compat import original_forward
from lume.errors import InputError, LumeError, set_resume_note
from lume.files import read_json, write_json_atomic, writing_to
from lume.progress import progress_bar
from lume.training import compiling
from lume.training.distributed import make_accelerator, shards_weights
from lume.training.sampling import process_micro_batches
from lume.training.settings import TrainingRun

log = logging.getLogger(__name__)


@contextmanager
def without_autocast(model):
    """The model without accelerate's mixed-precision wrapper, and uncompiled, for a while: scoring
    in the middle of training (memorisation checks) sees the precision evaluation uses."""
    original = original_forward(model)
    with compiling.eager():
        if original is None:
            yield model
            return
        wrapped = model.__dict__["forward"]
        model.forward = original
        try:
            yield model
        finally:
            model.forward = wrapped


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
        if not (folder / STATE_NAME).is_file():
            continue  # cut off mid-save
        try:
            state = read_json(folder / STATE_NAME, what="checkpoint state")
        except InputError as error:
            log.warning(f"{error}; that checkpoint is not used")
            continue
        if not isinstance(state.get("step"), int) or not isinstance(state.get("key"), str):
            log.warning(f"{folder / STATE_NAME}: damaged checkpoint state (no step or key); not used")
            continue
        found.append((state["step"], folder, state))
    return found


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

    def __init__(self, accelerator, checkpoint_dir: Path, run: TrainingRun, trainable: list, stateful=None):
        self.accelerator, self.dir, self.run, self.trainable = accelerator, checkpoint_dir, run, trainable
        self.stateful = stateful  # what else keeps state between steps (a method's loss), saved beside the weights

    def resume(self) -> dict | None:
        saved = saved_checkpoints(self.dir)
        if not saved or saved[-1][2]["key"] != self.run.key():
            return None
        step, folder, state = saved[-1]
        try:
            self.accelerator.load_state(str(folder / "accelerate"))
        except Exception as error:  # truncated weights, a pickle torch refuses to load, a missing file
            raise LumeError(f"{folder}: damaged checkpoint ({type(error).__name__}: {str(error).splitlines()[0]}); "
                            "delete that folder to start over") from None
        log.info(f"resuming from step {step} ({self.dir})")
        if self.stateful is not None and "method_state" in state:
            self.stateful.load_state_dict(state["method_state"])
        return state

    def stop(self, reason: str) -> LumeError:
        return LumeError(f"{reason}; stopped. {_kept_note(self.dir, self.run.settings.save_every)} "
                         "(lower the learning rate?)")

    def save(self, state: dict) -> None:
        if not all_finite(self.accelerator, self.trainable):
            raise self.stop(f"the weights became non-finite at step {state['step']}")
        self.accelerator.wait_for_everyone()
        folder = self.dir / f"step-{state['step']:08d}"
        with writing_to(folder):
            self.accelerator.save_state(str(folder / "accelerate"))
        if self.stateful is not None:
            state = {**state, "method_state": self.stateful.state_dict()}
        if self.accelerator.is_main_process:
            write_json_atomic(folder / STATE_NAME, {"key": self.run.key(), **state})
            for _, older, _ in saved_checkpoints(self.dir)[:-1]:
                shutil.rmtree(older, ignore_errors=True)
            for partial in self.dir.glob("step-*"):
                if not (partial / STATE_NAME).is_file():
                    shutil.rmtree(partial, ignore_errors=True)
        set_resume_note(_kept_note(self.dir, self.run.settings.save_every))


def all_finite(accelerator, weights: list) -> bool:
    """No NaN or infinity in any process's weights (or shards of them): one answer for all processes."""
    local = [w.to_local() if hasattr(w, "to_local") else w for w in weights]
    bad = sum(int((~torch.isfinite(w)).sum()) for w in local)
    return int(accelerator.reduce(torch.tensor(bad, device=accelerator.device), "sum")) == 0


def _warmup(settings, steps: int) -> int:
    return settings.warmup_steps or math.ceil(settings.warmup_ratio * steps)


def _lr_schedule(optimizer, run: TrainingRun):
    """The learning-rate schedule; with segments, the scheduler's shape (warm-up and decay)
    starts again at the start of each, as a fresh trainer per segment would have it."""
    from transformers import get_scheduler

    settings = run.settings
    if not run.segments:
        return get_scheduler(settings.scheduler, optimizer, num_warmup_steps=_warmup(settings, run.max_steps),
                             num_training_steps=run.max_steps)
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    shapes, starts = [], []
    for start, length in zip(run.segment_starts(), run.segments):
        shape = get_scheduler(settings.scheduler, probe, num_warmup_steps=_warmup(settings, length),
                              num_training_steps=length)
        if not hasattr(shape, "lr_lambdas"):
            raise LumeError(f"scheduler {settings.scheduler!r} cannot restart per segment (it is not a "
                            "step function of the step number)")
        shapes.append(shape.lr_lambdas[0])
        starts.append(start)

    def factor(step: int) -> float:
        segment = max(i for i, start in enumerate(starts) if start <= step)
        return shapes[segment](step - starts[segment])

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _prepared(model, run: TrainingRun, accelerator):
    """The model, optimiser and scheduler after accelerate's prepare, and the trainable weights."""
    settings = run.settings
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if settings.lora_rank > 0:
            model.enable_input_require_grads()
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    # The fused kernel (CPU and GPU) updates every weight in one pass: on a CPU the per-weight
    # loop took about a fifth of a SmolLM2 step. Sharded weights keep the default implementation.
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay,
                                  fused=not shards_weights(accelerator) and accelerator.device.type in ("cpu", "cuda"))
    scheduler = _lr_schedule(optimizer, run)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    if settings.compile:
        compiling.compile_model(model)
    # FSDP replaces each weight by its shard (a DTensor): the trainable weights are looked up again
    return model, optimizer, scheduler, [p for p in model.parameters() if p.requires_grad]


class _Stepper:
    """One optimiser step: the micro-steps' losses (accumulated by accelerate), clipping, update."""

    def __init__(self, model, run: TrainingRun, accelerator, step_loss, checkpoints):
        self.settings, self.accelerator, self.step_loss = run.settings, accelerator, step_loss
        self.model, self.optimizer, self.scheduler, self.trainable = _prepared(model, run, accelerator)
        self.checkpoints = checkpoints(self.trainable)
        self.restarts = set(run.segment_starts()[1:])

    def __call__(self, step: int) -> tuple[dict, int]:
        """Run optimiser step `step`; return its mean logs and the tokens it processed."""
        if step in self.restarts:  # a new segment starts with fresh AdamW moments
            self.optimizer.optimizer.state.clear()
        logs, tokens, accelerator = {}, 0, self.accelerator
        mine = process_micro_batches(step, self.settings.gradient_accumulation, accelerator.num_processes,
                                     accelerator.process_index)
        for micro_batch in mine:
            with accelerator.accumulate(self.model):
                micro_logs = self._loss_and_gradients(step, micro_batch)
                if accelerator.sync_gradients and self.settings.max_grad_norm:
                    accelerator.clip_grad_norm_(self.trainable, self.settings.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad()
            tokens += int(micro_logs.pop("tokens", 0))
            for name, value in micro_logs.items():
                logs[name] = logs.get(name, 0.0) + float(value) / len(mine)
        return _over_processes(accelerator, logs, tokens)

    def _loss_and_gradients(self, step: int, micro_batch: int) -> dict:
        """The micro-step's loss and its backward pass; once more uncompiled if compilation fails
        (in the forward, the backward's included: before any weight's gradient is written)."""
        try:
            return self._backward(step, micro_batch)
        except compiling.FAILURES as error:
            if not compiling.is_compiled(self.model):
                raise
            compiling.fall_back(self.model, error)
            return self._backward(step, micro_batch)

    def _backward(self, step: int, micro_batch: int) -> dict:
        with compiling.backward_with_forward(self.model):
            loss, micro_logs = self.step_loss(self.model, micro_batch)
        if not math.isfinite(loss.item()):
            raise self.checkpoints.stop(f"the loss became {loss.item()} at step {step + 1}")
        self.accelerator.backward(loss)
        return micro_logs


def _over_processes(accelerator, logs: dict, tokens: int) -> tuple[dict, int]:
    """A step's logs as the mean over every process's micro-batches (equal shares: the mean of
    the processes' means) and its tokens summed over the processes: the numbers one process
    training all the step's micro-batches records."""
    if accelerator.num_processes == 1:
        return logs, tokens
    names = sorted(logs)
    values = torch.tensor([logs[n] for n in names] + [float(tokens)], dtype=torch.float64, device=accelerator.device)
    gathered = accelerator.gather(values.unsqueeze(0))
    means = gathered[:, :-1].mean(0).tolist()
    return dict(zip(names, means)), int(gathered[:, -1].sum().item())


class _Tracking:
    """Each step's logs to the accelerate tracker the settings name; nothing when they name none."""

    def __init__(self, accelerator, run: TrainingRun, description: str):
        self.accelerator = accelerator if run.settings.log_with else None
        if self.accelerator:
            accelerator.init_trackers(description.replace(" ", "-"),
                                      config={**asdict(run.settings), "max_steps": run.max_steps})

    def log(self, values: dict, step: int) -> None:
        if self.accelerator:
            self.accelerator.log(values, step=step)

    def end(self) -> None:
        if self.accelerator:
            self.accelerator.end_training()


def train(model, run: TrainingRun, step_loss: Callable[[object, int], tuple[torch.Tensor, dict]],
          checkpoint_dir: Path, *, after_step: Callable[[int], str | None] = lambda _s: None,
          description: str = "training", show_progress: bool = True, accelerator=None, stateful=None,
          budget: Callable[[int, float], str | None] | None = None) -> TrainResult:
    """Run `step_loss(model, micro_batch) -> (loss, logs)` for up to `run.max_steps` optimiser steps
    (each process its share of a step's micro-batches: `lume.training.sampling`).
    `logs` may hold floats to record and `tokens` (tokens processed, for tokens/s). `after_step(step)`
    (its time not training time) and `budget(step, training seconds)` may return a reason to stop
    early. Resumes from `checkpoint_dir`; time and tokens count every segment of a resumed run.
    `stateful` (a method whose loss keeps state) has its `state_dict()` saved in each checkpoint.
    """
    from accelerate.utils import set_seed

    settings = run.settings
    accelerator = accelerator or make_accelerator(settings.mixed_precision, settings.gradient_accumulation,
                                                  log_with=settings.log_with, logs_dir=checkpoint_dir.parent / "logs")
    set_seed(settings.seed)
    stepper = _Stepper(model, run, accelerator, step_loss,
                       lambda trainable: _Checkpoints(accelerator, checkpoint_dir, run, trainable, stateful))
    state = stepper.checkpoints.resume() or {"step": 0, "losses": [], "seconds": 0.0, "tokens": 0}
    start, losses, tokens = state["step"], state["losses"], state.get("tokens", 0)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    set_resume_note(_kept_note(checkpoint_dir, settings.save_every))
    started, stopped = time.time() - state.get("seconds", 0.0), "max_steps"
    tracking = _Tracking(accelerator, run, description)
    with progress_bar(description, run.max_steps - start, "steps",
                      show_progress and accelerator.is_main_process) as advance:
        for step in range(start, run.max_steps):
            logs, step_tokens = stepper(step)
            tokens += step_tokens
            losses.append({"step": step + 1, **logs})
            elapsed = time.time() - started
            tracking.log({**logs, "tokens_per_second": tokens / max(elapsed, 1e-9)}, step + 1)
            advance(info=f"loss {logs.get('loss', float('nan')):.4f}  {tokens / max(elapsed, 1e-9):.0f} tok/s")
            if settings.save_every and (step + 1) % settings.save_every == 0:
                stepper.checkpoints.save({"step": step + 1, "losses": losses, "seconds": elapsed, "tokens": tokens})
            checked = time.time()
            stopped = after_step(step + 1) or (budget and budget(step + 1, elapsed)) or stopped
            started += time.time() - checked  # checks and probes between steps are not training time
            if stopped != "max_steps":
                break
    tracking.end()  # the resume note stays: the checkpoints are kept until the stage's output is finished
    if not all_finite(accelerator, stepper.trainable):  # a finite last loss does not make finite weights
        raise stepper.checkpoints.stop(f"the weights became non-finite by step {len(losses)}, the last")
    # accelerate wrapped `forward` in autocast in place; scoring after training must see the
    # model in its own precision, as evaluation does, so the wrapper comes off here.
    accelerator.unwrap_model(stepper.model, keep_fp32_wrapper=False)
    compiling.uncompile(stepper.model)
    return TrainResult(len(losses), losses, time.time() - started, tokens, stopped,
                       _peak_memory_mb(accelerator.device))
