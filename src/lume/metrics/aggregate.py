"""The 12-number task aggregate, the final score and the MMLU threshold flag."""

from __future__ import annotations

import statistics
from collections import defaultdict

TASKS = ("Task1", "Task2", "Task3")
# Forget first, then retain; per task regurgitation (sc) then knowledge (qa).
AGGREGATE_ORDER = [(split, task, kind) for split in ("forget", "retain") for task in TASKS
                   for kind in ("regurgitation", "knowledge")]
MMLU_THRESHOLD = 0.75


def task_means(items: list[dict]) -> dict[tuple[str, str, str], float]:
    """Mean score per (split, task, metric) over items with `split`, `task`, `metric`, `score`."""
    scores: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for item in items:
        scores[(item["split"], item["task"], item["metric"])].append(item["score"])
    return {key: sum(values) / len(values) for key, values in scores.items()}


def task_aggregate(means: dict[tuple[str, str, str], float]) -> float:
    """Harmonic mean of the 12 numbers, forget ones inverted (1 - v); any 0 makes it 0."""
    missing = [key for key in AGGREGATE_ORDER if key not in means]
    if missing:
        raise ValueError(f"no items for {', '.join('/'.join(k) for k in missing)}")
    values = [1 - means[key] if key[0] == "forget" else means[key] for key in AGGREGATE_ORDER]
    return statistics.harmonic_mean(values)


def final_score(task_aggregate_value: float, mia_score_value: float, mmlu: float) -> float:
    return (task_aggregate_value + mia_score_value + mmlu) / 3


def mmlu_flag(mmlu: float, target_mmlu: float | None) -> bool | None:
    """True when MMLU fell below 75 % of the target model's (None without a target score)."""
    if target_mmlu is None:
        return None
    return mmlu < MMLU_THRESHOLD * target_mmlu
