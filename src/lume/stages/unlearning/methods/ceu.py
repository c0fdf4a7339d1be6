"""CE-U, cross-entropy unlearning (Yang et al., 2025, "CE-U: Cross Entropy Unlearning",
arXiv 2503.01224): cross-entropy towards the model's own next-token distribution with the true
token taken out:

    q_t = softmax(sg(z_θ,t) with z_θ,t[y_t] = −∞),   L = mean_{t ∈ F} CE(q_t, p_θ,t)

over the forget answer tokens pooled over the batch, the first `skip_first` of each answer left
out (the paper's footnote: the first answer token is often a space or a template word). The
target is detached, so the gradient is p_θ − q: it lowers the true token and leaves the others'
proportions as they are, with no runaway as in gradient ascent. The paper and the peer use no
retain term (α = 0: none is computed); α > 0 adds α · NLL_θ(R).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lume.config import check_settings, setting
from lume.stages.unlearning.methods.base import Method, answers, nll, register, token_mean


@dataclass
class CEUSettings:
    skip_first: int = setting(1, "Answer tokens at the start of each answer left out of the loss", at_least=0)
    alpha: float = setting(0.0, "Weight of the retain NLL", at_least=0)

    def __post_init__(self):
        check_settings(self)


def true_token_removed(token_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """softmax of the (detached) logits with each position's true token at −∞."""
    removed = token_logits.detach().float().scatter(-1, targets.clamp(min=0).unsqueeze(-1), float("-inf"))
    return torch.softmax(removed, -1)


@register
class CrossEntropyUnlearning(Method):
    name = "ce-u"
    Settings = CEUSettings

    @property
    def policy_batches(self):
        return ("forget", "retain") if self.settings.alpha else ("forget",)

    def loss(self, context, forget, retain):
        found = answers(context.model, forget)
        kept = found.rank_in_row() >= self.settings.skip_first
        wanted = true_token_removed(found.logits[kept], found.targets[kept])
        forget_term = token_mean(-(wanted * found.log_probs()[kept]).sum(-1))
        loss, logs = forget_term, {"ce_u": forget_term.item()}
        if self.settings.alpha:
            retain_nll = nll(context.model, retain)
            loss, logs["retain_nll"] = loss + self.settings.alpha * retain_nll, retain_nll.item()
        return loss, logs
