"""`lume run`: a whole study from one YAML config: target, unlearning methods, evaluations, report.

Every step writes a marker when complete (`lume_target.json`, `lume_unlearn.json`,
`summary.json`, `attacks.json`) and is keyed on everything that decides its result, so a rerun
skips finished steps, resumes unfinished ones and redoes those whose settings, input model or
data changed. Targets are cached in lume's cache by their settings, base model and data, and
reused across studies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from lume import data as lume_data
from lume.config import build, restated, setting
from lume.errors import InputError, LumeError, set_study_note
from lume.files import write_json_atomic
from lume.outputs import check_output_dir, one_writer, refuse_overwriting_inputs
from lume.reports.study import TUNED_RECORD
from lume.stages.attacks import AttackConfig, check_attacks
from lume.stages.evaluation import EvalConfig
from lume.study.config import StudyConfig, read_study
from lume.study.course import OpenStudy, evaluated_course, open_study
from lume.study.entries import StudyMethod, study_methods
from lume.study.steps import attacked_step, unlearned_step


def _demo_evaluation() -> EvalConfig:
    """Membership on the target's own held-out documents (the SemEval files measure nothing for a
    target lume built), MMLU on 10 questions of each of 4 seeded subjects (so the questions of a
    subject share its few-shot prefix), the general-text NLL on each document's first 32 tokens."""
    return EvalConfig(mia_set="none", mmlu_limit=10, mmlu_subjects=4, section={"general": {"max_tokens": 32}})


@dataclass
class RunConfig(StudyConfig):
    name: str = restated(StudyConfig, "name", "demo")
    out: str = restated(StudyConfig, "out", "runs/demo")
    methods: list = restated(StudyConfig, "methods", help=(
        "Each: UnlearnConfig fields plus an optional `name`, or a `recipe` with overrides. The demo's: the "
        "organisers' kind of baseline (npo+gd) beside the winning system of SemEval-2025 (the ails-ntua recipe), "
        "each at lume's tuned defaults (docs/compare.md)"),
        factory=lambda: [{"method": "npo+gd"}, {"recipe": "ails-ntua"}])
    evaluation: EvalConfig = restated(StudyConfig, "evaluation", help=(
        "How every model is evaluated (the demo's: see _demo_evaluation); a file's `evaluation:` starts from "
        "EvalConfig's defaults"), factory=_demo_evaluation)
    attacks: list[str] = setting(help="Attacks run on every unlearned model: relearn, quantize-4, ...", factory=list)
    attack: AttackConfig = setting(help="The attacks' settings", factory=AttackConfig)


def load_config(path: str | Path | None) -> RunConfig:
    """The built-in demo (no path) or a YAML file; every field is checked and every `methods:`
    entry worked out now, so a bad value stops the study before any work."""
    if path is None:
        return RunConfig()
    raw, methods, source = read_study(RunConfig, path)
    if "attack" in raw:
        raw["attack"] = build(AttackConfig, raw["attack"] or {}, where="attack", source=path)
    try:
        check_attacks(raw.get("attacks", []))
    except LumeError as error:
        raise InputError(path, str(error), field="attacks") from None
    return dataclasses.replace(RunConfig(), **raw, methods=study_methods(methods, raw["target"], source))


def run(config: RunConfig, wait: bool = False, overwrite: bool = False) -> Path:
    """Run the study; returns the run folder (with report.md and report.html). While another
    command writes that folder, this one stops (or waits, with `wait`). A folder that holds
    anything but a lume study is refused, and a step whose folder holds results it cannot resume
    is refused too; `overwrite` replaces both."""
    with one_writer(config.out, wait):
        out = Path(config.out)
        refuse_overwriting_inputs(out, (config.target.model, lume_data.resolve_data_dir(config.data_dir)),
                                  "study folder")
        if out.is_dir() and not (out / "steps").is_dir() and any(out.iterdir()):
            check_output_dir(out, overwrite=overwrite, what="study folder")  # not a study: refused, or emptied
        methods = study_methods(config.methods, config.target)  # a file's are worked out already
        set_study_note(f"the study's finished steps are kept in {out}; the same command resumes from there")
        study = open_study(config)
        _record_tuning(out, methods)
        return evaluated_course(study, _unlearned(study, methods, overwrite), after=_attacking(study, config),
                                overwrite=overwrite)


def _record_tuning(out: Path, methods: list[StudyMethod]) -> None:
    """Where each method's settings were chosen (a sweep's tuned.yaml says), for the report."""
    tuned = {method.label: method.tuned_by for method in methods if method.tuned_by}
    if tuned:
        write_json_atomic(out / TUNED_RECORD, tuned)
    else:
        (out / TUNED_RECORD).unlink(missing_ok=True)


def _unlearned(study: OpenStudy, methods: list[StudyMethod], overwrite: bool):
    """Each method's model, unlearned (or found done) when the course asks for it."""
    for method in methods:
        folder = study.out / "models" / method.label
        unlearned_step(study.steps, study.target, method.entry, method.label, folder, study.data, overwrite=overwrite)
        yield method.label, folder


def _attacking(study: OpenStudy, config: RunConfig):
    """The study's attacks on a model once it is evaluated (nothing when it names none)."""
    settings = dataclasses.replace(config.attack, data_dir=config.data_dir)

    def attacked(label: str, model: Path) -> None:
        if config.attacks:
            attacked_step(study.steps, settings, config.attacks, study.target, model, label,
                          study.out / "attacks" / label, study.data)

    return attacked
