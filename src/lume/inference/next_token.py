"""Next-token logits of chosen tokens (multiple-choice letters), with a shared prompt prefix
run through the model once."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from lume.inference.batching import right_padded
from lume.inference.kv_cache import broadcast_prefix


def shared_prefix_length(sequences: list[list[int]]) -> int:
    """How many leading tokens all sequences share, leaving each at least one of its own."""
    first = sequences[0]
    length = min(len(s) for s in sequences) - 1
    for other in sequences[1:]:
        length = next((i for i in range(length) if other[i] != first[i]), length)
    return length


@torch.inference_mode()
def chosen_logits_shared_prefix(model, ids: list[list[int]], chosen: list[int], batch_size: int
                                ) -> list[list[float]]:
    """Each prompt's next-token logits of the `chosen` tokens. The prompts' common token prefix
    is run once; only each prompt's own tokens are run per row, so the logits are those of the
    full prompt."""
    device = model.device
    shared = shared_prefix_length(ids)
    prefix = None
    if shared:
        prefix = DynamicCache()
        model(input_ids=torch.tensor([ids[0][:shared]], device=device), cache=prefix, use_cache=True,
              logits_to_keep=1)
    chosen_index = torch.tensor(chosen, device=device)
    scores = []
    for start in range(0, len(ids), batch_size):
        suffixes = [row[shared:] for row in ids[start:start + batch_size]]
        batch = right_padded(suffixes, 0, device)
        mask = torch.cat([batch["attention_mask"].new_ones(len(suffixes), shared), batch["attention_mask"]], -1)
        width = batch["input_ids"].shape[1]
        positions = torch.arange(shared, shared + width, device=device).expand(len(suffixes), -1)
        # Only each row's last position needs logits: one position a row ([rows, 1] to transformers)
        last = torch.tensor([[len(s) - 1] for s in suffixes], device=device)
        logits = model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=positions,
                       cache=broadcast_prefix(prefix, len(suffixes)), use_cache=True, logits_to_keep=last).logits
        scores += logits[:, 0, chosen_index].float().tolist()
    return scores


@torch.inference_mode()
def chosen_logits_whole(model, ids: list[int], chosen: list[int]) -> list[float]:
    """One prompt run whole (the reference way): its next-token logits of the `chosen` tokens."""
    logits = model(input_ids=torch.tensor([ids], device=model.device), logits_to_keep=1).logits
    return logits[0, -1, chosen].float().tolist()
