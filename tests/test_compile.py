"""Compiled training (`TrainingSettings.compile`): the eager loss curve within a stated
tolerance, the trained model back uncompiled, and a clear fallback when compilation fails."""

import logging

import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

from lume.stages.unlearning import UnlearnConfig, unlearn
from lume.training import TrainingSettings, compiling

# inductor's fused kernels round and sum in another order than eager's: in float32 (auto on a
# CPU without native bf16) within 1e-4 on the tiny model, in bf16 autocast within 2e-2
TOLERANCE = {"no": 1e-4, "bf16": 2e-2}


def run(folder, out, sets, compile: bool):
    config = UnlearnConfig(method="gd", steps=3, progress=False,
                           training=TrainingSettings(batch_size=2, learning_rate=1e-3, compile=compile))
    forget, retain = sets
    return unlearn(folder, out, config, forget=forget, retain=retain)


@pytest.mark.slow  # inductor compiles the tiny model's forward and backward: about a minute on 2 cores
def test_the_compiled_loss_curve_is_the_eager_one_and_the_model_comes_back_uncompiled(tmp_path, tiny_model_dir,
                                                                                     sets, monkeypatch):
    trained = []  # (whether compiled when training ended, the model) per run
    real_uncompile = compiling.uncompile

    def recorded_uncompile(model):
        trained.append((compiling.is_compiled(model), model))
        real_uncompile(model)

    monkeypatch.setattr(compiling, "uncompile", recorded_uncompile)
    eager = run(tiny_model_dir, tmp_path / "eager", sets, compile=False)
    compiled = run(tiny_model_dir, tmp_path / "compiled", sets, compile=True)
    tolerance = TOLERANCE[eager.precision["mixed_precision"]]
    assert [row["loss"] for row in compiled.losses] == pytest.approx([row["loss"] for row in eager.losses],
                                                                     rel=tolerance, abs=tolerance)
    was_compiled, model = trained[-1]
    assert was_compiled  # the compiled run was compiled until the end ...
    assert not compiling.is_compiled(model)  # ... and its model came back as it was


def failing_backend(graph, example_inputs):
    raise RuntimeError("no C++ compiler here")


def no_compiled_backward(graph, example_inputs):
    raise RuntimeError("no C++ compiler here for the backward")


# a backend that compiles each forward as it is and fails on its backward
failing_backward_backend = aot_autograd(fw_compiler=lambda graph, _inputs: make_boxed_func(graph.forward),
                                        bw_compiler=no_compiled_backward)


@pytest.mark.parametrize("backend", [failing_backend, failing_backward_backend], ids=["forward", "backward"])
def test_a_failed_compilation_says_so_in_one_line_and_trains_on_uncompiled(tmp_path, tiny_model_dir, sets,
                                                                           monkeypatch, caplog, backend):
    monkeypatch.setattr(compiling, "BACKEND", backend)
    eager = run(tiny_model_dir, tmp_path / "eager", sets, compile=False)
    torch._dynamo.reset()
    with caplog.at_level(logging.WARNING, logger="lume.training.compiling"):
        fallen = run(tiny_model_dir, tmp_path / "fallen", sets, compile=True)
    warnings = [r.getMessage() for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "no C++ compiler here" in warnings[0]
    assert [row["loss"] for row in fallen.losses] == pytest.approx([row["loss"] for row in eager.losses], rel=1e-6)
