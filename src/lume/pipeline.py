"""`run`: a whole study from one YAML config: target, unlearning methods, evaluations, report.

Every step writes a marker when complete (`lume_target.json`, `lume_unlearn.json`,
`summary.json`), so a rerun skips finished steps and resumes the rest. Targets are cached in
lume's cache by their settings and reused across studies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lume.data.paths import cache_dir
from lume.errors import InputError, LumeError
from lume.evaluation import EvalConfig, evaluate
from lume.evaluation.attacks import RESULT_NAME, AttackConfig, attack
from lume.models.memorize import MemorizeConfig, memorize, preset
from lume.unlearning import REPORT_NAME, UnlearnConfig, unlearn


@dataclass
class TargetConfig:
    model: str | None = None  # an existing target folder; else one is built with `memorize`
    preset: str | None = "demo"
    memorize: dict = field(default_factory=dict)  # MemorizeConfig fields over the preset


@dataclass
class RunConfig:
    name: str = "demo"
    out: str = "runs/demo"
    data_dir: str | None = None
    target: TargetConfig = field(default_factory=TargetConfig)
    methods: list[dict] = field(default_factory=lambda: [{"method": "npo+gd"}, {"method": "simnpo"}])
    # each: UnlearnConfig fields, plus an optional `name`
    evaluation: dict = field(default_factory=lambda: {
        "mia_set": "validation", "mmlu_limit": 1})  # EvalConfig fields
    attacks: list[str] = field(default_factory=list)  # run on every unlearned model: relearn, quantize-4, ...
    attack: dict = field(default_factory=dict)  # AttackConfig fields


def _checked(cls, values: dict, where: str, path: Path | None):
    """Build dataclass `cls` from `values`, naming any unknown field."""
    if not isinstance(values, dict):
        raise InputError(path or "<config>", f"expected a mapping, got {type(values).__name__}", field=where)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            raise InputError(path or "<config>", f"unknown field (expected one of {', '.join(sorted(names))})",
                             field=f"{where}.{key}" if where else key)
    return values


def load_config(path: str | Path | None) -> RunConfig:
    """The built-in demo (no path) or a YAML file; every field has a default."""
    if path is None:
        return RunConfig()
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise InputError(path, f"cannot read YAML: {str(error).splitlines()[0]}") from None
    _checked(RunConfig, raw, "", path)
    target = TargetConfig(**_checked(TargetConfig, raw.pop("target", {}) or {}, "target", path))
    _checked(MemorizeConfig, target.memorize, "target.memorize", path)
    for index, method in enumerate(raw.get("methods", [])):
        _checked(UnlearnConfig, {k: v for k, v in method.items() if k != "name"}, f"methods[{index}]", path)
    _checked(EvalConfig, raw.get("evaluation", {}) or {}, "evaluation", path)
    _checked(AttackConfig, raw.get("attack", {}) or {}, "attack", path)
    defaults = RunConfig()
    return dataclasses.replace(defaults, target=target, **raw)


def _key(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def method_label(spec: dict) -> str:
    return spec.get("name") or spec["method"]


def build_target(config: RunConfig) -> Path:
    if config.target.model:
        return Path(config.target.model)
    overrides = {**config.target.memorize, "data_dir": config.data_dir}
    settings = preset(config.target.preset, **overrides) if config.target.preset else MemorizeConfig(**overrides)
    folder = cache_dir() / "targets" / _key({**dataclasses.asdict(settings), "progress": None, "data_dir": None})
    if not (folder / "lume_target.json").is_file():
        print(f"building the target model in {folder}")
        memorize(folder, settings)
    else:
        print(f"reusing the target model in {folder}")
    return folder


def run(config: RunConfig) -> Path:
    """Run the study; returns the run folder (with report.md and report.html)."""
    from lume.reports.study import write_report

    out = Path(config.out)
    labels = [method_label(m) for m in config.methods]
    if len(set(labels)) != len(labels):
        raise LumeError("two methods share a name; give each a distinct `name`")
    target = build_target(config)
    evaluation = {**config.evaluation, "data_dir": config.data_dir}

    def evaluated(model: Path, label: str, **extra) -> dict:
        folder = out / "eval" / label
        if (folder / "summary.json").is_file() and (folder / ".config").is_file() \
                and (folder / ".config").read_text() == _key([str(model), evaluation, extra]):
            print(f"{label}: evaluation already done")
            return json.loads((folder / "summary.json").read_text())
        print(f"{label}: evaluating")
        summary = evaluate(model, folder, EvalConfig(**evaluation, **extra))
        (folder / ".config").write_text(_key([str(model), evaluation, extra]))
        return summary

    target_summary = evaluated(target, "target")
    target_mmlu = target_summary.get("mmlu", {}).get("accuracy")
    for spec, label in zip(config.methods, labels):
        settings = UnlearnConfig(**{k: v for k, v in spec.items() if k != "name"})
        model_dir = out / "models" / label
        if not (model_dir / REPORT_NAME).is_file():
            print(f"{label}: unlearning")
            unlearn(target, model_dir, settings, data_dir=config.data_dir)
        evaluated(model_dir, label, target_mmlu=target_mmlu)
        attack_dir = out / "attacks" / label
        if config.attacks and not (attack_dir / RESULT_NAME).is_file():
            print(f"{label}: attacking ({', '.join(config.attacks)})")
            attack(model_dir, target, attack_dir, config.attacks,
                   AttackConfig(**{**config.attack, "data_dir": config.data_dir}))
    write_report([out / "eval" / "target"] + [out / "eval" / label for label in labels], out)
    return out
