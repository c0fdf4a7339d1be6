"""Where the LUME data lives: flag, then LUME_DATA_DIR, then ../shared/data, then the cache."""

from __future__ import annotations

import os
from pathlib import Path

from lume.errors import LumeError

ENV_VAR = "LUME_DATA_DIR"
DATA_DIR_HELP = "Data folder (default: $LUME_DATA_DIR, ../shared/data, the cache)"
_SOURCE_ROOT = Path(__file__).resolve().parents[3]  # the checkout, for an editable install


def cache_dir() -> Path:
    """lume's user cache (data, converted models): $LUME_CACHE, else XDG cache/lume; one that is
    a file is refused at once (not after the work that would fill it)."""
    if os.environ.get("LUME_CACHE"):
        folder = Path(os.environ["LUME_CACHE"])
    else:
        folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lume"
    if folder.exists() and not folder.is_dir():
        raise LumeError(f"{folder}: lume's cache (LUME_CACHE, else XDG_CACHE_HOME/lume) is a file, not a folder; "
                        "point LUME_CACHE at a folder")
    return folder


def data_cache_dir() -> Path:
    return cache_dir() / "data"


def _candidates(explicit: str | Path | None) -> list[tuple[str, Path]]:
    if explicit is not None:
        return [("--data-dir", Path(explicit))]
    if os.environ.get(ENV_VAR):
        return [(ENV_VAR, Path(os.environ[ENV_VAR]))]
    return [("../shared/data", Path.cwd().parent / "shared" / "data"),
            ("../shared/data", _SOURCE_ROOT.parent / "shared" / "data"),
            ("cache", data_cache_dir())]


def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    """The first data directory that holds the LUME release (`lume/forget.jsonl`).

    An explicit directory or LUME_DATA_DIR is used as given (and must exist); otherwise the
    shared folder beside the checkout, then the cache that `lume data fetch` fills.
    """
    candidates = _candidates(explicit)
    for _, path in candidates:
        if (path / "lume" / "forget.jsonl").is_file():
            return path.resolve()
    origin, path = candidates[0]
    if origin in ("--data-dir", ENV_VAR):
        raise LumeError(f"{path}: no LUME data here (expected lume/forget.jsonl; from {origin})")
    raise LumeError("no LUME data found in ../shared/data or the cache "
                    f"({data_cache_dir()}); run `lume data fetch` or pass --data-dir")
