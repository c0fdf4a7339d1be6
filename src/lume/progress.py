"""One progress bar style for all long work: count, rate and time left, on stderr."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

_console = Console(stderr=True)
_clock = time.monotonic


@contextmanager
def progress_bar(description: str, total: int, unit: str = "items", enabled: bool = True):
    """Yield `advance(n=1, info="")`; the bar shows `{unit}/s` and the latest info text. None
    when lume's logger is set above INFO (`lume -q`)."""
    if not enabled or total == 0 or logging.getLogger("lume").level > logging.INFO:
        yield lambda n=1, **fields: None
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=_console, transient=False) as progress:
        task = progress.add_task(description, total=total, rate="", info="")

        started = _clock()

        def advance(n: int = 1, info: str = "") -> None:
            progress.advance(task, n)
            # the mean rate since the start: work finishing in bursts (a batch of generations)
            # makes rich's recent-window speed jump far above it
            elapsed = _clock() - started
            done = progress.tasks[0].completed
            progress.update(task, rate=f"{done / elapsed:.2f} {unit}/s" if elapsed > 0 and done else "", info=info)

        yield advance
