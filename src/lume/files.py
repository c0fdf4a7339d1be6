"""Files: atomic writes and resumable per-item result stores (output folders: `lume.outputs`)."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from safetensors import SafetensorError

from lume.errors import InputError


log = logging.getLogger(__name__)

# A path whose bytes are not UTF-8 (or any non-ASCII path under the C locale) holds lone surrogates,
# which UTF-8 cannot encode: written as \udcXX, which JSON reads back as the same string
UNENCODABLE = "backslashreplace"

_UMASK = os.umask(0)
os.umask(_UMASK)


# torch.save's zip writer on a failed write ("[enforce fail at inline_container.cc:...] unexpected pos ..."):
# it keeps no OS error, so a disk with (almost) no room left is taken to be why
_TORCH_WRITER = re.compile(r"inline_container\.cc|PytorchStreamWriter failed writing")
_NEARLY_FULL = 1 << 20  # bytes


@contextmanager
def writing_to(path: str | Path) -> Iterator[None]:
    """A failed write inside raises an OSError naming PATH: an OSError from a file object carries
    no file name, safetensors' error only the OS error's number, in its text, and torch.save's
    neither (a full disk is then recognised by its free space)."""
    try:
        yield
    except OSError as error:
        if error.filename is not None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from None
    except SafetensorError as error:
        code = re.search(r"(?:os error|code:) (\d+)", str(error))  # "... No space left on device (os error 28)"
        if code is None:
            raise
        raise OSError(int(code[1]), os.strerror(int(code[1])), str(path)) from None
    except RuntimeError as error:
        if not _TORCH_WRITER.search(str(error)) or _free_bytes(Path(path)) >= _NEARLY_FULL:
            raise
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None


def os_path(text: str) -> str:
    """A path read from a UTF-8 file, as the OS names it: under a filesystem encoding other than
    UTF-8 (the C locale), its UTF-8 bytes become the lone surrogates Python gives such bytes."""
    return os.fsdecode(text.encode("utf-8", "surrogateescape"))


@contextmanager
def utf8_path(folder: str | Path) -> Iterator[Path]:
    """FOLDER under a name the Rust libraries (tokenizers, safetensors) can take: they need UTF-8,
    and a folder whose bytes are not UTF-8 (or any non-ASCII one under the C locale) reaches Python
    as lone surrogates. Such a folder is reached through a link of an ASCII name in a temporary
    folder; any other is given as it is."""
    folder = Path(folder)
    try:
        str(folder).encode("utf-8")
    except UnicodeEncodeError:
        with tempfile.TemporaryDirectory(prefix="lume-path-") as links:
            link = Path(links) / "folder"
            link.symlink_to(folder.absolute(), target_is_directory=True)
            yield link
        return
    yield folder


def _free_bytes(path: Path) -> int:
    """Free bytes on the disk that holds PATH (or its nearest existing folder)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a file so that readers see the old content or the new one, never a half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing_to(path):
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(handle, "w", encoding="utf-8", errors=UNENCODABLE) as out:
                out.write(text)
            os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes 0600; give it the usual mode
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise


def read_json(path: str | Path, expect: type = dict, what: str = "lume file"):
    """A JSON file lume wrote, as `expect` (dict or list); anything else (unreadable, not UTF-8,
    truncated, another type) is one InputError naming the file and what is wrong with it."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, f"missing (the {what} was deleted?)") from None
    except UnicodeDecodeError as error:
        raise InputError(path, f"damaged {what}: not UTF-8 text (byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise InputError(path, f"damaged {what}: not JSON ({error.msg})", line=error.lineno) from None
    except OSError as error:
        raise InputError(path, f"cannot read the {what} ({error.strerror or error})") from None
    if not isinstance(value, expect):
        raise InputError(path, f"damaged {what}: expected a JSON {'object' if expect is dict else 'list'}, "
                               f"found {type(value).__name__}")
    return value


def read_jsonl(path: str | Path, what: str = "lume file") -> list[dict]:
    """The JSON objects of a JSON-lines file lume wrote, one a line; as `read_json`, one line names a fault."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(path, f"missing (the {what} was deleted?)") from None
    except UnicodeDecodeError as error:
        raise InputError(path, f"damaged {what}: not UTF-8 text (byte {error.start})") from None
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(path, f"damaged {what}: not JSON ({error.msg})", line=number) from None
        if not isinstance(row, dict):
            raise InputError(path, f"damaged {what}: expected a JSON object", line=number)
        rows.append(row)
    return rows


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
            self._read(header)
        self._out = None
        if writable:
            write_text_atomic(self.path, header + "\n" + "".join(
                json.dumps(r, ensure_ascii=False) + "\n" for r in self.results.values()))
            self._out = self.path.open("a", encoding="utf-8", errors=UNENCODABLE)

    def _read(self, header: str) -> None:
        """The finished rows of a store of the same key, up to the first damaged line (a torn
        last line, bad bytes, a row without an id): the rest is recomputed, said in a warning."""
        lines = self.path.read_bytes().splitlines()
        if not lines or lines[0] != header.encode("utf-8", UNENCODABLE):
            return
        for number, line in enumerate(lines[1:], 2):
            try:
                row = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                row = None
            if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                if number < len(lines):  # only a last line torn by a kill is expected
                    log.warning(f"{self.path}:{number}: a damaged cache line; the items from there on are redone")
                break
            self.results[row["id"]] = row

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.results

    def add(self, row: dict) -> None:
        self.results[row["id"]] = row
        if self._out is not None:
            with writing_to(self.path):
                self._out.write(json.dumps(row, ensure_ascii=False) + "\n")
                self._out.flush()

    def __enter__(self) -> ItemStore:
        return self

    def __exit__(self, *_exc) -> None:
        if self._out is not None:
            with writing_to(self.path):
                self._out.close()
