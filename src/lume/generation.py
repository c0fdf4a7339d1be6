"""Batched greedy decoding that reproduces one-prompt-at-a-time `generate` output.

Prompts are sorted by length and left-padded; position ids count real tokens only, so every
row sees exactly what it would see alone. A row leaves the batch (and the KV cache) as soon as
it is finished: at an end-of-sequence token, at the token limit, or, for rows that carry a
`keep_going` rule, as soon as the rule says more tokens cannot change the row's score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache

MAX_NEW_TOKENS = 256


@dataclass
class Generation:
    text: str
    new_tokens: int
    stop: str  # "eos", "length" or "early" (a keep_going rule ended it)


def eos_token_ids(model, tokenizer) -> set[int]:
    """The ids `generate` stops at: the generation config's, else the tokenizer's."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    if configured is None:
        configured = tokenizer.eos_token_id
    return set(configured) if isinstance(configured, (list, tuple)) else {int(configured)}


# The classic `clean_up_tokenization_spaces=True` rewrite that the reference decode applied.
# Recent transformers silently skip it for BPE tokenizers, so it is applied here explicitly.
_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def decode(tokenizer, token_ids: Sequence[int]) -> str:
    """Decode new tokens as the protocol does: special tokens skipped, spaces cleaned up."""
    text = tokenizer.decode(token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    for before, after in _CLEAN_UP:
        text = text.replace(before, after)
    return text


@torch.inference_mode()
def _generate_batch(model, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int,
                    keep_going: list[Callable[[str], bool] | None], stop_ids: set[int],
                    on_done: Callable[[int, Generation], None]) -> None:
    device = model.device
    width = max(len(ids) for ids in prompt_ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompt_ids], device=device)
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids],
                        device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    rows = list(range(len(prompt_ids)))  # batch position -> caller's index
    produced: list[list[int]] = [[] for _ in prompt_ids]
    cache = DynamicCache()
    step_input = input_ids
    while rows:
        logits = model(input_ids=step_input, attention_mask=mask, position_ids=positions,
                       cache=cache, use_cache=True, logits_to_keep=1).logits
        next_tokens = logits[:, -1, :].argmax(dim=-1).tolist()
        keep = []
        for slot, (row, token) in enumerate(zip(rows, next_tokens)):
            produced[row].append(token)
            if token in stop_ids:
                stop = "eos"
            elif len(produced[row]) >= max_new_tokens:
                stop = "length"
            elif keep_going[row] is not None and not keep_going[row](decode(tokenizer, produced[row])):
                stop = "early"
            else:
                keep.append(slot)
                continue
            on_done(row, Generation(decode(tokenizer, produced[row]), len(produced[row]), stop))
        if not keep:
            break
        if len(keep) < len(rows):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            mask, positions = mask[index], positions[index]
            next_tokens = [next_tokens[i] for i in keep]
            rows = [rows[i] for i in keep]
        step_input = torch.tensor(next_tokens, device=device).unsqueeze(-1)
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=-1)
        positions = positions[:, -1:] + 1


def generate_greedy(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int = MAX_NEW_TOKENS,
                    batch_size: int = 16, keep_going: Sequence[Callable[[str], bool] | None] | None = None,
                    on_done: Callable[[int, Generation], None] | None = None) -> list[Generation]:
    """Greedy continuations of `prompts` (raw text, default special-token handling).

    `keep_going[i](text_so_far)` may end row i early when it returns False; `on_done(i, g)` is
    called as each row finishes, which lets callers save results and show progress.
    """
    keep_going = list(keep_going) if keep_going is not None else [None] * len(prompts)
    encoded = [tokenizer(prompt).input_ids for prompt in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    results: list[Generation | None] = [None] * len(prompts)
    stop_ids = eos_token_ids(model, tokenizer)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]

        def finish(row: int, generation: Generation, chunk=chunk) -> None:
            results[chunk[row]] = generation
            if on_done is not None:
                on_done(chunk[row], generation)

        _generate_batch(model, tokenizer, [encoded[i] for i in chunk], max_new_tokens,
                        [keep_going[i] for i in chunk], stop_ids, finish)
    return results  # type: ignore[return-value]


def generate_reference(model, tokenizer, prompt: str, max_new_tokens: int = MAX_NEW_TOKENS) -> str:
    """The organisers' protocol: one prompt, `model.generate`, greedy, new tokens decoded."""
    encoded = tokenizer(prompt, return_tensors="pt").to(model.device)
    with torch.inference_mode():
        output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id)
    return decode(tokenizer, output[0, encoded.input_ids.shape[1]:].tolist())
