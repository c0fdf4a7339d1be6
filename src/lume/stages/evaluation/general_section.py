"""General ability (beyond the official score): the mean token NLL of general text that no target
was trained on, the SemEval MIA files' non-member Wikipedia documents (final and validation, 184),
with its 95 % interval over documents.

Why beside MMLU: a small model answers MMLU at chance (0.25 with four choices), so the official
utility part cannot see a small model's damage; the loss on ordinary text moves as soon as
unlearning harms the language model, and, paired over the same documents, tells two models apart.
Lower is better; compare each model with its target."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from lume import data as lume_data
from lume.config import MAX_BATCH, identity, setting
from lume.inference.likelihood import document_logits
from lume.metrics.uncertainty import mean_replicates
from lume.models import LoadedModel
from lume.progress import progress_bar
from lume.results import EvaluationSummary, Headline
from lume.stages.evaluation.sections import Evaluation, Section, register_section, with_interval

log = logging.getLogger(__name__)
FILES = ("final", "validation")  # the SemEval MIA folds whose non-members are read


@dataclass
class GeneralSettings:
    max_tokens: int = setting(128, "Each document's first tokens scored (bounds the cost; documents are cut, "
                                   "never refused)", at_least=2)
    batch_size: int = setting(16, "Documents per forward pass", at_least=1, at_most=MAX_BATCH)


def general_documents(evaluation: Evaluation) -> list[dict]:
    """The non-member documents of both SemEval MIA folds, ids prefixed by their fold; none (said)
    where the data folder lacks the files."""
    folders = [lume_data.mia_folder(evaluation.dataset.data_dir, fold == "validation") for fold in FILES]
    if not all((folder / "nonmember.jsonl").is_file() for folder in folders):
        log.info(f"general-text NLL left out: {folders[0]} lacks the SemEval MIA non-member files")
        return []
    return [{"id": f"{fold}/{d.id}", "text": d.text} for fold in FILES
            for d in lume_data.load_mia(evaluation.dataset.data_dir, validation=fold == "validation") if not d.member]


def nll_rows(model, tokenizer, documents: list[dict], settings: GeneralSettings, on_row) -> None:
    """`on_row` with each document's mean next-token NLL over its first `max_tokens` tokens."""
    token_ids = [tokenizer(d["text"]).input_ids[:settings.max_tokens] for d in documents]

    def score(index: int, logits: torch.Tensor, ids: torch.Tensor, _hidden) -> None:
        nll = torch.nn.functional.cross_entropy(logits[:-1].float(), ids[1:].to(logits.device))
        on_row({"id": documents[index]["id"], "nll": nll.item(), "tokens": len(token_ids[index])})

    document_logits(model, token_ids, tokenizer.pad_token_id, settings.batch_size, score)


def general_nll(summary: EvaluationSummary) -> float | None:
    """The general-text NLL of an evaluation; None where it was not measured."""
    return summary.parts.get(General.name, {}).get("nll")


@register_section
class General(Section):
    name, order, rows_file, dtype_part, final_part = "general", 35, "general.jsonl", "mia", None
    Settings = GeneralSettings
    runs_by_default = True

    def run(self, evaluation: Evaluation, loaded: LoadedModel) -> tuple[dict, list[dict]]:
        documents, settings = general_documents(evaluation), evaluation.settings_of(self)
        if not documents:
            return {}, []
        with evaluation.item_store(self, {"files": FILES, **identity(settings)}) as store:
            todo = [d for d in documents if d["id"] not in store]
            with progress_bar("general text", len(todo), "docs", evaluation.progress) as advance:
                evaluation.share_work(store, todo, lambda share, on_row: nll_rows(
                    loaded.model, loaded.tokenizer, share, settings, on_row), advance, block=settings.batch_size)
            rows = [store.results[d["id"]] for d in documents]
        nll = sum(r["nll"] for r in rows) / len(rows) if rows else None
        return {self.name: {"nll": nll, "documents": len(rows), "tokens": sum(r["tokens"] for r in rows)}}, rows

    def headline(self, summary: EvaluationSummary) -> dict[str, float | None]:
        return {Headline.GENERAL_NLL: general_nll(summary)}

    def replicates(self, summary, rows, seed, resamples):
        return mean_replicates(rows, "nll", Headline.GENERAL_NLL, seed, resamples)

    def units(self, summary, rows):
        return sorted(f"general/{row['id']}" for row in rows)

    def table_rows(self, summary):
        part = summary.parts[self.name]
        return [("general-text NLL (lower: better)", f"{part['documents']} Wikipedia docs never trained on",
                 with_interval(part["nll"], summary, Headline.GENERAL_NLL))]
