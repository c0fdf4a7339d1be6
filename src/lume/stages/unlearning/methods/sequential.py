"""Sequential chunked gradient difference (the best 7B system of SemEval-2025 Task 4):
the forget set is split into chunks unlearned one after another, each step mixing
the current chunk with retain examples:

    L = −NLL_θ(F_k) + α · NLL_θ(R),   k = ⌊step · K / steps⌋
"""

from __future__ import annotations

from dataclasses import dataclass

from lume.config import check_settings, setting
from lume.stages.unlearning.methods.base import Method, nll, register


@dataclass
class SequentialSettings:
    chunks: int = setting(5, "K, the forget set's chunks, unlearned in turn", at_least=1)
    alpha: float = setting(1.0, "Weight of the retain NLL", at_least=0)

    def __post_init__(self):
        check_settings(self)


@register
class SequentialGradientDifference(Method):
    name = "sequential-gd"
    Settings = SequentialSettings

    def forget_pool(self, step: int, total_steps: int, size: int) -> range:
        chunks = max(1, min(self.settings.chunks, size))
        chunk = min(step * chunks // max(total_steps, 1), chunks - 1)
        return range(chunk * size // chunks, (chunk + 1) * size // chunks)

    def loss(self, context, forget, retain):
        forget_nll, retain_nll = nll(context.model, forget), nll(context.model, retain)
        return -forget_nll + self.settings.alpha * retain_nll, {"forget_nll": forget_nll.item(),
                                                                "retain_nll": retain_nll.item()}
