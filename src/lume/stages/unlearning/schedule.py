"""Which forget and retain examples each step of an unlearning run trains on.

Three schedules, each seeded so that a resumed or repeated run sees the same examples; each
gives micro-batch n (numbered over the run) the same examples on any number of processes:

- `draws` (the default): each micro-batch draws `batch_size` forget examples (from the method's
  `forget_pool`) and `batch_size · retain_per_forget` retain examples, independently;
- `epochs`: each epoch visits every forget example once, in a seeded shuffled order, with the
  retain examples taken in turn from a seeded shuffled order (cycling over the retain set);
- `chunks` (AILS-NTUA's data chunking): the forget set, its documents in a seeded shuffled order
  and each document's rows together (as the SemEval files hold them), is cut into chunks of
  `chunk_size`; each chunk is trained for `epochs` passes in order before the next begins, each
  forget example with `retain_per_forget` retain examples taken cyclically over the retain set
  (the same ones at every pass over that chunk, the next ones for the next chunk). With
  `restart_per_chunk`, each chunk starts with fresh optimiser moments and its own learning-rate
  schedule, as a new trainer per chunk has it. With `rows_apart`, each chunk is one sequence of
  rows (a forget example, then its retain examples, then the next forget example ...) and a
  micro-batch takes the next `batch_size` rows of it, whatever their kind: a step may hold forget
  rows only or retain rows only (AILS-NTUA's single-GPU notebook: one row, one optimiser step).

For `epochs` and `chunks` the run's length follows from the data: `epochs` passes (per chunk)
of `batch_size` forget examples per micro-batch.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from lume.config import check_settings, setting
from lume.errors import LumeError
from lume.training.sampling import drawn_batches

KINDS = ("draws", "epochs", "chunks")
DEFAULT_STEPS = 40  # the `draws` schedule's length when `steps` is not given


@dataclass
class ScheduleSettings:
    kind: str = setting("draws", "draws | epochs | chunks (see lume.stages.unlearning.schedule)", choices=KINDS)
    retain_per_forget: int = setting(1, "Retain examples per forget example in a step", at_least=1)
    epochs: float = setting(1.0, "epochs and chunks: passes over the forget set (over each chunk)", above=0)
    chunk_size: int = setting(32, "chunks: forget examples per chunk", at_least=1)
    restart_per_chunk: bool = setting(False, "chunks: fresh optimiser moments and learning-rate schedule per chunk")
    max_seconds: float = setting(0.0, "epochs: stop at the end of an epoch when one more, as long as the longest so "
                                      "far, would end past N seconds of training (a run cut off at a time limit "
                                      "keeps its last finished epoch); 0 = no limit", at_least=0)
    rows_apart: bool = setting(False, "chunks: a micro-batch takes the next batch_size rows of the chunk's sequence "
                                      "(each forget row, then its retain rows), so a step may hold one kind only")

    def __post_init__(self):
        check_settings(self)
        if self.max_seconds and self.kind != "epochs":
            raise LumeError(f"max_seconds stops at the end of an epoch: it needs kind epochs, not {self.kind}")
        if self.rows_apart and self.kind != "chunks":
            raise LumeError(f"rows_apart takes the rows of a chunk's sequence: it needs kind chunks, not {self.kind}")


@dataclass(frozen=True)
class Plan:
    """A run's schedule on its data: its length, its segments, and each micro-batch's examples."""

    settings: ScheduleSettings
    forget_count: int
    retain_count: int
    batch_size: int  # forget examples per micro-batch
    micro_batches_per_step: int  # gradient accumulation, all processes together
    steps: int
    order: tuple[int, ...] = ()  # chunks: the forget examples in chunking order

    def chunks(self) -> list[range]:
        size = self.settings.chunk_size
        return [range(start, min(start + size, self.forget_count)) for start in range(0, self.forget_count, size)]

    @property
    def forget_per_step(self) -> int:
        """Forget examples (with `rows_apart`, rows of either kind) an optimiser step takes:
        `batch_size` per micro-batch."""
        return self.batch_size * self.micro_batches_per_step

    @property
    def row_width(self) -> int:
        """Rows a forget example stands for in a chunk's sequence: 1, or with `rows_apart` itself
        and its retain rows."""
        return 1 + self.settings.retain_per_forget if self.settings.rows_apart else 1

    def chunk_steps(self) -> list[int]:
        """Optimiser steps per chunk: `epochs` passes over it."""
        return [max(1, math.ceil(len(chunk) * self.row_width * self.settings.epochs / self.forget_per_step))
                for chunk in self.chunks()]

    def segments(self) -> list[int] | None:
        return self.chunk_steps() if self.settings.kind == "chunks" and self.settings.restart_per_chunk else None

    def indices(self, seed: int, micro_batch: int, forget_pool: range) -> tuple[list[int], list[int]]:
        """The forget and retain example indices of one micro-batch (numbered over the run)."""
        retain_size = self.batch_size * self.settings.retain_per_forget
        if self.settings.kind == "draws":
            forget, retain = drawn_batches(seed, micro_batch, [forget_pool, range(self.retain_count)],
                                           [self.batch_size, retain_size])
            return forget, retain
        if self.settings.kind == "epochs":
            first = micro_batch * self.batch_size
            forget = [self._epoch_order(seed, (first + k) // self.forget_count)[(first + k) % self.forget_count]
                      for k in range(self.batch_size)]
            retain_order = _shuffled(self.retain_count, f"{seed}:retain")
            return forget, [retain_order[(first * self.settings.retain_per_forget + k) % self.retain_count]
                            for k in range(retain_size)]
        return self._chunk_indices(micro_batch)

    def _epoch_order(self, seed: int, epoch: int) -> list[int]:
        return _shuffled(self.forget_count, f"{seed}:epoch:{epoch}")

    def _chunk_indices(self, micro_batch: int) -> tuple[list[int], list[int]]:
        """Chunk by chunk, in order; forget example i of a chunk with its own retain examples."""
        chunks, retain_start, start = self.chunks(), 0, 0
        for chunk, steps in zip(chunks, self.chunk_steps()):
            micro = steps * self.micro_batches_per_step
            if micro_batch < start + micro or chunk is chunks[-1]:
                first = (micro_batch - start) * self.batch_size
                if self.settings.rows_apart:
                    return self._rows_apart(chunk, first, retain_start)
                positions = [(first + k) % len(chunk) for k in range(self.batch_size)]
                return ([self.order[chunk[i]] for i in positions],
                        [j for i in positions for j in self._retain_of(retain_start, i)])
            start += micro
            retain_start += len(chunk) * self.settings.retain_per_forget
        raise AssertionError("unreachable: the last chunk takes every later micro-batch")

    def _retain_of(self, retain_start: int, position: int) -> list[int]:
        """The retain examples of a chunk's forget example `position` (the chunk's start at `retain_start`)."""
        ratio = self.settings.retain_per_forget
        return [(retain_start + position * ratio + r) % self.retain_count for r in range(ratio)]

    def _rows_apart(self, chunk: range, first: int, retain_start: int) -> tuple[list[int], list[int]]:
        """Rows `first` ... of the chunk's sequence (each forget row, then its retain rows; passes
        repeat it), split by kind."""
        forget, retain = [], []
        for row in range(first, first + self.batch_size):
            position, slot = divmod(row % (len(chunk) * self.row_width), self.row_width)
            if slot:
                retain.append(self._retain_of(retain_start, position)[slot - 1])
            else:
                forget.append(self.order[chunk[position]])
        return forget, retain


class EpochBudget:
    """`max_seconds`, checked after each step: at the end of an epoch, stop when one more epoch,
    as long as the longest so far, would end past the budget. A resumed run's first epochs count
    at their mean length (the training time of a resumed run includes theirs)."""

    def __init__(self, plan: Plan):
        self.plan, self.epochs, self.ended, self.longest = plan, 0, 0.0, 0.0

    def finished_epochs(self, step: int) -> int:
        return step * self.plan.forget_per_step // self.plan.forget_count

    def __call__(self, step: int, seconds: float) -> str | None:
        epochs = self.finished_epochs(step)
        if epochs == self.finished_epochs(step - 1):
            return None
        self.longest = max(self.longest, (seconds - self.ended) / max(epochs - self.epochs, 1))
        self.epochs, self.ended = epochs, seconds
        budget = self.plan.settings.max_seconds
        if seconds + self.longest <= budget:
            return None
        return (f"time budget: {epochs} epoch(s) in {seconds:.0f} s of training; one more (about "
                f"{self.longest:.0f} s) would end past {budget:.0f} s")


def _shuffled(count: int, salt: str) -> list[int]:
    order = list(range(count))
    random.Random(salt).shuffle(order)
    return order


def document_order(documents: list[str], seed: int) -> tuple[int, ...]:
    """Example indices with each document's examples together (in their order), the documents in
    a seeded shuffled order."""
    names = sorted(set(documents))
    random.Random(f"{seed}:chunks").shuffle(names)
    rank = {name: i for i, name in enumerate(names)}
    return tuple(sorted(range(len(documents)), key=lambda i: (rank[documents[i]], i)))


def plan(settings: ScheduleSettings, steps: int | None, forget_count: int, retain_count: int, batch_size: int,
         micro_batches_per_step: int, forget_documents: list[str] | None = None, seed: int = 0) -> Plan:
    """The schedule on this data; `steps` (None: the schedule's own length) is refused for
    `chunks`, whose length is its chunks' passes. `forget_documents` (each forget example's
    document) groups the chunks' examples by document; without it, each example is its own."""
    order = document_order(forget_documents or [str(i) for i in range(forget_count)], seed) \
        if settings.kind == "chunks" else ()
    partial = Plan(settings, forget_count, retain_count, batch_size, micro_batches_per_step, 0, order)
    if settings.kind == "chunks":
        if steps is not None:
            raise LumeError("the chunks schedule's length is its chunks' passes (schedule.epochs per chunk): "
                            "leave steps unset")
        length = sum(partial.chunk_steps())
    elif steps is not None:
        length = steps
    elif settings.kind == "epochs":
        length = max(1, math.ceil(forget_count * settings.epochs / partial.forget_per_step))
    else:
        length = DEFAULT_STEPS
    return Plan(settings, forget_count, retain_count, batch_size, micro_batches_per_step, length, order)
