"""The LUME gradient baselines (protocol.md, "Unlearning baselines").

GA:  minimise -NLL_θ(F)
GD:  -NLL_θ(F) + α · NLL_θ(R)
KL:  -NLL_θ(F) + α · KL(p_ref ‖ p_θ) on R, per real answer token
"""

from __future__ import annotations

from dataclasses import dataclass

from lume.stages.unlearning.methods.base import Method, nll, register, retain_kl


@dataclass
class RetainWeight:
    alpha: float = 1.0  # weight α of the retain term


@register
class GradientAscent(Method):
    name = "ga"

    def loss(self, context, forget, retain):
        forget_nll = nll(context.model, forget)
        return -forget_nll, {"forget_nll": forget_nll.item()}


@register
class GradientDifference(Method):
    name = "gd"
    Settings = RetainWeight

    def loss(self, context, forget, retain):
        forget_nll, retain_nll = nll(context.model, forget), nll(context.model, retain)
        loss = -forget_nll + self.settings.alpha * retain_nll
        return loss, {"forget_nll": forget_nll.item(), "retain_nll": retain_nll.item()}


@register
class KLMinimisation(Method):
    name = "kl"
    Settings = RetainWeight
    needs_reference_model = True

    def loss(self, context, forget, retain):
        forget_nll, kl = nll(context.model, forget), retain_kl(context, retain)
        return -forget_nll + self.settings.alpha * kl, {"forget_nll": forget_nll.item(), "retain_kl": kl.item()}
