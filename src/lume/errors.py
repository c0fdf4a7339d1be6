"""Errors that the CLI turns into one clear line and exit status 2."""

from __future__ import annotations

from pathlib import Path


class LumeError(Exception):
    """A problem the user can fix (bad input, missing file); never a bug in lume."""


class InputError(LumeError):
    """Bad input, located by file, line or row, and field."""

    def __init__(self, path: str | Path, message: str, *, line: int | None = None,
                 row: int | None = None, field: str | None = None):
        self.path, self.line, self.row, self.field = str(path), line, row, field
        where = self.path
        if line is not None:
            where += f":{line}"
        elif row is not None:
            where += f": row {row}"
        if field is not None:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")


_resume_note: list[str] = []
_study_note: list[str] = []


def set_resume_note(text: str | None) -> None:
    """What an interruption now would keep and how to resume; the CLI prints it on Ctrl-C."""
    _resume_note[:] = [text] if text else []


def set_study_note(text: str | None) -> None:
    """The note of a whole study or sweep, said when no stage of it has one of its own (between
    steps, or in one that keeps nothing itself)."""
    _study_note[:] = [text] if text else []


def resume_note() -> str | None:
    return (_resume_note or _study_note or [None])[0]
