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

- `state_dict()` / `load_state_dict()` for a loss that keeps state between steps (a dual
  variable, adaptive coefficients): saved in every checkpoint, given back on resume; and
  `policy_batches`, the batches whose answer logits the trained model's loss reads (both by
  default: they then come from one packed forward per step; a method that reads fewer says so).

`answers`, `nll`, `sequence_log_likelihood`, `token_log_likelihood`, `token_mean` and `retain_kl`
below are the building blocks (all in terms of the logits that predict the labelled tokens,
`lume.inference.answers`); `Context.starting_model()` gives the model as it was before
unlearning. `docs/methods.md` gives each method's formula, what it averages over, and its sources.
"""

from __future__ import annotations

import copy
import dataclasses
from contextlib import contextmanager, nullcontext
from typing import ClassVar

import torch

from lume.errors import LumeError
from lume.inference.answers import Answers, answer_logits
from lume.registry import Registry
from lume.training import compiling


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
    # The batches whose answer logits the loss reads from the trained model: computed together,
    # in one packed forward, before the loss runs (a batch left out is computed when asked for).
    policy_batches: ClassVar[tuple[str, ...]] = ("forget", "retain")
    # The loss takes steps whose forget or retain batch is None (`schedule.rows_apart`: a step
    # of one kind of rows); most losses need both.
    one_sided_steps: ClassVar[bool] = False

    def __init__(self, settings=None):
        self.settings = settings if settings is not None else self.Settings()

    def check_model(self, model_config) -> None:
        """Refuse settings a model of this transformers config cannot take (a layer it lacks):
        called before any weight is loaded, so a study refuses them when its file is read."""

    def select_parameters(self, model) -> None:
        """Freeze what the method must not change (full fine-tuning only); default: train all."""

    def prepare(self, context: Context) -> None:
        """Work done once before training (e.g. reference log-likelihoods on the forget set)."""

    def forget_pool(self, step: int, total_steps: int, size: int) -> range:
        """Forget examples a step may draw from: all of them, unless the method schedules them."""
        return range(size)

    def loss(self, context: Context, forget: dict, retain: dict) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def validation_loss(self, context: Context, forget: dict, retain: dict) -> torch.Tensor:
        """The loss on validation batches (`select: loss`), leaving what the loss keeps between
        steps as it was (a validation batch is no training step)."""
        kept = copy.deepcopy(self.state_dict())
        try:
            return self.loss(context, forget, retain)[0]
        finally:
            self.load_state_dict(kept)

    def state_dict(self) -> dict:
        """What the loss keeps between steps (a dual variable, adaptive coefficients), as JSON
        values: saved in every checkpoint, so a resumed run continues where it stopped."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Take back what `state_dict` returned (on resume)."""


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
        self.step = 0  # the optimiser step being taken (0-based), for losses that change over the run
        self.steps_per_epoch = 1  # optimiser steps per pass over the forget set
        self.drawn: list[int] | None = None  # the forget examples this process's steps will draw (None: any)

    @torch.no_grad()
    def forget_log_likelihoods(self, examples: list | None = None) -> torch.Tensor:
        """log π(y|x) of each forget example (or of `examples`, one per forget example) under the
        model as it is now (before training): computed for the examples the run's steps draw
        only, NaN for the others (a short run on a large forget set reads a few). The batches are
        the whole set's, in order, so an example's value never depends on which others are drawn."""
        examples = self.forget_examples if examples is None else examples
        wanted = set(range(len(examples)) if self.drawn is None else self.drawn)
        values = torch.full((len(examples),), float("nan"))
        for start in range(0, len(examples), self.batch_size):
            rows = list(range(start, min(start + self.batch_size, len(examples))))
            if wanted.isdisjoint(rows):
                continue
            batch = self.collate([examples[i] for i in rows])
            values[rows] = sequence_log_likelihood(self.model, batch)[0].float().cpu()
        return values.to(next(iter(self.model.parameters()), values).device)

    @contextmanager
    def starting_model(self):
        """The starting model, for reference quantities (no gradients, the policy's precision; never
        compiled: a compiled policy would compile a graph for gradient-free calls)."""
        with torch.no_grad(), self.autocast(), compiling.eager():
            if self.reference_model is not None:
                yield self.reference_model
            elif hasattr(self.unwrap(self.model), "disable_adapter"):
                with self.unwrap(self.model).disable_adapter():
                    yield self.unwrap(self.model)
            else:
                raise LumeError("this method needs a reference model, which was not set up")


def _cache_key(model) -> tuple:
    return id(model), torch.is_grad_enabled()


def prime(model, batches: list[dict], pad_id: int = 0) -> None:
    """Compute the batches' answer logits under `model` in one packed forward and keep them in
    the batches, for `answers` to return (for the same model, with gradients on or off as now)."""
    for batch, found in zip(batches, answer_logits(model, batches, pad_id)):
        batch["_answers"] = (_cache_key(model), found)


def answers(model, batch: dict) -> Answers:
    """The logits that predict the batch's labelled tokens, under `model` (primed ones reused)."""
    cached = batch.get("_answers")
    if cached is not None and cached[0] == _cache_key(model):
        return cached[1]
    (found,) = answer_logits(model, [batch])
    batch["_answers"] = (_cache_key(model), found)
    return found


def nll(model, batch: dict) -> torch.Tensor:
    """Mean negative log-likelihood over the labelled tokens of the batch."""
    return -token_mean(token_log_likelihood(model, batch))


def sequence_log_likelihood(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(y|x) summed over each sequence's labelled tokens, number of those tokens)."""
    found = answers(model, batch)
    return found.per_row(found.log_likelihoods()), found.counts()


def token_log_likelihood(model, batch: dict) -> torch.Tensor:
    """log π(y_t|x, y_<t) of each labelled token of the batch, row by row."""
    return answers(model, batch).log_likelihoods()


def token_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of per-token `values` over the batch's labelled tokens together (0 for none)."""
    return values.sum() / max(values.numel(), 1)


def retain_kl(context: Context, retain: dict) -> torch.Tensor:
    """KL(p_ref ‖ p_θ) per labelled token of the retain batch, averaged over those tokens."""
    return retain_kl_and_nll(context, retain)[0]


def retain_kl_and_nll(context: Context, retain: dict, padded_length: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(p_ref ‖ p_θ) and NLL_θ, both per labelled token of the retain batch and averaged over
    those tokens, from one forward of each model. With `padded_length` N, the KL summed over
    those tokens is divided by rows × N instead (a mean over every position of rows padded to N)."""
    with context.starting_model() as reference:
        reference_log_probs = answers(reference, retain).log_probs()
    found = answers(context.model, retain)
    per_token = (reference_log_probs.exp() * (reference_log_probs - found.log_probs())).sum(-1)
    kl = per_token.sum() / (found.size * padded_length) if padded_length else token_mean(per_token)
    return kl, -token_mean(found.log_likelihoods())
