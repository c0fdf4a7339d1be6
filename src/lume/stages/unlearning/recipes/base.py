"""What a recipe is: a complete unlearning system from a paper, as a composition of lume's parts.

A recipe names, for each kind of target, its runs (each one `UnlearnConfig`'s fields: the
method and its settings, which weights train and whether through LoRA, the data schedule, the
training settings) and, for a system that merges models, how the runs' LoRA adapters are merged
(`MergeConfig`'s fields). Nothing in a recipe trains by itself: `lume unlearn --recipe NAME`
runs its runs with the ordinary unlearning stage and merges with `lume merge`'s code.

The kinds of target: `olmo-1b` and `olmo-7b`, the organisers' released targets, whose settings
are the teams' code's; `lume`, a small target lume built (the demo's), whose settings lume
chose (scaled to its size, tuned with `lume sweep`). docs/recipes.md compares each recipe with
its team's code, point by point. A new recipe is one file in this folder with a `Recipe`
subclass decorated `@register_recipe` (or, from another package, an entry point in the group
`lume.recipes`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from lume.config import build, merged
from lume.errors import LumeError
from lume.models.released import COMPLETE, RELEASED
from lume.registry import Registry
from lume.stages.unlearning.tuned import tuned_fields
from lume.stages.unlearning.unlearner import UnlearnConfig
from lume.results import PublishedScores

TARGET_KINDS = ("olmo-1b", "olmo-7b", "lume")


class Recipe:
    name: ClassVar[str]
    team: ClassVar[str]  # as the SemEval-2025 Task 4 leaderboard names it
    source: ClassVar[str]  # the paper (and the code the settings were read from)
    # target kind -> run name -> UnlearnConfig fields (nested settings as mappings)
    runs: ClassVar[dict[str, dict[str, dict]]]
    merge: ClassVar[dict | None] = None  # MergeConfig fields: the runs' LoRA adapters merged into one model
    # target kind -> the team's published leaderboard numbers, shown beside lume's, labelled as published
    published: ClassVar[dict[str, PublishedScores]] = {}

    @classmethod
    def configs(cls, kind: str, overrides: dict | None = None) -> dict[str, UnlearnConfig]:
        """Each run's settings for a target of `kind` (for a lume target, with the recipe's tuned
        settings over them), with `overrides` (UnlearnConfig fields, nested ones as mappings) over
        every run's."""
        if kind not in cls.runs:
            raise LumeError(f"recipe {cls.name!r} has no settings for a {kind} target "
                            f"(it has: {', '.join(cls.runs)})")
        configs = {}
        for run_name, fields in cls.runs[kind].items():
            config = build(UnlearnConfig, fields, where=f"{cls.name}.{kind}.{run_name}", source=f"recipe {cls.name}")
            if kind == "lume":  # a sweep's choice for a target lume built (tuned.py)
                config = merged(config, tuned_fields(cls.name, overrides or {}))
            configs[run_name] = merged(config, overrides or {})
        cls.check(configs)
        return configs

    @classmethod
    def check(cls, configs: dict[str, UnlearnConfig]) -> None:
        """What the recipe needs of its runs' settings, whatever overrides them: a merge, LoRA adapters."""
        for run, config in configs.items():
            if cls.merge is not None and config.training.lora_rank <= 0:
                raise LumeError(f"recipe {cls.name!r} merges LoRA adapters: run {run!r} needs lora_rank above 0")


RECIPES = Registry("recipe", Recipe, "lume.recipes")
register_recipe = RECIPES.register


def target_kind(model_in, asked: str = "auto") -> str:
    """Which of a recipe's settings fit MODEL_IN: `asked`, or (auto) the released target it is
    (by name, or a folder lume downloaded it into), else `lume`."""
    if asked != "auto":
        if asked not in TARGET_KINDS:
            raise LumeError(f"recipe target {asked!r}: expected auto or one of {', '.join(TARGET_KINDS)}")
        return asked
    if str(model_in) in RELEASED:
        return f"olmo-{RELEASED[str(model_in)].size.lower()}"
    source = Path(model_in) / COMPLETE
    if source.is_file():
        repo = json.loads(source.read_text(encoding="utf-8")).get("hub")
        for target in RELEASED.values():
            if target.repo == repo:
                return f"olmo-{target.size.lower()}"
    return "lume"


def recipe_configs(name: str, model_in, overrides: dict | None = None, asked: str = "auto"
                   ) -> tuple[str, dict[str, UnlearnConfig]]:
    """(target kind, each run's settings) of recipe NAME for MODEL_IN."""
    kind = target_kind(model_in, asked)
    return kind, RECIPES[name].configs(kind, overrides)
