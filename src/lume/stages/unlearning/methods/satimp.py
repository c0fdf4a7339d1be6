"""SatImp (Yang et al., 2025, "Exploring Criteria of Loss Reweighting to Enhance LLM
Unlearning", ICML): weighted gradient ascent whose token weight combines saturation (p^β₁, as
WGA) with importance ((1 − p)^β₂), both held constant:

    L = γ · mean_{t ∈ F} sg(p_θ(y_t)^β₁ · (1 − p_θ(y_t))^β₂) · log p_θ(y_t)  +  α · NLL_θ(R)

averaged over every answer token of the forget batch together; defaults are the authors'.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lume.stages.unlearning.methods.base import register
from lume.stages.unlearning.methods.wga import WGA


@dataclass
class SatImpSettings:
    beta1: float = 5.0  # saturation exponent
    beta2: float = 1.0  # importance exponent
    gamma: float = 0.1  # weight of the forget term
    alpha: float = 1.0  # weight of the retain NLL


@register
class SatImp(WGA):
    name = "satimp"
    Settings = SatImpSettings

    def token_weights(self, probability: torch.Tensor) -> torch.Tensor:
        return probability ** self.settings.beta1 * (1 - probability) ** self.settings.beta2
