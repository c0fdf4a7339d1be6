"""Model fingerprints: a hash of every byte of the files that decide a model's outputs.

Sampling a few blocks of each file is not enough (an RMU run changes two MLP layers, which a
sample can miss), so every byte is hashed (SHA-256, about 1.3 GB/s on one core). lume records
the result beside the weights it writes (`lume_fingerprint.json`); for other folders it is
kept in lume's cache, keyed by path, and reused while no file's size or modification time
changed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from lume.data.paths import cache_dir
from lume.errors import InputError
from lume.files import read_json, write_json_atomic

RECORD_NAME = "lume_fingerprint.json"
# Besides *.safetensors: files that change what a model generates (config, generation config,
# tokenizer). lume's own result files are not part of the model.
MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
               "chat_template.jinja", "model.safetensors.index.json")


def model_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and (p.suffix == ".safetensors" or p.name in MODEL_FILES))


def _stats(files: list[Path]) -> dict[str, list[int]]:
    return {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in files}


def _digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(os.fsencode(file.name) + f"\0{file.stat().st_size}\0".encode())
        with file.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:16]


def _cache_record(folder: Path) -> Path:
    key = hashlib.sha256(os.fsencode(folder.resolve())).hexdigest()[:24]
    return cache_dir() / "fingerprints" / f"{key}.json"


def _read(record: Path, stats: dict) -> str | None:
    """The recorded fingerprint, when the record is intact and the files are as recorded (a
    damaged record is only a cache miss: the fingerprint is computed again)."""
    try:
        saved = read_json(record, what="fingerprint record")
    except InputError:
        return None
    found = saved.get("fingerprint")
    return found if saved.get("files") == stats and isinstance(found, str) else None


def record_fingerprint(folder: str | Path) -> str:
    """Hash a folder lume has just written and record the result beside its weights."""
    folder = Path(folder)
    files = model_files(folder)
    fingerprint = _digest(files)
    write_json_atomic(folder / RECORD_NAME, {"fingerprint": fingerprint, "files": _stats(files)})
    return fingerprint


def damaged(folder: str | Path) -> bool:
    """Whether a model lume wrote has lost or changed a file since (a size differs from its
    record: a truncated or missing weights file); a folder without lume's record is not judged."""
    record = Path(folder) / RECORD_NAME
    if not record.is_file():
        return False
    try:
        recorded = {name: stat[0] for name, stat in read_json(record, what="fingerprint record")["files"].items()}
    except (InputError, KeyError, TypeError, AttributeError, IndexError):  # a damaged record: so is the model
        return True
    return recorded != {name: size for name, (size, _time) in _stats(model_files(Path(folder))).items()}


def fingerprint(folder: str | Path) -> str:
    """The fingerprint of a model folder: recorded, cached, or computed now (and cached)."""
    folder = Path(folder)
    files = model_files(folder)
    stats = _stats(files)
    for record in (folder / RECORD_NAME, _cache_record(folder)):
        found = _read(record, stats) if record.is_file() else None
        if found:
            return found
    value = _digest(files)
    write_json_atomic(_cache_record(folder), {"path": str(folder.resolve()), "fingerprint": value, "files": stats})
    return value
