"""A study's steps: each keyed on everything that decides its result (the stages say what: their
`step_key`s), recorded when it starts, skipped when finished with the same key, resumed when
unfinished, redone when the key changed."""

from __future__ import annotations

import logging
from pathlib import Path

from lume.data import LumeData
from lume.data.manifest import MANIFEST_NAME
from lume.errors import InputError
from lume.files import read_json, write_json_atomic
from lume.models import model_fingerprint
from lume.models.fingerprint import damaged
from lume.results import EvaluationSummary, read_summary
from lume.stages.attacks import RESULT_NAME, AttackConfig, attack
from lume.stages.attacks import step_key as attack_key
from lume.stages.evaluation import EvalConfig, evaluate
from lume.stages.evaluation import step_key as evaluation_key
from lume.stages.unlearning import REPORT_NAME, unlearn
from lume.stages.unlearning.recipes.run import Entry, run_recipe

log = logging.getLogger(__name__)


class Steps:
    """Each step of a study keyed on everything that decides its result, recorded in
    RUN/steps/<step>.json when it starts. A finished step with the same key is skipped; a
    changed key redoes it (and, through the model fingerprint, whatever depends on it)."""

    def __init__(self, out: Path):
        self.folder = out / "steps"

    def state(self, step: str, key: dict, finished: bool) -> str:
        """"done", "resume" (an unfinished run of the same key), "redo" (the step ran before with
        another key, said in one line: its folder holds this study's results, to be replaced) or
        "new" (never run: its folder, if any, is not replaced without --overwrite)."""
        record = self.folder / f"{step}.json"
        try:
            saved = read_json(record, what="study step record") if record.is_file() else None
        except InputError as error:  # it only serves to skip finished work: redo the step
            log.warning(f"{error}; redoing the step")
            saved = {}
        if saved == key:
            return "done" if finished else "resume"
        if saved is not None:
            changed = sorted(k for k in set(saved) | set(key) if saved.get(k) != key.get(k))
            log.info(f"{step}: {', '.join(changed)} changed since the last run; redoing it and what depends on it")
        write_json_atomic(record, key)
        return "new" if saved is None else "redo"


def evaluated_step(steps: Steps, model: Path, label: str, folder: Path, config: EvalConfig, data: LumeData,
                   overwrite: bool = False) -> EvaluationSummary:
    """The study step "evaluate LABEL": skipped when done with the same key, else run; its summary."""
    key = {"model": model_fingerprint(model), **evaluation_key(config), **_parts(model)}
    state = steps.state(f"evaluate-{label}", key, (folder / "summary.json").is_file())
    if state == "done":
        log.info(f"{label}: evaluation already done")
        return read_summary(folder / "summary.json")
    log.info(f"{label}: evaluating")
    return evaluate(model, folder, config, overwrite=overwrite or state == "redo", data=data)


def _parts(target: Path) -> dict:
    """A model without a manifest (a released target) is unlearned and scored on the SemEval folds'
    parts (`target_selection`): said in its steps' keys, as no input says it."""
    return {} if (Path(target) / MANIFEST_NAME).is_file() else {"parts": "semeval folds"}


def unlearned_step(steps: Steps, target: Path, entry: Entry, label: str, folder: Path, data: LumeData,
                   on_probe=lambda _step, _row: None, overwrite: bool = False) -> None:
    """The study step "unlearn LABEL" (`entry`: a worked-out `methods:` entry, or a sweep trial's):
    skipped, resumed or redone by its key."""
    key = {"target": model_fingerprint(target), "data": data.fingerprint, **entry.key(), **_parts(target)}
    state = steps.state(f"unlearn-{label}", key, (folder / REPORT_NAME).is_file())
    if state == "done" and damaged(folder):
        log.warning(f"{label}: the finished model in {folder} changed since it was written (truncated?); redoing it")
        state = "redo"
    if state == "done":
        return
    log.info(f"{label}: unlearning")
    options = dict(data=data, overwrite=overwrite or state == "redo", on_probe=on_probe)
    if entry.recipe:
        run_recipe(target, folder, entry, **options)
    else:
        unlearn(target, folder, entry.config, **options)


def attacked_step(steps: Steps, settings: AttackConfig, attacks: list[str], target: Path, model: Path, label: str,
                  folder: Path, data: LumeData) -> None:
    """The study step "attack LABEL" (SETTINGS with the study's data_dir): skipped when done with
    the same key, else run."""
    key = {"model": model_fingerprint(model), "target": model_fingerprint(target), **attack_key(settings, attacks)}
    state = steps.state(f"attack-{label}", key, (folder / RESULT_NAME).is_file())
    if state == "done":
        return
    log.info(f"{label}: attacking ({', '.join(attacks)})")
    attack(model, target, folder, attacks, settings, overwrite=state == "redo", data=data)
