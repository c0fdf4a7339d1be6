"""Atomic writes and resumable per-item result caches."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


_UMASK = os.umask(0)
os.umask(_UMASK)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a file so that readers see the old content or the new one, never a half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes 0600; give it the usual mode
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_json_atomic(path: str | Path, value) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: str | Path, rows) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


class ResultCache:
    """Per-item results appended as they finish, so an interrupted run resumes.

    The first line records `key` (model, settings); a cache with another key is discarded,
    and a torn last line from a killed process is ignored.
    """

    def __init__(self, path: str | Path, key: dict):
        self.path = Path(path)
        self.results: dict[str, dict] = {}
        header = json.dumps({"key": key}, sort_keys=True)
        if self.path.is_file():
            lines = self.path.read_text(encoding="utf-8").splitlines()
            if lines and lines[0] == header:
                for line in lines[1:]:
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        break
                    self.results[row["id"]] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, header + "\n" + "".join(
            json.dumps(r, ensure_ascii=False) + "\n" for r in self.results.values()))
        self._out = self.path.open("a", encoding="utf-8")

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.results

    def add(self, row: dict) -> None:
        self.results[row["id"]] = row
        self._out.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._out.flush()

    def __enter__(self) -> "ResultCache":
        return self

    def __exit__(self, *_exc) -> None:
        self._out.close()
