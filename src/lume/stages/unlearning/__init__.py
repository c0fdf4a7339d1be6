"""Unlearning: remove the forget set from a model with a registered method (`methods/`), keep
the retain set; and merge LoRA adapters (`merge`)."""

from lume.stages.unlearning.methods import METHODS, Context, Method, register
from lume.stages.unlearning.schedule import ScheduleSettings
from lume.stages.unlearning.unlearner import (REPORT_NAME, UnlearnConfig, build_method, check_fits,
                                            manifest_records, method_settings, read_split, read_unlearn_report,
                                            step_key, unlearn)

__all__ = ["METHODS", "REPORT_NAME", "Context", "Method", "UnlearnConfig", "ScheduleSettings", "build_method",
           "check_fits", "manifest_records", "method_settings", "read_split", "read_unlearn_report", "register",
           "step_key", "unlearn"]
