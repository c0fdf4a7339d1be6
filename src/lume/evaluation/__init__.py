"""`evaluate`: the official LUME protocol on one model, resumable, with extras beside it.

Outputs in OUT: `items.jsonl` (every probe: prompt, gold, generation, score), `mia.jsonl`
(every MIA document's attack scores), `mmlu.jsonl` (every question), `summary.json` (all
numbers, the configuration, fingerprints, versions, timings). Per-item results are appended
to `OUT/cache/` as they finish, so a rerun after an interruption only does what is missing.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from lume import data as lume_data
from lume.config import above_zero, at_least, between, one_of
from lume.data.manifest import read_manifest
from lume.errors import set_resume_note
from lume.evaluation.documents import score_documents
from lume.evaluation.mmlu import PROMPT_FORMAT, evaluate_mmlu, load_mmlu, summarise_mmlu
from lume.evaluation.scoring import score_records
from lume.generation import BATCH_SIZE, MAX_NEW_TOKENS
from lume.generation_vllm import VLLMGenerator
from lume.io import ResultCache, check_output_dir, write_json_atomic, write_jsonl_atomic
from lume.metrics import AGGREGATE_ORDER, ATTACKS, auc, final_score, mia_score, mmlu_flag, task_aggregate, task_means
from lume.metrics.mia import membership_score
from lume.metrics.uncertainty import (CONFIDENCE, RESAMPLES, interval, mia_replicates, mmlu_replicates,
                                      probe_replicates, units_fingerprint)
from lume.models import DTYPES, LoadedModel, check_device, default_device, load_model, resolve_model_path
from lume.progress import progress_bar

PACKAGES = ("lume", "torch", "transformers", "rouge-score", "scikit-learn", "accelerate", "peft", "vllm")
BACKENDS = ("hf", "vllm")
MIA_SETS = ("final", "validation")
SEMEVAL_MIA_NOTE = ("the SemEval MIA files measure membership only for the released OLMo targets, which were "
                    "trained on them; this target was not")
PARTS = ("generation", "mia", "mmlu")


@dataclass
class EvalConfig:
    data_dir: str | None = None
    source: str = "lume"  # lume | semeval-train | semeval-validation
    docs_per_task: int | None = None  # per task and split; None = all (or the target's)
    seed: int = 0
    max_new_tokens: int = MAX_NEW_TOKENS
    batch_size: int = BATCH_SIZE
    early_exit: bool = True  # stop QA rows that can no longer match (scores unchanged)
    backend: str = "hf"  # hf (transformers) | vllm (when installed; GPU)
    vllm_memory: float = 0.5  # share of GPU memory vLLM may take; the transformers copy stays loaded
    mia: bool = True
    mia_set: str = "final"  # final | validation (the SemEval MIA files)
    mmlu: bool = True
    mmlu_dir: str | None = None  # default: DATA_DIR/mmlu
    mmlu_limit: int | None = None  # questions per subject, seeded; None = all
    mmlu_shots: int = 5
    target_mmlu: float | None = None
    bootstrap_resamples: int = RESAMPLES  # for the 95 % intervals; 0 = none
    dtype: str | None = None  # every part in this dtype; None = the reference's per part (see part_dtypes)
    device: str | None = None
    progress: bool = True

    def __post_init__(self):
        one_of(self, "source", lume_data.SOURCES)
        one_of(self, "backend", BACKENDS)
        one_of(self, "mia_set", MIA_SETS)
        one_of(self, "dtype", (None, *DTYPES, "auto"))
        at_least(self, 1, "docs_per_task", "max_new_tokens", "batch_size", "mmlu_limit")
        at_least(self, 0, "mmlu_shots", "bootstrap_resamples")
        between(self, 0, 1, "target_mmlu")
        above_zero(self, "vllm_memory")
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


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def _probe_items(loaded: LoadedModel, documents: list, config: EvalConfig, cache: ResultCache) -> list[dict]:
    """Generate for every sc and qa record of the documents not yet in the cache, and score each."""
    records = [r for d in documents for r in d.records]
    todo = [r for r in records if r.id not in cache]
    vllm = None
    if todo and config.backend == "vllm":
        vllm = VLLMGenerator(loaded.path or loaded.name, dtype=loaded.model.dtype,
                             memory_fraction=config.vllm_memory, seed=config.seed)
    with progress_bar("generating", len(todo), "items", config.progress) as advance:
        score_records(loaded.model, loaded.tokenizer, todo, batch_size=config.batch_size,
                      max_new_tokens=config.max_new_tokens, early_exit=config.early_exit,
                      on_item=lambda item: (cache.add(item), advance()), vllm=vllm)
    return [cache.results[r.id] for r in records]


def _mia_rows(loaded: LoadedModel, documents: list, config: EvalConfig, cache: ResultCache) -> list[dict]:
    """Attack scores of MIA documents: dicts with id, set, member, task, text."""
    todo = [d for d in documents if d["id"] not in cache]
    with progress_bar("membership inference", len(todo), "docs", config.progress) as advance:
        def save(index: int, scores: dict) -> None:
            cache.add({**todo[index], **scores})
            advance()

        score_documents(loaded.model, loaded.tokenizer, [d["text"] for d in todo], on_done=save)
    return [cache.results[d["id"]] for d in documents]


def _auc_report(rows: list[dict]) -> dict:
    members = [r["member"] for r in rows]
    report = {"members": sum(members), "non_members": len(rows) - sum(members)}
    for attack in ATTACKS:
        report[f"auc_{attack}"] = auc(members, [membership_score(attack, r) for r in rows])
    report["mia_score"] = mia_score(report["auc_loss"])
    return report


RESULT_FILES = ("items.jsonl", "mia.jsonl", "mmlu.jsonl", "summary.json")


def _is_evaluation_folder(folder: Path) -> bool:
    """Holds nothing but an earlier evaluation's files (whose caches are keyed, so reusable)."""
    return all(entry.name in (*RESULT_FILES, "cache") or entry.name.startswith(".") for entry in folder.iterdir())


