"""Files: atomic writes, resumable per-item result stores, and the guard on output folders."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from lume.errors import LumeError


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


class ItemStore:
    """Per-item results appended as they finish, so an interrupted run resumes.

    The first line records `key` (model, settings); a store with another key is discarded,
    and a torn last line from a killed process is ignored. A store that is not `writable` (the
    other processes of a distributed run) reads the file and keeps new rows in memory only.
    """

    def __init__(self, path: str | Path, key: dict, writable: bool = True):
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
        self._out = None
        if writable:
            write_text_atomic(self.path, header + "\n" + "".join(
                json.dumps(r, ensure_ascii=False) + "\n" for r in self.results.values()))
            self._out = self.path.open("a", encoding="utf-8")

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.results

    def add(self, row: dict) -> None:
        self.results[row["id"]] = row
        if self._out is not None:
            self._out.write(json.dumps(row, ensure_ascii=False) + "\n")
            self._out.flush()

    def __enter__(self) -> ItemStore:
        return self

    def __exit__(self, *_exc) -> None:
        if self._out is not None:
            self._out.close()


def refuse_overwriting_inputs(out_dir: str | Path, inputs: tuple, what: str = "output folder") -> None:
    """An output folder may be neither an input nor a folder that holds one."""
    resolved = Path(out_dir).resolve()
    for source in inputs:
        if source is not None and Path(source).exists() and Path(source).resolve().is_relative_to(resolved):
            raise LumeError(f"{out_dir}: the {what} would overwrite the input {source}; choose another folder")


def check_output_dir(out_dir: str | Path, *, inputs: tuple = (), overwrite: bool = False,
                     resumable: Callable[[Path], bool] = lambda _folder: False, what: str = "output folder") -> Path:
    """Refuse, before any work, an output folder whose use would destroy or misreport something.

    Never an input (nor a folder holding one); never a file or an unwritable place; an existing
    non-empty folder only when `resumable(folder)` (an unfinished run of the same settings) or
    with `overwrite` (then it is emptied first).
    """
    out_dir = Path(out_dir)
    refuse_overwriting_inputs(out_dir, inputs, what)
    if out_dir.exists() and not out_dir.is_dir():
        raise LumeError(f"{out_dir}: the {what} is a file, not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not resumable(out_dir):
        if not overwrite:
            raise LumeError(f"{out_dir}: the {what} already holds other results; choose another folder, "
                            "or pass --overwrite to replace them")
        for entry in out_dir.iterdir():
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out_dir).close()
    except OSError as error:
        raise LumeError(f"{out_dir}: cannot write the {what} ({error.strerror or error})") from None
    return out_dir
