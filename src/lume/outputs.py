"""Output folders: one writer at a time, and one definition of "finished" per kind of output.

A command that writes a folder takes its lock first (`one_writer`), checks the folder
(`check_output_dir`), marks it unfinished (`mark_unfinished`: the kind, the settings key and
the command line), writes its results, writes the kind's finished marker last and atomically,
and only then drops the unfinished mark (`mark_finished`). Whatever stops it in between (a
full disk, a kill, a bug), the folder is either finished or says it is not: readers refuse it
(`refuse_unfinished`), naming the command that would finish it, and the same command resumes it.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import SoftFileLock, Timeout

from lume.errors import InputError, LumeError, set_resume_note
from lume.files import read_json, write_json_atomic

# The file each kind of output writes last: its presence means the output is complete.
FINISHED_MARKERS = {
    "memorize": "lume_target.json",  # a target model
    "unlearn": "lume_unlearn.json",  # an unlearned model
    "merge": "lume_merge.json",  # merged adapters
    "evaluate": "summary.json",  # an evaluation
    "attack": "attacks.json",  # attacks on an unlearned model
}
UNFINISHED_NAME = "lume_unfinished.json"
_command: list[str] = []  # the command line being run, as its user typed it (set by the CLI)

log = logging.getLogger(__name__)


def record_command(words: list[str]) -> None:
    """Remember the command that writes the outputs: an unfinished output names it as the way to finish."""
    _command[:] = words


def _running(pid: int) -> bool:
    """Whether process PID exists on this host (filelock itself never breaks another host's lock)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def own_folder(folder: str | Path) -> Path:
    """FOLDER as an output folder: one that holds neither the current folder nor the filesystem's
    root (lume empties an output folder with --overwrite, and locks it beside itself)."""
    resolved = Path(folder).resolve()
    if resolved == Path(resolved.anchor) or Path.cwd().resolve().is_relative_to(resolved):
        raise LumeError(f"{str(folder) or '(empty)'}: an output folder must be a folder of its own, not the current "
                        "folder, one holding it, or /; name a new folder")
    return Path(folder)


@contextmanager
def one_writer(folder: str | Path, wait: bool = False) -> Iterator[None]:
    """Hold FOLDER's lock (the file FOLDER.lock beside it) while the block runs.

    A second command on the same folder stops at once naming the holder's process id, or
    waits with `wait`. A lock left by a process that died is taken over, and said so. Only the
    main process of a distributed run takes it (the others write under it). Re-entrant within
    a process, so a study step can hold the lock of the stage it runs.
    """
    folder = own_folder(folder)
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    lock_file = folder.with_name(folder.name + ".lock")
    lock = SoftFileLock(lock_file, is_singleton=True)
    _clear_unreadable(lock, lock_file)
    holder = lock.pid
    another = holder not in (None, os.getpid())  # a process other than this one holds it, or held it
    stale = another and not _running(holder)
    if another and not stale and wait:
        log.info(f"{folder}: waiting for process {holder}, which is writing here")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        writer = f"process {lock.pid or holder}" if (lock.pid or holder) else "another process (starting now)"
        raise LumeError(f"{folder}: {writer} is writing here; let it finish, or pass --wait to start when it has"
                        ) from None
    except OSError as error:
        raise LumeError(f"{folder}: cannot write the output folder ({error.strerror or error})") from None
    if stale:
        log.warning(f"{folder}: took over the lock left by process {holder}, which is no longer running")
    existed = folder.exists()
    try:
        yield
    except BaseException:
        _drop_if_nothing_written(folder, existed)
        raise
    finally:
        lock.release()


def _drop_if_nothing_written(folder: Path, existed: bool) -> None:
    """A command that failed before writing any result leaves no unfinished mark behind (nothing
    is there to resume), nor the folder it made."""
    try:
        entries = list(folder.iterdir()) if folder.is_dir() else []
        if [entry.name for entry in entries] == [UNFINISHED_NAME]:
            entries[0].unlink()
            if not existed:
                folder.rmdir()
    except OSError:
        pass  # a read-only or vanished folder: nothing to tidy


UNREADABLE_LOCK_AGE = 10.0  # seconds: a lock file still without a process id by then never gets one


def _clear_unreadable(lock: SoftFileLock, lock_file: Path) -> None:
    """A lock file that names no process (empty, or garbage) after its writer had time to write
    it was left by a crash or by hand: nobody holds it, so it is removed (and said so)."""
    import time

    try:
        age = time.time() - lock_file.stat().st_mtime
    except OSError:
        return
    if lock.pid is None and age > UNREADABLE_LOCK_AGE and not lock.is_locked:
        log.warning(f"{lock_file}: a lock naming no process; removed it")
        lock_file.unlink(missing_ok=True)


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
    out_dir = own_folder(out_dir)
    refuse_overwriting_inputs(out_dir, inputs, what)
    if out_dir.exists() and not out_dir.is_dir():
        raise LumeError(f"{out_dir}: the {what} is a file, not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not resumable(out_dir):
        if not overwrite:
            finished = next((kind for kind, name in FINISHED_MARKERS.items() if (out_dir / name).is_file()), None)
            held, them = (f"a finished `lume {finished}` output", "it") if finished else ("other results", "them")
            raise LumeError(f"{out_dir}: the {what} already holds {held}; choose another folder, "
                            f"or pass --overwrite to replace {them}")
        for entry in out_dir.iterdir():
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out_dir).close()
    except OSError as error:
        raise LumeError(f"{out_dir}: cannot write the {what} ({error.strerror or error})") from None
    return out_dir


_DAMAGED_MARK = {"kind": None, "key": None, "command": None, "finished_by": None}


def _unfinished_mark(folder: Path) -> dict | None:
    """The unfinished mark of FOLDER, unless the output it announces was finished after all; a
    damaged mark still says unfinished (with no kind, key or command)."""
    path = folder / UNFINISHED_NAME
    if not path.is_file():
        return None
    try:
        mark = read_json(path, what="unfinished mark")
    except InputError:
        return dict(_DAMAGED_MARK)
    if not all(isinstance(mark.get(name), str) for name in ("kind", "command", "finished_by")) \
            or mark["kind"] not in FINISHED_MARKERS:
        return dict(_DAMAGED_MARK)
    return None if (folder / FINISHED_MARKERS[mark["kind"]]).is_file() else mark


def mark_unfinished(folder: str | Path, kind: str, key: str | None = None) -> None:
    """Say, before any result is written, that FOLDER holds KIND's unfinished output."""
    command = shlex.join(_command or [Path(sys.argv[0]).name, *sys.argv[1:]])
    write_json_atomic(Path(folder) / UNFINISHED_NAME, {"kind": kind, "key": key, "command": command,
                                                       "finished_by": FINISHED_MARKERS[kind]})


def mark_finished(folder: str | Path) -> None:
    """Drop the unfinished mark (the kind's finished marker must already be written): nothing is
    left to resume."""
    (Path(folder) / UNFINISHED_NAME).unlink(missing_ok=True)
    set_resume_note(None)


def resumes(kind: str, key: str) -> Callable[[Path], bool]:
    """`resumable` for `check_output_dir`: FOLDER holds an unfinished KIND output of the same settings."""
    def same_run(folder: Path) -> bool:
        mark = _unfinished_mark(folder)
        return mark is not None and mark["kind"] == kind and mark["key"] == key

    return same_run


def refuse_unfinished(folder: str | Path) -> None:
    """A lume output that never finished is not passed off as a result: say which command finishes it."""
    mark = _unfinished_mark(Path(folder))
    if mark is not None and mark["kind"] is None:
        raise LumeError(f"{folder}: unfinished lume output ({UNFINISHED_NAME} is damaged, so which command wrote it "
                        "is unknown); run that command again with --overwrite to redo it")
    if mark is not None:
        raise LumeError(f"{folder}: unfinished `lume {mark['kind']}` output (no {mark['finished_by']}); "
                        f"run `{mark['command']}` again to finish it")


def claim(out_dir: str | Path, kind: str, *, key: str | None = None, inputs: tuple = (), overwrite: bool = False,
          resumable: Callable[[Path], bool] | None = None, what: str = "output folder", accelerator=None) -> Path:
    """Check OUT_DIR for KIND's output (resumable: an unfinished one of the same `key`, unless
    given) and mark it unfinished. With an `accelerator`, every process checks, then the main
    one marks (after all have checked, so that none takes the mark for an earlier run's)."""
    out_dir = check_output_dir(out_dir, inputs=inputs, overwrite=overwrite, what=what,
                               resumable=resumable or resumes(kind, key))
    if accelerator is not None:
        accelerator.wait_for_everyone()
    if accelerator is None or accelerator.is_main_process:
        mark_unfinished(out_dir, kind, key)
        log.debug(f"{out_dir}: writing a `lume {kind}` output (settings key {key})")
    return out_dir
