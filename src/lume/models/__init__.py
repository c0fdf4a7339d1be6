"""Loading causal LMs (a folder, a hub id, a GGUF file, the built-in SmolLM2-135M), saving
them, and fingerprinting their files."""

from lume.models.fingerprint import record_fingerprint
from lume.models.loading import (DEFAULT_MODEL, DTYPES, LoadedModel, check_device, context_length, default_device,
                                 load_model, model_fingerprint, refuse_beyond_context, resolve_dtype,
                                 resolve_model_path, save_model)

__all__ = ["DEFAULT_MODEL", "DTYPES", "LoadedModel", "check_device", "context_length", "default_device",
           "load_model", "model_fingerprint", "record_fingerprint", "refuse_beyond_context", "resolve_dtype",
           "resolve_model_path", "save_model"]
