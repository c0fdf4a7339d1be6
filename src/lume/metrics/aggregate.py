"""The 12-number task aggregate, the final score and the MMLU threshold flag."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable

from lume.data.records import SPLITS, TASKS

# Forget first, then retain; per task regurgitation (sc) then knowledge (qa).
AGGREGATE_ORDER = [(split, task, kind) for split in SPLITS for task in TASKS
                   for kind in ("regurgitation", "knowledge")]
MMLU_THRESHOLD = 0.75


def means_by(rows: list[dict], key: Callable[[dict], object], value: Callable[[dict], float]) -> dict:
    """The mean of `value(row)` per `key(row)`, keys in sorted order."""
    groups: dict = defaultdict(list)
    for row in rows:
        groups[key(row)].append(float(value(row)))
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}


def task_means(items: list[dict]) -> dict[tuple[str, str, str], float]:
    """Mean score per (split, task, metric) over items with `split`, `task`, `metric`, `score`."""
    return means_by(items, lambda item: (item["split"], item["task"], item["metric"]), lambda item: item["score"])


def task_aggregate(means: dict[tuple[str, str, str], float]) -> float:
    """Harmonic mean of the 12 numbers, forget ones inverted (1 - v); any 0 makes it 0."""
    missing = [key for key in AGGREGATE_ORDER if key not in means]
    if missing:
        raise ValueError(f"no items for {', '.join('/'.join(k) for k in missing)}")
    values = [1 - means[key] if key[0] == "forget" else means[key] for key in AGGREGATE_ORDER]
    return statistics.harmonic_mean(values)


def final_score(*parts):
    """The official final score, the mean of its parts (task aggregate, MIA score, MMLU): of
    numbers, or of arrays of resampled values (their intervals), or of the parts a selection
    probe can measure."""
    return sum(parts) / len(parts)


def mmlu_flag(mmlu: float, target_mmlu: float | None) -> bool | None:
    """True when MMLU fell below 75 % of the target model's (None without a target score)."""
    if target_mmlu is None:
        return None
    return mmlu < MMLU_THRESHOLD * target_mmlu
