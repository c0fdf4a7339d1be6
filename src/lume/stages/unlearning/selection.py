"""Model selection during unlearning: cheap probes every N steps, and the step chosen on them.

The probes score the model as it trains on selection data, kept apart from the final numbers
wherever the protocol allows (the report states the split):

- forget and retain regurgitation and knowledge on a seeded slice of documents, stratified by
  task. The forget slice is part of the forget set by LUME's design (forgetting those documents
  is the goal, and the final forget score is over all of them); the retain slice is part of the
  retain set the final retain score covers (the protocol scores every retain document);
- the loss-attack MIA AUC of the forget slice against a seeded subset of the held-out
  non-members (a target lume built has them; the final MIA uses every held-out document);
- MMLU accuracy on the dev split, each question 4-shot from its subject's other dev questions:
  never the test questions of the final score.

The selection score is the protocol's final-score formula on these numbers; a step whose MMLU
(dev) falls below 75 % of the starting model's is never chosen (`select: best`).

`select: loss` keeps instead the step of lowest validation loss, the method's own loss on a
seeded sample of the rows it trains on (SHA256's checkpoint choice, SemEval-2025 Task 4: every
4 steps, 500 rows per task drawn from its training data).
"""

from __future__ import annotations

import dataclasses
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from lume.config import MAX_SEED, check_settings, setting
from lume.data.mmlu import Question, load_mmlu
from lume.data.records import Document, Record, build_documents
from lume.data.selection import select_documents
from lume.errors import LumeError
from lume.metrics import AGGREGATE_ORDER, auc, final_score, mia_score, mmlu_flag, task_aggregate, task_means
from lume.metrics.mia import membership_attack_scores, membership_score
from lume.metrics.mmlu import evaluate_mmlu
from lume.files import ItemStore, write_json_atomic
from lume.metrics.probes import score_records, transformers_backend
from lume.training import without_autocast
from lume.results import ProbeRow

SELECTIONS = ("last", "best", "loss")


@dataclass
class ProbeSettings:
    docs_per_task: int = setting(1, "Forget and retain documents per task in the probe slice", at_least=0)
    non_members: int = setting(8, "Held-out documents for the MIA probe", at_least=0)
    mmlu_questions: int = setting(20, "MMLU dev questions, drawn across subjects", at_least=0)
    seed: int = setting(0, "Seed of the probe slice", at_least=0, at_most=MAX_SEED)
    validation_rows: int = setting(0, "Rows per task drawn (seeded) from the forget and retain sets together, on "
                                      "which select: loss measures the method's loss (SHA256: 500)", at_least=0)

    def __post_init__(self):
        check_settings(self)


@dataclass
class ProbeSet:
    records: list[Record]  # the forget and retain slice's sc and QA rows
    members: list[str]  # the forget slice's document texts
    non_members: list[str]
    mmlu: dict[str, tuple[list[Question], list[Question]]]  # subject -> (shots, dev questions)

    def describe(self) -> dict:
        """What the probes use, for the report's statement of the selection split."""
        return {"forget_documents": len({r.doc_id for r in self.records if r.split == "forget"}),
                "retain_documents": len({r.doc_id for r in self.records if r.split == "retain"}),
                "mia_members": len(self.members), "mia_non_members": len(self.non_members),
                "mmlu_dev_questions": sum(len(q) for _, q in self.mmlu.values())}


def _dev_questions(mmlu_dir: Path, count: int, seed: int) -> dict[str, tuple[list[Question], list[Question]]]:
    """`count` seeded dev questions, each with its subject's other dev questions as shots."""
    subjects = load_mmlu(mmlu_dir, limit=0)
    dev = [question for shots, _ in subjects.values() for question in shots]
    chosen = sorted(random.Random(f"{seed}:mmlu-dev").sample(range(len(dev)), min(count, len(dev))))
    picked: dict[str, tuple[list[Question], list[Question]]] = {}
    for question in (dev[i] for i in chosen):
        shots = [q for q in subjects[question.subject][0] if q.id != question.id]
        picked.setdefault(question.subject, (shots, []))[1].append(question)
    return picked


