"""The probes: sentence completions (regurgitation, ROUGE-L) and questions (knowledge, exact
match) on the forget and retain documents; their 12 means and the task aggregate."""

from __future__ import annotations

from lume.inference import BackendOptions, open_backend
from lume.metrics import AGGREGATE_ORDER, task_aggregate, task_means
from lume.metrics.probes import score_records
from lume.metrics.uncertainty import probe_replicates
from lume.models import LoadedModel
from lume.progress import progress_bar
from lume.results import EvaluationSummary, Headline, summary_part
from lume.stages.evaluation.sections import Evaluation, Section, register_section, with_interval


@register_section
class Probes(Section):
    name, order, rows_file, dtype_part = "probes", 10, "items.jsonl", "generation"
    final_part = Headline.TASK_AGGREGATE
    runs_by_default = True

    def run(self, evaluation: Evaluation, loaded: LoadedModel) -> tuple[dict, list[dict]]:
        config = evaluation.config
        records = [r for d in evaluation.selection.chosen for r in d.records]
        key = {"data": evaluation.dataset.fingerprint, "source": config.source, "backend": config.backend,
               "max_new_tokens": config.max_new_tokens, "early_exit": config.early_exit}
        with evaluation.item_store(self, key) as store:
            todo = [r for r in records if r.id not in store]
            if todo:
                backend = open_backend(config.backend, loaded.model, loaded.tokenizer, loaded.path or loaded.name,
                                       BackendOptions(config.batch_size, config.seed, config.vllm_memory))

                def work(share, on_row):
                    score_records(backend, share, max_new_tokens=config.max_new_tokens,
                                  early_exit=config.early_exit, on_item=on_row)

                with progress_bar("generating", len(todo), "items", evaluation.progress) as advance:
                    evaluation.share_work(store, todo, work, advance)
            items = [store.results[r.id] for r in records]
        return self.summary(items), items

    @staticmethod
    def summary(items: list[dict]) -> dict:
        means = task_means(items)
        return summary_part(
            scores={"/".join(key): means.get(key) for key in AGGREGATE_ORDER},
            task_aggregate=task_aggregate(means) if all(k in means for k in AGGREGATE_ORDER) else None,
            early_stopped_items=sum(item["stop"] == "early" for item in items),
            per_task={f"{split}/{task}": {metric: means.get((split, task, metric))
                                          for metric in ("regurgitation", "knowledge")}
                      for split, task, _ in AGGREGATE_ORDER[::2]})

    def present(self, summary: EvaluationSummary) -> bool:
        return bool(summary.scores)

    def headline(self, summary):
        return {Headline.TASK_AGGREGATE: summary.task_aggregate}

    def replicates(self, summary, rows, seed, resamples):
        return probe_replicates(rows, seed, resamples)

    def units(self, summary, rows):
        return sorted({row["doc_id"] + row["split"] for row in rows})

    def table_rows(self, summary):
        return [("task aggregate", "", with_interval(summary.task_aggregate, summary, Headline.TASK_AGGREGATE))]
