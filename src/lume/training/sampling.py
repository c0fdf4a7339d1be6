"""Which examples each micro-step trains on: seeded, so a resumed or repeated run sees the same.

Two samplers: epochs (every example once per epoch, shuffled; building a target) and
independent draws (unlearning and relearning, where a step's forget and retain examples are
drawn apart). Each process of a distributed run takes its own share.
"""

from __future__ import annotations

import random


def length_grouped(order: list[int], lengths: list[int], width: int, factor: int = 8) -> list[int]:
    """The shuffled `order`, regrouped so that each batch of `width` holds examples of similar
    length: within each run of `width * factor`, longest first. Whole documents and short QA
    pairs then rarely share a batch, which cuts the padding (and the time) about threefold."""
    size = width * factor
    return [i for start in range(0, len(order), size)
            for i in sorted(order[start:start + size], key=lambda i: -lengths[i])]


def epoch_batch(seed: int, micro_step: int, micro_per_epoch: int, lengths: list[int], width: int,
                group_by_length: bool) -> list[int]:
    """The `width` example indices (all processes together) of one micro-step of seeded epochs;
    the epoch's last micro-steps wrap around to its first examples."""
    epoch, index = divmod(micro_step, micro_per_epoch)
    order = list(range(len(lengths)))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    if group_by_length:
        order = length_grouped(order, lengths, width)
    return [order[(index * width + k) % len(order)] for k in range(width)]


def drawn_batches(seed: int, micro_step: int, process_index: int, pools: list[range], batch_size: int | list[int]
                  ) -> list[list[int]]:
    """For one micro-step of one process, `batch_size` indices (one size per pool, or one for all)
    drawn from each pool in turn (forget, then retain): independent of every other step and process."""
    draw = random.Random(f"{seed}:{micro_step}:{process_index}")
    sizes = batch_size if isinstance(batch_size, list) else [batch_size] * len(pools)
    return [[draw.choice(pool) for _ in range(size)] for pool, size in zip(pools, sizes)]
