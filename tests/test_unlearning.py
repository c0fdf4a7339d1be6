import json
import math
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from lume.errors import LumeError
from lume.inference.batching import IGNORE
from lume.inference.likelihood import sequence_log_likelihoods
from lume.training import TrainingSettings, collate
from lume.stages.unlearning import UnlearnConfig, build_method, unlearn
from lume.stages.unlearning.methods import METHODS, Context, Method, register
from lume.stages.unlearning.methods.npo import npo_loss

VOCAB, HIDDEN = 4, 8
FAST = TrainingSettings(batch_size=2, learning_rate=1e-3)


class UniformModel(torch.nn.Module):
    """Every next token has probability 1/4 and every hidden state is 0: losses by hand."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.config = SimpleNamespace(hidden_size=HIDDEN)

    def forward(self, input_ids, attention_mask=None, labels=None, output_hidden_states=False):
        logits = torch.zeros(*input_ids.shape, VOCAB) * self.scale
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1), ignore_index=IGNORE)
        hidden = tuple(torch.zeros(*input_ids.shape, HIDDEN) * self.scale for _ in range(12))
        return SimpleNamespace(logits=logits, loss=loss, hidden_states=hidden)


def batch(answer_tokens=(3, 2, 1), indices=(0, 1)):
    ids = [1, 2] + list(answer_tokens)
    labels = [IGNORE, IGNORE] + list(answer_tokens)
    from lume.training import Example

    examples = [Example(ids, labels, "p")] * len(indices)
    out = collate(examples, 0)
    out["index"] = torch.tensor(indices)
    return out, examples


def context_for(method_name, settings=None):
    model = UniformModel()
    forget, examples = batch()
    retain, _ = batch((1, 1))
    context = Context(model, None, examples, lambda ex: collate(ex, 0), reference_model=UniformModel())
    method = build_method(method_name, settings)
    if method_name == "idk":  # refusal examples need a tokenizer; reuse the forget shape
        context.precomputed["idk_examples"] = examples
        context.precomputed["idk_reference"] = context.forget_log_likelihoods()
        context.precomputed["forget_reference"] = context.forget_log_likelihoods()
    else:
        method.prepare(context)
    return method, context, forget, retain


LOG4 = math.log(4)
EXPECTED = {
    "ga": -LOG4,
    "gd": -LOG4 + LOG4,
    "kl": -LOG4 + 0.0,
    "npo": 2 / 0.1 * math.log(2),  # π_θ = π_ref
    "npo+gd": 2 / 0.1 * math.log(2) + LOG4,
    "npo+kl": 2 / 0.1 * math.log(2),
    "simnpo": 2 / 2.5 * math.log(1 + 4 ** -2.5) + LOG4,  # log π = -3·log 4, |y| = 3
    "rmu": 6.5 ** 2 / HIDDEN,  # ‖0 − c·u‖² averaged over the hidden size, retain term 0
    "idk": math.log(2) + LOG4,  # margin 0 -> -log σ(0), plus the retain NLL
    "sequential-gd": 0.0,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_loss_matches_its_formula_by_hand(name):
    method, context, forget, retain = context_for(name)
    loss, logs = method.loss(context, forget, retain)
    assert loss.item() == pytest.approx(EXPECTED[name], rel=1e-5, abs=1e-6)
    assert all(math.isfinite(v) for v in logs.values())


def test_every_registered_method_has_a_hand_checked_loss():
    assert set(EXPECTED) == set(METHODS)  # both ways: no untested method, no test of a missing one


class TableModel(torch.nn.Module):
    """Every next token has the same, non-uniform distribution `probs`: losses by hand."""

    def __init__(self, probs):
        super().__init__()
        self.log_probs = torch.nn.Parameter(torch.log(torch.tensor(probs)))

    def forward(self, input_ids, attention_mask=None, labels=None):
        logits = self.log_probs.expand(*input_ids.shape, VOCAB)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1), ignore_index=IGNORE)
        return SimpleNamespace(logits=logits, loss=loss)


P = [0.1, 0.2, 0.3, 0.4]  # the policy's next-token distribution
Q = [0.4, 0.3, 0.2, 0.1]  # the reference's: KL(Q || P) != KL(P || Q), so swapped arguments fail
KL_Q_P = sum(q * math.log(q / p) for p, q in zip(P, Q))
FORGET_LOG_P = math.log(P[3]) + math.log(P[2]) + math.log(P[1])  # answer tokens 3, 2, 1
FORGET_LOG_Q = math.log(Q[3]) + math.log(Q[2]) + math.log(Q[1])
REFUSAL_LOG_P, REFUSAL_LOG_Q = 2 * math.log(P[0]), 2 * math.log(Q[0])  # refusal tokens 0, 0
RETAIN_NLL = -math.log(P[1])  # retain tokens 1, 1


def softplus(x):
    return math.log1p(math.exp(x))


NON_UNIFORM = {
    "kl": -(-FORGET_LOG_P / 3) + KL_Q_P,
    "npo+kl": 2 / 0.1 * softplus(0.1 * (FORGET_LOG_P - FORGET_LOG_Q)) + KL_Q_P,
    "simnpo": 2 / 2.5 * softplus(2.5 * FORGET_LOG_P / 3) + RETAIN_NLL,
    "idk": softplus(-0.1 * ((REFUSAL_LOG_P - REFUSAL_LOG_Q) - (FORGET_LOG_P - FORGET_LOG_Q))) + RETAIN_NLL,
}


@pytest.mark.parametrize("name", sorted(NON_UNIFORM))
def test_losses_with_a_non_uniform_policy_and_reference(name):
    forget, examples = batch()
    retain, _ = batch((1, 1))
    refusals = batch((0, 0))[1]
    method = build_method(name)
    reference = TableModel(Q)
    context = Context(reference, None, examples, lambda ex: collate(ex, 0), reference_model=reference)
    # what `prepare` computes on the starting model, before training moved the policy away from it
    context.precomputed.update(npo_reference=context.forget_log_likelihoods(),
                               forget_reference=context.forget_log_likelihoods(),
                               idk_examples=refusals, idk_reference=context.forget_log_likelihoods(refusals))
    context.model = TableModel(P)
    loss, _ = method.loss(context, forget, retain)
    assert loss.item() == pytest.approx(NON_UNIFORM[name], rel=1e-5)


def test_reference_quantities_share_the_policys_precision(tmp_path, tiny_model_dir, sets):
    """Under bf16 autocast, at step 0 the policy is the reference: NPO's log-ratio and the KL are 0."""
    forget, retain = sets
    config = UnlearnConfig(method="npo+kl", steps=1, training=TrainingSettings(batch_size=1), progress=False)
    report = unlearn(tiny_model_dir, tmp_path / "out", config, forget=forget[:1], retain=retain[:1])
    first = report["losses"][0]
    assert first["npo"] == pytest.approx(2 / 0.1 * math.log(2), abs=1e-6)
    assert first["retain_kl"] == 0.0


