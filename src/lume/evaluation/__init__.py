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

from lume import data as lume_data
from lume.data.manifest import read_manifest
from lume.errors import LumeError
from lume.evaluation.documents import score_documents
from lume.evaluation.mmlu import evaluate_mmlu, load_mmlu, summarise_mmlu
from lume.evaluation.scoring import score_records
from lume.generation import BATCH_SIZE, MAX_NEW_TOKENS
from lume.generation_vllm import VLLMGenerator
from lume.io import ResultCache, write_json_atomic, write_jsonl_atomic
from lume.metrics import AGGREGATE_ORDER, ATTACKS, auc, final_score, mia_score, mmlu_flag, task_aggregate, task_means
from lume.metrics.mia import membership_score
from lume.models import LoadedModel, load_model
from lume.progress import progress_bar

PACKAGES = ("lume", "torch", "transformers", "rouge-score", "scikit-learn", "accelerate", "peft", "vllm")
BACKENDS = ("hf", "vllm")


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
    dtype: str | None = None
    device: str | None = None
    progress: bool = True


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


def evaluate(model: str | Path | LoadedModel, out_dir: str | Path, config: EvalConfig | None = None) -> dict:
    """Evaluate a model with the LUME protocol; write OUT's files and return the summary."""
    config = config or EvalConfig()
    if config.backend not in BACKENDS:
        raise LumeError(f"unknown backend {config.backend!r}; choose one of {', '.join(BACKENDS)}")
    out_dir = Path(out_dir)
    started = time.time()
    timings: dict[str, float] = {}
    loaded = model if isinstance(model, LoadedModel) else load_model(model, dtype=config.dtype,
                                                                     device=config.device)
    dataset = lume_data.load(config.data_dir, config.source)
    manifest = read_manifest(loaded.path)
    if manifest is not None and config.docs_per_task is None:
        selection = manifest.selection(dataset.documents)
    else:
        selection = lume_data.select_documents(dataset.documents, config.docs_per_task, 0, config.seed)
    key = {"model": loaded.fingerprint, "data": dataset.fingerprint,
           "max_new_tokens": config.max_new_tokens, "dtype": str(loaded.model.dtype), "backend": config.backend}

    step = time.time()
    with ResultCache(out_dir / "cache" / "items.jsonl", key) as cache:
        items = _probe_items(loaded, selection.chosen, config, cache)
    timings["generation_s"] = time.time() - step
    means = task_means(items)
    summary: dict = {
        "model": {"name": loaded.name, "path": str(loaded.path) if loaded.path else None,
                  "fingerprint": loaded.fingerprint, "dtype": str(loaded.model.dtype),
                  "device": str(loaded.model.device)},
        "data": {"dir": str(dataset.data_dir), "source": config.source,
                 "fingerprint": dataset.fingerprint, "documents": len(selection.chosen),
                 "items": len(items), "target_manifest": manifest is not None},
        "scores": {"/".join(key): means.get(key) for key in AGGREGATE_ORDER},
        "task_aggregate": task_aggregate(means) if all(k in means for k in AGGREGATE_ORDER) else None,
        "early_stopped_items": sum(item["stop"] == "early" for item in items),
    }

    mia_rows: list[dict] = []
    if config.mia:
        step = time.time()
        official = lume_data.load_mia(dataset.data_dir, validation=config.mia_set == "validation")
        documents = [{"id": f"semeval-{config.mia_set}/{'m' if d.member else 'n'}/{d.id}", "set": "semeval",
                      "member": d.member, "task": d.task, "text": d.text} for d in official]
        if selection.held_out:  # trained forget documents against never-trained ones
            labelled = [(d, True) for d in selection.split("forget")] + [(d, False) for d in selection.held_out]
            documents += [{"id": f"lume/{d.split}/{d.doc_id}", "set": "held-out", "member": member,
                           "task": d.task, "text": d.text} for d, member in labelled]
        with ResultCache(out_dir / "cache" / "mia.jsonl", key) as cache:
            mia_rows = _mia_rows(loaded, documents, config, cache)
        summary["mia"] = _auc_report([r for r in mia_rows if r["set"] == "semeval"])
        held_out_rows = [r for r in mia_rows if r["set"] == "held-out"]
        if held_out_rows:
            summary["mia_held_out"] = {"all": _auc_report(held_out_rows), **{
                task: _auc_report([r for r in held_out_rows if r["task"] == task])
                for task in sorted({r["task"] for r in held_out_rows})}}
        timings["mia_s"] = time.time() - step

    mmlu_rows: list[dict] = []
    if config.mmlu:
        step = time.time()
        subjects = load_mmlu(config.mmlu_dir or dataset.data_dir / "mmlu", config.mmlu_limit, config.seed)
        total = sum(len(questions) for _, questions in subjects.values())
        with (ResultCache(out_dir / "cache" / "mmlu.jsonl", {**key, "shots": config.mmlu_shots}) as cache,
              progress_bar("MMLU", total - len(cache.results), "questions", config.progress) as advance):
            mmlu_rows = evaluate_mmlu(loaded.model, loaded.tokenizer, subjects, shots=config.mmlu_shots,
                                      done=cache.results.get, on_result=lambda row: (cache.add(row), advance()))
        mmlu_summary = summarise_mmlu(mmlu_rows)
        summary["mmlu"] = {**mmlu_summary, "limit_per_subject": config.mmlu_limit, "shots": config.mmlu_shots,
                           "target_mmlu": config.target_mmlu,
                           "below_threshold": mmlu_flag(mmlu_summary["accuracy"], config.target_mmlu)}
        timings["mmlu_s"] = time.time() - step

    parts = [summary["task_aggregate"], summary.get("mia", {}).get("mia_score"),
             summary.get("mmlu", {}).get("accuracy")]
    summary["final"] = final_score(*parts) if None not in parts else None
    summary["per_task"] = {f"{split}/{task}": {metric: means.get((split, task, metric))
                                               for metric in ("regurgitation", "knowledge")}
                           for split, task, _ in AGGREGATE_ORDER[::2]}
    timings["total_s"] = time.time() - started
    summary.update(config=asdict(config), versions=_versions(), timings=timings)

    write_jsonl_atomic(out_dir / "items.jsonl", items)
    if mia_rows:
        write_jsonl_atomic(out_dir / "mia.jsonl", [{k: v for k, v in r.items() if k != "text"} for r in mia_rows])
    if mmlu_rows:
        write_jsonl_atomic(out_dir / "mmlu.jsonl", mmlu_rows)
    write_json_atomic(out_dir / "summary.json", summary)
    return summary
