"""WGA, weighted gradient ascent (Wang et al., 2025, "Rethinking LLM Unlearning Objectives: A
Gradient Perspective and Go Beyond", ICLR): gradient ascent on the forget answers, each token
weighted by its own probability, held constant (no gradient through the weight):

    L = γ · mean_{t ∈ F} sg(p_θ(y_t)^β) · log p_θ(y_t)  +  α · NLL_θ(R)

The mean runs over every answer token of the forget batch together, as the authors' code does.
A token the model already finds unlikely gets little push, so the ascent slows down by itself
where plain GA runs away.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lume.config import check_settings, setting
from lume.stages.unlearning.methods.base import Method, nll, register, token_log_likelihood, token_mean


@dataclass
class WGASettings:
    beta: float = setting(1.0, "The weight's exponent", at_least=0)
    gamma: float = setting(1.0, "Weight of the forget term", at_least=0)
    alpha: float = setting(1.0, "Weight of the retain NLL", at_least=0)

    def __post_init__(self):
        check_settings(self)


def weighted_ascent(log_likelihood: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """mean over the labelled tokens of sg(weight) · log p: minimising it lowers log p where weighted."""
    return token_mean(weights.detach() * log_likelihood)


@register
class WGA(Method):
    name = "wga"
    Settings = WGASettings

    def token_weights(self, probability: torch.Tensor) -> torch.Tensor:
        return probability ** self.settings.beta

    def loss(self, context, forget, retain):
        log_likelihood = token_log_likelihood(context.model, forget)
        forget_term = weighted_ascent(log_likelihood, self.token_weights(log_likelihood.exp()))
        retain_nll = nll(context.model, retain)
        loss = self.settings.gamma * forget_term + self.settings.alpha * retain_nll
        return loss, {"weighted_ascent": forget_term.item(), "retain_nll": retain_nll.item()}