def test_npo_loss_off_the_reference_point():
    value = npo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), beta=0.5)
    assert value.item() == pytest.approx(4 * math.log(1 + math.exp(0.5)))
    # lowering the forget likelihood lowers the loss, and it is bounded below by 0
    assert npo_loss(torch.tensor([-50.0]), torch.tensor([-2.0]), 0.1).item() < value.item()
    assert npo_loss(torch.tensor([-500.0]), torch.tensor([-2.0]), 0.1).item() >= 0


def test_sequence_log_likelihood_sums_only_labelled_tokens():
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]]))
    labels = torch.tensor([[IGNORE, 1, 0]])
    total, count = sequence_log_likelihoods(logits, labels)
    assert total.item() == pytest.approx(math.log(0.5) + math.log(0.25)) and count.item() == 2


def test_length_grouped_forward_matches_one_padded_forward(tiny_model):
    """Rows of very different lengths run in separate forwards; every labelled position's
    logits, the NLL (as transformers computes it) and the gradients are those of one forward."""
    from lume.training import Example
    from lume.inference.batching import length_groups
    from lume.stages.unlearning.methods.base import logits, nll

    lengths = [30, 5, 28, 4, 12]
    examples = [Example(list(range(3, 3 + n)), [IGNORE] + list(range(4, 3 + n)), "p") for n in lengths]
    batch = collate(examples, 0)
    assert length_groups(lengths) == [[0, 2], [4], [1, 3]]
    model = tiny_model.float()
    full = model(**batch)
    mask = batch["attention_mask"].bool()
    assert torch.allclose(logits(model, batch)[mask], full.logits[mask], atol=1e-5)
    model.zero_grad()
    grouped = nll(model, batch)
    grouped.backward()
    grouped_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(**batch).loss.backward()
    assert grouped.item() == pytest.approx(full.loss.item(), abs=1e-5)
    assert all(torch.allclose(a, p.grad, atol=1e-5) for a, p in zip(grouped_grads, model.parameters()))
    model.zero_grad()


