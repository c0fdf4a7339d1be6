"""The LUME scores, exactly as ../shared/docs/protocol.md defines them, and extras beside them."""

from lume.metrics.aggregate import (AGGREGATE_ORDER, final_score, mmlu_flag, task_aggregate,
                                    task_means)
from lume.metrics.mia import ATTACKS, attack_scores, auc, mia_score
from lume.metrics.text import can_still_match, exact_match, rouge_l_recall

__all__ = [
    "AGGREGATE_ORDER", "ATTACKS", "attack_scores", "auc", "can_still_match", "exact_match",
    "final_score", "mia_score", "mmlu_flag", "rouge_l_recall", "task_aggregate", "task_means",
]
