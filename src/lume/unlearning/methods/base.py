"""What every unlearning method is: a loss over a forget batch and a retain batch.

A method is a subclass of `Method` in its own file under `lume/unlearning/methods/`, with a
`Settings` dataclass (its hyperparameters and defaults) and a `loss`; `@register` makes it
available by name to the Python API, the CLI and run configs.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager, nullcontext
from typing import ClassVar

import torch

from lume.errors import LumeError
from lume.training import IGNORE, sequence_log_likelihoods

METHODS: dict[str, type["Method"]] = {}


def register(cls: type["Method"]) -> type["Method"]:
    METHODS[cls.name] = cls
    return cls


@dataclasses.dataclass
class NoSettings:
    pass


class Method:
    name: ClassVar[str]
    Settings: ClassVar[type] = NoSettings
    # A frozen copy of the starting model on the retain set (KL, RMU); with LoRA, the base
    # weights with the adapter switched off serve instead of a copy.
    needs_reference_model: ClassVar[bool] = False

    def __init__(self, settings=None):
        self.settings = settings if settings is not None else self.Settings()

    def select_parameters(self, model) -> None:
        """Freeze what the method must not change (full fine-tuning only); default: train all."""

    def prepare(self, context: "Context") -> None:
        """Work done once before training (e.g. reference log-likelihoods on the forget set)."""

    def forget_pool(self, step: int, total_steps: int, size: int) -> range:
        """Forget examples a step may draw from: all of them, unless the method schedules them."""
        return range(size)

    def loss(self, context: "Context", forget: dict, retain: dict) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError


class Context:
    """What a loss may use: the model being trained, the frozen starting point, the examples."""

    def __init__(self, model, tokenizer, forget_examples: list, collate, reference_model=None,
                 batch_size: int = 8, autocast=nullcontext):
        self.model = model
        self.autocast = autocast  # the trained forward's mixed precision, for reference forwards too
        self.tokenizer = tokenizer
        self.forget_examples = forget_examples
        self.collate = collate  # list[Example] -> batch dict on the training device
        self.reference_model = reference_model
        self.batch_size = batch_size
        self.cache: dict = {}

    @torch.no_grad()
    def forget_log_likelihoods(self, examples: list | None = None) -> torch.Tensor:
        """log π(y|x) of each forget example under the model as it is now (before training)."""
        examples = self.forget_examples if examples is None else examples
        values = []
        for start in range(0, len(examples), self.batch_size):
            batch = self.collate(examples[start:start + self.batch_size])
            values.append(sequence_log_likelihood(self.model, batch)[0])
        return torch.cat(values)

    @contextmanager
    def frozen(self):
        """The starting model, for reference quantities (no gradients, the policy's precision)."""
        with torch.no_grad(), self.autocast():
            if self.reference_model is not None:
                yield self.reference_model
            elif hasattr(self.model, "disable_adapter"):
                with self.model.disable_adapter():
                    yield self.model
            else:
                raise LumeError("this method needs a reference model, which was not set up")


def length_groups(lengths: list[int]) -> list[list[int]]:
    """Row indices grouped by similar length, longest first: a row under half its group's
    longest starts a new group, so no group pads a row to more than twice its length."""
    groups: list[list[int]] = []
    for row in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if groups and 2 * lengths[row] > lengths[groups[-1][0]]:
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def logits(model, batch: dict) -> torch.Tensor:
    """The logits of a right-padded batch, one forward per group of similar lengths.

    A step's random draw often mixes whole documents with short QA pairs; padding them to one
    width doubles the work (measured on the demo: 29k padded tokens for 13k real ones, 15k
    grouped). Each row's logits are those of its own unpadded forward; padding positions get
    zeros (they carry no label).
    """
    input_ids, mask = batch["input_ids"], batch["attention_mask"]
    lengths = mask.sum(-1).tolist()
    groups = length_groups(lengths)
    if len(groups) == 1:
        return model(input_ids=input_ids, attention_mask=mask).logits
    parts = []
    for rows in groups:
        width, index = lengths[rows[0]], torch.tensor(rows, device=input_ids.device)
        part = model(input_ids=input_ids[index, :width], attention_mask=mask[index, :width]).logits
        parts.append(torch.nn.functional.pad(part, (0, 0, 0, input_ids.shape[1] - width)))
    order = torch.tensor([row for rows in groups for row in rows], device=input_ids.device)
    return torch.cat(parts)[torch.argsort(order)]


def nll(model, batch: dict) -> torch.Tensor:
    """Mean negative log-likelihood over the labelled tokens of the batch."""
    total, count = sequence_log_likelihood(model, batch)
    return -total.sum() / count.sum().clamp(min=1)


def sequence_log_likelihood(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(y|x) summed over each sequence's labelled tokens, number of those tokens)."""
    return sequence_log_likelihoods(logits(model, batch), batch["labels"])


def retain_kl(context: Context, retain: dict) -> torch.Tensor:
    """KL(p_ref ‖ p_θ) per labelled token of the retain batch, averaged over those tokens."""
    with context.frozen() as reference:
        reference_log_probs = torch.log_softmax(logits(reference, retain)[:, :-1].float(), -1)
    log_probs = torch.log_softmax(logits(context.model, retain)[:, :-1].float(), -1)
    per_token = (reference_log_probs.exp() * (reference_log_probs - log_probs)).sum(-1)
    mask = retain["labels"][:, 1:] != IGNORE
    return (per_token * mask).sum() / mask.sum().clamp(min=1)
