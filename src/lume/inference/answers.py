"""The logits that predict a batch's answer tokens, from packed forwards.

Training losses only ever look at the positions that predict labelled tokens. So the rows of
one or several batches (a step's forget and retain examples) are packed end to end into as few
sequences as fit `PACK_TOKENS`, with position ids starting again at each row, which
transformers reads as attention that never crosses from one row into another; the output layer
runs only at the positions whose next token is labelled. One full forward replaces one per
length group and batch, and no padding or unused logits are computed. Whether a model honours
packed position ids is checked once per model on two short rows; one that does not is run row
group by row group (`lume.inference.likelihood.grouped_logits`), with the same results.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch

from lume.inference.batching import IGNORE
from lume.inference.likelihood import grouped_logits

# Tokens per packed sequence (a longer row gets one of its own). The attention of a packed
# sequence costs its length squared, the rows apart or not: 512 trained SmolLM2 6-29 % faster
# than 1024 on LUME rows (bench/README.md), 256 no faster than 512.
PACK_TOKENS = 512
_packs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> whether packing is exact


@dataclass
class Answers:
    """One batch's answer logits: one entry per labelled token, row by row in order."""

    logits: torch.Tensor  # [tokens, vocabulary]
    targets: torch.Tensor  # [tokens] the labelled token each entry predicts
    rows: torch.Tensor  # [tokens] the batch row it belongs to
    size: int  # rows in the batch
    _log_probs: torch.Tensor | None = field(default=None, repr=False)

    def log_probs(self) -> torch.Tensor:
        """log-softmax over the vocabulary at each entry (float32; computed once)."""
        if self._log_probs is None:
            self._log_probs = torch.log_softmax(self.logits.float(), -1)
        return self._log_probs

    def log_likelihoods(self) -> torch.Tensor:
        """log π(y_t | x, y_<t) of each labelled token."""
        return self.log_probs().gather(-1, self.targets.unsqueeze(-1)).squeeze(-1)

    def per_row(self, values: torch.Tensor) -> torch.Tensor:
        """The sum of per-token `values` over each row's labelled tokens ([rows])."""
        return torch.zeros(self.size, dtype=values.dtype, device=values.device).index_add(0, self.rows, values)

    def counts(self) -> torch.Tensor:
        return torch.bincount(self.rows, minlength=self.size)

    def rank_in_row(self) -> torch.Tensor:
        """Each entry's place among its row's labelled tokens (0 for the first)."""
        starts = torch.cumsum(self.counts(), 0) - self.counts()
        return torch.arange(len(self.rows), device=self.rows.device) - starts[self.rows]


def _row_spans(batch: dict) -> list[tuple[list[int], list[int]]]:
    """Each row's real token ids and the in-row positions that predict a labelled token."""
    spans = []
    for ids, mask, labels in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(),
                                 batch["labels"].tolist()):
        length = sum(mask)
        spans.append((ids[:length], [t for t in range(length - 1) if labels[t + 1] != IGNORE]))
    return spans


def _bins(lengths: list[int], capacity: int) -> list[list[int]]:
    """Rows packed first-fit, longest first, into sequences of at most `capacity` tokens."""
    bins: list[list[int]] = []
    room: list[int] = []
    for row in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        place = next((b for b, free in enumerate(room) if free >= lengths[row]), None)
        if place is None:
            bins.append([row])
            room.append(max(capacity, lengths[row]) - lengths[row])
        else:
            bins[place].append(row)
            room[place] -= lengths[row]
    return bins


def _device(model) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _packed(model, spans: list[tuple[list[int], list[int]]], pad_id: int) -> torch.Tensor:
    """One forward over every row packed into sequences: the answer logits of every row, row by
    row in order ([labelled tokens, vocabulary]). The output layer runs on the answer positions
    only (a boolean `logits_to_keep`, read by transformers as packed positions), and one gather
    puts the rows back in order: its backward writes one gradient of the answer logits' size."""
    device = _device(model)
    bins = _bins([len(ids) for ids, _ in spans], PACK_TOKENS)
    width = max(sum(len(spans[r][0]) for r in rows) for rows in bins)
    keep = torch.zeros(len(bins), width, dtype=torch.bool)
    input_ids, positions, first, kept = [], [], {}, 0
    for b, rows in enumerate(bins):
        ids, pos = [], []
        for row in rows:
            keep[b, [len(ids) + t for t in spans[row][1]]] = True
            first[row], kept = kept, kept + len(spans[row][1])  # the output's entries go bin by bin, row by row
            ids += spans[row][0]
            pos += list(range(len(spans[row][0])))
        pad = width - len(ids)
        input_ids.append(ids + [pad_id] * pad)
        positions.append(pos + list(range(pad)))  # the padding is a segment of its own
    logits = model(input_ids=torch.tensor(input_ids, device=device),
                   position_ids=torch.tensor(positions, device=device), attention_mask=None, use_cache=False,
                   logits_to_keep=keep.to(device)).logits
    order = [first[row] + i for row, (_, predicting) in enumerate(spans) for i in range(len(predicting))]
    return logits[torch.tensor(order, device=device)]


def _grouped(model, batch: dict, spans) -> torch.Tensor:
    full = grouped_logits(model, batch)
    return torch.cat([full[row, predicting] for row, (_, predicting) in enumerate(spans)])


def packs_exactly(model) -> bool:
    """Whether the model keeps packed rows apart (checked once per model, on two short rows)."""
    inner = getattr(model, "module", model)
    if inner not in _packs:
        device = _device(model)
        rows = [[1, 0, 1, 1], [0, 1, 1]]
        try:
            with torch.no_grad(), torch.compiler.set_stance("force_eager"):
                alone = [model(input_ids=torch.tensor([r], device=device)).logits[0, :-1].float() for r in rows]
                together = _packed(model, [(r, list(range(len(r) - 1))) for r in rows], 0).split(
                    [len(r) - 1 for r in rows])
        except (TypeError, IndexError):  # no position ids or logits_to_keep, or a logits_to_keep read otherwise
            _packs[inner] = False
        else:
            _packs[inner] = all(torch.allclose(a, p.float(), rtol=1e-3, atol=1e-3 * float(a.abs().max()))
                                for a, p in zip(alone, together))
    return _packs[inner]


def answer_logits(model, batches: list[dict], pad_id: int = 0) -> list[Answers]:
    """Each batch's answer logits, every batch's rows in one packed forward where the model
    allows it (else one forward per row group and batch)."""
    spans = [_row_spans(batch) for batch in batches]
    if packs_exactly(model):
        sizes = [sum(len(predicting) for _, predicting in batch_spans) for batch_spans in spans]
        per_batch = _packed(model, [span for batch_spans in spans for span in batch_spans], pad_id).split(sizes)
    else:
        per_batch = [_grouped(model, batch, batch_spans) for batch, batch_spans in zip(batches, spans)]
    answers = []
    for batch, batch_spans, logits in zip(batches, spans, per_batch):
        device = batch["labels"].device
        targets = [batch["labels"][row, [t + 1 for t in predicting]] for row, (_, predicting) in enumerate(batch_spans)]
        rows = [torch.full((len(predicting),), row, device=device) for row, (_, predicting) in enumerate(batch_spans)]
        answers.append(Answers(logits, torch.cat(targets), torch.cat(rows), len(batch_spans)))
    return answers
