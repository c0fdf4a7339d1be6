"""The skeleton every training stage shares: building a target, unlearning, relearning.

`Stage.execute` is the skeleton: the accelerator, the check that features needing whole
weights are not run sharded, the output folder claimed (keyed on the run, so the same
settings resume it), the model loaded and prepared, the resumable loop, the weights gathered,
the results saved, the folder marked finished and its checkpoints dropped. A stage supplies
what differs: its run, its model, its loss, what it does between steps and what it saves.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from accelerate.utils import set_seed

from lume.models.loading import check_space
from lume.outputs import claim, mark_finished
from lume.training.distributed import check_whole_weights, gathered_weights, make_accelerator
from lume.training.loop import TrainResult, train
from lume.training.settings import TrainingRun, TrainingSettings


class Stage:
    """One training stage (subclassed by each): `execute()` runs the skeleton; the hooks below
    are the stage's own parts."""

    kind: ClassVar[str | None] = None  # the output kind claimed and finished; None: a scratch run, nothing saved
    what: ClassVar[str] = "output folder"  # how errors name the output folder
    description: ClassVar[str] = "training"  # the progress bar's
    scratch: ClassVar[tuple[str, ...]] = ()  # folders besides checkpoints/ that only serve to resume

    def __init__(self, out_dir: Path, settings: TrainingSettings, *, device: str | None = None,
                 overwrite: bool = False, show_progress: bool = True, inputs: tuple = ()):
        self.out_dir, self.settings, self.device = Path(out_dir), settings, device
        self.overwrite, self.show_progress, self.inputs = overwrite, show_progress, inputs

    # --- the stage's parts -------------------------------------------------------------------
    def whole_weights_for(self) -> list[str]:
        """Features of this run that need whole weights on each process (refused when sharded)."""
        return ["LoRA"] if self.settings.lora_rank > 0 else []

    def find_unused_parameters(self) -> bool:
        return False

    def training_run(self, accelerator) -> TrainingRun:
        raise NotImplementedError

    def model(self, accelerator):
        """The model to train: loaded, its trained weights chosen (layers, LoRA)."""
        raise NotImplementedError

    def before_training(self, model, accelerator) -> None:
        """Anything to do once the model is ready, before the first step (probing step 0)."""

    def step_loss(self, model, accelerator) -> Callable:
        """`step_loss(model, micro_batch) -> (loss, logs)` for the loop."""
        raise NotImplementedError

    def after_step(self, model, accelerator) -> Callable[[int], str | None]:
        """Called after each step (and may stop the run early by returning why)."""
        return lambda _step: None

    def stateful(self):
        """What besides the weights and optimiser a checkpoint keeps (a method's dual variable)."""
        return None

    def budget(self) -> Callable[[int, float], str | None] | None:
        """A limit on the training time, checked after each step (None: none)."""
        return None

    def finished(self, model, result: TrainResult, accelerator):
        """What `save` writes, computed on every process before the weights are gathered."""
        return result

    def save(self, model, weights: dict | None, finished) -> None:
        """Write the results (main process; `weights`: the gathered state dict, None with LoRA)."""

    def _check_space(self, model, run: TrainingRun) -> None:
        """The results must fit, said now rather than after training: the model, and with
        checkpoints two of them at once (a new one is complete before the old one goes), each the
        weights and AdamW's two moments."""
        if run.settings.save_every:
            check_space(self.out_dir, model.state_dict(), copies=6, what="training with checkpoints (two at a "
                        "time, each the weights and AdamW's two moments)")
        else:
            check_space(self.out_dir, model.state_dict(), what="saving the trained model")

    # --- the skeleton ------------------------------------------------------------------------
    def execute(self):
        """Run the stage; returns what `finished` gave."""
        settings = self.settings
        accelerator = make_accelerator(settings.mixed_precision, settings.gradient_accumulation,
                                       cpu=self.device == "cpu", log_with=settings.log_with,
                                       logs_dir=self.out_dir / "logs",
                                       find_unused_parameters=self.find_unused_parameters())
        check_whole_weights(accelerator, self.whole_weights_for())
        run = self.training_run(accelerator)
        if self.kind:
            claim(self.out_dir, self.kind, key=run.key(), inputs=self.inputs, overwrite=self.overwrite,
                  what=self.what, accelerator=accelerator)
        set_seed(settings.seed)  # before the model: LoRA's adapters are drawn when it is made
        model = self.model(accelerator)
        if self.kind and settings.lora_rank == 0 and accelerator.is_main_process:
            self._check_space(model, run)
        self.before_training(model, accelerator)
        result = train(model, run, self.step_loss(model, accelerator), self.out_dir / "checkpoints",
                       description=self.description, show_progress=self.show_progress, accelerator=accelerator,
                       after_step=self.after_step(model, accelerator), stateful=self.stateful(),
                       budget=self.budget())
        finished = self.finished(model, result, accelerator)
        if self.kind:
            weights = None if settings.lora_rank > 0 else gathered_weights(accelerator, model)
            if accelerator.is_main_process:
                self.save(accelerator.unwrap_model(model), weights, finished)
                mark_finished(self.out_dir)
        if self.kind is None or accelerator.is_main_process:
            for folder in ("checkpoints", *self.scratch):  # only needed to resume
                shutil.rmtree(self.out_dir / folder, ignore_errors=True)
        return finished
