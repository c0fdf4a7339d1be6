"""Optional greedy generation through vLLM, for large models and long runs on GPUs.

The prompts are tokenised by lume (exactly as for the transformers path) and handed to vLLM
as token ids; vLLM decodes greedily with the same stop ids and token limit, and lume decodes
the new tokens with the protocol's `decode`. vLLM runs its own kernels, so on rare near-ties
its greedy choice can differ from transformers'; `bench/eval_speed.py --backend vllm`
measures how often. Prompts go in chunks so that finished chunks reach `on_done` (and the
resumable cache) while the rest run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lume.errors import LumeError
from lume.inference.backends.base import BackendOptions, register_backend
from lume.inference.generation import (Generation, decode, eos_token_ids, reference_generation_config, row_processors,
                                       unbatchable_settings)

CHUNK = 512  # prompts per vLLM call: large enough to keep its scheduler full


@register_backend("vllm")
class VLLMBackend:
    """A vLLM engine for one model folder (or hub id), built once per evaluation; greedy with
    the transformers model's stop ids and generation-config checks (no early exit)."""

    def __init__(self, model, tokenizer, source, options: BackendOptions):
        try:
            from vllm import LLM
        except ImportError:
            raise LumeError("the vllm backend needs vLLM: pip install 'lume-unlearning[vllm]' (on a CUDA machine), "
                            "or use --backend hf") from None
        self.model, self.tokenizer = model, tokenizer
        # The transformers copy of the model stays loaded for MIA and MMLU, hence a memory share.
        self.engine = LLM(model=str(source), dtype=str(model.dtype).removeprefix("torch."), seed=options.seed,
                          gpu_memory_utilization=options.vllm_memory)

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int, keep_going=None,
                 on_done: Callable[[int, Generation], None] | None = None) -> list[Generation]:
        """Greedy continuations of `prompts`, as `generation.generate_greedy` returns them."""
        from vllm import SamplingParams

        model, tokenizer = self.model, self.tokenizer
        config = reference_generation_config(model, tokenizer, max_new_tokens)
        if unbatchable_settings(config) or row_processors(model, config, 1):
            raise LumeError("the model's generation config changes greedy decoding (repetition penalty, banned "
                            "tokens, beams ...), which the vllm backend does not reproduce exactly; use --backend hf")
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens,
                                stop_token_ids=sorted(eos_token_ids(model, tokenizer)))
        results: list[Generation] = []
        for start in range(0, len(prompts), CHUNK):
            chunk = [{"prompt_token_ids": tokenizer(p).input_ids} for p in prompts[start:start + CHUNK]]
            for offset, output in enumerate(self.engine.generate(chunk, params, use_tqdm=False)):
                completion = output.outputs[0]
                tokens = list(completion.token_ids)
                stop = "length" if completion.finish_reason == "length" else "eos"
                generation = Generation(decode(tokenizer, tokens), len(tokens), stop)
                results.append(generation)
                if on_done is not None:
                    on_done(start + offset, generation)
        return results
