"""Every padded batch lume builds, in one place.

Right padding (training, log-likelihoods, membership inference, MMLU suffixes) keeps each
row's positions and causal context those of the row alone; left padding (generation) lines
the prompts' last tokens up, with position ids that count real tokens only.
"""

from __future__ import annotations

import torch

IGNORE = -100  # label of tokens that carry no loss


def right_padded(rows: list[list[int]], pad_id: int, device=None, labels: list[list[int]] | None = None
                 ) -> dict[str, torch.Tensor]:
    """input_ids and attention_mask (and labels, padded with IGNORE) of right-padded rows."""
    width = max(len(row) for row in rows)
    batch = {"input_ids": torch.tensor([row + [pad_id] * (width - len(row)) for row in rows]),
             "attention_mask": torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])}
    if labels is not None:
        batch["labels"] = torch.tensor([row + [IGNORE] * (width - len(row)) for row in labels])
    return {k: v.to(device) for k, v in batch.items()} if device is not None else batch


def left_padded(rows: list[list[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input ids, attention mask and real-token position ids of left-padded rows."""
    width = max(len(row) for row in rows)
    input_ids = torch.tensor([[pad_id] * (width - len(row)) + row for row in rows], device=device)
    mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], device=device)
    return input_ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def length_groups(lengths: list[int]) -> list[list[int]]:
    """Row indices grouped by similar length, longest first: a row under half its group's
    longest starts a new group, so no group pads a row to more than twice its length."""
    groups: list[list[int]] = []
    for row in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if groups and 2 * lengths[row] > lengths[groups[-1][0]]:
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def longest_first(lengths: list[int], size: int) -> list[list[int]]:
    """Row indices in chunks of `size`, longest rows first (so each chunk pads little)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start:start + size] for start in range(0, len(order), size)]
