"""95 % intervals by bootstrap, paired across the models of a study.

The units resampled are the documents behind the 12 task numbers (resampled within each split
and task, so every number keeps its data), the member and non-member documents of the MIA, and
the MMLU questions. Each unit set is sorted by id and drawn from a generator seeded by the
study's seed and the unit set's name, so the b-th resample picks the same units for every model
scored on the same data: differences between models are paired, and their intervals tell
whether a difference is real. The statistics are the protocol's own, recomputed per resample.
"""

from __future__ import annotations

import hashlib

import numpy as np
from sklearn.metrics import roc_auc_score

from lume.metrics.aggregate import AGGREGATE_ORDER
from lume.metrics.mia import MIA_ATTACKS, membership_score, mia_score
from lume.results import Headline

RESAMPLES = 1000
CONFIDENCE = 0.95


def _draws(name: str, units: list[str], seed: int, resamples: int) -> np.ndarray:
    """Indices into `units` (sorted ids), one row per resample; the same for the same units."""
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    rng = np.random.default_rng([seed, key])
    return rng.integers(0, len(units), size=(resamples, len(units)))


def probe_replicates(items: list[dict], seed: int, resamples: int = RESAMPLES) -> dict[str, np.ndarray]:
    """The 12 task numbers and the task aggregate, per resample of documents."""
    replicates: dict[str, np.ndarray] = {}
    for split, task, _ in AGGREGATE_ORDER[::2]:
        stratum = [i for i in items if i["split"] == split and i["task"] == task]
        documents = sorted({i["doc_id"] for i in stratum})
        if not documents:
            continue
        draws = _draws(f"probes/{split}/{task}", documents, seed, resamples)
        position = {doc: n for n, doc in enumerate(documents)}
        for metric in ("regurgitation", "knowledge"):
            sums, counts = np.zeros(len(documents)), np.zeros(len(documents))
            for item in stratum:
                if item["metric"] == metric:
                    sums[position[item["doc_id"]]] += item["score"]
                    counts[position[item["doc_id"]]] += 1
            if counts.any():
                replicates[f"{split}/{task}/{metric}"] = sums[draws].sum(1) / np.maximum(counts[draws].sum(1), 1)
    if all("/".join(key) in replicates for key in AGGREGATE_ORDER):
        for split in ("forget", "retain"):  # the forget-versus-retain plot's coordinates
            numbers = [replicates["/".join(k)] for k in AGGREGATE_ORDER if k[0] == split]
            replicates[f"{split}/mean"] = np.mean(numbers, 0)  # Headline.FORGET_MEAN, RETAIN_MEAN
        values = np.stack([1 - replicates["/".join(k)] if k[0] == "forget" else replicates["/".join(k)]
                           for k in AGGREGATE_ORDER])
        # the harmonic mean, 0 when any number is 0 (as statistics.harmonic_mean)
        with np.errstate(divide="ignore"):
            replicates[Headline.TASK_AGGREGATE] = np.where((values <= 0).any(0), 0.0, len(values) / (1 / values).sum(0))
    return replicates


def mia_replicates(rows: list[dict], seed: int, resamples: int = RESAMPLES) -> dict[str, np.ndarray]:
    """Every attack's AUC (the loss attack's as `mia_auc`, the others as `mia_auc_<attack>`) and
    the MIA score, per resample of members and of non-members."""
    members = sorted((r for r in rows if r["member"]), key=lambda r: r["id"])
    others = sorted((r for r in rows if not r["member"]), key=lambda r: r["id"])
    if not members or not others:
        return {}
    member_draws = _draws("mia/members", [r["id"] for r in members], seed, resamples)
    other_draws = _draws("mia/non-members", [r["id"] for r in others], seed, resamples)
    labels = np.r_[np.ones(len(members)), np.zeros(len(others))]
    replicates = {}
    for attack in MIA_ATTACKS:
        if not all(attack in r for r in rows):  # rows from before the attack existed
            continue
        member_scores = np.array([membership_score(attack, r) for r in members])  # higher = more likely a member
        other_scores = np.array([membership_score(attack, r) for r in others])
        aucs = [roc_auc_score(labels, np.r_[member_scores[m], other_scores[o]])
                for m, o in zip(member_draws, other_draws)]
        replicates[Headline.attack_auc(attack)] = np.array(aucs)
    replicates[Headline.MIA_SCORE] = np.array([mia_score(a) for a in replicates[Headline.MIA_AUC]])
    return replicates


def mean_replicates(rows: list[dict], value: str, name: str, seed: int,
                    resamples: int = RESAMPLES) -> dict[str, np.ndarray]:
    """NAME: the mean of each row's VALUE, per resample of the rows (by their ids)."""
    if not rows:
        return {}
    ordered = sorted(rows, key=lambda r: r["id"])
    values = np.array([float(r[value]) for r in ordered])
    return {name: values[_draws(name, [r["id"] for r in ordered], seed, resamples)].mean(1)}


def mmlu_replicates(rows: list[dict], seed: int, resamples: int = RESAMPLES) -> dict[str, np.ndarray]:
    """MMLU accuracy (micro-average), per resample of questions."""
    return mean_replicates(rows, "correct", Headline.MMLU, seed, resamples)


def interval(replicates: np.ndarray, confidence: float = CONFIDENCE) -> list[float]:
    """The percentile interval holding `confidence` of the resampled values."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return [float(low), float(high)]


def paired_difference(first: list[float], second: list[float]) -> dict:
    """The interval of first − second over shared resamples, and whether it excludes 0."""
    low, high = interval(np.asarray(first) - np.asarray(second))
    return {"interval": [low, high], "significant": low > 0 or high < 0}


def units_fingerprint(units: list[str]) -> str:
    """Which units were resampled (each section's, in section order): only models with the same
    fingerprint can be compared pairwise."""
    digest = hashlib.sha256()
    for unit in units:
        digest.update(unit.encode() + b"\0")
    return digest.hexdigest()[:16]
