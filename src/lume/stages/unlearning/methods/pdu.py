"""PDU, primal-dual unlearning (Entesari et al., 2025, "Constrained Entropic Unlearning: A
Primal-Dual Framework for Large Language Models", arXiv 2506.05314): forgetting as a
logit-margin flattening loss, retention as a constraint on the retain loss:

    minimise  γ · mean_{t ∈ F} (max_v z_θ,t[v] − mean_v z_θ,t[v])²   subject to  NLL_θ(R) ≤ ε

through its Lagrangian  L = γ · flatten(F) + λ · (NLL_θ(R) − ε), the dual variable updated after
each step once `dual_warmup_steps` have passed:  λ ← max(0, λ + η · (NLL_θ(R) − ε)).

z_θ,t are the logits that predict the forget answer tokens (pooled over the batch). Driving the
largest logit to the mean flattens the next-token distribution towards uniform, which is what a
model that never saw the answer should look like. λ starts at `alpha` and is kept in every
checkpoint, so a resumed run continues with the λ it had. ε should sit a little above the
starting model's retain loss (the authors: "an appropriately larger value than this starting
value").
"""

from __future__ import annotations

from dataclasses import dataclass

from lume.config import check_settings, setting
from lume.stages.unlearning.methods.base import Method, answers, nll, register, token_mean


@dataclass
class PDUSettings:
    gamma: float = setting(1.0, "Weight of the flattening term", at_least=0)
    alpha: float = setting(1.0, "The dual variable λ's starting value (the retain term's weight)", at_least=0)
    retain_loss_eps: float = setting(0.3, "ε, the retain loss allowed", at_least=0)
    dual_step_size: float = setting(1.0, "η, the dual variable's step size", at_least=0)
    dual_warmup_steps: int = setting(0, "Steps before λ starts to move", at_least=0)
    primal_dual: bool = setting(True, "false: λ stays at alpha (plain weighted sum)")

    def __post_init__(self):
        check_settings(self)


def margin_flattening(token_logits):
    """mean over the labelled positions of (max logit − mean logit)²."""
    token_logits = token_logits.float()
    margin = token_logits.max(-1).values - token_logits.mean(-1)
    return token_mean(margin.square())


@register
class PrimalDual(Method):
    name = "pdu"
    Settings = PDUSettings

    def __init__(self, settings=None):
        super().__init__(settings)
        self.dual = self.settings.alpha

    def loss(self, context, forget, retain):
        flattening = margin_flattening(answers(context.model, forget).logits)
        retain_nll = nll(context.model, retain)
        excess = retain_nll - self.settings.retain_loss_eps
        loss = self.settings.gamma * flattening + self.dual * excess
        logs = {"flattening": flattening.item(), "retain_nll": retain_nll.item(), "dual": self.dual}
        if self.settings.primal_dual and context.step >= self.settings.dual_warmup_steps:
            self.dual = max(0.0, self.dual + self.settings.dual_step_size * excess.item())
        return loss, logs

    def state_dict(self) -> dict:
        return {"dual": self.dual}

    def load_state_dict(self, state: dict) -> None:
        self.dual = state.get("dual", self.settings.alpha)