def _cache_key(part: str, loaded: LoadedModel, dataset, config: EvalConfig) -> dict:
    """Every setting that changes one cached result of this part."""
    model = {"model": loaded.fingerprint, "dtype": str(loaded.model.dtype)}
    return {"generation": {**model, "data": dataset.fingerprint, "source": config.source,
                           "max_new_tokens": config.max_new_tokens, "early_exit": config.early_exit,
                           "backend": config.backend},
            "mia": {**model, "data": dataset.fingerprint, "mia_set": config.mia_set},
            "mmlu": {**model, "shots": config.mmlu_shots, "mmlu_dir": str(config.mmlu_dir),
                     "prompt_format": PROMPT_FORMAT}}[part]


def _selection(loaded: LoadedModel, dataset, config: EvalConfig):
    manifest = read_manifest(loaded.path)
    if manifest is not None and config.docs_per_task is None:
        return manifest, manifest.selection(dataset.documents)
    return manifest, lume_data.select_documents(dataset.documents, config.docs_per_task, 0, config.seed)


def _mia_section(loaded, dataset, selection, config: EvalConfig, out_dir: Path) -> tuple[dict, list]:
    official = lume_data.load_mia(dataset.data_dir, validation=config.mia_set == "validation")
    documents = [{"id": f"semeval-{config.mia_set}/{'m' if d.member else 'n'}/{d.id}", "set": "semeval",
                  "member": d.member, "task": d.task, "text": d.text} for d in official]
    if selection.held_out:  # trained forget documents against never-trained ones
        labelled = [(d, True) for d in selection.split("forget")] + [(d, False) for d in selection.held_out]
        documents += [{"id": f"lume/{d.split}/{d.doc_id}", "set": "held-out", "member": member,
                       "task": d.task, "text": d.text} for d, member in labelled]
    with ResultCache(out_dir / "cache" / "mia.jsonl", _cache_key("mia", loaded, dataset, config)) as cache:
        rows = _mia_rows(loaded, documents, config, cache)
    semeval = {**_auc_report([r for r in rows if r["set"] == "semeval"]), "set": f"semeval-{config.mia_set}"}
    held_out_rows = [r for r in rows if r["set"] == "held-out"]
    if not held_out_rows:  # a released target: the SemEval files are its members and non-members
        return {"mia": semeval}, rows
    # A target lume built never saw the SemEval files: its members are the forget documents it
    # was trained on, its non-members the documents held out of training.
    official = {**_auc_report(held_out_rows), "set": "held-out", "per_task": {
        task: _auc_report([r for r in held_out_rows if r["task"] == task])
        for task in sorted({r["task"] for r in held_out_rows})}}
    return {"mia": official, "mia_semeval": {**semeval, "note": SEMEVAL_MIA_NOTE}}, rows


