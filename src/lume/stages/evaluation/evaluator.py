"""`evaluate`: the official LUME protocol on one model, section by section, resumable.

Outputs in OUT: `items.jsonl` (every probe: prompt, gold, generation, score), `mia.jsonl`
(every MIA document's attack scores), `mmlu.jsonl` (every question), `summary.json` (all
numbers, the configuration, fingerprints, versions, timings). Per-item results are appended
to `OUT/cache/` as they finish, so a rerun after an interruption only does what is missing.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from lume import data as lume_data
from lume.config import MAX_BATCH, MAX_NEW_TOKENS_LIMIT, MAX_SEED, check_settings, decided_by, setting
from lume.data import LumeData
from lume.data.manifest import read_manifest, target_selection
from lume.data.selection import DOCUMENT_PARTS, Selection
from lume.errors import set_resume_note
from lume.files import write_json_atomic, write_jsonl_atomic
from lume.inference import BACKENDS, BATCH_SIZE, MAX_NEW_TOKENS
from lume.metrics import final_score
from lume.results import Bootstrap, EvaluationSummary, Headline
from lume.metrics.uncertainty import CONFIDENCE, RESAMPLES, interval, units_fingerprint
from lume.models import (DTYPES, LoadedModel, check_device, default_device, load_model, refuse_beyond_context,
                         resolve_model_path)
from lume.outputs import FINISHED_MARKERS, UNFINISHED_NAME, claim, mark_finished, one_writer
from lume.stages.evaluation.sections import SECTIONS, Evaluation, Section, section_settings
from lume.training.distributed import started_processes
from lume.versions import installed_versions
from lume.data.paths import DATA_DIR_HELP

SUMMARY_NAME = FINISHED_MARKERS["evaluate"]
log = logging.getLogger(__name__)

MIA_SETS = ("final", "validation", "none")
PARTS = ("generation", "mia", "mmlu")


@dataclass
class EvalConfig:
    data_dir: str | None = setting(None, DATA_DIR_HELP)
    source: str = setting("lume", "lume, semeval-train or semeval-validation", choices=lume_data.SOURCES)
    docs_per_task: int | None = setting(None, "Documents per task and split (seeded); None = all (or the target's)",
                                        at_least=1)
    part: str = setting("test", "Which of a target's documents are scored: test (all, for a lume target without a "
                                "tuning part), or tuning (a sweep's); a released target's tuning part is the "
                                "SemEval public folds, its test part the rest", choices=DOCUMENT_PARTS)
    seed: int = setting(0, "Seed of the document selection, the MMLU sample and the bootstrap", at_least=0,
                        at_most=MAX_SEED)
    max_new_tokens: int = setting(MAX_NEW_TOKENS, "Tokens generated at most per probe (the protocol's)", at_least=1,
                                  at_most=MAX_NEW_TOKENS_LIMIT)
    batch_size: int = setting(BATCH_SIZE, "Prompts decoded together", at_least=1, at_most=MAX_BATCH)
    early_exit: bool = setting(True, "Stop QA rows that can no longer match (scores unchanged)", decides=False)
    backend: str = setting("hf", "Generation backend: hf (transformers), vllm (when installed; GPU), a plug-in's "
                                 "name or package.module:Class")
    vllm_memory: float = setting(0.5, "Share of GPU memory vLLM may take; the transformers copy stays loaded",
                                 above=0, decides=False)
    mia: bool = setting(True, "Membership inference (a section runs unless a false field here bears its name)")
    mia_set: str = setting("final", "final or validation SemEval MIA files, or none (a lume target's held-out "
                                    "documents alone)", choices=MIA_SETS)
    reference_attack: bool = setting(True, "The Reference attack: each membership document's loss under the "
                                           "target's base model too (a lume target's; cached per base)")
    mmlu: bool = setting(True, "MMLU k-shot")
    extraction: bool = setting(True, "Exact memorisation and extraction strength (not in the final score)")
    general: bool = setting(True, "General-text NLL on the SemEval non-member Wikipedia documents, which no target "
                                  "trained on (not in the final score; moves where MMLU is at chance)")
    sections: list[str] = setting(help="Plug-in sections to run beside the protocol's: names or "
                                       "package.module:Class (repeatable)", factory=list, option="--section")
    section: dict[str, dict] = setting(help="Each section's own settings under its name, e.g. {mia: {batch_size: 8}} "
                                            "(the sections' tables below)", factory=dict)
    mmlu_dir: str | None = setting(None, "Hendrycks-layout MMLU folder (default: DATA_DIR/mmlu)")
    mmlu_limit: int | None = setting(None, "MMLU questions per subject (seeded); None = all", at_least=1)
    mmlu_subjects: int | None = setting(None, "MMLU subjects (seeded); None = all 57", at_least=1, at_most=57)
    mmlu_shots: int = setting(5, "MMLU few-shot examples", at_least=0)
    target_mmlu: float | None = setting(None, "The target model's MMLU, for the 75 % flag", between=(0, 1))
    bootstrap_resamples: int = setting(RESAMPLES, "Bootstrap resamples for the 95 % intervals; 0 = none", at_least=0)
    dtype: str | None = setting(None, "float32, bfloat16, float16 or auto (the checkpoint's) for every part; None = "
                                      "the reference's per part on a GPU (generation and MIA bfloat16, MMLU auto), "
                                      "float32 on a CPU", choices=(None, *DTYPES, "auto"))
    device: str | None = setting(None, "cpu, cuda, cuda:1 ... (default: the GPU when there is one)")
    progress: bool = setting(True, "Progress bars", decides=False)

    def __post_init__(self):
        check_settings(self)
        BACKENDS[self.backend]  # a registered name or package.module:Class, else refused naming the choices
        for name in self.sections:
            SECTIONS[name]
        for name, given in self.section.items():
            section_settings(name, given)
        check_device(self.device)


def part_dtypes(config: EvalConfig, device: str) -> dict[str, str]:
    """The dtype each part loads the model in. On a GPU the reference's: generation and MIA in
    bfloat16, MMLU (open-instruct) in the checkpoint's own dtype ("auto"); float32 on a CPU;
    `config.dtype`, when set, for every part."""
    if config.dtype is not None:
        return dict.fromkeys(PARTS, config.dtype)
    if device.startswith("cuda"):
        return {"generation": "bfloat16", "mia": "bfloat16", "mmlu": "auto"}
    return dict.fromkeys(PARTS, "float32")


def step_key(config: EvalConfig) -> dict:
    """What decides an evaluation's scores, beside the model's fingerprint (a study's step record):
    the deciding settings and the dtype each part loads the model in on this machine."""
    return decided_by(config, dtypes=part_dtypes(config, config.device or default_device()))


def result_files() -> tuple[str, ...]:
    return (*(section.rows_file for section in SECTIONS.values()), SUMMARY_NAME)


def _is_evaluation_folder(folder: Path) -> bool:
    """Holds nothing but an earlier evaluation's files (whose caches are keyed, so reusable)."""
    return all(entry.name in (*result_files(), "cache", UNFINISHED_NAME) or entry.name.startswith(".")
               for entry in folder.iterdir())


def processes(config: EvalConfig) -> tuple[int, int, str | None]:
    """(rank, number of processes, device) of a run started on several processes (torchrun,
    accelerate launch), through accelerate; (0, 1, None) for a lone process."""
    if started_processes() <= 1:
        return 0, 1, None
    from accelerate import PartialState

    state = PartialState(cpu=config.device == "cpu" or not torch.cuda.is_available())
    return state.process_index, state.num_processes, str(state.device)


def _open(model, config: EvalConfig, out_dir: Path, rank: int, world: int, device: str | None,
          data: LumeData | None) -> Evaluation:
    """The model (in the first part's dtype), the data and the documents to evaluate: those the
    target was trained on and held out (its manifest), else a seeded selection."""
    device = config.device or device or default_device()
    dtypes = part_dtypes(config, device)
    loaded = model if isinstance(model, LoadedModel) else load_model(model, dtype=dtypes["generation"], device=device)
    dataset = lume_data.loaded(data or config.data_dir, config.source)
    manifest = read_manifest(loaded.path)
    if manifest is not None and manifest.data_fingerprint != dataset.fingerprint:
        log.warning(f"{loaded.path} was trained on other data (fingerprint {manifest.data_fingerprint}) than "
                    f"{dataset.data_dir} holds ({dataset.fingerprint}): its documents are scored as this data has them")
    selection = _selection(manifest, dataset, config)
    _refuse_beyond_context(loaded, selection, config)
    return Evaluation(config, model, loaded, dtypes, device, dataset, selection, out_dir, manifest is not None,
                      manifest.base_model if manifest else None, rank, world)


def _selection(manifest, dataset: LumeData, config: EvalConfig) -> Selection:
    """The documents scored: those of `config.part` of the target's (a model without a manifest:
    the SemEval folds make its parts, `target_selection`), narrowed to a seeded docs_per_task; a
    lume target without a tuning part: a seeded selection of the data's."""
    if manifest is not None and config.docs_per_task is not None and not manifest.tuning:
        return lume_data.select_documents(dataset.documents, config.docs_per_task, 0, config.seed)
    part = target_selection(manifest, dataset).part(config.part)
    if manifest is not None and config.docs_per_task is None:
        return part
    return Selection(lume_data.select_documents(part.chosen, config.docs_per_task, 0, config.seed).chosen,
                     part.held_out)


def _refuse_beyond_context(loaded: LoadedModel, selection, config: EvalConfig) -> None:
    """Every probe's prompt, with the tokens to generate, and every document membership scores
    fit the model's context; else one line before any section runs."""
    records = [r for d in selection.chosen for r in d.records]
    prompts = loaded.tokenizer([r.input for r in records]).input_ids if records else []
    refuse_beyond_context(loaded.model, zip([r.id for r in records], map(len, prompts)), "record",
                          config.max_new_tokens)
    documents = selection.split("forget") + selection.held_out if config.mia else []
    texts = loaded.tokenizer([d.text for d in documents]).input_ids if documents else []
    refuse_beyond_context(loaded.model, zip([d.doc_id for d in documents], map(len, texts)), "document")


def _header(evaluation: Evaluation) -> dict:
    """What was evaluated: the model and the data."""
    loaded, dataset = evaluation.loaded, evaluation.dataset
    return {"model": {"name": loaded.name, "path": str(loaded.path) if loaded.path else None,
                      "fingerprint": loaded.fingerprint, "dtype": str(loaded.model.dtype),
                      "device": str(loaded.model.device)},
            "data": {"dir": str(dataset.data_dir), "source": evaluation.config.source,
                     "fingerprint": dataset.fingerprint, "documents": len(evaluation.selection.chosen),
                     "items": None, "target_manifest": evaluation.has_manifest,
                     **({"part": "tuning"} if evaluation.config.part == "tuning" else {})}}


def _final_sections() -> list[Section]:
    """Every registered section with a part of the official final score."""
    return [cls() for cls in SECTIONS.values() if cls.final_part]


def _final(summary: EvaluationSummary) -> float | None:
    """The official final score from each final section's declared part; None while one is missing."""
    parts = [section.headline(summary).get(section.final_part) for section in _final_sections()]
    return final_score(*parts) if None not in parts else None


def _resampled(summary: EvaluationSummary, rows: dict[str, list[dict]], sections: list[Section],
               config: EvalConfig) -> tuple[dict[str, list[float]] | None, Bootstrap | None]:
    """95 % bootstrap intervals of every headline number, and the resampled values, for paired
    comparisons between models (see `lume.metrics.uncertainty`); none without resamples."""
    if not config.bootstrap_resamples:
        return None, None
    replicates = {}
    for section in sections:
        replicates.update(section.replicates(summary, rows[section.name], config.seed, config.bootstrap_resamples))
    finals = [section.final_part for section in _final_sections()]
    if all(name in replicates for name in finals):
        replicates[Headline.FINAL] = final_score(*(replicates[name] for name in finals))
    units = [unit for section in sections for unit in section.units(summary, rows[section.name])]
    bootstrap = Bootstrap(seed=config.seed, resamples=config.bootstrap_resamples, confidence=CONFIDENCE,
                          units=units_fingerprint(units),
                          replicates={name: np.round(values, 6).tolist() for name, values in replicates.items()})
    return {name: interval(values) for name, values in replicates.items()}, bootstrap


def _sections(config: EvalConfig) -> list[Section]:
    """lume's sections whose flag is on, then those named in `config.sections`, in their order."""
    chosen = [cls for cls in SECTIONS.values() if cls.runs_by_default and getattr(config, cls.name, True)]
    chosen += [SECTIONS[name] for name in config.sections if SECTIONS[name] not in chosen]
    return [cls() for cls in sorted(chosen, key=lambda cls: cls.order)]


def _written_rows(rows: dict[str, list[dict]], sections: list[Section]) -> dict[str, list[dict]]:
    """Each section's rows as its rows file holds them (a file of no rows is not written)."""
    written = {section.rows_file: section.saved_rows(rows[section.name]) for section in sections}
    return {name: saved for name, saved in written.items() if saved}


def _write_results(out_dir: Path, summary: EvaluationSummary, written: dict[str, list[dict]]) -> None:
    """Write this run's files and remove any an earlier run left that this one did not write,
    so that the folder holds exactly this run's results (summary.json last: it marks completion)."""
    for name in result_files()[:-1]:
        if name in written:
            write_jsonl_atomic(out_dir / name, written[name])
        else:
            (out_dir / name).unlink(missing_ok=True)
    write_json_atomic(out_dir / SUMMARY_NAME, summary.to_json())


def evaluate(model: str | Path | LoadedModel, out_dir: str | Path, config: EvalConfig | None = None, *,
             overwrite: bool = False, wait: bool = False, data: LumeData | None = None) -> EvaluationSummary:
    """Evaluate a model with the LUME protocol; write OUT's files and return the summary.

    OUT may hold an earlier evaluation (its keyed per-item caches are reused); anything else
    there is refused unless `overwrite`. While another command writes OUT, this one stops (or
    waits, with `wait`). DATA: the data already loaded (a study's); None: config.data_dir's.
    """
    with one_writer(out_dir, wait):
        return _evaluate(model, Path(out_dir), config or EvalConfig(), overwrite, data)


def _evaluate(model: str | Path | LoadedModel, out_dir: Path, config: EvalConfig,
              overwrite: bool, data: LumeData | None) -> EvaluationSummary:
    rank, world, device = processes(config)
    if rank == 0:  # on several processes, the main one guards and writes the folder
        inputs = (model.path,) if isinstance(model, LoadedModel) else (resolve_model_path(model)[1],)
        claim(out_dir, "evaluate", inputs=inputs, overwrite=overwrite, resumable=_is_evaluation_folder)
        (out_dir / SUMMARY_NAME).unlink(missing_ok=True)  # the old results are not this run's
    if world > 1:
        torch.distributed.barrier()
    started, timings, summary, rows = time.time(), {}, {"dtypes": {}}, {}
    evaluation = _open(model, config, out_dir, rank, world, device, data)
    header = _header(evaluation)  # the model as loaded for generation
    set_resume_note(f"the items finished so far are kept in {out_dir / 'cache'}; the same command resumes")
    sections = _sections(config)
    for section in sections:
        step = time.time()
        part, rows[section.name] = section.run(evaluation, evaluation.model_for(section))
        summary.update(part)
        summary["dtypes"][section.dtype_part] = str(evaluation.loaded.model.dtype)
        timings[f"{section.name}_s"] = time.time() - step
    header["data"]["items"] = len(rows.get("probes", []))
    measured = EvaluationSummary.from_json({**header, **summary})
    intervals, bootstrap = _resampled(measured, rows, sections, config)
    timings["total_s"] = time.time() - started
    written = _written_rows(rows, sections)
    summary = dataclasses.replace(measured, final=_final(measured), intervals=intervals, bootstrap=bootstrap,
                                  config=asdict(config), versions=installed_versions(), timings=timings,
                                  files=[*written, SUMMARY_NAME])
    if rank == 0:
        _write_results(out_dir, summary, written)
        mark_finished(out_dir)
    set_resume_note(None)
    return summary
