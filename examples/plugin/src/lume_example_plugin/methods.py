"""A capped gradient difference: the forget NLL is ascended only up to a ceiling.

    loss = -min(NLL_θ(F), cap) + α · NLL_θ(R)
"""

from dataclasses import dataclass

from lume.stages.unlearning.methods import Method
from lume.stages.unlearning.methods.base import nll


@dataclass
class CappedSettings:
    alpha: float = 1.0  # weight α of the retain NLL
    cap: float = 5.0  # the forget NLL is not pushed above this (nats per token)


class CappedGradientDifference(Method):
    name = "capped-gd"
    Settings = CappedSettings

    def loss(self, context, forget, retain):
        forget_nll, retain_nll = nll(context.model, forget), nll(context.model, retain)
        loss = -forget_nll.clamp(max=self.settings.cap) + self.settings.alpha * retain_nll
        return loss, {"forget_nll": forget_nll.item(), "retain_nll": retain_nll.item()}
