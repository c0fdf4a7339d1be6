"""NPO, Negative Preference Optimisation (Zhang et al., 2024), as in protocol.md:

    L = (2/β) · mean_F log(1 + (π_θ(y|x) / π_ref(y|x))^β)      [+ α · NLL_θ(R)  or  + α · KL on R]

or, with `pooling: batch` (ZJUKLAB's form, their semeval25/unlearn-merging.py), one term per batch
whose log-ratio is the batch's pooled per-token one:

    L = −(2/β) · log σ(β · (CE_θ(F) − CE_ref(F))),   CE = mean NLL over the batch's answer tokens together

and `npo+kl+gd`, the weighted sum of all three that ZJUKLAB trained each of its two LoRA
models with (SemEval-2025 Task 4, arXiv 2503.21088):  w_npo · NPO + w_kl · KL on R + w_nll · NLL_θ(R),
the KL per answer token, or (`kl_padded_length` N) summed and divided by rows × N as theirs is.

with log π summed over answer tokens. π_ref on the forget set is the starting model's and never
changes, so it is computed once in `prepare` and no second copy of the model is kept.
At π_θ = π_ref the loss is (2/β)·log 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from lume.config import check_settings, setting
from lume.stages.unlearning.methods.base import (Method, nll, register, retain_kl, retain_kl_and_nll,
                                                 sequence_log_likelihood)


POOLINGS = ("sequence", "batch")


@dataclass
class NPOSettings:
    beta: float = setting(0.1, "β, the inverse temperature (the loss divides by it)", above=0)
    alpha: float = setting(1.0, "Weight of the retain term (npo+gd, npo+kl)", at_least=0)
    pooling: str = setting("sequence", "sequence: one log-ratio per forget example, summed over its tokens (the "
                                       "paper's, open-unlearning's); batch: one per batch, its per-token mean "
                                       "(ZJUKLAB's)", choices=POOLINGS)

    def __post_init__(self):
        check_settings(self)


def npo_loss(log_likelihood, reference_log_likelihood, beta: float):
    """(2/β) · mean log(1 + exp(β · (log π_θ − log π_ref)))."""
    return 2 / beta * F.softplus(beta * (log_likelihood - reference_log_likelihood)).mean()


@register
class NPO(Method):
    name = "npo"
    Settings = NPOSettings
    policy_batches = ("forget",)

    def prepare(self, context):
        context.precomputed["npo_reference"] = context.forget_log_likelihoods()

    def forget_term(self, context, forget):
        log_likelihood, tokens = sequence_log_likelihood(context.model, forget)
        reference = context.precomputed["npo_reference"][forget["index"]]
        if self.settings.pooling == "batch":  # log π per token over the batch: −CE, so softplus(β(CE_ref − CE_θ))
            count = tokens.sum().clamp(min=1)
            return npo_loss(log_likelihood.sum()[None] / count, reference.sum()[None] / count, self.settings.beta)
        return npo_loss(log_likelihood, reference, self.settings.beta)

    def loss(self, context, forget, retain):
        loss = self.forget_term(context, forget)
        return loss, {"npo": loss.item()}


@register
class NPOGradientDifference(NPO):
    name = "npo+gd"
    policy_batches = ("forget", "retain")

    def loss(self, context, forget, retain):
        forget_term, retain_nll = self.forget_term(context, forget), nll(context.model, retain)
        logs = {"npo": forget_term.item(), "retain_nll": retain_nll.item()}
        return forget_term + self.settings.alpha * retain_nll, logs


@register
class NPOKL(NPO):
    name = "npo+kl"
    needs_reference_model = True
    policy_batches = ("forget", "retain")

    def loss(self, context, forget, retain):
        forget_term, kl = self.forget_term(context, forget), retain_kl(context, retain)
        return forget_term + self.settings.alpha * kl, {"npo": forget_term.item(), "retain_kl": kl.item()}


@dataclass
class NPOMixSettings:
    beta: float = setting(0.1, "β, the inverse temperature (the loss divides by it)", above=0)
    pooling: str = setting("sequence", "As npo's: sequence, or batch (ZJUKLAB's)", choices=POOLINGS)
    npo_weight: float = setting(1.0, "w_npo (ZJUKLAB's ga_ratio)", at_least=0)
    kl_weight: float = setting(1.0, "w_kl on the retain batch (their gd_ratio)", at_least=0)
    nll_weight: float = setting(1.0, "w_nll on the retain batch (their gk_ratio)", at_least=0)
    kl_padded_length: int = setting(0, "0: the KL averaged over the retain answer tokens; N: summed over them and "
                                       "divided by rows × N, the size of ZJUKLAB's (batchmean over rows padded to N = "
                                       "256 positions)", at_least=0)

    def __post_init__(self):
        check_settings(self)


@register
class NPOKLGD(NPO):
    name = "npo+kl+gd"
    Settings = NPOMixSettings
    needs_reference_model = True
    policy_batches = ("forget", "retain")

    def loss(self, context, forget, retain):
        settings = self.settings
        forget_term = self.forget_term(context, forget)
        kl, retain_nll = retain_kl_and_nll(context, retain, settings.kl_padded_length)
        loss = settings.npo_weight * forget_term + settings.kl_weight * kl + settings.nll_weight * retain_nll
        return loss, {"npo": forget_term.item(), "retain_kl": kl.item(), "retain_nll": retain_nll.item()}