def probe_set(forget: list[Record], retain: list[Record], held_out: list[Document], mmlu_dir: Path | None,
              settings: ProbeSettings) -> ProbeSet:
    """The seeded selection data of a run (the same for every step and every resume)."""
    chosen = select_documents(build_documents(forget + retain), settings.docs_per_task, 0, settings.seed).chosen
    non_members = random.Random(f"{settings.seed}:non-members").sample(
        sorted(held_out, key=lambda d: d.doc_id), min(settings.non_members, len(held_out)))
    return ProbeSet([r for d in chosen for r in d.records], [d.text for d in chosen if d.split == "forget"],
                    [d.text for d in non_members],
                    _dev_questions(mmlu_dir, settings.mmlu_questions, settings.seed) if mmlu_dir else {})


def validation_indices(forget: list[Record], retain: list[Record], settings: ProbeSettings
                       ) -> tuple[list[int], list[int]]:
    """The forget and retain rows (indices) `select: loss` validates on: `validation_rows` per
    task, drawn from both sets together, as SHA256 drew its validation rows from its training data."""
    pool = [("forget", i, r) for i, r in enumerate(forget)] + [("retain", i, r) for i, r in enumerate(retain)]
    drawn = []
    for task in sorted({r.task for r in forget + retain}):
        rows = sorted((p for p in pool if p[2].task == task), key=lambda p: (p[0], p[2].id))
        drawn += random.Random(f"{settings.seed}:validation:{task}").sample(rows, min(settings.validation_rows,
                                                                                      len(rows)))
    chosen = {split: sorted(i for side, i, _ in drawn if side == split) for split in ("forget", "retain")}
    if not chosen["forget"] or not chosen["retain"]:
        raise LumeError(f"select loss: the {settings.validation_rows} validation rows per task hold no "
                        f"{'forget' if not chosen['forget'] else 'retain'} row; raise probes.validation_rows")
    return chosen["forget"], chosen["retain"]


def probe(model, tokenizer, probes: ProbeSet, step: int) -> ProbeRow:
    """The probe numbers of the model as it is: the 12 task means, MIA AUC, MMLU (dev)."""
    means = task_means(score_records(transformers_backend(model, tokenizer), probes.records))
    def split_mean(split: str) -> float | None:
        values = [v for k, v in means.items() if k[0] == split]
        return statistics.fmean(values) if values else None

    complete = all(key in means for key in AGGREGATE_ORDER)  # sets that lack a task have no aggregate
    mia_auc = mmlu_dev = member_losses = None
    if probes.non_members and probes.members:
        scores = membership_attack_scores(model, tokenizer, probes.members + probes.non_members)
        mia_auc = auc([True] * len(probes.members) + [False] * len(probes.non_members),
                      [membership_score("loss", r) for r in scores])
        member_losses = [r["loss"] for r in scores[:len(probes.members)]]
    if probes.mmlu:
        answers = evaluate_mmlu(model, tokenizer, probes.mmlu, shots=4)
        mmlu_dev = sum(a["correct"] for a in answers) / len(answers)
    return ProbeRow(id=f"step-{step:08d}", step=step, scores={"/".join(key): value for key, value in means.items()},
                    forget_mean=split_mean("forget"), retain_mean=split_mean("retain"),
                    task_aggregate=task_aggregate(means) if complete else None, mia_auc=mia_auc,
                    member_losses=member_losses, mmlu_dev=mmlu_dev)


def selection_score(row: ProbeRow) -> float:
    """The final-score formula, the mean of task aggregate, MIA score and MMLU, on the probe
    numbers (a part the run cannot measure, such as MIA without held-out documents, left out)."""
    parts = [row.task_aggregate] if row.task_aggregate is not None else []
    if row.mia_auc is not None:
        parts.append(mia_score(row.mia_auc))
    if row.mmlu_dev is not None:
        parts.append(row.mmlu_dev)
    return final_score(*parts) if parts else 0.0


def eligible(row: ProbeRow, start: ProbeRow) -> bool:
    """Not below 75 % of the starting model's MMLU (dev): such a step is never chosen."""
    return not mmlu_flag(row.mmlu_dev, start.mmlu_dev) if row.mmlu_dev is not None else True


