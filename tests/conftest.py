"""Shared fixtures: the real LUME data (required, never skipped) and tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lume.data.paths import resolve_data_dir


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data folder; a missing one fails the run instead of skipping tests."""
    path = resolve_data_dir()
    assert (path / "lume" / "forget.jsonl").is_file(), f"LUME data missing under {path}"
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    """Write rows (dicts are dumped, strings written as they are) one per line."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def lume_rows(doc: str, task: str = "Task1", n_qa: int = 1, split: str | None = None) -> list[dict]:
    """A well-formed document: its sc row and n_qa QA rows."""
    extra = {"split": split} if split else {}
    rows = [{"id": f"{doc}sc1", "input": f"Story {doc} begins", "output": "and ends.",
             "task": task, **extra}]
    rows += [{"id": f"{doc}qa{i}", "input": f"Question {i} on {doc}?", "output": f"Answer {i}",
              "task": task, **extra} for i in range(n_qa)]
    return rows
