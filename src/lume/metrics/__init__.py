"""The LUME scores, exactly as ../shared/docs/protocol.md defines them, and extras beside them.

Each module scores one thing: `text` (ROUGE-L recall, exact match), `probes` (generate and
score the sc and QA probes), `mia` (membership attacks, AUC, the MIA score), `mmlu`
(k-shot accuracy), `aggregate` (the task aggregate, the final score) and `uncertainty`
(bootstrap intervals). How each enters an evaluation is `lume.stages.evaluation`'s sections.
"""

from lume.metrics.aggregate import AGGREGATE_ORDER, final_score, means_by, mmlu_flag, task_aggregate, task_means
from lume.metrics.mia import MIA_ATTACKS, attack_scores, auc, mia_score
from lume.metrics.text import can_still_match, exact_match, rouge_l_recall

__all__ = [
    "AGGREGATE_ORDER", "MIA_ATTACKS", "attack_scores", "auc", "can_still_match", "exact_match", "final_score",
    "means_by", "mia_score", "mmlu_flag", "rouge_l_recall", "task_aggregate", "task_means",
]
