"""Training: the settings type every stage nests, training examples, and the resumable loop."""

from lume.training.examples import Example, TextSettings, collate, prompt_answer_example
from lume.training.distributed import (check_whole_weights, distribution, gathered_weights, make_accelerator,
                                       reference_copy)
from lume.training.loop import TrainResult, saved_checkpoints, train, without_autocast
from lume.training.scope import scoped
from lume.training.settings import MIXED_PRECISION, TrainingRun, TrainingSettings

__all__ = ["MIXED_PRECISION", "Example", "TrainResult", "TextSettings", "TrainingRun", "TrainingSettings",
           "check_whole_weights", "collate", "distribution", "gathered_weights", "make_accelerator",
           "prompt_answer_example", "reference_copy", "saved_checkpoints", "scoped", "train", "without_autocast"]
