"""What every attack shares: its settings (`AttackConfig`), the two models, the documents and
the scoring (`Attacker`), the recovered fraction, and the registry an attack joins (`Attack`)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from lume.config import MAX_BATCH, MAX_NEW_TOKENS_LIMIT, MAX_SEED, check_settings, decided_by, setting
from lume.data.mmlu import load_mmlu
from lume.data.paths import DATA_DIR_HELP
from lume.data.records import Document, Record
from lume.inference import BATCH_SIZE, MAX_NEW_TOKENS
from lume.metrics import task_means
from lume.metrics.mmlu import evaluate_mmlu, summarise_mmlu
from lume.metrics.probes import score_records, transformers_backend
from lume.outputs import FINISHED_MARKERS
from lume.registry import Registry
from lume.results import AttackResult
from lume.training import TrainingSettings
from lume.training.precision import chosen_mixed_precision

RESULT_NAME = FINISHED_MARKERS["attack"]


def _relearn_training() -> TrainingSettings:
    return TrainingSettings(learning_rate=1e-5, batch_size=4)


@dataclass
class AttackConfig:
    data_dir: str | None = setting(None, DATA_DIR_HELP)
    seed: int = setting(0, "Which forget documents are relearned (training.seed draws the batches)", at_least=0,
                        at_most=MAX_SEED)
    relearn_steps: int = setting(10, "Steps of each relearning attack", at_least=1)
    relearn: TrainingSettings = setting(help="The relearning attacks' training", factory=_relearn_training)
    public_max_tokens: int = setting(256, "relearn-public: each public document cut to this many tokens", at_least=1,
                                     at_most=MAX_NEW_TOKENS_LIMIT)
    mmlu: bool = setting(True, "The MMLU change of each attacked model")
    mmlu_limit: int | None = setting(1, "MMLU questions per subject (seeded); None = all", at_least=1)
    batch_size: int = setting(BATCH_SIZE, "Prompts decoded together", at_least=1, at_most=MAX_BATCH)
    max_new_tokens: int = setting(MAX_NEW_TOKENS, "Tokens generated at most per probe (the protocol's; lower only "
                                                  "for quick looks)", at_least=1, at_most=MAX_NEW_TOKENS_LIMIT)
    progress: bool = setting(True, "Progress bars", decides=False)

    def __post_init__(self):
        check_settings(self)


def step_key(config: AttackConfig, attacks: list[str]) -> dict:
    """What decides the attacks' results, beside the two models' fingerprints (a study's step
    record): the attacks, the deciding settings and the relearning's mixed precision here."""
    return decided_by(config, attacks=list(attacks),
                      mixed_precision=chosen_mixed_precision(config.relearn.mixed_precision, None))


def split_for_relearning(documents: list[Document], seed: int) -> tuple[list[Document], list[Document]]:
    """(relearned, measured): each task's forget documents shuffled and halved; no overlap."""
    relearned, measured = [], []
    for task in sorted({d.task for d in documents}):
        pool = sorted((d for d in documents if d.task == task), key=lambda d: d.doc_id)
        random.Random(f"{seed}:relearn:{task}").shuffle(pool)
        half = len(pool) // 2
        relearned += pool[:half]
        measured += pool[half:]
    return relearned, measured


def means(items: list[dict]) -> dict[str, float]:
    """Per split, task and metric ("forget/Task1/knowledge"), the mean of the scored items."""
    return {"/".join(key): value for key, value in task_means(items).items()}


def recovered_fraction(target: dict, unlearned: dict, attacked: dict) -> dict:
    """Per forget task/metric and overall (per metric): (attacked − unlearned) / (target − unlearned)."""
    result = {}
    for key, before in target.items():
        if not key.startswith("forget/") or key not in unlearned or key not in attacked:
            continue
        removed = before - unlearned[key]
        result[key] = (attacked[key] - unlearned[key]) / removed if abs(removed) > 1e-9 else None
    for metric in ("regurgitation", "knowledge"):
        keys = [k for k in result if k.endswith(metric)]
        removed = sum(target[k] - unlearned[k] for k in keys)
        recovered = sum(attacked[k] - unlearned[k] for k in keys)
        result[f"forget/all/{metric}"] = recovered / removed if keys and abs(removed) > 1e-9 else None
    return result


