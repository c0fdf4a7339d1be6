"""Batched greedy decoding that reproduces one-prompt-at-a-time `generate` output.

Prompts are sorted by length and left-padded; position ids count real tokens only, so every
row sees exactly what it would see alone. A row leaves the batch (and the KV cache) as soon as
it is finished: at an end-of-sequence token, at the token limit, or, for rows that carry a
`keep_going` rule, as soon as the rule says more tokens cannot change the row's score.
Prompts are run through the model in small groups (little padding) and their keys and values
gathered into one cache reserved for the whole generation, which decoding fills in place.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache

from lume.compat import logits_processors, prepare_special_tokens
from lume.inference.batching import left_padded
from lume.inference.kv_cache import reserved_cache

MAX_NEW_TOKENS = 256
BATCH_SIZE = 64  # rows decoded together: 1.16x faster than 32 on the 63 sc rows of bench/eval_speed.py
PREFILL_ROWS = 4  # prompts run through the model together before decoding: fastest measured on CPU

log = logging.getLogger(__name__)


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


def reference_generation_config(model, tokenizer, max_new_tokens: int):
    """The generation config `generate` uses in the reference call: the checkpoint's own
    (repetition penalty, banned words, suppressed tokens, ...), greedy, with the protocol's limit."""
    config = copy.deepcopy(model.generation_config)
    config.update(do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, use_cache=True)
    return config


def unbatchable_settings(config) -> list[str]:
    """Generation-config settings that make `generate` search other than token by token greedily;
    batched decoding cannot reproduce them."""
    found = [f"num_beams={config.num_beams}"] if (config.num_beams or 1) > 1 else []
    found += [f"penalty_alpha={config.penalty_alpha}"] if config.penalty_alpha else []
    found += [f"stop_strings={config.stop_strings!r}"] if config.stop_strings else []
    found += [f"guidance_scale={config.guidance_scale}"] if config.guidance_scale not in (None, 1) else []
    found += [f"dola_layers={config.dola_layers}"] if getattr(config, "dola_layers", None) else []
    return found


def row_processors(model, config, prompt_length: int):
    """The logits processors `generate` builds from `config` for one prompt of this length (the
    same transformers code path), applied to that row's real tokens only."""
    row_config = copy.deepcopy(config)
    row_config.max_length = prompt_length + config.max_new_tokens
    prepare_special_tokens(model, row_config)
    return logits_processors(model, row_config, prompt_length,
                             torch.ones(1, prompt_length, dtype=torch.long, device=model.device))


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


def _prefill(model, prompt_ids: list[list[int]], pad: int, capacity: int) -> tuple[Cache, torch.Tensor]:
    """Run the prompts (sorted by length) in small groups, so little is spent on padding, and
    gather their keys and values into one reserved cache for decoding; return it and the
    logits of each prompt's last position."""
    prefilled, last_logits = [], []
    for first in range(0, len(prompt_ids), PREFILL_ROWS):
        input_ids, mask, positions = left_padded(prompt_ids[first:first + PREFILL_ROWS], pad, model.device)
        group_cache = DynamicCache()
        last_logits.append(model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                                 cache=group_cache, use_cache=True, logits_to_keep=1).logits[:, -1, :])
        prefilled.append((first, group_cache))
    width = max(len(ids) for ids in prompt_ids)
    return reserved_cache(prefilled, len(prompt_ids), width, capacity), torch.cat(last_logits)


def _next_tokens(logits: torch.Tensor, rows: list[int], prompt_ids: list[list[int]], produced: list[list[int]],
                 processors: list | None) -> list[int]:
    """Greedy choices; with the checkpoint's logits processors, each row's scores are processed
    (in float32, as `generate` does) over that row's own tokens, as if it ran alone."""
    if processors is None:
        return logits.argmax(dim=-1).tolist()
    chosen = []
    for slot, row in enumerate(rows):
        ids = torch.tensor([prompt_ids[row] + produced[row]], device=logits.device)
        scores = processors[row](ids, logits[slot:slot + 1].float())
        chosen.append(int(scores.argmax(dim=-1)))
    return chosen