def _mmlu_section(loaded, dataset, config: EvalConfig, out_dir: Path) -> tuple[dict, list]:
    key = _cache_key("mmlu", loaded, dataset, config)
    subjects = load_mmlu(config.mmlu_dir or dataset.data_dir / "mmlu", config.mmlu_limit, config.seed)
    total = sum(len(questions) for _, questions in subjects.values())
    with (ResultCache(out_dir / "cache" / "mmlu.jsonl", key) as cache,
          progress_bar("MMLU", total - len(cache.results), "questions", config.progress) as advance):
        rows = evaluate_mmlu(loaded.model, loaded.tokenizer, subjects, shots=config.mmlu_shots,
                             done=cache.results.get, on_result=lambda row: (cache.add(row), advance()))
    summary = summarise_mmlu(rows)
    return {"mmlu": {**summary, "limit_per_subject": config.mmlu_limit, "shots": config.mmlu_shots,
                     "target_mmlu": config.target_mmlu,
                     "below_threshold": mmlu_flag(summary["accuracy"], config.target_mmlu)}}, rows


def _probe_summary(loaded: LoadedModel, dataset, config: EvalConfig, selection, has_manifest: bool,
                   items: list[dict]) -> dict:
    """The model, the data and the probes' part of the summary: the 12 numbers and their aggregate."""
    means = task_means(items)
    return {
        "model": {"name": loaded.name, "path": str(loaded.path) if loaded.path else None,
                  "fingerprint": loaded.fingerprint, "dtype": str(loaded.model.dtype),
                  "device": str(loaded.model.device)},
        "data": {"dir": str(dataset.data_dir), "source": config.source,
                 "fingerprint": dataset.fingerprint, "documents": len(selection.chosen),
                 "items": len(items), "target_manifest": has_manifest},
        "scores": {"/".join(key): means.get(key) for key in AGGREGATE_ORDER},
        "task_aggregate": task_aggregate(means) if all(k in means for k in AGGREGATE_ORDER) else None,
        "early_stopped_items": sum(item["stop"] == "early" for item in items),
        "per_task": {f"{split}/{task}": {metric: means.get((split, task, metric))
                                         for metric in ("regurgitation", "knowledge")}
                     for split, task, _ in AGGREGATE_ORDER[::2]},
    }


def _add_intervals(summary: dict, items: list[dict], mia_rows: list[dict], mmlu_rows: list[dict],
                   config: EvalConfig) -> None:
    """95 % bootstrap intervals of every headline number, and the resampled values, for paired
    comparisons between models (see `lume.metrics.uncertainty`)."""
    if not config.bootstrap_resamples:
        return
    official_set = "held-out" if summary.get("mia", {}).get("set") == "held-out" else "semeval"
    official = [r for r in mia_rows if r["set"] == official_set]
    replicates = {**probe_replicates(items, config.seed, config.bootstrap_resamples),
                  **mia_replicates(official, config.seed, config.bootstrap_resamples),
                  **mmlu_replicates(mmlu_rows, config.seed, config.bootstrap_resamples)}
    if {"task_aggregate", "mia_score", "mmlu"} <= set(replicates):
        replicates["final"] = (replicates["task_aggregate"] + replicates["mia_score"] + replicates["mmlu"]) / 3
    summary["intervals"] = {name: interval(values) for name, values in replicates.items()}
    summary["bootstrap"] = {"seed": config.seed, "resamples": config.bootstrap_resamples, "confidence": CONFIDENCE,
                            "units": units_fingerprint(items, official, mmlu_rows),
                            "replicates": {name: np.round(values, 6).tolist() for name, values in replicates.items()}}


