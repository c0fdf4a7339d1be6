"""`run`: a whole study from one YAML config: target, unlearning methods, evaluations, report.

Every step writes a marker when complete (`lume_target.json`, `lume_unlearn.json`,
`summary.json`, `attacks.json`) and is keyed on everything that decides its result, so a rerun
skips finished steps, resumes unfinished ones and redoes those whose settings, input model or
data changed. Targets are cached in lume's cache by their settings, base model and data, and
reused across studies.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from lume import data as lume_data
from lume.config import build, coerce_fields, merged, safe_name, setting, shown, yaml_value
from lume.data.loading import text_lines
from lume.data.manifest import MANIFEST_NAME
from lume.data.paths import DATA_DIR_HELP
from lume.errors import InputError, LumeError, set_study_note
from lume.files import os_path, read_json, write_json_atomic
from lume.models import model_fingerprint, resolve_model_path
from lume.models.fingerprint import damaged
from lume.outputs import check_output_dir, one_writer, own_folder, refuse_overwriting_inputs
from lume.reports.study import write_report
from lume.results import EvaluationSummary, read_summary
from lume.stages.attacks import RESULT_NAME, AttackConfig, attack, check_attacks
from lume.stages.attacks import step_key as attack_key
from lume.stages.evaluation import EvalConfig, evaluate
from lume.stages.evaluation import step_key as evaluation_key
from lume.stages.target import ORACLE_DIR, MemorizeConfig, cached_target, memorize_oracle, preset
from lume.stages.unlearning import METHODS, REPORT_NAME, UnlearnConfig, check_fits, unlearn
from lume.stages.unlearning.recipes import RECIPES, target_kind
from lume.stages.unlearning.recipes.run import Entry, run_recipe

log = logging.getLogger(__name__)


@dataclass
class TargetConfig:
    model: str | None = setting(None, "An existing target folder, or lume-olmo-7b / lume-olmo-1b; None: one is "
                                      "built (and cached)")
    preset: str | None = setting("demo", "The MemorizeConfig preset a built target starts from")
    memorize: dict = setting(help="MemorizeConfig fields over the preset", factory=dict)
    oracle: bool = setting(False, "Also build and evaluate the target's retrained oracle (lume.stages.target."
                                  "memorize_oracle): the report's ideal row; a target lume built only, about half "
                                  "the target's training time")


def _demo_evaluation() -> EvalConfig:
    """Membership on the target's own held-out documents (the SemEval files measure nothing for a
    target lume built), MMLU on 10 questions of each of 4 seeded subjects (so the questions of a
    subject share its few-shot prefix)."""
    return EvalConfig(mia_set="none", mmlu_limit=10, mmlu_subjects=4)


@dataclass
class RunConfig:
    name: str = setting("demo", "The study's name")
    out: str = setting("runs/demo", "The run folder")
    data_dir: str | None = setting(None, DATA_DIR_HELP)
    target: TargetConfig = setting(help="The target: given, or built", factory=TargetConfig)
    methods: list[dict] = setting(help="Each: UnlearnConfig fields plus an optional `name`, or a `recipe` with "
                                       "overrides. The demo's: the organisers' kind of baseline (npo+gd, 10 steps at "
                                       "2e-4) beside the winning system of SemEval-2025 (the ails-ntua recipe, its "
                                       "settings for a target lume built)",
                                  factory=lambda: [{"method": "npo+gd", "steps": 10,
                                                    "training": {"learning_rate": 2e-4}},
                                                   {"recipe": "ails-ntua"}])
    evaluation: EvalConfig = setting(help="How every model is evaluated (the demo's: see _demo_evaluation); a file's "
                                          "`evaluation:` starts from EvalConfig's defaults", factory=_demo_evaluation)
    attacks: list[str] = setting(help="Attacks run on every unlearned model: relearn, quantize-4, ...", factory=list)
    attack: AttackConfig = setting(help="The attacks' settings", factory=AttackConfig)


def read_yaml(path: Path):
    """The parsed YAML file; a syntax error names its line, bad bytes their offset."""
    text = "".join(line for _, line in text_lines(path))
    try:
        return yaml_value(text) or {}
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        context = f" ({error.context} on line {error.context_mark.line + 1})" if error.context_mark else ""
        raise InputError(path, f"YAML syntax: {error.problem}{context}",
                         line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as error:
        raise InputError(path, f"cannot read YAML: {str(error).splitlines()[0]}") from None


def os_paths(raw: dict, target: TargetConfig, path: Path) -> TargetConfig:
    """A study's or sweep's folders as the OS names them (lume.files.os_path), its `out` checked to
    be a folder of its own; RAW is changed in place, the target returned."""
    for name in ("out", "data_dir"):
        if isinstance(raw.get(name), str):
            raw[name] = os_path(raw[name])
    if "out" in raw:
        try:
            own_folder(raw["out"])
        except LumeError as error:
            raise InputError(path, str(error), field="out") from None
    return dataclasses.replace(target, model=os_path(target.model)) if target.model else target


MAX_METHODS = 200  # entries of a study's `methods`: checked before each one is
RECIPE_KEYS = ("recipe", "recipe_target")  # a recipe entry's own keys; the rest override its runs


def method_spec(spec, index: int, path: Path) -> dict:
    """A `methods:` entry, checked now: UnlearnConfig fields (`method` and its settings), or a
    `recipe` (with an optional `recipe_target`, and UnlearnConfig fields overriding its runs'),
    plus an optional `name`."""
    where = f"methods[{index}]"
    if not isinstance(spec, dict):
        raise InputError(path, f"expected a mapping with `method` or `recipe`, got {shown(spec)}", field=where)
    name = spec.get("name")
    if name is not None:
        try:
            safe_name(name)
        except LumeError as error:
            raise InputError(path, str(error), field=f"{where}.name") from None
    fields = entry_fields(spec)
    named = {"name": name} if name else {}
    if "recipe" in spec:
        return {**_recipe_spec(spec, fields, where, path), **named}
    if "method" not in fields:
        raise InputError(path, "missing (a method's registered name, or give `recipe`)", field=f"{where}.method")
    return {**checked_fields(UnlearnConfig, fields, where, path), **named}


def _recipe_spec(spec: dict, overrides: dict, where: str, path: Path) -> dict:
    """A recipe entry: the recipe known, its target kind valid, the overrides valid on every run."""
    if "method" in overrides:
        raise InputError(path, "a recipe names its own method: give `method` or `recipe`, not both",
                         field=f"{where}.method")
    recipe_target = spec.get("recipe_target", "auto")
    try:
        name = RECIPES[spec["recipe"]].name if isinstance(spec["recipe"], str) else None
        if name is None:
            raise LumeError(f"expected a recipe's name, got {shown(spec['recipe'])}")
        for kind in RECIPES[name].runs if recipe_target == "auto" else [target_kind(None, recipe_target)]:
            RECIPES[name].check({run_name: build(UnlearnConfig, merged_fields(config, overrides),
                                                 where=f"{where} ({kind} {run_name})", source=path)
                                 for run_name, config in RECIPES[name].runs[kind].items()})
    except InputError:
        raise
    except LumeError as error:
        raise InputError(path, str(error), field=f"{where}.recipe") from None
    return {"recipe": spec["recipe"], "recipe_target": recipe_target,
            **coerce_fields(UnlearnConfig, overrides, where=where, source=path)}


def _check_recipe_targets(methods: list[dict], target: TargetConfig, path: Path) -> None:
    """A target the study builds is a small lume target: a recipe entry may not ask for the
    settings of the organisers' OLMo targets on it (their layers, modules and steps are OLMo's)."""
    for index, spec in enumerate(methods):
        if target.model is None and spec.get("recipe_target", "auto") not in ("auto", "lume"):
            raise InputError(path, f"{spec['recipe_target']}: the settings for the organisers' released target, but "
                                   "this study builds a lume target; give lume (or auto), or a released target as "
                                   "target.model", field=f"methods[{index}].recipe_target")


def merged_fields(base: dict, overrides: dict) -> dict:
    """Nested mappings of fields, `overrides` over `base` (mappings merged key by key)."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merged_fields(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