def test_sequential_chunks_cover_the_forget_set_in_order():
    method = build_method("sequential-gd", {"chunks": 3})
    pools = [method.forget_pool(step, 9, 10) for step in range(9)]
    assert pools[0] == range(0, 3) and pools[4] == range(3, 6) and pools[8] == range(6, 10)


def test_unknown_method_and_bad_setting_are_clear():
    with pytest.raises(LumeError, match="unknown method 'nope'"):
        build_method("nope")
    with pytest.raises(LumeError, match=r"method 'npo': field 'method_settings.betta': unknown field"):
        build_method("npo", {"betta": 1})
    with pytest.raises(LumeError, match=r"method_settings.beta': expected a number, got 'abc'"):
        build_method("npo", {"beta": "abc"})


@pytest.fixture(scope="module")
def sets(data_dir):
    from lume import data

    documents = data.load(data_dir).documents
    pick = lambda split: [r for d in [d for d in documents if d.split == split][:3] for r in d.records]  # noqa: E731
    return pick("forget"), pick("retain")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_method_runs_end_to_end_on_a_tiny_model(tmp_path, tiny_model_dir, sets, name):
    from lume.models import load_model

    forget, retain = sets
    settings = {"layer": 1} if name == "rmu" else {}
    report = unlearn(tiny_model_dir, tmp_path / name, UnlearnConfig(method=name, method_settings=settings, steps=2,
                                                                    training=FAST, progress=False),
                     forget=forget, retain=retain)
    assert report["steps"] == 2 and len(report["losses"]) == 2
    saved = json.loads((tmp_path / name / "lume_unlearn.json").read_text())
    assert saved["method"] == name and saved["forget"]["records"] == len(forget)
    before = load_model(tiny_model_dir, device="cpu").model.state_dict()
    after = load_model(tmp_path / name, device="cpu").model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_rmu_names_a_layer_the_model_does_not_have(tmp_path, tiny_model_dir, sets):
    forget, retain = sets
    with pytest.raises(LumeError, match="rmu: layer 7 does not exist"):
        unlearn(tiny_model_dir, tmp_path / "rmu", UnlearnConfig(method="rmu", steps=1, progress=False),
                forget=forget, retain=retain)


def test_rmu_changes_only_the_mlps_of_its_layers(tmp_path, tiny_model_dir, sets):
    from lume.models import load_model

    forget, retain = sets
    unlearn(tiny_model_dir, tmp_path / "rmu", UnlearnConfig(method="rmu", method_settings={"layer": 1}, steps=2,
                                                          training=FAST, progress=False),
            forget=forget, retain=retain)
    before = load_model(tiny_model_dir, device="cpu").model.state_dict()
    after = load_model(tmp_path / "rmu", device="cpu").model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".mlp." in k for k in changed)


