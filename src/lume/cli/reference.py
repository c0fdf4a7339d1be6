"""The settings reference, docs/settings.md, written from the fields' own declarations (type,
default, range, help: `lume.config.setting`), so it cannot drift from the code:

    python -m lume.cli.reference > docs/settings.md

(`tests/test_settings.py` fails when the page is stale.)"""

from __future__ import annotations

import dataclasses
import typing

from lume.config import default_of
from lume.study.config import TargetConfig
from lume.study.run import RunConfig
from lume.stages.attacks import AttackConfig
from lume.stages.evaluation import SECTIONS, EvalConfig
from lume.stages.target import MemorizeConfig
from lume.stages.unlearning import METHODS, ScheduleSettings, UnlearnConfig
from lume.stages.unlearning.merge import MergeConfig
from lume.stages.unlearning.selection import ProbeSettings
from lume.study.sweep import SweepConfig
from lume.training import TextSettings, TrainingSettings

PAGES = [
    ("A study (`lume run CONFIG.yaml`)", RunConfig),
    ("A sweep (`lume sweep CONFIG.yaml`), beside a study's fields", SweepConfig),
    ("`target`: a study's target, given or built", TargetConfig),
    ("Building a target (`lume memorize`; a study's `target.memorize`)", MemorizeConfig),
    ("Unlearning (`lume unlearn`; each entry of a study's `methods`)", UnlearnConfig),
    ("`training`: how a stage trains (building, unlearning, relearning)", TrainingSettings),
    ("`schedule`: which examples each unlearning step takes", ScheduleSettings),
    ("`probes`: the data probed during unlearning", ProbeSettings),
    ("`text`: how a record becomes a training sequence", TextSettings),
    ("Evaluation (`lume evaluate`; a study's `evaluation`)", EvalConfig),
    ("Attacks (`lume attack`; a study's `attack`)", AttackConfig),
    ("Merging adapters (`lume merge`)", MergeConfig),
]


def _range(meta: dict) -> str:
    choices = meta.get("choices")
    choices = choices() if callable(choices) else choices
    parts = [f"≥ {meta['at_least']}" if meta.get("at_least") is not None else "",
             f"> {meta['above']}" if meta.get("above") is not None else "",
             f"≤ {meta['at_most']}" if meta.get("at_most") is not None else "",
             "{} to {}".format(*meta["between"]) if meta.get("between") is not None else "",
             " \\| ".join(str(c) for c in choices) if choices else ""]
    return ", ".join(part for part in parts if part)


def _type(cls, field: dataclasses.Field) -> str:
    kind = typing.get_type_hints(cls)[field.name]
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


def table(cls) -> list[str]:
    """One row per field: name, type, default, range and what it does."""
    rows = ["| setting | type | default | range | what it does |", "|---|---|---|---|---|"]
    for field in dataclasses.fields(cls):
        default = default_of(field)
        shown = f"see `{field.name}` below" if dataclasses.is_dataclass(default) else f"`{default!r}`"
        cosmetic = "" if field.metadata.get("decides", True) else " (changes no result)"
        help_text, kind = (text.replace("|", "\\|") for text in (field.metadata.get("help", ""), _type(cls, field)))
        rows.append(f"| `{field.name}` | {kind} | {shown} | {_range(field.metadata)} | {help_text}{cosmetic} |")
    return rows


def reference() -> str:
    lines = ["# Settings reference", "",
             "Every setting lume takes, with its type, default, range and help, written from the code "
             "(`python -m lume.cli.reference`). YAML takes the field names as they are; the CLI takes "
             "them as `--field-name` or `--setting section.field=VALUE`. A setting marked "
             "\"changes no result\" never makes a study redo a step.", ""]
    for title, cls in PAGES:
        lines += [f"## {title}", "", *table(cls), ""]
    lines += ["## `method_settings`: each method's", ""]
    for name in METHODS:  # lume's own (an installed plug-in's are in its documentation)
        settings = METHODS[name].Settings
        if METHODS[name].__module__.startswith("lume.") and dataclasses.fields(settings):
            lines += [f"### `{name}`", "", *table(settings), ""]
    lines += ["## `section`: each evaluation section's (`evaluation.section.<name>`)", ""]
    for name in SECTIONS:
        settings = SECTIONS[name].Settings
        if SECTIONS[name].__module__.startswith("lume.") and dataclasses.fields(settings):
            lines += [f"### `{name}`", "", *table(settings), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference(), end="")