def chosen_step(rows: list[ProbeRow], select: str) -> dict:
    """The step to keep: the last; the best-scoring eligible one after step 0 (`best`; the last
    when none is eligible, said in `rule_met`); or the eligible one of lowest validation loss
    (`loss`; the earliest of equals, as a trainer keeps its first best checkpoint)."""
    start, trained = rows[0], [r for r in rows if r.step > 0]
    last = max(trained, key=lambda r: r.step)
    candidates = [r for r in trained if eligible(r, start)]
    if select == "last" or not candidates:
        return {"step": last.step, "select": select, "rule_met": eligible(last, start)}
    if select == "loss":
        best = min(candidates, key=lambda r: (r.validation_loss, r.step))
    else:
        best = max(candidates, key=lambda r: (r.selection_score, r.step))
    return {"step": best.step, "select": select, "rule_met": True}


PROBES_NAME = "probes.jsonl"
BEST_NAME = "selection"


class Trajectory:
    """The probe rows of a run by step (OUT/probes.jsonl, so a resumed run keeps them) and, when
    selecting the best step, that step's weights (OUT/selection/weights.pt), replaced on each
    improvement. Every process probes (sharded forwards need them all); the main one writes."""

    def __init__(self, out_dir: Path, key: dict, probes: ProbeSet, select: str, accelerator,
                 start_cache: Path | None = None, validation: Callable[[object], float] | None = None):
        self.probes, self.select, self.accelerator = probes, select, accelerator
        self.validation = validation  # select loss: the method's loss on the validation rows, of a model
        self.start_cache = start_cache  # the starting model's probe row, shared by runs from the same model
        self.weights_file = out_dir / BEST_NAME / "weights.pt"
        self.store = ItemStore(out_dir / PROBES_NAME, key, writable=accelerator.is_main_process)

    def rows(self) -> list[ProbeRow]:
        return sorted((ProbeRow.from_json(row, source=self.store.path) for row in self.store.results.values()),
                      key=lambda r: r.step)

    def measure(self, model, tokenizer, step: int) -> ProbeRow:
        """The probe row of `step` (measured once; a resumed run reads it back)."""
        row_id = f"step-{step:08d}"
        if row_id in self.store:
            return ProbeRow.from_json(self.store.results[row_id], source=self.store.path)
        if step == 0 and self.start_cache and self.start_cache.is_file():
            row = ProbeRow.from_json({**json.loads(self.start_cache.read_text()), "seconds": 0.0, "cached": True},
                                     source=self.start_cache)
        else:
            started = time.time()
            with torch.no_grad(), without_autocast(model):
                model.eval()
                row = probe(model, tokenizer, self.probes, step)
                if self.validation and step > 0:  # the starting model is never chosen (nor cached with it)
                    row = dataclasses.replace(row, validation_loss=self.validation(model))
                model.train()
            row = dataclasses.replace(row, seconds=time.time() - started)
            if step == 0 and self.start_cache and self.accelerator.is_main_process:
                write_json_atomic(self.start_cache, row.to_json())
        row = dataclasses.replace(row, selection_score=selection_score(row))
        if self.select != "last" and step > 0 and self._improves(row):
            self._keep_weights(model)
        self.store.add(row.to_json())
        return row

    def _improves(self, row: ProbeRow) -> bool:
        """`row` is what `chosen_step` would choose now, so the kept weights are always its choice."""
        choice = chosen_step([*self.rows(), row], self.select)
        return choice["rule_met"] and choice["step"] == row.step

    def _keep_weights(self, model) -> None:
        if self.accelerator.is_main_process:
            self.weights_file.parent.mkdir(parents=True, exist_ok=True)
            partial = self.weights_file.with_suffix(".partial")
            torch.save(model.state_dict(), partial)
            partial.replace(self.weights_file)

    def restore_chosen(self, model, chosen: dict) -> None:
        """Put the chosen step's weights back into the model (main process: it alone saves)."""
        last = self.rows()[-1].step
        if chosen["step"] != last and self.accelerator.is_main_process:
            model.load_state_dict(torch.load(self.weights_file, weights_only=True))