def test_lora_run_saves_an_adapter_and_merge_combines_two(tmp_path, tiny_model_dir, sets):
    from lume.models import load_model
    from lume.stages.unlearning.merge import merge_adapters

    forget, retain = sets
    for name, lr in (("a", 1e-2), ("b", 1e-3)):
        unlearn(tiny_model_dir, tmp_path / name, UnlearnConfig(method="npo+kl", steps=2, progress=False,
                                                               training=TrainingSettings(batch_size=2, lora_rank=4,
                                                                                         learning_rate=lr)),
                forget=forget, retain=retain)
        assert (tmp_path / name / "adapter" / "adapter_config.json").is_file()
    for combination in ("ties", "linear"):
        merged = merge_adapters(tiny_model_dir, [tmp_path / "a" / "adapter", tmp_path / "b" / "adapter"],
                                tmp_path / f"merged-{combination}", combination=combination)
        weights = load_model(merged, device="cpu").model.state_dict()
        base = load_model(tiny_model_dir, device="cpu").model.state_dict()
        assert any(not torch.equal(weights[k], base[k]) for k in base)


def test_a_nan_loss_stops_cleanly_and_keeps_the_last_checkpoint(tmp_path, tiny_model_dir, sets):
    @register
    class Explodes(Method):
        name = "test-explodes"

        def loss(self, context, forget, retain):
            value = context.model(input_ids=forget["input_ids"], labels=forget["labels"]).loss
            step = context.precomputed.setdefault("step", [0])
            step[0] += 1
            return (value * float("nan") if step[0] > 2 else value), {}

    forget, retain = sets
    try:
        with pytest.raises(LumeError, match="loss became nan at step 3"):
            config = UnlearnConfig(method="test-explodes", steps=5, progress=False,
                                   training=TrainingSettings(batch_size=2, save_every=1))
            unlearn(tiny_model_dir, tmp_path / "out", config, forget=forget, retain=retain)
    finally:
        METHODS.pop("test-explodes")
    from lume.training import saved_checkpoints

    assert [step for step, _, _ in saved_checkpoints(tmp_path / "out" / "checkpoints")] == [2]
    assert not (tmp_path / "out" / "lume_unlearn.json").exists()


def test_forget_and_retain_draws_are_independent_per_step_and_process():
    from lume.stages.unlearning import draw_batch_indices

    first = draw_batch_indices(0, 5, 0, range(100), 100, 8)
    assert first == draw_batch_indices(0, 5, 0, range(100), 100, 8)
    assert first != draw_batch_indices(0, 5, 1, range(100), 100, 8)
    assert first != draw_batch_indices(0, 6, 0, range(100), 100, 8)
    assert first[0] != first[1]
    assert all(i in range(40, 50) for i in draw_batch_indices(0, 5, 0, range(40, 50), 100, 8)[0])


@pytest.mark.slow
def test_semeval_positional_interface(tmp_path, tiny_model_dir, data_dir):
    import pyarrow.parquet as pq

    for split in ("retain", "forget"):
        folder = tmp_path / split
        folder.mkdir()
        table = pq.read_table(data_dir / "semeval25" / f"{split}_validation.parquet").slice(0, 12)
        pq.write_table(table, folder / f"{split}.parquet")
    out = tmp_path / "unlearned"
    result = subprocess.run([sys.executable, "-m", "lume", "unlearn", str(tiny_model_dir), str(tmp_path / "retain"),
                             str(tmp_path / "forget"), str(out), "--method", "npo+gd", "--steps", "2",
                             "--set", "beta=0.2", "--device", "cpu"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "lume_unlearn.json").read_text())
    assert report["method_settings"]["beta"] == 0.2 and report["forget"]["records"] == 12
    assert (out / "model.safetensors").is_file()
