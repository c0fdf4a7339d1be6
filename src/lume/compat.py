"""Every use of a private transformers or accelerate name, behind one door.

lume decodes in batches exactly as `generate` does one prompt at a time, keeps a KV cache of
its own, and scores mid-training without accelerate's autocast wrapper. Each needs a name
outside those libraries' public API; they are all here, and nowhere else. `PRIVATE_NAMES`
lists them, `missing_private_names()` says which the installed versions lack (a test fails
with that message when an upgrade moves one), and `pyproject.toml` bounds transformers and
accelerate to the versions tested.
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
}
# accelerate's `prepare` keeps a mixed-precision model's own forward in the instance attribute
# `_original_forward` (`original_forward` below); a test prepares a model to check it still does.


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


__all__ = ["DynamicLayer", "PRIVATE_NAMES", "logits_processors", "missing_private_names", "original_forward",
           "prepare_special_tokens"]
