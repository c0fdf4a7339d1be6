"""Membership inference: the loss attack's AUC and the MIA score (1 - 2|AUC - 0.5|), with
zlib, Min-K% and Min-K%++ beside it.

For a target lume built (it has a `lume_target.json`), members are the forget documents it
was trained on and non-members the documents held out of its training: the official score.
The SemEval MIA files are scored beside them, and are the official set for a model without a
manifest (the released OLMo targets were trained on them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from lume import data as lume_data
from lume.config import MAX_BATCH, identity, setting
from lume.errors import LumeError
from lume.metrics import MIA_ATTACKS, auc, mia_score
from lume.data.paths import cache_dir
from lume.files import ItemStore
from lume.metrics.mia import membership_attack_scores, membership_score, reference_score
from lume.models import load_model, model_fingerprint, refuse_beyond_context
from lume.models.loading import BUILTIN_GGUF
from lume.metrics.uncertainty import mia_replicates
from lume.models import LoadedModel
from lume.progress import progress_bar
from lume.results import EvaluationSummary, Headline, MembershipResult, summary_part
from lume.stages.evaluation.sections import Evaluation, Section, number, register_section, with_interval

log = logging.getLogger(__name__)
SEMEVAL_MIA_NOTE = ("the SemEval MIA files measure membership only for the released OLMo targets, which were "
                    "trained on them; this target was not")


def _auc_report(rows: list[dict], **labels) -> MembershipResult:
    members = [r["member"] for r in rows]
    aucs = {attack: auc(members, [membership_score(attack, r) for r in rows]) for attack in MIA_ATTACKS
            if all(attack in r for r in rows)}  # Reference needs the target's base model: a lume target's
    return MembershipResult(members=sum(members), non_members=len(rows) - sum(members), aucs=aucs,
                            mia_score=mia_score(aucs["loss"]), **labels)


def mia_set_label(mia: MembershipResult | None) -> str:
    name = (mia.set if mia else None) or "SemEval"  # summaries from before the set was recorded: SemEval files
    return {"held-out": "trained forget docs vs held-out docs"}.get(name, f"{name} files")


def official_rows(summary: EvaluationSummary, rows: list[dict]) -> list[dict]:
    """The rows the official MIA score used."""
    used = "held-out" if summary.mia and summary.mia.set == "held-out" else "semeval"
    return [r for r in rows if r["set"] == used]


def _documents(evaluation: Evaluation) -> list[dict]:
    """The SemEval MIA files' documents (unless `mia_set` is none) and, for a lume target, its
    trained forget and held-out ones."""
    config, selection = evaluation.config, evaluation.selection
    official = [] if config.mia_set == "none" else lume_data.load_mia(evaluation.dataset.data_dir,
                                                                      validation=config.mia_set == "validation")
    documents = [{"id": f"semeval-{config.mia_set}/{'m' if d.member else 'n'}/{d.id}", "set": "semeval",
                  "member": d.member, "task": d.task, "text": d.text} for d in official]
    if not selection.held_out:  # not a lume target: no documents of its own to test
        if not documents:
            raise LumeError("mia_set 'none' leaves no membership documents for a model without held-out "
                            "documents (no lume_target.json): choose final or validation")
        return documents
    labelled = [(d, True) for d in selection.split("forget")] + [(d, False) for d in selection.held_out]
    return documents + [{"id": f"lume/{d.split}/{d.doc_id}", "set": "held-out", "member": member, "task": d.task,
                         "text": d.text} for d, member in labelled]


def reference_losses(evaluation: Evaluation, documents: list[dict], settings: MembershipSettings) -> dict[str, float]:
    """Per document id, its loss under the target's base model (the Reference attack's
    calibration), cached by the base's fingerprint and the data: computed once for every model
    unlearned from targets of that base. Empty without a known base (a released target)."""
    base = evaluation.base_model
    if base is None or not evaluation.config.reference_attack:
        return {}
    if base not in BUILTIN_GGUF and not Path(base).exists():  # a hub id: no download in the middle of an evaluation
        log.warning(f"the Reference attack is left out: the target's base model {base} is not on this machine")
        return {}
    fingerprint, dtype = model_fingerprint(base), evaluation.dtypes["mia"]
    key = {"base": fingerprint, "data": evaluation.dataset.fingerprint, "dtype": dtype, **identity(settings)}
    batch_size = settings.batch_size
    with ItemStore(cache_dir() / "reference" / f"{fingerprint}.jsonl", key, writable=evaluation.rank == 0) as store:
        todo = [d for d in documents if d["id"] not in store]
        if todo:
            loaded = load_model(base, dtype=dtype, device=evaluation.device)
            membership_attack_scores(loaded.model, loaded.tokenizer, [d["text"] for d in todo], batch_size=batch_size,
                                     on_done=lambda i, scores: store.add({"id": todo[i]["id"], "loss": scores["loss"]}))
            del loaded
        return {d["id"]: store.results[d["id"]]["loss"] for d in documents}


@dataclass
class MembershipSettings:
    batch_size: int = setting(4, "Documents per forward pass (padding changes a loss only by float round-off)",
                              at_least=1, at_most=MAX_BATCH)


@register_section
class Membership(Section):
    name, order, rows_file, dtype_part, final_part = "mia", 20, "mia.jsonl", "mia", Headline.MIA_SCORE
    Settings = MembershipSettings
    runs_by_default = True

    def run(self, evaluation: Evaluation, loaded: LoadedModel) -> tuple[dict, list[dict]]:
        documents, settings = _documents(evaluation), evaluation.settings_of(self)
        key = {"data": evaluation.dataset.fingerprint, "mia_set": evaluation.config.mia_set, "attacks": MIA_ATTACKS,
               **identity(settings)}
        batch_size = settings.batch_size

        token_ids: dict[str, list[int]] = {}  # each document tokenised once: for the order and the forwards

        def work(share, on_row):
            membership_attack_scores(loaded.model, loaded.tokenizer, [d["text"] for d in share], batch_size=batch_size,
                                     token_ids=[token_ids[d["id"]] for d in share],
                                     on_done=lambda i, scores: on_row({**share[i], **scores}))

        with evaluation.item_store(self, key) as store:
            todo = [d for d in documents if d["id"] not in store]
            token_ids.update((d["id"], loaded.tokenizer(d["text"]).input_ids) for d in todo)
            refuse_beyond_context(loaded.model, ((d["id"], len(token_ids[d["id"]])) for d in todo),
                                  "membership document")
            # in the batches one process would form (longest first, batch_size at a time)
            todo = sorted(todo, key=lambda d: -len(token_ids[d["id"]]))
            with progress_bar("membership inference", len(todo), "docs", evaluation.progress) as advance:
                evaluation.share_work(store, todo, work, advance, block=batch_size)
            rows = [store.results[d["id"]] for d in documents]
        reference = reference_losses(evaluation, documents, settings)
        rows = [{**r, "reference": reference_score(r["loss"], reference[r["id"]])} if r["id"] in reference else r
                for r in rows]
        semeval_rows = [r for r in rows if r["set"] == "semeval"]
        semeval_set = f"semeval-{evaluation.config.mia_set}"
        held_out = [r for r in rows if r["set"] == "held-out"]
        if not held_out:  # a released target: the SemEval files are its members and non-members
            return summary_part(mia=_auc_report(semeval_rows, set=semeval_set)), rows
        tasks = sorted({r["task"] for r in held_out})
        per_task = {task: _auc_report([r for r in held_out if r["task"] == task]) for task in tasks}
        official = _auc_report(held_out, set="held-out", per_task=per_task)
        semeval = _auc_report(semeval_rows, set=semeval_set, note=SEMEVAL_MIA_NOTE) if semeval_rows else None
        return summary_part(mia=official, mia_semeval=semeval), rows

    def present(self, summary: EvaluationSummary) -> bool:
        return summary.mia is not None

    def headline(self, summary):
        return {Headline.MIA_SCORE: summary.mia_score}

    def replicates(self, summary, rows, seed, resamples):
        return mia_replicates(official_rows(summary, rows), seed, resamples)

    def units(self, summary, rows):
        return sorted(row["id"] for row in official_rows(summary, rows))

    def table_rows(self, summary):
        mia = summary.mia
        rows = [("MIA score", f"AUC {mia.auc_loss:.3f}, {mia_set_label(mia)}",
                 with_interval(mia.mia_score, summary, Headline.MIA_SCORE))]
        if summary.mia_semeval:
            semeval = summary.mia_semeval
            rows.append(("MIA on SemEval files (not for this target)", f"AUC {semeval.auc_loss:.3f}",
                         number(semeval.mia_score)))
        return rows

    def saved_rows(self, rows):
        return [{k: v for k, v in r.items() if k != "text"} for r in rows]
