"""The course every study takes, `lume run`'s and `lume sweep`'s alike: its data loaded once and
handed to every stage, its target given or built (cached by its settings, base model and data),
the target (and its oracle) evaluated, then each model as the study makes it, then the report."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from lume import data as lume_data
from lume.config import merged
from lume.data import LumeData
from lume.data.manifest import MANIFEST_NAME
from lume.errors import LumeError
from lume.models import resolve_model_path
from lume.reports.study import write_report
from lume.stages.target import ORACLE_DIR, MemorizeConfig, cached_target, memorize_oracle, preset
from lume.study.config import StudyConfig
from lume.study.steps import Steps, evaluated_step


@dataclass
class OpenStudy:
    """A study under way: what its steps share."""

    config: StudyConfig
    out: Path
    steps: Steps
    data: LumeData  # loaded once: every stage is handed it
    target: Path


def open_study(config: StudyConfig) -> OpenStudy:
    """The study's data loaded and its target ready."""
    data = lume_data.load(config.data_dir)
    return OpenStudy(config, Path(config.out), Steps(Path(config.out)), data, build_target(config, data))


def build_target(config: StudyConfig, data: LumeData | None = None) -> Path:
    """The target folder: given, or built once per settings, base model and data (cached by them)."""
    if config.target.model:  # a folder, or a released target's name (downloaded into the cache)
        source = resolve_model_path(config.target.model)[1]
        return source if isinstance(source, Path) else Path(config.target.model)
    overrides = {**config.target.memorize, "data_dir": config.data_dir}
    settings = (preset(config.target.preset, **overrides) if config.target.preset
                else merged(MemorizeConfig(), overrides))
    return cached_target(settings, data)


def build_oracle(target: Path, data: LumeData) -> Path:
    """The target's retrained oracle, built once (TARGET/oracle); several sweep workers wait for one."""
    if not (target / MANIFEST_NAME).is_file():
        raise LumeError(f"target.oracle: {target} is not a target lume built; only those have an oracle here")
    memorize_oracle(target, wait=True, data=data)  # a finished one of the target's settings is kept
    return target / ORACLE_DIR


def evaluated_course(study: OpenStudy, models: Iterable[tuple[str, Path]],
                     after: Callable[[str, Path], None] = lambda _label, _model: None,
                     overwrite: bool = False) -> Path:
    """The target (and its oracle) evaluated, then each (label, model folder) MODELS yields (a study
    unlearns it as it is asked for), `after` run on each, then the report; the study's folder."""
    out, steps, data = study.out, study.steps, study.data
    evaluation = dataclasses.replace(study.config.evaluation, data_dir=study.config.data_dir)
    target_summary = evaluated_step(steps, study.target, "target", out / "eval" / "target", evaluation, data,
                                    overwrite)
    evaluation = dataclasses.replace(evaluation, target_mmlu=target_summary.mmlu_accuracy)
    evaluated = [out / "eval" / "target"]
    if study.config.target.oracle:
        evaluated_step(steps, build_oracle(study.target, data), "oracle", out / "eval" / "oracle", evaluation, data,
                       overwrite)
        evaluated.append(out / "eval" / "oracle")
    for label, model in models:
        evaluated_step(steps, model, label, out / "eval" / label, evaluation, data, overwrite)
        after(label, model)
        evaluated.append(out / "eval" / label)
    write_report(evaluated, out)
    return out
