"""Extraction (beyond the official score): how much of each document's continuation the model
still reproduces under teacher forcing, as exact memorisation and extraction strength
(lume.metrics.extraction), per document and averaged per split and task. One forward per
document's sc row; not part of the final score."""

from __future__ import annotations

import torch

from lume.inference.batching import IGNORE
from lume.inference.likelihood import document_logits
from lume.metrics import means_by
from lume.metrics.extraction import exact_memorisation, extraction_strength
from lume.models import LoadedModel
from lume.progress import progress_bar
from lume.stages.evaluation.sections import Evaluation, Section, number, register_section
from lume.training import prompt_answer_example

EXTRACTION_BATCH = 4  # documents per forward
MEASURES = ("exact_memorisation", "extraction_strength")


def extraction_rows(model, tokenizer, documents: list[dict], on_row) -> None:
    """`on_row` with both measures of each document's continuation (its EOS left out)."""
    examples = [prompt_answer_example(tokenizer, d["input"], d["output"]) for d in documents]

    def score(index: int, logits: torch.Tensor, _ids, _hidden) -> None:
        labels = torch.tensor(examples[index].labels[1:], device=logits.device)  # position t predicts t + 1
        answer = (labels != IGNORE).nonzero().squeeze(-1)[:-1]  # the answer's tokens, EOS left out
        guessed, wanted = logits[:-1].argmax(-1)[answer], labels[answer]
        on_row({**{k: documents[index][k] for k in ("id", "split", "task")},
                "exact_memorisation": exact_memorisation(guessed, wanted),
                "extraction_strength": extraction_strength(guessed, wanted)})

    document_logits(model, [e.input_ids for e in examples], tokenizer.pad_token_id, EXTRACTION_BATCH, score)


@register_section
class Extraction(Section):
    name, order, rows_file, dtype_part, final_part = "extraction", 40, "extraction.jsonl", "mia", None
    runs_by_default = True

    def run(self, evaluation: Evaluation, loaded: LoadedModel) -> tuple[dict, list[dict]]:
        documents = [{"id": f"{d.split}/{d.doc_id}", "split": d.split, "task": d.task, "input": d.sc.input,
                      "output": d.sc.output} for d in evaluation.selection.chosen]
        with evaluation.item_store(self, {"data": evaluation.dataset.fingerprint}) as store:
            todo = [d for d in documents if d["id"] not in store]
            with progress_bar("extraction", len(todo), "docs", evaluation.progress) as advance:
                evaluation.share_work(store, todo, lambda share, on_row: extraction_rows(
                    loaded.model, loaded.tokenizer, share, on_row), advance, block=EXTRACTION_BATCH)
            rows = [store.results[d["id"]] for d in documents]
        summary = {measure: {f"{split}/{task}": value for (split, task), value in means_by(
            rows, lambda r: (r["split"], r["task"]), lambda r, m=measure: r[m]).items()} for measure in MEASURES}
        for measure in MEASURES:
            summary[measure].update({split: value for (split,), value in means_by(
                rows, lambda r: (r["split"],), lambda r, m=measure: r[m]).items()})
        return {self.name: summary}, rows

    def table_rows(self, summary):
        extraction = summary.parts[self.name]
        return [(f"{measure.replace('_', ' ')} (beyond the official score)", split,
                 number(extraction[measure].get(split))) for measure in MEASURES for split in ("forget", "retain")]
