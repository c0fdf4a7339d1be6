"""Membership inference: per-document scores from one forward pass, AUC and the MIA score.

`loss` is the protocol's attack (mean token NLL over the whole document). zlib, Min-K%,
Min-K%++, GradNorm and Reference are reported beside it: every attack gives a score where
higher means "member" (docs/metrics.md gives each one's formula and source).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import torch
from sklearn.metrics import auc as area_under, roc_curve

from lume.inference.likelihood import document_logits

MIN_K_FRACTION = 0.2
MIA_ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus", "gradnorm", "reference")


def output_gradient_norm(probs: torch.Tensor, targets: torch.Tensor, hidden: torch.Tensor) -> float:
    """‖∂ mean-token-NLL / ∂W‖_F for the output layer W (logits = W h), in closed form from the
    forward pass: ∂/∂W = (1/T) Σ_t (p_t − e_{y_t}) h_tᵀ, so its squared norm is
    (1/T²) Σ_{t,s} (h_t·h_s) (p_t·p_s − p_t[y_s] − p_s[y_t] + [y_t = y_s])."""
    hidden = hidden.float()
    picked = probs[:, targets]  # [t, s] = p_t[y_s]
    error_products = probs @ probs.T - picked - picked.T + (targets[:, None] == targets[None, :]).float()
    squared = ((hidden @ hidden.T) * error_products).sum().clamp(min=0)
    return (squared.sqrt() / len(targets)).item()


def attack_scores(logits: torch.Tensor, input_ids: torch.Tensor, text: str,
                  hidden: torch.Tensor | None = None) -> dict[str, float]:
    """All attack scores of one document from its logits (positions 0..n-2 predict 1..n-1) and
    the hidden states the output layer read (for GradNorm); Reference needs a second model
    (`reference_score`)."""
    log_probs = torch.log_softmax(logits[:-1].float(), dim=-1)
    targets = input_ids[1:]
    token_log_probs = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    nll = -token_log_probs.mean().item()
    # Min-K%++: each token's log-prob standardised by the mean and spread of log p under
    # the model's own next-token distribution at that position.
    probs = log_probs.exp()
    mu = (probs * log_probs).sum(-1)
    sigma = ((probs * log_probs.square()).sum(-1) - mu.square()).clamp(min=1e-12).sqrt()
    standardised = (token_log_probs - mu) / sigma
    k = max(1, int(len(token_log_probs) * MIN_K_FRACTION))
    gradient = {} if hidden is None else {"gradnorm": -output_gradient_norm(probs, targets, hidden[:-1])}
    return {
        "loss": nll,
        "zlib": -nll / len(zlib.compress(text.encode("utf-8"))),
        "min_k": torch.topk(token_log_probs, k, largest=False).values.mean().item(),
        "min_k_plus_plus": torch.topk(standardised, k, largest=False).values.mean().item(),
        **gradient,
    }


def membership_attack_scores(model, tokenizer, texts: list[str], *, batch_size: int = 4,
                             on_done: Callable[[int, dict], None] = lambda _i, _s: None,
                             token_ids: list[list[int]] | None = None) -> list[dict]:
    """Every attack's score (`MIA_ATTACKS`) for each text, from one forward pass per document
    (`token_ids`: the texts already tokenised)."""
    results: list[dict | None] = [None] * len(texts)

    def score(index: int, logits: torch.Tensor, ids: torch.Tensor, hidden: torch.Tensor) -> None:
        results[index] = attack_scores(logits, ids, texts[index], hidden)
        on_done(index, results[index])

    if token_ids is None:
        token_ids = [tokenizer(text).input_ids for text in texts]
    document_logits(model, token_ids, tokenizer.pad_token_id, batch_size, score)
    return results  # type: ignore[return-value]


def reference_score(loss: float, reference_loss: float) -> float:
    """The Reference attack (Carlini et al. 2021, the loss calibrated by a reference model's; the
    peer's Reference): how much lower the document's loss is than under a model never fine-tuned
    on it (lume: the target's base model)."""
    return reference_loss - loss


def membership_score(attack: str, scores: dict[str, float]) -> float:
    """Higher = more likely a member (the loss attack ranks by -loss)."""
    return -scores["loss"] if attack == "loss" else scores[attack]


def auc(members: list[bool], scores: list[float]) -> float:
    """ROC AUC of scores against member labels (member = 1), via sklearn's roc_curve."""
    fpr, tpr, _ = roc_curve([int(m) for m in members], scores)
    return float(area_under(fpr, tpr))


def mia_score(auc_value: float) -> float:
    """1 - 2|AUC - 0.5|: 1 when members and non-members cannot be told apart."""
    return 1 - 2 * abs(auc_value - 0.5)