def _retain_change(unlearned: dict, attacked: dict) -> float | None:
    keys = [k for k in unlearned if k.startswith("retain/") and k in attacked]
    return sum(attacked[k] - unlearned[k] for k in keys) / len(keys) if keys else None


class Attacker:
    """The two models, the documents and the scoring every attack shares.

    The target and unlearned baselines are scored on exactly the documents the attacked model
    is scored on (the measured half, for relearning), so an attack that changes nothing
    recovers exactly 0.
    """

    def __init__(self, unlearned, target, selection, config: AttackConfig, data_dir: Path):
        self.unlearned, self.target, self.config, self.data_dir = unlearned, target, config, data_dir
        self.tokenizer = unlearned.tokenizer
        self.forget, self.retain = selection.split("forget"), selection.split("retain")
        self.relearned, self.measured = split_for_relearning(self.forget, config.seed)
        self.mmlu = load_mmlu(data_dir / "mmlu", config.mmlu_limit, config.seed) if config.mmlu else None
        self._baselines: dict[tuple, dict] = {}
        self.unlearned_mmlu = self.mmlu_of(unlearned.model)

    def score(self, model, documents: list[Document], prompts: list[str] | None = None,
              records: list[Record] | None = None, early_exit: bool = True) -> list[dict]:
        records = records if records is not None else [r for d in documents for r in d.records]
        return score_records(transformers_backend(model, self.tokenizer, self.config.batch_size), records,
                             prompts=prompts, max_new_tokens=self.config.max_new_tokens, early_exit=early_exit)

    def mmlu_of(self, model) -> float | None:
        return summarise_mmlu(evaluate_mmlu(model, self.tokenizer, self.mmlu)).accuracy if self.mmlu else None

    def baseline(self, documents: list[Document]) -> dict:
        """Target and unlearned scores on these documents (computed once per document set)."""
        key = tuple(d.doc_id for d in documents)
        if key not in self._baselines:
            self._baselines[key] = {"target": means(self.score(self.target.model, documents)),
                                    "unlearned": means(self.score(self.unlearned.model, documents))}
        return self._baselines[key]

    def report(self, attacked_model, documents: list[Document], extra: dict | None = None) -> AttackResult:
        """The attacked model scored on DOCUMENTS against the target and the unlearned model."""
        scores, base = means(self.score(attacked_model, documents)), self.baseline(documents)
        attacked_mmlu = self.mmlu_of(attacked_model)
        return AttackResult(
            recovered=recovered_fraction(base["target"], base["unlearned"], scores),
            retain_change=_retain_change(base["unlearned"], scores),
            mmlu_change=None if attacked_mmlu is None else attacked_mmlu - self.unlearned_mmlu,
            details={"scores": scores, "baseline": base, "mmlu": attacked_mmlu,
                     "measured_documents": [d.doc_id for d in documents if d.split == "forget"], **(extra or {})})


class Attack:
    """An attack (registered in ATTACKS, or a plug-in: docs/plugins.md): `run(attacker, out_dir)`
    attacks `attacker.unlearned` and returns its `AttackResult` (lume.results), as a rule
    `attacker.report(attacked model, documents)`; OUT_DIR/<name> is its own scratch folder. Each
    attack owns its run: the built-in ones use exactly this contract."""

    name: ClassVar[str]

    def run(self, attacker: Attacker, out_dir: Path) -> AttackResult:
        raise NotImplementedError


ATTACKS = Registry("attack", Attack, "lume.attacks")


