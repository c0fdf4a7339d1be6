"""A capped gradient difference: the forget NLL is ascended only up to a ceiling.

    loss = -min(NLL_θ(F), cap) + α · NLL_θ(R)
"""

from dataclasses import dataclass

from lume.config import check_settings, setting
from lume.stages.unlearning.methods import Method
from lume.stages.unlearning.methods.base import nll


@dataclass
class CappedSettings:
    alpha: float = setting(1.0, "Weight α of the retain NLL", at_least=0)
    cap: float = setting(5.0, "The forget NLL is not pushed above this (nats per token)", above=0)

    def __post_init__(self):
        check_settings(self)  # the ranges, checked when the config is built


class CappedGradientDifference(Method):
    name = "capped-gd"
    Settings = CappedSettings

    def loss(self, context, forget, retain):
        forget_nll, retain_nll = nll(context.model, forget), nll(context.model, retain)
        loss = -forget_nll.clamp(max=self.settings.cap) + self.settings.alpha * retain_nll
        return loss, {"forget_nll": forget_nll.item(), "retain_nll": retain_nll.item()}
