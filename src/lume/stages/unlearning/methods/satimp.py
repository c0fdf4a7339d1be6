"""SatImp (Yang et al., 2025, "Exploring Criteria of Loss Reweighting to Enhance LLM
Unlearning", ICML): weighted gradient ascent whose token weight combines saturation (p^β₁, as
WGA) with importance ((1 − p)^β₂), both held constant:

    L = γ · mean_{t ∈ F} sg(p_θ(y_t)^β₁ · (1 − p_θ(y_t))^β₂) · log p_θ(y_t)  +  α · NLL_θ(R)

averaged over every answer token of the forget batch together; defaults are the authors'.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lume.config import check_settings, setting
from lume.stages.unlearning.methods.base import register
from lume.stages.unlearning.methods.wga import WGA


@dataclass
class SatImpSettings:
    beta1: float = setting(5.0, "Saturation exponent", at_least=0)
    beta2: float = setting(1.0, "Importance exponent", at_least=0)
    gamma: float = setting(0.1, "Weight of the forget term", at_least=0)
    alpha: float = setting(1.0, "Weight of the retain NLL", at_least=0)

    def __post_init__(self):
        check_settings(self)


@register
class SatImp(WGA):
    name = "satimp"
    Settings = SatImpSettings

    def token_weights(self, probability: torch.Tensor) -> torch.Tensor:
        return probability ** self.settings.beta1 * (1 - probability) ** self.settings.beta2