def _write_results(out_dir: Path, summary: dict, items: list, mia_rows: list, mmlu_rows: list) -> None:
    """Write this run's files and remove any an earlier run left that this one did not write,
    so that the folder holds exactly this run's results (summary.json last: it marks completion)."""
    written = {"items.jsonl": items, "mia.jsonl": [{k: v for k, v in r.items() if k != "text"} for r in mia_rows],
               "mmlu.jsonl": mmlu_rows}
    summary["files"] = [name for name, rows in written.items() if rows] + ["summary.json"]
    for name, rows in written.items():
        if rows:
            write_jsonl_atomic(out_dir / name, rows)
        else:
            (out_dir / name).unlink(missing_ok=True)
    write_json_atomic(out_dir / "summary.json", summary)


def evaluate(model: str | Path | LoadedModel, out_dir: str | Path, config: EvalConfig | None = None, *,
             overwrite: bool = False) -> dict:
    """Evaluate a model with the LUME protocol; write OUT's files and return the summary.

    OUT may hold an earlier evaluation (its keyed per-item caches are reused); anything else
    there is refused unless `overwrite`.
    """
    config = config or EvalConfig()
    out_dir = Path(out_dir)
    inputs = (model.path,) if isinstance(model, LoadedModel) else (resolve_model_path(model)[1],)
    check_output_dir(out_dir, inputs=inputs, overwrite=overwrite, resumable=_is_evaluation_folder)
    (out_dir / "summary.json").unlink(missing_ok=True)  # the old results are not this run's
    set_resume_note(f"interrupted: finished items are kept in {out_dir / 'cache'}; the same command resumes")
    started, timings = time.time(), {}
    device = config.device or default_device()
    dtypes = part_dtypes(config, device)
    loaded = model if isinstance(model, LoadedModel) else load_model(model, dtype=dtypes["generation"], device=device)
    dataset = lume_data.load(config.data_dir, config.source)
    manifest, selection = _selection(loaded, dataset, config)
    with ResultCache(out_dir / "cache" / "items.jsonl", _cache_key("generation", loaded, dataset, config)) as cache:
        items = _probe_items(loaded, selection.chosen, config, cache)
    timings["generation_s"] = time.time() - started
    summary = _probe_summary(loaded, dataset, config, selection, manifest is not None, items)
    summary["dtypes"] = {"generation": str(loaded.model.dtype)}
    mia_rows, mmlu_rows = [], []
    if config.mia:
        step = time.time()
        section, mia_rows = _mia_section(loaded, dataset, selection, config, out_dir)
        summary.update(section, dtypes={**summary["dtypes"], "mia": str(loaded.model.dtype)})
        timings["mia_s"] = time.time() - step
    if config.mmlu:
        step = time.time()
        if not isinstance(model, LoadedModel) and dtypes["mmlu"] != dtypes["generation"]:
            loaded = None  # the generation copy goes before the MMLU copy comes
            loaded = load_model(model, dtype=dtypes["mmlu"], device=device)
        section, mmlu_rows = _mmlu_section(loaded, dataset, config, out_dir)
        summary.update(section, dtypes={**summary["dtypes"], "mmlu": str(loaded.model.dtype)})
        timings["mmlu_s"] = time.time() - step
    parts = [summary["task_aggregate"], summary.get("mia", {}).get("mia_score"),
             summary.get("mmlu", {}).get("accuracy")]
    summary["final"] = final_score(*parts) if None not in parts else None
    _add_intervals(summary, items, mia_rows, mmlu_rows, config)
    timings["total_s"] = time.time() - started
    summary.update(config=asdict(config), versions=_versions(), timings=timings)
    _write_results(out_dir, summary, items, mia_rows, mmlu_rows)
    set_resume_note(None)
    return summary
