"""Compiled training (`TrainingSettings.compile`): torch.compile with inductor, and a fallback to eager.

The model's `__call__` is compiled once it is prepared (`Module.compile`, dynamic shapes: a
packed step's width changes every step). A compilation that fails, at the first step or at a
later new shape, is said in one line and that micro-step and the rest of the run train
uncompiled. Scoring in the middle of training runs eager (it would otherwise compile a graph
of its own), and the trained model comes back uncompiled. bench/README.md has what it costs and
saves on a CPU; it is off by default.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

BACKEND = "inductor"  # tests substitute a backend that fails
FAILURES = (torch._dynamo.exc.TorchDynamoException,)  # the compiler's own errors (inductor's included)


def compile_model(model) -> None:
    model.compile(dynamic=True, backend=BACKEND)


def is_compiled(model) -> bool:
    return model.__dict__.get("_compiled_call_impl") is not None


def uncompile(model) -> None:
    """Undo `Module.compile`: the module's own `__call__` again."""
    model.__dict__.pop("_compiled_call_impl", None)


def eager():
    """A context in which compiled models run uncompiled (scoring, checks): no graph compiled for them."""
    return torch.compiler.set_stance("force_eager")


def fall_back(model, error: Exception) -> None:
    """Say why compilation failed, in one line, and train the model uncompiled from now on."""
    cause = getattr(error, "inner_exception", None) or error  # the compiler's own error, not dynamo's wrapper
    reason = (str(cause).strip().splitlines() or [""])[0][:200]
    log.warning(f"torch.compile failed ({type(cause).__name__}: {reason}); training continues uncompiled")
    uncompile(model)
