"""Generation backends: one interface, registered by name.

A backend turns prompts into the greedy continuations the protocol's one-prompt-at-a-time
`generate` call gives. The contract, for a new backend:

- a class decorated `@register_backend("name")`, built as `cls(model, tokenizer, source, options)`
  (the loaded transformers model and tokenizer, the folder or hub id they came from, and
  `BackendOptions`);
- `generate(prompts, *, max_new_tokens, keep_going=None, on_done=None) -> list[Generation]`,
  in prompt order; `on_done(i, generation)` as each prompt finishes (in any order);
  `keep_going[i](text_so_far)` returning False lets row i stop early (it cannot change the
  row's score, so a backend may ignore it).

Adding one touches one file: `lume/inference/backends/<name>.py` (every file there is imported).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from lume.errors import LumeError
from lume.inference.generation import BATCH_SIZE, Generation

BACKENDS: dict[str, type] = {}


@dataclass
class BackendOptions:
    batch_size: int = BATCH_SIZE  # rows decoded together (transformers)
    seed: int = 0
    vllm_memory: float = 0.5  # share of GPU memory vLLM may take; the transformers copy stays loaded


class Backend(Protocol):
    def generate(self, prompts: Sequence[str], *, max_new_tokens: int,
                 keep_going: Sequence[Callable[[str], bool] | None] | None = None,
                 on_done: Callable[[int, Generation], None] | None = None) -> list[Generation]: ...


def register_backend(name: str):
    def register(cls: type) -> type:
        BACKENDS[name] = cls
        return cls

    return register


def open_backend(name: str, model, tokenizer, source=None, options: BackendOptions | None = None) -> Backend:
    if name not in BACKENDS:
        raise LumeError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
    return BACKENDS[name](model, tokenizer, source, options or BackendOptions())
