"""The default backend: transformers, batched greedy decoding with early exit."""

from __future__ import annotations

from lume.inference.backends.base import BackendOptions, register_backend
from lume.inference.generation import Generation, generate_greedy


@register_backend("hf")
class TransformersBackend:
    """Batched greedy decoding in transformers (`lume.inference.generation`), with early exit."""

    def __init__(self, model, tokenizer, source=None, options: BackendOptions | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = (options or BackendOptions()).batch_size

    def generate(self, prompts, *, max_new_tokens, keep_going=None, on_done=None) -> list[Generation]:
        return generate_greedy(self.model, self.tokenizer, prompts, max_new_tokens=max_new_tokens,
                               batch_size=self.batch_size, keep_going=keep_going, on_done=on_done)
