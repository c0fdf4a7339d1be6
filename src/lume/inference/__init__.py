"""Running models: padding (`batching`), KV caches, generation backends (`backends/`: hf, vllm),
log-likelihoods and shared-prefix next-token logits."""

from lume.inference.backends import BACKENDS, Backend, BackendOptions, open_backend, register_backend
from lume.inference.generation import BATCH_SIZE, MAX_NEW_TOKENS, Generation, generate_greedy, generate_reference

__all__ = ["BACKENDS", "BATCH_SIZE", "MAX_NEW_TOKENS", "Backend", "BackendOptions", "Generation", "generate_greedy",
           "generate_reference", "open_backend", "register_backend"]
