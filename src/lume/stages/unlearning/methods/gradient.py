"""The LUME gradient baselines (protocol.md, "Unlearning baselines").

GA:  minimise -NLL_θ(F)
GD:  -NLL_θ(F) + α · NLL_θ(R)                      (average: tokens, each batch's pooled tokens)
     (−Σ_{i∈F} NLL_i + α · Σ_{j∈R} NLL_j) / (|F| + |R|)   (average: examples, NLL_i one example's
                                                  token mean: AILS-NTUA's per-example weights)
     a step with no forget (or no retain) rows drops that term (`schedule.rows_apart`)
KL:  -NLL_θ(F) + α · KL(p_ref ‖ p_θ) on R, per real answer token
"""

from __future__ import annotations

from dataclasses import dataclass

from lume.config import check_settings, setting
from lume.stages.unlearning.methods.base import Method, nll, register, retain_kl, sequence_log_likelihood

AVERAGES = ("tokens", "examples")


@dataclass
class RetainWeight:
    alpha: float = setting(1.0, "Weight α of the retain term", at_least=0)

    def __post_init__(self):
        check_settings(self)


@dataclass
class GDSettings(RetainWeight):
    average: str = setting("tokens", "tokens: each batch's pooled tokens; examples: per-example means, over both "
                                     "batches", choices=AVERAGES)


def example_nlls(model, batch: dict):
    """Each example's mean negative log-likelihood over its labelled tokens."""
    total, count = sequence_log_likelihood(model, batch)
    return -total / count.clamp(min=1)


@register
class GradientAscent(Method):
    name = "ga"
    policy_batches = ("forget",)

    def loss(self, context, forget, retain):
        forget_nll = nll(context.model, forget)
        return -forget_nll, {"forget_nll": forget_nll.item()}


@register
class GradientDifference(Method):
    name = "gd"
    Settings = GDSettings
    one_sided_steps = True

    def loss(self, context, forget, retain):
        """A side a step lacks (None: `schedule.rows_apart`) drops out of the sum and the count."""
        weight = {"forget": -1.0, "retain": self.settings.alpha}
        batches = {name: batch for name, batch in (("forget", forget), ("retain", retain)) if batch is not None}
        if self.settings.average == "examples":
            nlls = {name: example_nlls(context.model, batch) for name, batch in batches.items()}
            count = sum(len(values) for values in nlls.values())
            loss = sum(weight[name] * values.sum() for name, values in nlls.items()) / count
            return loss, {f"{name}_nll": values.mean().item() for name, values in nlls.items()}
        nlls = {name: nll(context.model, batch) for name, batch in batches.items()}
        loss = sum(weight[name] * value for name, value in nlls.items())
        return loss, {f"{name}_nll": value.item() for name, value in nlls.items()}


@register
class KLMinimisation(Method):
    name = "kl"
    Settings = RetainWeight
    needs_reference_model = True

    def loss(self, context, forget, retain):
        forget_nll, kl = nll(context.model, forget), retain_kl(context, retain)
        return -forget_nll + self.settings.alpha * kl, {"forget_nll": forget_nll.item(), "retain_kl": kl.item()}
