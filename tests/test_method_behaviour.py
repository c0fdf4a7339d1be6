"""Each method does what it is for: a tiny model first fitted to a few forget and retain rows,
then a few steps of the method through `unlearn`, raise the forget NLL by a stated margin and
keep the retain NLL within a stated band (RMU: the forget activations at its layer move toward
the control vector)."""

import pytest
import torch

from lume.stages.unlearning import UnlearnConfig, build_method, unlearn
from lume.stages.unlearning.methods import METHODS, Context
from lume.stages.unlearning.methods.base import nll
from lume.stages.unlearning.methods.rmu import layer_output, masked_mse
from lume.training import TrainingSettings, collate, prompt_answer_example

from .conftest import BEHAVIOUR_ROWS as ROWS
STEPS = 6
# method: (settings, least rise of the forget NLL, most rise of the retain NLL), in nats per token,
# after STEPS steps at RATE. GA and NPO have no retain term, so their retain band is wide; the
# others must keep retain nearly where it was. SatImp weights saturated tokens (p near 1, as on a
# memorised model) by about 1 − p, so beside its default retain term it barely moves here; it runs
# without one (α = 0), as GA does.
RATE = 3e-3
EXPECTED = {  # measured: about twice these (bf16 autocast and float32 alike)
    "ga": ({}, 2.0, 2.0),
    "gd": ({}, 2.0, 0.3),
    "sequential-gd": ({}, 0.4, 0.2),  # each step sees one chunk (a row or two) of the forget set
    "kl": ({}, 2.0, 0.3),
    "npo": ({}, 2.0, 2.0),
    "npo+gd": ({}, 2.0, 0.4),
    "npo+kl": ({}, 2.0, 0.4),
    "simnpo": ({}, 1.5, 0.2),
    "idk": ({}, 0.4, 0.2),
    "wga": ({}, 2.0, 0.2),
    "satimp": ({"alpha": 0.0}, 0.5, 2.0),
    "undial": ({}, 0.7, 0.2),
    "npo+kl+gd": ({}, 2.0, 0.3),
    "adaptive-gd": ({}, 2.0, 0.2),
    "ce-u": ({}, 1.5, 0.2),  # no retain term, but its target keeps the other tokens' proportions
    "pdu": ({}, 2.0, 0.3),
    "altpo": ({}, 0.5, 0.2),
}


def examples_of(tokenizer, records):
    return [prompt_answer_example(tokenizer, r.input, r.output) for r in records]


def nlls(folder, tokenizer, rows) -> tuple[float, float]:
    from lume.models import load_model

    model = load_model(folder, device="cpu").model
    with torch.no_grad():
        return tuple(nll(model, collate(examples_of(tokenizer, split), tokenizer.pad_token_id)).item()
                     for split in rows)


def test_the_fitted_model_knows_its_rows(fitted, tokenizer, rows):
    forget, retain = nlls(fitted, tokenizer, rows)
    assert forget < 0.5 and retain < 0.5


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_few_steps_raise_the_forget_nll_and_keep_the_retain_nll(name, fitted, tokenizer, rows, tmp_path):
    settings, least_rise, most_retain_rise = EXPECTED[name]
    forget_before, retain_before = nlls(fitted, tokenizer, rows)
    config = UnlearnConfig(method=name, method_settings=settings, steps=STEPS, progress=False,
                           training=TrainingSettings(batch_size=ROWS, learning_rate=RATE))
    unlearn(fitted, tmp_path / name, config, forget=rows[0], retain=rows[1])
    forget_after, retain_after = nlls(tmp_path / name, tokenizer, rows)
    assert forget_after - forget_before >= least_rise, (forget_before, forget_after)
    assert retain_after - retain_before <= most_retain_rise, (retain_before, retain_after)


def test_every_method_but_rmu_has_a_behaviour_case():
    assert set(EXPECTED) == set(METHODS) - {"rmu"}


def test_rmu_moves_the_forget_activations_toward_the_control_vector(fitted, tokenizer, rows, tmp_path):
    from lume.models import load_model

    settings = {"layer": 1, "alpha": 10.0}
    config = UnlearnConfig(method="rmu", method_settings=settings, steps=STEPS, progress=False,
                           training=TrainingSettings(batch_size=ROWS, learning_rate=1e-2))
    unlearn(fitted, tmp_path / "rmu", config, forget=rows[0], retain=rows[1])
    forget = collate(examples_of(tokenizer, rows[0]), tokenizer.pad_token_id)
    retain = collate(examples_of(tokenizer, rows[1]), tokenizer.pad_token_id)
    before, after = (load_model(folder, device="cpu").model for folder in (fitted, tmp_path / "rmu"))
    method = build_method("rmu", settings)
    context = Context(before, tokenizer, [], None)
    method.prepare(context)
    control = context.precomputed["rmu_control"]

    def distance(model, batch, target=None):
        with torch.no_grad():
            hidden = layer_output(model, batch, 1)
            wanted = control.expand_as(hidden) if target is None else layer_output(target, batch, 1)
            return masked_mse(hidden, wanted, batch, "all").item()

    assert distance(after, forget) < 0.5 * distance(before, forget)
    assert distance(after, retain, before) < 0.25 * distance(after, forget)  # retain moved far less


