"""Per-document membership scores from one forward pass each (batched, right-padded)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from lume.metrics.mia import attack_scores


@torch.inference_mode()
def score_documents(model, tokenizer, texts: list[str], *, batch_size: int = 4,
                    on_done: Callable[[int, dict], None] = lambda _i, _s: None) -> list[dict]:
    """Attack scores (`lume.metrics.mia.ATTACKS`) for each text, labels = input ids.

    Right padding keeps each document's positions and causal context unchanged, so its
    losses are those of a forward pass on the document alone.
    """
    encoded = [tokenizer(text).input_ids for text in texts]
    order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
    results: list[dict | None] = [None] * len(texts)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in chunk)
        ids = torch.tensor([encoded[i] + [tokenizer.pad_token_id] * (width - len(encoded[i]))
                            for i in chunk], device=model.device)
        mask = torch.tensor([[1] * len(encoded[i]) + [0] * (width - len(encoded[i])) for i in chunk],
                            device=model.device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        for row, index in enumerate(chunk):
            length = len(encoded[index])
            results[index] = attack_scores(logits[row, :length], ids[row, :length], texts[index])
            on_done(index, results[index])
    return results  # type: ignore[return-value]