def checked_fields(cls, values, where: str, path: Path) -> dict:
    """The given fields of `cls`, coerced to their types (nested settings as mappings), after
    `cls` accepted them all."""
    build(cls, values, where=where, source=path)
    return coerce_fields(cls, values, where=where, source=path)


def load_config(path: str | Path | None) -> RunConfig:
    """The built-in demo (no path) or a YAML file; every field has a default and is checked now,
    so a bad value stops the study before any work."""
    if path is None:
        return RunConfig()
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "a folder, not a study's YAML file (`lume report FOLDER` reports a finished study)")
    if not path.is_file():
        raise InputError(path, "no such file")
    raw = coerce_fields(RunConfig, read_yaml(path), source=path)
    target = os_paths(raw, build(TargetConfig, raw.pop("target", None) or {}, where="target", source=path), path)
    target = dataclasses.replace(target, memorize=checked_fields(MemorizeConfig, target.memorize,
                                                                  "target.memorize", path))
    if target.oracle and target.model and not (Path(target.model) / MANIFEST_NAME).is_file():
        raise InputError(path, f"only a target lume built has an oracle here, and {target.model} is not one "
                               f"(no {MANIFEST_NAME})", field="target.oracle")
    methods = raw.get("methods", RunConfig().methods)
    if len(methods) > MAX_METHODS:
        raise InputError(path, f"{len(methods)} methods; a study runs at most {MAX_METHODS}", field="methods")
    raw["methods"] = [method_spec(spec, i, path) for i, spec in enumerate(methods)]
    _check_recipe_targets(raw["methods"], target, path)
    check_fits_target(raw["methods"], target, path)
    labels = [method_label(spec) for spec in raw["methods"]]
    twice = next((label for label in labels if labels.count(label) > 1), None)
    if twice is not None:
        raise InputError(path, f"two methods are labelled {twice!r}; give each a distinct `name`", field="methods")
    for section, cls in (("evaluation", EvalConfig), ("attack", AttackConfig)):
        if section in raw:
            raw[section] = build(cls, raw[section] or {}, where=section, source=path)
    try:
        check_attacks(raw.get("attacks", []))
    except LumeError as error:
        raise InputError(path, str(error), field="attacks") from None
    return dataclasses.replace(RunConfig(), target=target, **raw)


