"""Membership inference: per-document scores from one forward pass, AUC and the MIA score.

`loss` is the protocol's attack (mean token NLL over the whole document). zlib, Min-K% and
Min-K%++ are reported beside it: every attack gives a score where higher means "member".
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import torch
from sklearn.metrics import auc as area_under, roc_curve

from lume.inference.likelihood import document_logits

MIN_K_FRACTION = 0.2
MIA_ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus")


def attack_scores(logits: torch.Tensor, input_ids: torch.Tensor, text: str) -> dict[str, float]:
    """All attack scores of one document from its logits (positions 0..n-2 predict 1..n-1)."""
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
    return {
        "loss": nll,
        "zlib": -nll / len(zlib.compress(text.encode("utf-8"))),
        "min_k": torch.topk(token_log_probs, k, largest=False).values.mean().item(),
        "min_k_plus_plus": torch.topk(standardised, k, largest=False).values.mean().item(),
    }


def membership_attack_scores(model, tokenizer, texts: list[str], *, batch_size: int = 4,
                             on_done: Callable[[int, dict], None] = lambda _i, _s: None,
                             token_ids: list[list[int]] | None = None) -> list[dict]:
    """Every attack's score (`MIA_ATTACKS`) for each text, from one forward pass per document
    (`token_ids`: the texts already tokenised)."""
    results: list[dict | None] = [None] * len(texts)

    def score(index: int, logits: torch.Tensor, ids: torch.Tensor) -> None:
        results[index] = attack_scores(logits, ids, texts[index])
        on_done(index, results[index])

    if token_ids is None:
        token_ids = [tokenizer(text).input_ids for text in texts]
    document_logits(model, token_ids, tokenizer.pad_token_id, batch_size, score)
    return results  # type: ignore[return-value]


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
