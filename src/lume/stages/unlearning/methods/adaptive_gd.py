"""Gradient difference whose retain weight rises when the retain loss does (SHA256, SemEval-2025
Task 4, "Selective Amnesia: Constrained Unlearning for Large Language Models via Knowledge
Isolation", Agrawal and Huang, arXiv 2504.12996):

    L = −NLL_θ(F) + m · NLL_θ(R)
    m = m₀ during the first epoch, whose retain losses give their mean ℓ̄; afterwards
    m = clip(round(0.3 · 6^Δ + 0.8, 1), m₀, m_max)  with Δ = NLL_θ(R) − ℓ̄  when Δ > 0, else m₀

(m₀ = 1.2, m_max = 2.3: the authors'). Pooled tokens in each batch, as gd. ℓ̄ is kept in every
checkpoint, so a resumed run goes on with the same one. With `baseline: per-row`, ℓ̄ is what the
authors' unlearn.py computes: the first epoch's batch means summed and divided by the number of
retain rows (not batches), a fraction 1/(retain rows a batch) of the mean, so m rises sooner.
"""

from __future__ import annotations

from dataclasses import dataclass

from lume.config import check_settings, setting
from lume.stages.unlearning.methods.base import Method, nll, register


@dataclass
class AdaptiveGDSettings:
    base_weight: float = setting(1.2, "m₀, the retain weight while the retain loss is at its baseline", at_least=0)
    max_weight: float = setting(2.3, "m_max, the retain weight's ceiling", at_least=0)
    baseline: str = setting("mean", "ℓ̄: mean, the first epoch's mean retain loss; per-row, their sum over the "
                                    "number of retain rows (the authors' code)", choices=("mean", "per-row"))

    def __post_init__(self):
        check_settings(self)


def retain_weight(retain_loss: float, baseline: float, base: float, ceiling: float) -> float:
    """m for a retain loss above the first epoch's mean `baseline` (m₀ at or below it)."""
    excess = retain_loss - baseline
    if excess <= 0:
        return base
    return min(max(round(0.3 * 6 ** excess + 0.8, 1), base), ceiling)


@register
class AdaptiveGradientDifference(Method):
    name = "adaptive-gd"
    Settings = AdaptiveGDSettings

    def __init__(self, settings=None):
        super().__init__(settings)
        self.first_epoch = {"total": 0.0, "count": 0}

    def loss(self, context, forget, retain):
        forget_nll, retain_nll = nll(context.model, forget), nll(context.model, retain)
        if context.step < context.steps_per_epoch:
            self.first_epoch["total"] += retain_nll.item()
            self.first_epoch["count"] += retain["input_ids"].shape[0] if self.settings.baseline == "per-row" else 1
            weight = self.settings.base_weight
        else:
            baseline = self.first_epoch["total"] / max(self.first_epoch["count"], 1)
            weight = retain_weight(retain_nll.item(), baseline, self.settings.base_weight, self.settings.max_weight)
        loss = -forget_nll + weight * retain_nll
        return loss, {"forget_nll": forget_nll.item(), "retain_nll": retain_nll.item(), "retain_weight": weight}

    def state_dict(self) -> dict:
        return dict(self.first_epoch)

    def load_state_dict(self, state: dict) -> None:
        self.first_epoch = {"total": state.get("total", 0.0), "count": state.get("count", 0)}
