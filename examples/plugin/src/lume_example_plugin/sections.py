"""An extra evaluation section: the mean NLL of each split's QA answers, teacher-forced."""

import torch

from lume.stages.evaluation import Section
from lume.training import collate, prompt_answer_example


class AnswerNLL(Section):
    name, order, rows_file, dtype_part = "answer-nll", 40, "answer_nll.jsonl", "mia"

    def run(self, evaluation, loaded):
        rows = []
        for document in evaluation.selection.chosen:
            for qa in document.qa:
                example = prompt_answer_example(loaded.tokenizer, qa.input, qa.output)
                with torch.no_grad():
                    loss = loaded.model(**collate([example], loaded.tokenizer.pad_token_id, loaded.model.device)).loss
                rows.append({"id": qa.id, "split": document.split, "nll": loss.item()})
        splits = sorted({row["split"] for row in rows})
        means = {s: sum(r["nll"] for r in rows if r["split"] == s) / sum(r["split"] == s for r in rows) for s in splits}
        return {"answer_nll": means}, rows

    def present(self, summary):
        return "answer_nll" in summary.parts

    def table_rows(self, summary):
        return [(f"answer NLL ({split})", "lower: better known", f"{value:.3f}")
                for split, value in summary.parts["answer_nll"].items()]