def method_label(spec: dict) -> str:
    """The method's label in folders and reports: its `name`, else the recipe's or the method's
    registered name (a `package.module:Class` reference is labelled by its class's name)."""
    if spec.get("name"):
        return spec["name"]
    return RECIPES[spec["recipe"]].name if "recipe" in spec else METHODS[spec["method"]].name


def build_target(config: RunConfig) -> Path:
    """The target folder: given, or built once per settings, base model and data (cached by them)."""
    if config.target.model:  # a folder, or a released target's name (downloaded into the cache)
        source = resolve_model_path(config.target.model)[1]
        return source if isinstance(source, Path) else Path(config.target.model)
    overrides = {**config.target.memorize, "data_dir": config.data_dir}
    settings = (preset(config.target.preset, **overrides) if config.target.preset
                else merged(MemorizeConfig(), overrides))
    return cached_target(settings, lume_data.load(config.data_dir, settings.source).fingerprint)


def build_oracle(target: Path) -> Path:
    """The target's retrained oracle, built once (TARGET/oracle); several sweep workers wait for one."""
    if not (target / MANIFEST_NAME).is_file():
        raise LumeError(f"target.oracle: {target} is not a target lume built; only those have an oracle here")
    memorize_oracle(target, wait=True)  # a finished one of the target's settings is kept
    return target / ORACLE_DIR


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


def evaluated_step(steps: Steps, model: Path, label: str, folder: Path, config: EvalConfig,
                   overwrite: bool = False) -> EvaluationSummary:
    """The study step "evaluate LABEL": skipped when done with the same key, else run; its summary."""
    key = {"model": model_fingerprint(model), **evaluation_key(config)}
    state = steps.state(f"evaluate-{label}", key, (folder / "summary.json").is_file())
    if state == "done":
        log.info(f"{label}: evaluation already done")
        return read_summary(folder / "summary.json")
    log.info(f"{label}: evaluating")
    return evaluate(model, folder, config, overwrite=overwrite or state == "redo")


def _unlearning_sets(target: Path, dataset) -> tuple[list | None, list | None]:
    """A lume target's sets come from its manifest (None here); a released target unlearns the
    data source's whole forget set and keeps its retain set."""
    if (target / MANIFEST_NAME).is_file():
        return None, None
    return ([r for r in dataset.records if r.split == "forget"], [r for r in dataset.records if r.split == "retain"])


