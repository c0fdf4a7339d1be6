"""`unlearn_with_recipe`: a recipe's runs through the ordinary unlearning stage, then its merge.

A one-run recipe is one `unlearn` into OUT (its report records the recipe). A recipe that
merges trains each run into OUT/runs/<run>/ (each an ordinary, resumable unlearning output
with its LoRA adapter), merges the adapters into the starting model in OUT, and writes
`lume_unlearn.json` last, holding each run's report and the merge. Rerun, it skips the runs
already finished with the same settings and resumes the others.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from lume.config import decided_by, made_with, merged, settings_key
from lume.data.manifest import MANIFEST_NAME
from lume.errors import LumeError
from lume.files import write_json_atomic
from lume.models import model_fingerprint, resolve_model_path
from lume.outputs import claim, mark_finished, one_writer, refuse_overwriting_inputs
from lume.stages.unlearning.merge import MergeConfig, check_adapters, merge_into
from lume.stages.unlearning.recipes.base import RECIPES, recipe_configs
from lume.results import UnlearnReport
from lume.stages.unlearning.unlearner import REPORT_NAME, UnlearnConfig, read_unlearn_report, step_key, unlearn

RUNS_DIR = "runs"


@dataclass(frozen=True)
class Entry:
    """One unlearning worked out once against its input model: a method's run, or a recipe's runs
    with the overrides applied (and the kind of target their settings are for). A study step, a
    sweep trial and `unlearn_with_recipe` key and run it from this, never from a settings dict."""

    runs: dict[str, UnlearnConfig]  # a recipe's runs by name; a method's one run by the method's name
    recipe: str | None = None
    target_kind: str | None = None  # a recipe's: olmo-1b, olmo-7b or lume

    @classmethod
    def of_recipe(cls, name: str, model_in, overrides: dict | None = None, asked: str = "auto") -> Entry:
        """Recipe NAME's runs for MODEL_IN's kind of target (`asked`: auto, olmo-1b, olmo-7b or
        lume), `overrides` (UnlearnConfig fields) over every run's."""
        kind, configs = recipe_configs(name, model_in, overrides, asked)
        return cls(configs, RECIPES[name].name, kind)

    @classmethod
    def of_method(cls, config: UnlearnConfig) -> Entry:
        return cls({config.method: config})

    def with_overrides(self, overrides: dict) -> Entry:
        """This entry with `overrides` (checked UnlearnConfig fields, nested ones as mappings) over
        every run's settings (a sweep trial's drawn values)."""
        runs = {name: merged(config, overrides) for name, config in self.runs.items()}
        if self.recipe:
            RECIPES[self.recipe].check(runs)
        return replace(self, runs=runs)

    @property
    def merges(self) -> bool:
        """Whether its runs' adapters are merged into the model (no run's probes score that model)."""
        return self.recipe is not None and RECIPES[self.recipe].merge is not None

    @property
    def config(self) -> UnlearnConfig:
        """A method entry's one run."""
        (config,) = self.runs.values()
        return config

    def key(self) -> dict:
        """What decides its model, beside the input model and the data (a study step's record)."""
        return recipe_step_key(self.recipe, self.target_kind, self.runs) if self.recipe else step_key(self.config)


def unlearn_with_recipe(model_in, out_dir, name: str, overrides: dict | None = None, *, target: str = "auto",
                        **options) -> UnlearnReport:
    """Unlearn MODEL_IN into OUT_DIR with recipe NAME, its settings for MODEL_IN's kind of target
    (`target`: auto, olmo-1b, olmo-7b or lume) with `overrides` (UnlearnConfig fields) over
    every run's; returns the report written to OUT_DIR/lume_unlearn.json. `options`: run_recipe's."""
    return run_recipe(model_in, out_dir, Entry.of_recipe(name, model_in, overrides, target), **options)


def run_recipe(model_in, out_dir, entry: Entry, *, forget=None, retain=None, data=None,
               overwrite: bool = False, wait: bool = False,
               on_probe: Callable[[int, dict], None] = lambda _step, _row: None) -> UnlearnReport:
    """A recipe entry's runs through the unlearning stage (each recording the recipe), then its merge."""
    recipe = RECIPES[entry.recipe]
    configs = {run: replace(config, recipe=recipe.name) for run, config in entry.runs.items()}
    common = dict(forget=forget, retain=retain, data=data)
    if recipe.merge is None:
        (config,) = configs.values()
        return unlearn(model_in, out_dir, config, overwrite=overwrite, wait=wait, on_probe=on_probe, **common)
    merge = MergeConfig(**recipe.merge)
    with one_writer(out_dir, wait):
        return _merged(model_in, Path(out_dir), recipe, entry.target_kind, configs, merge, overwrite, on_probe,
                       common)


def recipe_step_key(name: str, kind: str, configs: dict[str, UnlearnConfig]) -> dict:
    """What decides a recipe's model, beside its input model and data (a study's step record):
    the recipe, the kind of target its settings are for, and each run's key."""
    return {"recipe": RECIPES[name].name, "target_kind": kind, "runs": {run: step_key(c) for run, c in configs.items()}}


def _key(model_in, configs: dict[str, UnlearnConfig], merge: MergeConfig) -> str:
    settings = {"model": model_fingerprint(model_in), "merge": decided_by(merge),
                "runs": {run: decided_by(config) for run, config in configs.items()}}
    return settings_key(settings)


def _finished_report(folder: Path, config: UnlearnConfig) -> UnlearnReport | None:
    """The report of a run already finished in FOLDER with these settings, else None."""
    try:
        report = read_unlearn_report(folder)
    except (ValueError, LumeError):
        return None
    return report if made_with(report.config, config, folder / REPORT_NAME) else None


def _merged(model_in, out_dir: Path, recipe, kind: str, configs: dict[str, UnlearnConfig], merge: MergeConfig,
            overwrite: bool, on_probe, common: dict) -> UnlearnReport:
    source = resolve_model_path(model_in)[1]
    refuse_overwriting_inputs(out_dir, (source,), "MODEL_OUT")
    claim(out_dir, "unlearn", key=_key(model_in, configs, merge), inputs=(source,), overwrite=overwrite,
          what="MODEL_OUT")
    reports = {}
    for run, config in configs.items():
        folder = out_dir / RUNS_DIR / run
        reports[run] = _finished_report(folder, config) or unlearn(model_in, folder, config, overwrite=True,
                                                                  on_probe=on_probe, **common)
    adapters = [out_dir / RUNS_DIR / run / "adapter" for run in configs]
    check_adapters(adapters, merge)
    record = merge_into(model_in, adapters, out_dir, merge)
    if source is not None and (Path(source) / MANIFEST_NAME).is_file():  # evaluate the same documents as the target
        shutil.copy(Path(source) / MANIFEST_NAME, out_dir / MANIFEST_NAME)
    report = UnlearnReport(recipe=recipe.name, target_kind=kind, source=recipe.source, method=f"recipe {recipe.name}",
                           runs=reports, merge=record, steps=sum(r.steps for r in reports.values()),
                           seconds=sum(r.seconds for r in reports.values()), losses=[])
    write_json_atomic(out_dir / REPORT_NAME, report.to_json())  # last: its presence means the model is complete
    mark_finished(out_dir)
    return report
