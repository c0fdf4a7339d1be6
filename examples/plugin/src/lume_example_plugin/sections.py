"""An extra evaluation section: the mean NLL of each split's QA answers, teacher-forced; its one
setting, `max_answers`, is given as `evaluation.section.answer-nll.max_answers` (or
`--setting section.answer-nll.max_answers=N`)."""

from dataclasses import dataclass

import torch

from lume.config import setting
from lume.stages.evaluation import Section
from lume.training import collate, prompt_answer_example


@dataclass
class AnswerNLLSettings:
    max_answers: int | None = setting(None, "QA answers scored per split at most; None = all", at_least=1)


class AnswerNLL(Section):
    name, order, rows_file, dtype_part = "answer-nll", 40, "answer_nll.jsonl", "mia"
    Settings = AnswerNLLSettings

    def run(self, evaluation, loaded):
        limit, rows = evaluation.settings_of(self).max_answers, []
        for document in evaluation.selection.chosen:
            for qa in document.qa:
                if limit is not None and sum(row["split"] == document.split for row in rows) >= limit:
                    break
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
