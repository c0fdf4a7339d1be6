"""UNDIAL (Dong et al., 2025, "UNDIAL: Self-Distillation with Adjusted Logits for Robust
Unlearning in Large Language Models", NAACL): distil the model towards the starting model's own
next-token distribution with the answer token's logit lowered by β:

    q_t = softmax(z_ref,t − β · onehot(y_t)),   L = γ · mean_{t ∈ F} CE(q_t, p_θ,t)  +  α · NLL_θ(R)

The mean runs over the answer tokens of the forget batch together. The target never moves (the
starting model is frozen), so training cannot run away as gradient ascent does. The authors use
no retain term (α = 0); then none is computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lume.config import check_settings, setting
from lume.stages.unlearning.methods.base import Method, answers, nll, register, token_mean


@dataclass
class UndialSettings:
    beta: float = setting(10.0, "How far the answer token's logit is lowered", at_least=0)
    gamma: float = setting(1.0, "Weight of the distillation term", at_least=0)
    alpha: float = setting(0.0, "Weight of the retain NLL", at_least=0)

    def __post_init__(self):
        check_settings(self)


def adjusted_targets(reference_logits: torch.Tensor, targets: torch.Tensor, beta: float) -> torch.Tensor:
    """softmax(z_ref − β · onehot(y)) at each position."""
    lowered = reference_logits.float().scatter_add(
        -1, targets.clamp(min=0).unsqueeze(-1), torch.full_like(targets, -beta, dtype=torch.float).unsqueeze(-1))
    return torch.softmax(lowered, -1)


@register
class Undial(Method):
    name = "undial"
    Settings = UndialSettings
    needs_reference_model = True

    @property
    def policy_batches(self):
        return ("forget", "retain") if self.settings.alpha else ("forget",)

    def loss(self, context, forget, retain):
        found = answers(context.model, forget)
        with context.starting_model() as reference:
            wanted = adjusted_targets(answers(reference, forget).logits, found.targets, self.settings.beta)
        distillation = token_mean(-(wanted * found.log_probs()).sum(-1))
        loss, logs = self.settings.gamma * distillation, {"distillation": distillation.item()}
        if self.settings.alpha:
            retain_nll = nll(context.model, retain)
            loss, logs["retain_nll"] = loss + self.settings.alpha * retain_nll, retain_nll.item()
        return loss, logs
