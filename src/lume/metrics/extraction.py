"""How much of an answer a model still reproduces, read from one teacher-forced forward:

- exact memorisation (Tirumala et al., 2022): the share of the answer's tokens that are the
  model's greedy choice given the true text before them;
- extraction strength (Carlini et al., 2021; as MUSE and open-unlearning use it): 1 − k/n, with
  k the shortest prefix of the answer after which every remaining token is the greedy choice
  (so greedy decoding from there reproduces the rest), n the answer's length; 0 when even the
  last token is not reproduced.

Both over the answer's own tokens (the continuation of an sc row, the answer of a QA row; the
end-of-sequence token left out).
"""

from __future__ import annotations

import torch


def exact_memorisation(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """The share of positions whose greedy prediction is the target token."""
    return float((predictions == targets).float().mean()) if len(targets) else 0.0


def extraction_strength(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """1 − k/n for the shortest k after which every prediction is right (k = n when none is)."""
    n = len(targets)
    if n == 0:
        return 0.0
    wrong = (predictions != targets).nonzero()
    k = int(wrong[-1]) + 1 if len(wrong) else 0  # everything after the last wrong prediction is reproduced
    return 1.0 - k / n
