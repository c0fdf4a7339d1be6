"""Every use of a private transformers, accelerate or torch name, behind one door.

lume decodes in batches exactly as `generate` does one prompt at a time, keeps a KV cache of
its own, scores mid-training without accelerate's autocast wrapper, and falls back to eager
when torch cannot compile a training step. Each needs a name outside those libraries' public
API; they are all here, and nowhere else. `PRIVATE_NAMES` lists them, `missing_private_names()`
says which the installed versions lack (a test fails with that message when an upgrade moves
one), and `pyproject.toml` bounds transformers and accelerate to the versions tested.
"""

from __future__ import annotations

import importlib
from importlib.metadata import version

from transformers.cache_utils import DynamicLayer  # the per-layer cache class lume's ReservedLayer extends

# (module, attribute path) of each private name lume uses, and what for
PRIVATE_NAMES = {
    ("transformers.generation.utils", "GenerationMixin._prepare_special_tokens"):
        "the special-token tensors `generate` gives its logits processors (batched decoding)",
    ("transformers.generation.utils", "GenerationMixin._get_logits_processor"):
        "the logits processors `generate` builds from a generation config (batched decoding)",
    ("transformers.cache_utils", "DynamicLayer"): "the cache layer lume's reserved KV cache extends",
    ("torch._dynamo.exc", "TorchDynamoException"):
        "the compiler's own errors, inductor's included, on which compiled training falls back to eager",
    ("torch._functorch.config", "force_non_lazy_backward_lowering"):
        "compiling a backward in its forward, where a failure has written no gradient yet",
}
# Instance attributes, each checked by a test that makes one: accelerate's `prepare` keeps a
# mixed-precision model's own forward in `_original_forward` (`original_forward` below), and
# `Module.compile` keeps the compiled call in `_compiled_call_impl` (`compiled_call`).
# torch's compiler modules are imported only by what compiles: torch._dynamo takes 1.6 s.


def missing_private_names() -> list[str]:
    """One line per private name the installed transformers or accelerate lacks."""
    missing = []
    for (module_name, path), use in PRIVATE_NAMES.items():
        found = importlib.import_module(module_name)
        for part in path.split("."):
            found = getattr(found, part, None)
        if found is None:
            package = module_name.split(".")[0]
            missing.append(f"{package} {version(package)} has no {module_name}.{path} ({use}); "
                           "lume.compat needs another way to do this")
    return missing


def prepare_special_tokens(model, config) -> None:
    """Fill `config`'s special-token tensors on the model's device, as `generate` does first."""
    model._prepare_special_tokens(config, True, device=model.device)


def logits_processors(model, config, prompt_length: int, attention_mask):
    """The logits processors `generate` builds from `config` for a prompt of this length."""
    return model._get_logits_processor(config, input_ids_seq_length=prompt_length, device=model.device,
                                       model_kwargs={"attention_mask": attention_mask})


def original_forward(model):
    """The model's forward before accelerate's mixed-precision wrapper (None when unwrapped)."""
    return model.__dict__.get("_original_forward")


def compiled_call(module):
    """The compiled call `Module.compile` put on the module (None when it is not compiled)."""
    return module.__dict__.get("_compiled_call_impl")


def drop_compiled_call(module) -> None:
    """Undo `Module.compile`: the module's own `__call__` again."""
    module.__dict__.pop("_compiled_call_impl", None)


def compiler_errors() -> tuple[type[Exception], ...]:
    """The compiler's own errors, inductor's included."""
    import torch._dynamo.exc

    return (torch._dynamo.exc.TorchDynamoException,)


def backward_compiled_in_forward():
    """A context in which a compiled forward compiles its backward too, not the backward's first run."""
    import torch._functorch.config

    return torch._functorch.config.patch(force_non_lazy_backward_lowering=True)


__all__ = ["DynamicLayer", "PRIVATE_NAMES", "backward_compiled_in_forward", "compiled_call", "compiler_errors",
           "drop_compiled_call", "logits_processors", "missing_private_names", "original_forward",
           "prepare_special_tokens"]
