"""What every unlearning method is: a loss over a forget batch and a retain batch.

The contract, for a new method (one file under `lume/stages/unlearning/methods/`; every file
there is imported, so nothing else changes):

- a subclass of `Method` decorated `@register` (or, from another package, an entry point in
  the group `lume.methods`, or named `package.module:Class`; docs/plugins.md), with a unique
  `name` and a `Settings`
  dataclass (its hyperparameters and their defaults; `--set NAME=VALUE` and YAML
  `method_settings:` fill it, type-checked);
- `loss(context, forget, retain) -> (loss tensor, logs)`. `forget` and `retain` are
  right-padded batches: `input_ids`, `attention_mask`, `labels` (-100 where no loss is taken:
  the prompt and the padding) and `index` (each row's position in the forget or retain
  examples, to look up per-example quantities computed in `prepare`). `logs` maps names to
  floats (the parts of the loss), recorded per step in `lume_unlearn.json`;
- optionally `prepare(context)` (once, before training, under the training precision),
  `select_parameters(model)` (freeze what must not change), `forget_pool` (schedule the
  forget examples), and `needs_reference_model` (a frozen copy of the starting model).

`logits`, `nll`, `sequence_log_likelihood`, `token_log_likelihood`, `token_mean` and `retain_kl` below are
the building blocks; `Context.starting_model()` gives the model as it was before unlearning.
`docs/methods.md` gives each method's formula, what it averages over, and its sources.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager, nullcontext
from typing import ClassVar

import torch

from lume.errors import LumeError
from lume.registry import Registry
from lume.inference.batching import IGNORE
from lume.inference.likelihood import grouped_logits, sequence_log_likelihoods, token_log_likelihoods

@dataclasses.dataclass
class NoSettings:
    pass


class Method:
    name: ClassVar[str]
    Settings: ClassVar[type] = NoSettings
    # A frozen copy of the starting model on the retain set (KL, RMU); with LoRA, the base
    # weights with the adapter switched off serve instead of a copy.
    needs_reference_model: ClassVar[bool] = False
    # The loss reaches only part of the trainable weights (RMU stops at one layer), which DDP
    # must be told of, or it waits for gradients that never come.
    leaves_weights_without_gradient: ClassVar[bool] = False

    def __init__(self, settings=None):
        self.settings = settings if settings is not None else self.Settings()

    def select_parameters(self, model) -> None:
        """Freeze what the method must not change (full fine-tuning only); default: train all."""

    def prepare(self, context: Context) -> None:
        """Work done once before training (e.g. reference log-likelihoods on the forget set)."""

    def forget_pool(self, step: int, total_steps: int, size: int) -> range:
        """Forget examples a step may draw from: all of them, unless the method schedules them."""
        return range(size)

    def loss(self, context: Context, forget: dict, retain: dict) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError


METHODS = Registry("method", Method, "lume.methods")
register = METHODS.register


class Context:
    """What a loss may use: the model being trained, the frozen starting point, the examples."""

    def __init__(self, model, tokenizer, forget_examples: list, collate, reference_model=None,
                 batch_size: int = 8, autocast=nullcontext, unwrap=lambda model: model):
        self.model = model
        self.unwrap = unwrap  # the model inside a DDP wrapper, where a LoRA adapter can be switched off
        self.autocast = autocast  # the trained forward's mixed precision, for reference forwards too
        self.tokenizer = tokenizer
        self.forget_examples = forget_examples
        self.collate = collate  # list[Example] -> batch dict on the training device
        self.reference_model = reference_model
        self.batch_size = batch_size
        self.precomputed: dict = {}  # what `prepare` computed once, by name

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
    def starting_model(self):
        """The starting model, for reference quantities (no gradients, the policy's precision)."""
        with torch.no_grad(), self.autocast():
            if self.reference_model is not None:
                yield self.reference_model
            elif hasattr(self.unwrap(self.model), "disable_adapter"):
                with self.unwrap(self.model).disable_adapter():
                    yield self.unwrap(self.model)
            else:
                raise LumeError("this method needs a reference model, which was not set up")


def logits(model, batch: dict) -> torch.Tensor:
    """The model's logits on a batch (one forward per group of similar lengths: little padding)."""
    return grouped_logits(model, batch)


def nll(model, batch: dict) -> torch.Tensor:
    """Mean negative log-likelihood over the labelled tokens of the batch."""
    total, count = sequence_log_likelihood(model, batch)
    return -total.sum() / count.sum().clamp(min=1)


def sequence_log_likelihood(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(y|x) summed over each sequence's labelled tokens, number of those tokens)."""
    return sequence_log_likelihoods(logits(model, batch), batch["labels"])


def token_log_likelihood(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(y_t|x, y_<t) at each position, whether the position is a labelled token)."""
    return token_log_likelihoods(logits(model, batch), batch["labels"])


def token_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of `values` over the positions `mask` marks, pooled over the batch (0 for none)."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def retain_kl(context: Context, retain: dict) -> torch.Tensor:
    """KL(p_ref ‖ p_θ) per labelled token of the retain batch, averaged over those tokens."""
    with context.starting_model() as reference:
        reference_log_probs = torch.log_softmax(logits(reference, retain)[:, :-1].float(), -1)
    log_probs = torch.log_softmax(logits(context.model, retain)[:, :-1].float(), -1)
    per_token = (reference_log_probs.exp() * (reference_log_probs - log_probs)).sum(-1)
    mask = retain["labels"][:, 1:] != IGNORE
    return token_mean(per_token, mask)
