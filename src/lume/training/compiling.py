"""Compiled training (`TrainingSettings.compile`): torch.compile with inductor, and a fallback to eager.

The model's `__call__` is compiled once it is prepared (`Module.compile`, dynamic shapes: a
packed step's width changes every step), its backward in the same forward call. A compilation
that fails, at the first step or at a later new shape, is said in one line and that micro-step
and the rest of the run train uncompiled. Scoring in the middle of training runs eager (it
would otherwise compile a graph of its own), and the trained model comes back uncompiled.
bench/README.md has what it costs and saves on a CPU; it is off by default.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext

import torch

from lume import compat

log = logging.getLogger(__name__)

BACKEND = "inductor"  # tests substitute a backend that fails
FAILURES = compat.compiler_errors()


def compile_model(model) -> None:
    model.compile(dynamic=True, backend=BACKEND)


def is_compiled(model) -> bool:
    return compat.compiled_call(model) is not None


def uncompile(model) -> None:
    compat.drop_compiled_call(model)


def backward_with_forward(model):
    """A context in which the compiled model compiles its backward in its forward. torch otherwise
    compiles a backward when it first runs, and a failure there comes out of `backward()` as a
    plain error, after another graph's gradients may have been written; in the forward none has."""
    return compat.backward_compiled_in_forward() if is_compiled(model) else nullcontext()


def eager():
    """A context in which compiled models run uncompiled (scoring, checks): no graph compiled for them."""
    return torch.compiler.set_stance("force_eager")


def fall_back(model, error: Exception) -> None:
    """Say why compilation failed, in one line, and train the model uncompiled from now on."""
    cause = getattr(error, "inner_exception", None) or error  # the compiler's own error, not dynamo's wrapper
    reason = (str(cause).strip().splitlines() or [""])[0][:200]
    log.warning(f"torch.compile failed ({type(cause).__name__}: {reason}); training continues uncompiled")
    uncompile(model)
