"""SimNPO (Fan et al., 2024): NPO without a reference model, length-normalised:

    L = (2/β) · mean_F log(1 + exp((β/|y|) · log π_θ(y|x) + γ))  + α · NLL_θ(R)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from lume.config import check_settings, setting
from lume.stages.unlearning.methods.base import Method, nll, register, sequence_log_likelihood


@dataclass
class SimNPOSettings:
    beta: float = setting(2.5, "β, the inverse temperature (the loss divides by it)", above=0)
    gamma: float = setting(0.0, "γ, the reward margin", at_least=0)
    alpha: float = setting(1.0, "Weight of the retain NLL", at_least=0)

    def __post_init__(self):
        check_settings(self)


@register
class SimNPO(Method):
    name = "simnpo"
    Settings = SimNPOSettings

    def loss(self, context, forget, retain):
        log_likelihood, lengths = sequence_log_likelihood(context.model, forget)
        beta, gamma = self.settings.beta, self.settings.gamma
        forget_term = 2 / beta * F.softplus(beta * log_likelihood / lengths.clamp(min=1) + gamma).mean()
        retain_nll = nll(context.model, retain)
        return forget_term + self.settings.alpha * retain_nll, {"simnpo": forget_term.item(),
                                                                "retain_nll": retain_nll.item()}
