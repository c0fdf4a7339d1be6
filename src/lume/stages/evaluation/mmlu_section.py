"""MMLU k-shot accuracy (micro-averaged, per subject and category), and the 75 % rule against
the target model's accuracy."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lume.config import MAX_BATCH, identity, setting

from lume.data.mmlu import load_mmlu
from lume.metrics import mmlu_flag
from lume.metrics.mmlu import PROMPT_FORMAT, evaluate_mmlu, summarise_mmlu
from lume.metrics.uncertainty import mmlu_replicates
from lume.models import LoadedModel
from lume.progress import progress_bar
from lume.results import EvaluationSummary, Headline, summary_part
from lume.stages.evaluation.sections import Evaluation, Section, register_section, with_interval


@dataclass
class MmluSettings:
    batch_size: int = setting(8, "Questions per forward pass, after their subject's shared few-shot prefix",
                              at_least=1, at_most=MAX_BATCH)


@register_section
class MMLU(Section):
    name, order, rows_file, dtype_part, final_part = "mmlu", 30, "mmlu.jsonl", "mmlu", Headline.MMLU
    Settings = MmluSettings
    runs_by_default = True

    def run(self, evaluation: Evaluation, loaded: LoadedModel) -> tuple[dict, list[dict]]:
        config, settings = evaluation.config, evaluation.settings_of(self)
        subjects = load_mmlu(config.mmlu_dir or evaluation.dataset.data_dir / "mmlu", config.mmlu_limit, config.seed,
                             config.mmlu_subjects)
        key = {"shots": config.mmlu_shots, "mmlu_dir": str(config.mmlu_dir), "prompt_format": PROMPT_FORMAT,
               **identity(settings)}

        def work(share, on_row):
            by_subject: dict = {}
            for question in share:
                by_subject.setdefault(question.subject, (subjects[question.subject][0], []))[1].append(question)
            evaluate_mmlu(loaded.model, loaded.tokenizer, by_subject, shots=config.mmlu_shots,
                          batch_size=settings.batch_size, on_result=on_row)

        questions = [q for _, subject_questions in subjects.values() for q in subject_questions]
        with evaluation.item_store(self, key) as store:
            todo = [q for q in questions if q.id not in store]
            with progress_bar("MMLU", len(todo), "questions", evaluation.progress) as advance:
                evaluation.share_work(store, todo, work, advance)
            rows = [store.results[q.id] for q in questions]
        scores = summarise_mmlu(rows)
        return summary_part(mmlu=dataclasses.replace(
            scores, limit_per_subject=config.mmlu_limit, subjects_sampled=config.mmlu_subjects,
            shots=config.mmlu_shots, target_mmlu=config.target_mmlu,
            below_threshold=mmlu_flag(scores.accuracy, config.target_mmlu))), rows

    def present(self, summary: EvaluationSummary) -> bool:
        return summary.mmlu is not None

    def headline(self, summary):
        return {Headline.MMLU: summary.mmlu_accuracy}

    def replicates(self, summary, rows, seed, resamples):
        return mmlu_replicates(rows, seed, resamples)

    def units(self, summary, rows):
        return sorted(row["id"] for row in rows)

    def table_rows(self, summary):
        mmlu = summary.mmlu
        limit, sampled = mmlu.limit_per_subject, mmlu.subjects_sampled
        note = f"{mmlu.questions} q" + (f", {limit}/subject" if limit else "") + (
            f", {sampled} subjects" if sampled else "")
        flag = " BELOW 75% OF TARGET" if mmlu.below_threshold else ""
        return [("MMLU", note, with_interval(mmlu.accuracy, summary, Headline.MMLU) + flag)]