def test_adaptive_rmu_steers_each_task_towards_its_own_scaled_direction(fitted, tokenizer, rows, tmp_path):
    """Adaptive RMU: one direction per task, its length adaptive_scale times the task's mean
    activation norm at the layer, measured at each epoch's start and kept in checkpoints."""
    from dataclasses import replace

    from lume.models import load_model

    forget = [replace(r, task=task) for r, task in zip(rows[0], ["Task1", "Task1", "Task2", "Task2"])]
    settings = {"layer": 1, "alpha": 10.0, "adaptive_scale": 2.0}
    config = UnlearnConfig(method="rmu", method_settings=settings, steps=STEPS, progress=False,
                           training=TrainingSettings(batch_size=ROWS, learning_rate=1e-2, save_every=STEPS))
    unlearn(fitted, tmp_path / "rmu", config, forget=forget, retain=rows[1])
    method = build_method("rmu", settings)
    examples = [replace(e, record=r) for e, r in zip(examples_of(tokenizer, forget), forget)]
    before = load_model(fitted, device="cpu").model
    context = Context(before, tokenizer, examples, lambda ex: collate(ex, tokenizer.pad_token_id), batch_size=2)
    method.prepare(context)
    directions = context.precomputed["rmu_directions"]
    assert set(directions) == {"Task1", "Task2"}
    assert not torch.allclose(directions["Task1"], directions["Task2"])
    norms = method.activation_norms(context)
    for task in ("Task1", "Task2"):
        batch = collate([e for e in examples if e.record.task == task], tokenizer.pad_token_id)
        with torch.no_grad():
            hidden = layer_output(before, batch, 1)
        mask = batch["attention_mask"]
        by_hand = ((hidden.norm(dim=-1) * mask).sum(-1) / mask.sum(-1)).mean().item()
        assert norms[task] == pytest.approx(2.0 * by_hand, rel=1e-5)
    after = load_model(tmp_path / "rmu", device="cpu").model
    for task in ("Task1", "Task2"):
        batch = collate([e for e in examples if e.record.task == task], tokenizer.pad_token_id)
        target = norms[task] * directions[task]

        def distance(model, batch=batch, target=target):
            with torch.no_grad():
                hidden = layer_output(model, batch, 1)
                return masked_mse(hidden, target.expand_as(hidden), batch, "all").item()

        assert distance(after) < 0.7 * distance(before)


def test_adaptive_rmu_measured_as_the_team_did_reads_the_first_batch_padding_included(fitted, tokenizer, rows):
    """norms_from first-batch: each task's first batch_size forget rows, every position of their
    padded batch in the mean (unlearn_submission.py: norm per position, mean over positions, then rows)."""
    from dataclasses import replace

    from lume.models import load_model

    pool = [replace(r, task="Task1") for r in rows[0] + rows[1]]
    examples = sorted((replace(e, record=r) for e, r in zip(examples_of(tokenizer, pool), pool)),
                      key=lambda e: len(e.input_ids))
    examples = [examples[0], examples[-1], examples[1]]  # the first batch: the shortest row and the longest
    model = load_model(fitted, device="cpu").model
    norms = {}
    for source in ("task", "first-batch"):
        method = build_method("rmu", {"layer": 1, "adaptive_scale": 2.0, "norms_from": source})
        context = Context(model, tokenizer, examples, lambda ex: collate(ex, tokenizer.pad_token_id), batch_size=2)
        method.prepare(context)
        norms[source] = method.activation_norms(context)["Task1"]
    batch = collate(examples[:2], tokenizer.pad_token_id)
    assert batch["attention_mask"].min() == 0  # the two rows differ in length: the batch has padding
    with torch.no_grad():
        by_hand = layer_output(model, batch, 1).norm(dim=-1).mean(-1).mean().item()
    assert norms["first-batch"] == pytest.approx(2.0 * by_hand, rel=1e-5)
    assert norms["first-batch"] != pytest.approx(norms["task"], rel=1e-3)
