"""Generate for LUME records and score each one: the per-item half of the protocol."""

from __future__ import annotations

from collections.abc import Callable

from lume.data.records import Record
from lume.inference import MAX_NEW_TOKENS, Backend, BackendOptions, open_backend
from lume.metrics.text import can_still_match, exact_match, rouge_l_recall


def transformers_backend(model, tokenizer, batch_size: int | None = None) -> Backend:
    """The default backend on an already loaded model (for scoring in the middle of a stage)."""
    options = BackendOptions() if batch_size is None else BackendOptions(batch_size=batch_size)
    return open_backend("hf", model, tokenizer, options=options)


def score_records(backend: Backend, records: list[Record], *, prompts: list[str] | None = None,
                  max_new_tokens: int = MAX_NEW_TOKENS, early_exit: bool = True,
                  on_item: Callable[[dict], None] = lambda _item: None) -> list[dict]:
    """One scored item per record: ROUGE-L recall for sc rows, exact match for QA rows.

    `prompts` replaces the records' inputs (probing attacks); `on_item` sees each item as it
    finishes, in completion order; `early_exit` stops QA rows that can no longer match (the
    scores are unchanged).
    """
    prompts = prompts if prompts is not None else [r.input for r in records]
    keep_going = [(lambda text, gold=r.output: can_still_match(text, gold)) if r.kind == "qa" and early_exit
                  else None for r in records]
    items: list[dict | None] = [None] * len(records)

    def finish(index: int, generation) -> None:
        record = records[index]
        is_sc = record.kind == "sc"
        score = rouge_l_recall(record.output, generation.text) if is_sc else exact_match(record.output, generation.text)
        items[index] = {"id": record.id, "doc_id": record.doc_id, "task": record.task, "split": record.split,
                        "kind": record.kind, "metric": "regurgitation" if is_sc else "knowledge",
                        "input": prompts[index], "output": record.output, "generation": generation.text,
                        "new_tokens": generation.new_tokens, "stop": generation.stop, "score": score}
        on_item(items[index])

    backend.generate(prompts, max_new_tokens=max_new_tokens, keep_going=keep_going, on_done=finish)
    return items  # type: ignore[return-value]