def unlearned_step(steps: Steps, target: Path, entry: Entry, label: str, folder: Path, data_dir: str | None,
                   dataset, on_probe=lambda _step, _row: None, overwrite: bool = False) -> None:
    """The study step "unlearn LABEL" (`entry`: a `methods:` entry worked out by study_entry):
    skipped, resumed or redone by its key."""
    key = {"target": model_fingerprint(target), "data": dataset.fingerprint, **entry.key()}
    state = steps.state(f"unlearn-{label}", key, (folder / REPORT_NAME).is_file())
    if state == "done" and damaged(folder):
        log.warning(f"{label}: the finished model in {folder} changed since it was written (truncated?); redoing it")
        state = "redo"
    if state == "done":
        return
    log.info(f"{label}: unlearning")
    forget, retain = _unlearning_sets(target, dataset)
    options = dict(forget=forget, retain=retain, data_dir=data_dir, overwrite=overwrite or state == "redo",
                   on_probe=on_probe)
    if entry.recipe:
        run_recipe(target, folder, entry, **options)
    else:
        unlearn(target, folder, entry.config, **options)


def entry_fields(spec: dict) -> dict:
    """A `methods:` entry's UnlearnConfig fields (a recipe's: those overriding its runs)."""
    return {k: v for k, v in spec.items() if k not in ("name", *RECIPE_KEYS)}


def study_entry(spec: dict, target) -> Entry:
    """A checked `methods:` entry worked out against TARGET (its folder, or its name): the one
    object its step keys and runs."""
    if "recipe" in spec:
        return Entry.of_recipe(spec["recipe"], target, entry_fields(spec), spec.get("recipe_target", "auto"))
    return Entry.of_method(merged(UnlearnConfig(method=spec["method"]), entry_fields(spec)))


def check_fits_target(methods: list[dict], target: TargetConfig, path: Path) -> None:
    """Each entry's layers against a given target's config.json, read when the file is (no weights
    loaded), so a layer the model lacks stops the study before its target is evaluated."""
    if target.model is None or not (Path(target.model) / "config.json").is_file():
        return
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(target.model)
    for index, spec in enumerate(methods):
        for config in study_entry(spec, target.model).runs.values():
            try:
                check_fits(config, model_config)
            except LumeError as error:
                raise InputError(path, str(error), field=f"methods[{index}]") from None


def attacked_step(steps: Steps, config: RunConfig, target: Path, model: Path, label: str, folder: Path) -> None:
    """The study step "attack LABEL": skipped when done with the same key, else run."""
    settings = dataclasses.replace(config.attack, data_dir=config.data_dir)
    key = {"model": model_fingerprint(model), "target": model_fingerprint(target),
           **attack_key(settings, config.attacks)}
    state = steps.state(f"attack-{label}", key, (folder / RESULT_NAME).is_file())
    if state == "done":
        return
    log.info(f"{label}: attacking ({', '.join(config.attacks)})")
    attack(model, target, folder, config.attacks, settings, overwrite=state == "redo")



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
        return _run(config, out, overwrite)


def _run(config: RunConfig, out: Path, overwrite: bool = False) -> Path:
    labels = [method_label(m) for m in config.methods]
    if len(set(labels)) != len(labels):
        raise LumeError("two methods share a name; give each a distinct `name`")
    if {"target", "oracle"} & set(labels):
        raise LumeError("a method named target or oracle: those names are the report's; give it another `name`")
    steps = Steps(out)
    set_study_note(f"the study's finished steps are kept in {out}; the same command resumes from there")
    dataset = lume_data.load(config.data_dir)  # the data every method unlearns from
    target = build_target(config)
    evaluation = dataclasses.replace(config.evaluation, data_dir=config.data_dir)
    target_summary = evaluated_step(steps, target, "target", out / "eval" / "target", evaluation, overwrite)
    target_mmlu = target_summary.mmlu_accuracy
    evaluated = [out / "eval" / "target"]
    if config.target.oracle:
        evaluated_step(steps, build_oracle(target), "oracle", out / "eval" / "oracle",
                       dataclasses.replace(evaluation, target_mmlu=target_mmlu), overwrite)
        evaluated.append(out / "eval" / "oracle")
    for spec, label in zip(config.methods, labels):
        model_dir = out / "models" / label
        unlearned_step(steps, target, study_entry(spec, target), label, model_dir, config.data_dir, dataset,
                       overwrite=overwrite)
        evaluated_step(steps, model_dir, label, out / "eval" / label,
                       dataclasses.replace(evaluation, target_mmlu=target_mmlu), overwrite)
        if config.attacks:
            attacked_step(steps, config, target, model_dir, label, out / "attacks" / label)
    write_report(evaluated + [out / "eval" / label for label in labels], out)
    return out
