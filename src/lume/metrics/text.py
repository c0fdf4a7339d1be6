"""Per-item scores: regurgitation (ROUGE-L recall) and knowledge (exact match)."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_recall(target: str, prediction: str) -> float:
    """ROUGE-L recall of `prediction` against `target` (rouge-score, Porter stemmer on)."""
    return _scorer().score(target=target, prediction=prediction)["rougeL"].recall


def exact_match(gold: str, generation: str) -> float:
    """1.0 when the generation is the answer, up to surrounding whitespace and case."""
    return float(gold.strip().lower() == generation.strip().lower())


def _letters(text: str) -> str:
    # Lower-cased with whitespace removed; final sigma folded so that lowering a prefix and
    # lowering the whole string agree.
    return "".join(text.lower().replace("ς", "σ").split())


def can_still_match(partial: str, gold: str) -> bool:
    """False only when no continuation of `partial` can make `exact_match(gold, ·)` 1.

    Decoding more tokens only appends characters (up to the spaces that the clean-up step
    removes and a half-decoded character at the end), so if the non-space characters decoded
    so far are not a prefix of the gold answer's, the exact-match score is settled at 0.
    """
    return _letters(gold.strip()).startswith(_letters(partial).rstrip("\ufffd"))
