"""What `lume run` and `lume sweep` files share: the study's name, folder, data, target, methods and
evaluation (`StudyConfig`), and reading them: YAML, folders as the OS names them, every field
checked before any work."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from lume.config import build, coerce_fields, setting, yaml_value
from lume.data.loading import text_lines
from lume.data.manifest import MANIFEST_NAME
from lume.data.paths import DATA_DIR_HELP
from lume.errors import InputError, LumeError
from lume.files import os_path
from lume.outputs import own_folder
from lume.stages.evaluation import EvalConfig
from lume.stages.target import MemorizeConfig


@dataclass
class TargetConfig:
    model: str | None = setting(None, "An existing target folder, or lume-olmo-7b / lume-olmo-1b; None: one is "
                                      "built (and cached)")
    preset: str | None = setting("demo", "The MemorizeConfig preset a built target starts from")
    memorize: dict = setting(help="MemorizeConfig fields over the preset", factory=dict)
    oracle: bool = setting(False, "Also build and evaluate the target's retrained oracle (lume.stages.target."
                                  "memorize_oracle): the report's ideal row; a target lume built only, about half "
                                  "the target's training time")


@dataclass
class StudyConfig:
    """The fields of a study (`RunConfig`) and of a sweep (`SweepConfig`), each declared here once."""

    name: str = setting("study", "The study's name")
    out: str = setting("runs/study", "The run folder")
    data_dir: str | None = setting(None, DATA_DIR_HELP)
    target: TargetConfig = setting(help="The target: given, or built", factory=TargetConfig)
    methods: list = setting(help="Each: UnlearnConfig fields plus an optional `name`, or a `recipe` with overrides; "
                                 "worked out once when the file is read (`lume.study.entries.StudyMethod`)",
                            factory=list)
    evaluation: EvalConfig = setting(help="How every model is evaluated; a file's `evaluation:` starts from "
                                          "EvalConfig's defaults", factory=EvalConfig)


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


def read_study(cls, path: str | Path) -> tuple[dict, list, Path]:
    """A study's or sweep's YAML file as checked fields of CLS (`target` and `evaluation` built, the
    folders as the OS names them), its `methods:` entries as written, still to be worked out, and
    the file they were read from: `methods` may name another YAML file whose `methods:` they are
    (a sweep's tuned.yaml)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "a folder, not a study's YAML file (`lume report FOLDER` reports a finished study)")
    if not path.is_file():
        raise InputError(path, "no such file")
    raw = read_yaml(path)
    methods = raw.pop("methods", None) if isinstance(raw, dict) else None
    raw = coerce_fields(cls, raw, source=path)
    source = path
    if isinstance(methods, str):
        source = Path(os_path(methods))
        if not source.is_file():
            raise InputError(path, f"expected a list of entries, or a YAML file of them; {methods}: no such file",
                             field="methods")
        listed = read_yaml(source)
        methods = listed.get("methods") if isinstance(listed, dict) else None
        if methods is None:
            raise InputError(source, "no `methods:` list here", field="methods")
    if methods is not None and not isinstance(methods, list):
        raise InputError(path, f"expected a list of entries, got {type(methods).__name__}", field="methods")
    raw["target"] = _target(raw, path)
    if "evaluation" in raw:
        raw["evaluation"] = build(EvalConfig, raw["evaluation"] or {}, where="evaluation", source=path)
    return raw, cls().methods if methods is None else methods, source


def _target(raw: dict, path: Path) -> TargetConfig:
    """The file's target, its memorize fields checked; only a target lume built has an oracle."""
    target = os_paths(raw, build(TargetConfig, raw.get("target") or {}, where="target", source=path), path)
    build(MemorizeConfig, target.memorize, where="target.memorize", source=path)
    target = dataclasses.replace(target, memorize=coerce_fields(MemorizeConfig, target.memorize,
                                                                where="target.memorize", source=path))
    if target.oracle and target.model and not (Path(target.model) / MANIFEST_NAME).is_file():
        raise InputError(path, f"only a target lume built has an oracle here, and {target.model} is not one "
                               f"(no {MANIFEST_NAME})", field="target.oracle")
    return target


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
