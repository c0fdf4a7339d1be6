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

Adding one touches one file: `lume/inference/backends/<name>.py` (every file there is imported),
or, from another package, an entry point in the group `lume.backends` (docs/plugins.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from lume.inference.generation import BATCH_SIZE, Generation
from lume.registry import Registry

@dataclass
class BackendOptions:
    batch_size: int = BATCH_SIZE  # rows decoded together (transformers)
    seed: int = 0
    vllm_memory: float = 0.5  # share of GPU memory vLLM may take; the transformers copy stays loaded


@runtime_checkable
class Backend(Protocol):
    def generate(self, prompts: Sequence[str], *, max_new_tokens: int,
                 keep_going: Sequence[Callable[[str], bool] | None] | None = None,
                 on_done: Callable[[int, Generation], None] | None = None) -> list[Generation]: ...


BACKENDS = Registry("backend", Backend, "lume.backends")  # a class with `generate` is one


def register_backend(name: str):
    return BACKENDS.register(name=name)


def open_backend(name: str, model, tokenizer, source=None, options: BackendOptions | None = None) -> Backend:
    """Backend NAME (registered, or `package.module:Class`) on the loaded model."""
    return BACKENDS[name](model, tokenizer, source, options or BackendOptions())
