"""Evaluation: the official protocol on one model, as registered sections (probes, membership
inference, MMLU; see sections.py). Every `*_section.py` module here is imported, so a new
section file is all it takes to add a measure."""

import importlib
import pkgutil

from lume.stages.evaluation.sections import SECTIONS, Evaluation, Section, register_section

for _module in pkgutil.iter_modules(__path__):
    if _module.name.endswith("_section"):
        importlib.import_module(f"{__name__}.{_module.name}")

from lume.stages.evaluation.evaluator import EvalConfig, evaluate, part_dtypes, step_key  # noqa: E402

__all__ = ["SECTIONS", "EvalConfig", "Evaluation", "Section", "evaluate", "part_dtypes", "register_section", "step_key"]