@torch.inference_mode()
def _generate_batch(model, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int,
                    keep_going: list[Callable[[str], bool] | None], stop_ids: set[int],
                    on_done: Callable[[int, Generation], None], processors: list | None = None) -> None:
    device = model.device
    _, mask, positions = left_padded(prompt_ids, tokenizer.pad_token_id, device)
    cache, logits = _prefill(model, prompt_ids, tokenizer.pad_token_id, mask.shape[1] + max_new_tokens)
    rows = list(range(len(prompt_ids)))  # batch position -> caller's index
    produced: list[list[int]] = [[] for _ in prompt_ids]
    while rows:
        next_tokens = _next_tokens(logits, rows, prompt_ids, produced, processors)
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
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=-1)
        positions = positions[:, -1:] + 1
        logits = model(input_ids=torch.tensor(next_tokens, device=device).unsqueeze(-1), attention_mask=mask,
                       position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1, :]


def generate_greedy(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int = MAX_NEW_TOKENS,
                    batch_size: int = BATCH_SIZE, keep_going: Sequence[Callable[[str], bool] | None] | None = None,
                    on_done: Callable[[int, Generation], None] | None = None) -> list[Generation]:
    """Greedy continuations of `prompts` (raw text, default special-token handling).

    `keep_going[i](text_so_far)` may end row i early when it returns False; `on_done(i, g)` is
    called as each row finishes, which lets callers save results and show progress.
    """
    keep_going = list(keep_going) if keep_going is not None else [None] * len(prompts)
    config = reference_generation_config(model, tokenizer, max_new_tokens)
    if unbatchable_settings(config):
        return _generate_one_at_a_time(model, tokenizer, prompts, config, on_done)
    encoded = [tokenizer(prompt).input_ids for prompt in prompts]
    # Built per row only when the config asks for any (they may depend on the prompt's length).
    processors = [row_processors(model, config, len(ids)) for ids in encoded] \
        if row_processors(model, config, 1) else None
    # Rows without a keep_going rule tend to decode long: grouping them keeps long decodes in
    # full batches. Within a group, longest prompts first, so padding stays small.
    order = sorted(range(len(prompts)), key=lambda i: (keep_going[i] is not None, -len(encoded[i])))
    results: list[Generation | None] = [None] * len(prompts)
    stop_ids = eos_token_ids(model, tokenizer)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]

        def finish(row: int, generation: Generation, chunk=chunk) -> None:
            results[chunk[row]] = generation
            if on_done is not None:
                on_done(chunk[row], generation)

        _generate_batch(model, tokenizer, [encoded[i] for i in chunk], max_new_tokens,
                        [keep_going[i] for i in chunk], stop_ids, finish,
                        None if processors is None else [processors[i] for i in chunk])
    return results  # type: ignore[return-value]


def _generate_one_at_a_time(model, tokenizer, prompts: Sequence[str], config,
                            on_done: Callable[[int, Generation], None] | None) -> list[Generation]:
    """The reference path, for generation configs that batched decoding cannot reproduce."""
    log.warning(f"the model's generation config sets {', '.join(unbatchable_settings(config))}, which batched "
                "decoding cannot reproduce; generating one prompt at a time with `generate`, as the reference does")
    stop_ids = eos_token_ids(model, tokenizer)
    results = []
    for index, prompt in enumerate(prompts):
        new = _reference_new_tokens(model, tokenizer, prompt, config)
        stop = "eos" if new and new[-1] in stop_ids else "length"
        results.append(Generation(decode(tokenizer, new), len(new), stop))
        if on_done is not None:
            on_done(index, results[-1])
    return results


@torch.inference_mode()
def _reference_new_tokens(model, tokenizer, prompt: str, config) -> list[int]:
    encoded = tokenizer(prompt, return_tensors="pt").to(model.device)
    output = model.generate(**encoded, generation_config=config)
    return output[0, encoded.input_ids.shape[1]:].tolist()


def generate_reference(model, tokenizer, prompt: str, max_new_tokens: int = MAX_NEW_TOKENS) -> str:
    """The organisers' protocol: one prompt, `model.generate` (greedy, the checkpoint's generation
    config otherwise), new tokens decoded."""
    config = reference_generation_config(model, tokenizer, max_new_tokens)
    return decode(tokenizer, _reference_new_tokens(model, tokenizer, prompt, config))
