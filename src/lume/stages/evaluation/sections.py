"""An evaluation is a list of registered sections, each one part of the summary.

The contract, for a new measure (one file `<name>_section.py` in this package; every such
file is imported; from another package, an entry point in the group `lume.sections` or a
`package.module:Class` reference, see docs/plugins.md): a `Section` subclass decorated
`@register_section`, with

- `name` (an `EvalConfig` field of that name set to false skips it), `Settings` (a dataclass of
  `config.setting` fields, given as `evaluation.section.<name>` in YAML or `--setting
  section.<name>.<field>=VALUE`, checked when the evaluation's settings are built, read in
  `run` as `evaluation.settings_of(self)`), `order` (sections run
  in increasing order), `rows_file` (its per-item results in OUT), `dtype_part` (which of
  `part_dtypes` the model is loaded in for it: generation, mia or mmlu);
- `run(evaluation, loaded) -> (summary part, rows)`: its numbers (merged into `summary.json`:
  `{key: mapping}` for a plug-in, under a key of its own, read back as `summary.parts[key]`) and its per-item
  rows, from the model loaded in its part's dtype; `evaluation.item_store(self, key)` gives a
  resumable per-item store;
- `headline(summary)`: its headline numbers by name (`lume.results.Headline`), and
  `final_part`: which of them is its part of the official final score (None: an extra);
- `replicates(summary, rows, seed, resamples)`: bootstrap values of its numbers, for intervals
  and paired differences (`lume.metrics.uncertainty`), and `units(summary, rows)`: the ids of
  the units it resamples (models are paired only over the same units);
- `table_rows(summary)`: (label, note, value) rows for the summary table and reports
  (`present(summary)`: whether a summary holds the section's numbers).

Every hook but `run` reads the typed summary (`lume.results.EvaluationSummary`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch

from lume.config import check_settings, coerce_fields
from lume.data import LumeData, Selection
from lume.errors import LumeError
from lume.files import ItemStore
from lume.models import LoadedModel, load_model
from lume.registry import Registry
from lume.results import EvaluationSummary

if TYPE_CHECKING:  # the evaluator imports this module: its settings type is named for readers and checkers only
    from lume.stages.evaluation.evaluator import EvalConfig

def number(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def with_interval(value, summary: EvaluationSummary, name: str) -> str:
    """`0.650 [0.612, 0.688]`: the number and its 95 % bootstrap interval, when there is one."""
    bounds = summary.interval(name)
    return number(value) + (f" [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds and value is not None else "")


@dataclass
class NoSettings:
    """A section that takes no settings of its own."""


class Section:
    name: ClassVar[str]
    Settings: ClassVar[type] = NoSettings
    order: ClassVar[int] = 100
    rows_file: ClassVar[str]
    dtype_part: ClassVar[str]
    final_part: ClassVar[str | None] = None
    # lume's own sections run unless their EvalConfig flag is off; a plug-in's runs when named
    # in EvalConfig.sections (`lume evaluate --section NAME`)
    runs_by_default: ClassVar[bool] = False

    def run(self, evaluation: Evaluation, loaded: LoadedModel) -> tuple[dict, list[dict]]:
        raise NotImplementedError

    def headline(self, summary: EvaluationSummary) -> dict[str, float | None]:
        return {}

    def replicates(self, summary: EvaluationSummary, rows: list[dict], seed: int, resamples: int) -> dict:
        return {}

    def units(self, summary: EvaluationSummary, rows: list[dict]) -> list[str]:
        return []

    def table_rows(self, summary: EvaluationSummary) -> list[tuple[str, str, str]]:
        return []

    def present(self, summary: EvaluationSummary) -> bool:
        """Whether the summary holds this section's numbers."""
        return self.name in summary.parts

    def saved_rows(self, rows: list[dict]) -> list[dict]:
        """The rows as written to `rows_file`."""
        return rows


SECTIONS = Registry("section", Section, "lume.sections", order=lambda section: section.order)
register_section = SECTIONS.register


def section_settings(name: str, given: dict | None = None):
    """Section NAME's Settings from the GIVEN fields, each checked against its type and range; an
    unknown section is refused naming the choices."""
    cls = SECTIONS[name]
    checked = coerce_fields(cls.Settings, given or {}, where=f"section.{name}", source=f"section {name!r}")
    try:
        settings = cls.Settings(**checked)
        check_settings(settings)  # each field within its declared range
        return settings
    except LumeError as error:
        raise LumeError(f"section {name!r}: section.{name}.{error}") from None


@dataclass
class Evaluation:
    """What every section works from: the model (in the dtype its part needs), the data, the
    documents evaluated, the settings and the output folder."""

    config: EvalConfig
    model_argument: str | Path | LoadedModel  # what `evaluate` was given
    loaded: LoadedModel
    dtypes: dict[str, str]
    device: str
    dataset: LumeData
    selection: Selection
    out_dir: Path
    has_manifest: bool = False  # the documents are those a lume target was trained on and held out
    base_model: str | None = None  # that target's base (the Reference attack's model); None for others
    rank: int = 0  # this process, of `world` (torchrun / accelerate launch)
    world: int = 1

    def __post_init__(self):
        self.loaded_dtype = self.dtypes["generation"]

    def model_for(self, section: Section) -> LoadedModel:
        """The model in the dtype of the section's part; reloaded (the old copy dropped first)
        when it differs from the loaded one and the caller gave a name or folder."""
        wanted = self.dtypes[section.dtype_part]
        if isinstance(self.model_argument, LoadedModel) or wanted == self.loaded_dtype:
            return self.loaded
        self.loaded = None
        self.loaded = load_model(self.model_argument, dtype=wanted, device=self.device)
        self.loaded_dtype = wanted
        return self.loaded

    def settings_of(self, section: Section):
        """The section's own settings (its `Settings`, from `config.section`)."""
        return section_settings(section.name, self.config.section.get(section.name))

    @property
    def progress(self) -> bool:
        return self.config.progress and self.rank == 0

    def item_store(self, section: Section, key: dict) -> ItemStore:
        """The section's resumable per-item store, keyed on the model, its dtype and `key`
        (written by the main process only)."""
        model = {"model": self.loaded.fingerprint, "dtype": str(self.loaded.model.dtype)}
        return ItemStore(self.out_dir / "cache" / section.rows_file, {**model, **key}, writable=self.rank == 0)

    def share_work(self, store: ItemStore, todo: list, work: Callable[[list, Callable[[dict], None]], None],
                   advance: Callable[[], None], block: int = 1, chunk: int = 64) -> None:
        """Rows for `todo` from `work(items, on_row)`, into `store`. On several processes each
        takes its share of every chunk, in whole blocks of `block` items (so that batches, and
        their floating-point sums, are those of one process: give `todo` in batch order), nothing
        done twice nor padded with duplicates; the rows are gathered to every process."""
        if self.world == 1:
            work(todo, lambda row: (store.add(row), advance()))
            return
        span = chunk * block * self.world
        for start in range(0, len(todo), span):
            part = todo[start:start + span]
            mine: list[dict] = []
            work([item for index, item in enumerate(part) if index // block % self.world == self.rank], mine.append)
            gathered: list = [None] * self.world
            torch.distributed.all_gather_object(gathered, mine)
            for row in (row for rows in gathered for row in rows):
                store.add(row)
                advance()
