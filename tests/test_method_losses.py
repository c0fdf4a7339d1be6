"""Every method's loss against its formula (docs/methods.md), written out here in plain Python.

The model is a bigram table: the next-token distribution depends on the current token, so
positions differ, and the policy and the reference are different tables. The forget and retain
batches have different NLLs and rows of different lengths, and every weight is set away from 1,
so a negated term, a dropped or doubled weight, swapped batches, or a per-token average where
the formula averages per sequence each change the expected value.
"""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from lume.errors import LumeError
from lume.inference.batching import IGNORE
from lume.stages.unlearning import UnlearnConfig, build_method
from lume.stages.unlearning.methods import METHODS, Context
from lume.stages.unlearning.schedule import ScheduleSettings
from lume.training import Example, collate

VOCAB, HIDDEN, LAYERS = 6, 4, 3
# (prompt, answer) token lists; forget and retain differ in tokens, lengths and NLL
FORGET = [([1, 2], [3, 2, 1]), ([4], [0, 5])]
RETAIN = [([5, 1], [1, 1, 4]), ([3], [2])]
REFUSALS = [([1, 2], [5, 5]), ([4], [1])]


class Offset(torch.nn.Module):
    """A stand-in decoder layer: adds its own vector to the hidden state."""

    def __init__(self, vector):
        super().__init__()
        self.vector = torch.nn.Parameter(vector)

    def forward(self, hidden):
        return hidden + self.vector


class Bigram(torch.nn.Module):
    """Logits table[current token]; hidden state after layer i: embed[token] + offsets 0..i."""

    def __init__(self, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.table = torch.nn.Parameter(torch.randn(VOCAB, VOCAB, generator=generator) * 2)
        self.embed = torch.nn.Parameter(torch.randn(VOCAB, HIDDEN, generator=generator))
        self.layers = torch.nn.ModuleList(Offset(torch.randn(HIDDEN, generator=generator)) for _ in range(LAYERS))
        self.config = SimpleNamespace(hidden_size=HIDDEN, num_hidden_layers=LAYERS)

    def forward(self, input_ids, attention_mask=None, labels=None, output_hidden_states=False):
        hidden = self.embed[input_ids]
        states = [hidden]
        for layer in self.layers:
            hidden = layer(hidden)
            states.append(hidden)
        logits = self.table[input_ids]
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1), ignore_index=IGNORE)
        return SimpleNamespace(logits=logits, loss=loss, hidden_states=tuple(states))


POLICY, REFERENCE = Bigram(1), Bigram(2)


# ---- the formulas' ingredients, in plain Python from the token lists ----

def log_softmax(row: list[float]) -> list[float]:
    top = max(row)
    total = top + math.log(sum(math.exp(v - top) for v in row))
    return [v - total for v in row]


def distribution(model: Bigram, token: int) -> list[float]:
    """log p(· | current token)."""
    return log_softmax(model.table[token].tolist())


def answer_steps(row):
    """(previous token, answer token) for each answer token of a (prompt, answer) row."""
    ids = row[0] + row[1]
    return [(ids[j - 1], ids[j]) for j in range(len(row[0]), len(ids))]


def token_log_probs(model, row) -> list[float]:
    return [distribution(model, previous)[token] for previous, token in answer_steps(row)]


def sequence_ll(model, row) -> float:
    return sum(token_log_probs(model, row))


def nll(model, rows) -> float:
    values = [v for row in rows for v in token_log_probs(model, row)]
    return -sum(values) / len(values)


def kl_reference_policy(rows) -> float:
    """KL(p_ref ‖ p_θ) per answer token, pooled over the batch."""
    values = []
    for row in rows:
        for previous, _ in answer_steps(row):
            q, p = distribution(REFERENCE, previous), distribution(POLICY, previous)
            values.append(sum(math.exp(lq) * (lq - lp) for lq, lp in zip(q, p)))
    return sum(values) / len(values)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def npo_term(beta: float) -> float:
    return 2 / beta * mean(softplus(beta * (sequence_ll(POLICY, r) - sequence_ll(REFERENCE, r))) for r in FORGET)


def weighted_ascent(weight) -> float:
    """mean over every forget answer token of weight(p) · log p (pooled)."""
    values = [weight(math.exp(lp)) * lp for row in FORGET for lp in token_log_probs(POLICY, row)]
    return sum(values) / len(values)


def undial_term(beta: float) -> float:
    values = []
    for row in FORGET:
        for previous, token in answer_steps(row):
            lowered = [v - (beta if i == token else 0.0) for i, v in enumerate(REFERENCE.table[previous].tolist())]
            wanted = [math.exp(v) for v in log_softmax(lowered)]
            values.append(-sum(q * lp for q, lp in zip(wanted, distribution(POLICY, previous))))
    return mean(values)


def per_example_gd(alpha: float) -> float:
    """(−Σ_F NLL_i + α Σ_R NLL_j) / (|F| + |R|), each NLL_i one row's token mean."""
    row_nll = lambda row: -mean(token_log_probs(POLICY, row))  # noqa: E731
    return (-sum(row_nll(r) for r in FORGET) + alpha * sum(row_nll(r) for r in RETAIN)) / (len(FORGET) + len(RETAIN))


def ce_u_term(skip_first: int) -> float:
    """mean over the forget answer tokens after each row's first `skip_first` of
    CE(softmax(z_θ with the true token at −∞), p_θ)."""
    values = []
    for row in FORGET:
        for previous, token in answer_steps(row)[skip_first:]:
            logits = POLICY.table[previous].tolist()
            others = [math.exp(v) for i, v in enumerate(logits) if i != token]
            wanted = [0.0 if i == token else math.exp(v) / sum(others) for i, v in enumerate(logits)]
            values.append(-sum(q * lp for q, lp in zip(wanted, distribution(POLICY, previous))))
    return mean(values) if values else 0.0  # one-token answers: nothing left after the first


def flattening() -> float:
    """mean over the forget answer positions of (max logit − mean logit)²."""
    values = []
    for row in FORGET:
        for previous, _ in answer_steps(row):
            logits = POLICY.table[previous].tolist()
            values.append((max(logits) - mean(logits)) ** 2)
    return mean(values)


def hidden(model: Bigram, token: int, layer: int) -> list[float]:
    vector = model.embed[token].clone()
    for index in range(layer + 1):
        vector += model.layers[index].vector
    return vector.tolist()


def squared(a, b) -> float:
    return mean((x - y) ** 2 for x, y in zip(a, b))


def rmu_terms(layer: int, control: list[float], tokens: str) -> tuple[float, float]:
    """(forget term, retain term) of RMU over `tokens`: all (every token, pooled) or answer (per row)."""
    def average(rows, error):
        if tokens == "all":
            return mean(error(t) for row in rows for t in row[0] + row[1])
        return mean(mean(error(t) for t in row[1]) for row in rows)

    forget = average(FORGET, lambda t: squared(hidden(POLICY, t, layer), control))
    retain = average(RETAIN, lambda t: squared(hidden(POLICY, t, layer), hidden(REFERENCE, t, layer)))
    return forget, retain


# ---- the cases: method, settings, expected loss ----

A, B = 0.7, 0.3  # retain weight α and β, away from 1 so that a dropped or doubled weight shows
CASES = {
    "ga": ({}, lambda: -nll(POLICY, FORGET)),
    "gd": ({"alpha": A}, lambda: -nll(POLICY, FORGET) + A * nll(POLICY, RETAIN)),
    "sequential-gd": ({"alpha": A}, lambda: -nll(POLICY, FORGET) + A * nll(POLICY, RETAIN)),
    "kl": ({"alpha": A}, lambda: -nll(POLICY, FORGET) + A * kl_reference_policy(RETAIN)),
    "npo": ({"beta": B}, lambda: npo_term(B)),
    "npo+gd": ({"beta": B, "alpha": A}, lambda: npo_term(B) + A * nll(POLICY, RETAIN)),
    "npo+kl": ({"beta": B, "alpha": A}, lambda: npo_term(B) + A * kl_reference_policy(RETAIN)),
    "simnpo": ({"beta": 2.5, "gamma": 0.3, "alpha": A},
               lambda: 2 / 2.5 * mean(softplus(2.5 * sequence_ll(POLICY, r) / len(r[1]) + 0.3) for r in FORGET)
               + A * nll(POLICY, RETAIN)),
    "idk": ({"beta": B, "alpha": A}, lambda: idk_term(B, 1.0) + A * nll(POLICY, RETAIN)),
    "wga": ({"beta": 1.5, "gamma": 0.8, "alpha": A},
            lambda: 0.8 * weighted_ascent(lambda p: p ** 1.5) + A * nll(POLICY, RETAIN)),
    "satimp": ({"beta1": 2.0, "beta2": 1.5, "gamma": 0.8, "alpha": A},
               lambda: 0.8 * weighted_ascent(lambda p: p ** 2.0 * (1 - p) ** 1.5) + A * nll(POLICY, RETAIN)),
    "undial": ({"beta": 3.0, "gamma": 0.8, "alpha": A}, lambda: 0.8 * undial_term(3.0) + A * nll(POLICY, RETAIN)),
    "rmu": ({"layer": 1, "alpha": 3.0}, lambda: None),  # needs the control vector: see rmu_expected
    "npo+kl+gd": ({"beta": B, "npo_weight": 0.6, "kl_weight": 0.8, "nll_weight": A},
                  lambda: 0.6 * npo_term(B) + 0.8 * kl_reference_policy(RETAIN) + A * nll(POLICY, RETAIN)),
    "adaptive-gd": ({"base_weight": 1.3}, lambda: -nll(POLICY, FORGET) + 1.3 * nll(POLICY, RETAIN)),
    "ce-u": ({"skip_first": 1, "alpha": A}, lambda: ce_u_term(1) + A * nll(POLICY, RETAIN)),
    "pdu": ({"gamma": 0.8, "alpha": A, "retain_loss_eps": 0.1},
            lambda: 0.8 * flattening() + A * (nll(POLICY, RETAIN) - 0.1)),
    "altpo": ({"beta": B, "alpha": A}, lambda: idk_term(B, 2 / B) + A * nll(POLICY, RETAIN)),
}


def idk_term(beta: float, scale: float) -> float:
    margins = [(sequence_ll(POLICY, refusal) - sequence_ll(REFERENCE, refusal))
               - (sequence_ll(POLICY, row) - sequence_ll(REFERENCE, row)) for refusal, row in zip(REFUSALS, FORGET)]
    return scale * mean(softplus(-beta * m) for m in margins)


def batch_of(rows) -> tuple[dict, list[Example]]:
    examples = [Example(p + a, [IGNORE] * len(p) + a, "prompt") for p, a in rows]
    batch = collate(examples, 0)
    batch["index"] = torch.arange(len(rows))
    return batch, examples


def loss_of(name: str, settings: dict) -> tuple[float, Context]:
    """The method's loss on the forget and retain batches, `prepare` run on the reference first."""
    forget, forget_examples = batch_of(FORGET)
    retain, _ = batch_of(RETAIN)
    method = build_method(name, settings)
    context = Context(REFERENCE, None, forget_examples, lambda ex: collate(ex, 0), reference_model=REFERENCE)
    if name in ("idk", "altpo"):  # the refusals' (alternates') tokens; `prepare` with a real tokenizer: below
        refusal_examples = batch_of(REFUSALS)[1]
        context.precomputed.update(chosen_examples=refusal_examples,
                                   chosen_reference=context.forget_log_likelihoods(refusal_examples),
                                   forget_reference=context.forget_log_likelihoods())
    else:
        method.prepare(context)  # on the starting model, before training moved the policy away
    context.model = POLICY
    loss, logs = method.loss(context, forget, retain)
    assert all(math.isfinite(v) for v in logs.values())
    return loss.item(), context


def test_the_hand_cases_tell_forget_from_retain():
    assert abs(nll(POLICY, FORGET) - nll(POLICY, RETAIN)) > 0.2
    assert abs(kl_reference_policy(RETAIN) - kl_reference_policy(FORGET)) > 0.05
    # per-token and per-sequence averages differ on these rows
    per_sequence = mean(-mean(token_log_probs(POLICY, row)) for row in FORGET)
    assert abs(per_sequence - nll(POLICY, FORGET)) > 0.05


@pytest.mark.parametrize("name", sorted(set(CASES) - {"rmu"}))
def test_each_loss_equals_its_formula(name):
    settings, expected = CASES[name]
    assert loss_of(name, settings)[0] == pytest.approx(expected(), rel=1e-5, abs=1e-6)


def test_every_registered_method_has_a_hand_case():
    assert set(CASES) == set(METHODS)


@pytest.mark.parametrize("tokens", ["all", "answer"])
def test_rmu_on_non_zero_activations_on_both_sides(tokens):
    value, context = loss_of("rmu", {"layer": 1, "alpha": 3.0, "tokens": tokens})
    control = context.precomputed["rmu_control"]
    assert control.norm().item() == pytest.approx(6.5, rel=1e-6) and (control > 0).all()  # c · u, u uniform
    forget_term, retain_term = rmu_terms(1, control.tolist(), tokens)
    assert forget_term > 1 and retain_term > 0.1
    assert value == pytest.approx(forget_term + 3.0 * retain_term, rel=1e-5)


def test_rmu_token_sets_differ_and_an_unknown_one_is_refused():
    control = loss_of("rmu", {"layer": 1})[1].precomputed["rmu_control"].tolist()
    assert rmu_terms(1, control, "all")[0] != pytest.approx(rmu_terms(1, control, "answer")[0], rel=1e-3)
    with pytest.raises(LumeError, match="tokens must be one of all, answer"):
        build_method("rmu", {"tokens": "prompt"})


def test_rmu_reads_the_last_decoder_layers_own_output(tiny_model, tokenizer):
    """At the last layer, hidden_states[-1] is after the final norm; RMU reads the layer itself."""
    from lume.stages.unlearning.methods.rmu import layer_output

    batch = collate([Example(tokenizer("Story one begins").input_ids, [IGNORE] * 3, "p")], 0)
    last = tiny_model.config.num_hidden_layers - 1
    captured = []
    handle = tiny_model.model.layers[last].register_forward_hook(lambda _m, _i, output: captured.append(output))
    with torch.no_grad():
        outputs = tiny_model(**{k: batch[k] for k in ("input_ids", "attention_mask")}, output_hidden_states=True)
        read = layer_output(tiny_model, batch, last)
    handle.remove()
    own = captured[0][0] if isinstance(captured[0], tuple) else captured[0]
    assert torch.allclose(read, own) and not torch.allclose(read, outputs.hidden_states[-1], atol=1e-3)
    assert torch.allclose(layer_output(tiny_model, batch, 0), outputs.hidden_states[1], atol=1e-6)


def test_idk_scaling_2_over_beta_is_the_peers():
    value = loss_of("idk", {"beta": B, "alpha": A, "scaling": "2/beta"})[0]
    assert value == pytest.approx(idk_term(B, 2 / B) + A * nll(POLICY, RETAIN), rel=1e-5)


def test_idk_prepare_builds_refusals_on_a_real_tokenizer(tokenizer, tmp_path):
    """`prepare` puts a refusal after each forget prompt, and its reference terms are the starting model's."""
    from lume.training import prompt_answer_example

    model = torch.nn.Module()
    table = torch.randn(len(tokenizer), len(tokenizer), generator=torch.Generator().manual_seed(3))
    model.forward = lambda input_ids, attention_mask=None, **_: SimpleNamespace(logits=table[input_ids])
    forget = [prompt_answer_example(tokenizer, "Who wrote the story?", "Anna Lee"),
              prompt_answer_example(tokenizer, "Where does it end?", "In the harbour")]
    (tmp_path / "refusals.txt").write_text("I cannot say.\n\nNo comment.\n")
    method = build_method("idk", {"refusals_file": str(tmp_path / "refusals.txt")})
    context = Context(model, tokenizer, forget, lambda ex: collate(ex, tokenizer.pad_token_id))
    method.prepare(context)
    built = context.precomputed["chosen_examples"]
    for example, refusal, text in zip(forget, built, ["I cannot say.", "No comment."]):
        prompt_length = len(tokenizer(example.prompt).input_ids)
        assert refusal.input_ids[:prompt_length] == example.input_ids[:prompt_length]
        answer = [t for t in refusal.labels if t != IGNORE]
        assert tokenizer.decode(answer).strip() == text + tokenizer.eos_token
        assert answer != [t for t in example.labels if t != IGNORE]
    logp = torch.log_softmax(table, -1)
    for key, examples in (("chosen_reference", built), ("forget_reference", forget)):
        by_hand = [sum(logp[ids[j - 1], ids[j]].item() for j in range(1, len(ids)) if labels[j] != IGNORE)
                   for ids, labels in ((e.input_ids, e.labels) for e in examples)]
        assert context.precomputed[key].tolist() == pytest.approx(by_hand, rel=1e-5)


def test_idk_refusals_file_and_scaling_are_checked(tmp_path):
    from lume.stages.unlearning.methods.idk import REFUSALS as BUILT_IN, refusals

    assert refusals(METHODS["idk"].Settings()) == list(BUILT_IN)
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(LumeError, match="empty.txt: the refusals file has no refusal"):
        refusals(METHODS["idk"].Settings(refusals_file=str(tmp_path / "empty.txt")))
    with pytest.raises(LumeError, match="missing.txt: cannot read the refusals file"):
        refusals(METHODS["idk"].Settings(refusals_file=str(tmp_path / "missing.txt")))
    with pytest.raises(LumeError, match="scaling must be one of dpo, 2/beta"):
        build_method("idk", {"scaling": "tofu"})


def test_undial_without_a_retain_weight_computes_no_retain_term():
    value = loss_of("undial", {"beta": 3.0, "gamma": 0.8, "alpha": 0.0})[0]
    assert value == pytest.approx(0.8 * undial_term(3.0), rel=1e-5)


def zjuklab_npo_term(beta: float) -> float:
    """ZJUKLAB's NPO (semeval25/unlearn-merging.py): −log σ(β · (CE_θ − CE_ref)) · 2/β, each CE the
    mean over every answer token of the forget batch together (their get_batch_loss)."""
    margin = nll(POLICY, FORGET) - nll(REFERENCE, FORGET)
    return -math.log(1 / (1 + math.exp(-beta * margin))) * 2 / beta


def npo_gradient(settings: dict) -> torch.Tensor:
    """The gradient of the NPO term with respect to the policy's table."""
    forget, forget_examples = batch_of(FORGET)
    method = build_method("npo", settings)
    context = Context(REFERENCE, None, forget_examples, lambda ex: collate(ex, 0), reference_model=REFERENCE)
    method.prepare(context)
    context.model = POLICY
    POLICY.zero_grad()
    method.loss(context, forget, None)[0].backward()
    gradient = POLICY.table.grad.clone()
    POLICY.zero_grad()
    return gradient


@pytest.mark.parametrize("name", ["npo", "npo+kl+gd"])
def test_npo_pooled_over_the_batch_is_zjuklabs_formula_and_moves_the_model_otherwise(name):
    weights = {"npo_weight": 1.0, "kl_weight": 0.0, "nll_weight": 0.0} if name == "npo+kl+gd" else {}
    pooled, _ = loss_of(name, {"beta": B, "pooling": "batch", **weights})
    assert pooled == pytest.approx(zjuklab_npo_term(B), rel=1e-5)
    assert pooled != pytest.approx(npo_term(B), rel=1e-2)  # the two forms differ on these rows
    per_row, batch = npo_gradient({"beta": B}), npo_gradient({"beta": B, "pooling": "batch"})
    assert not torch.allclose(per_row, batch, rtol=1e-2)


def test_zjuklabs_kl_is_summed_and_divided_by_rows_times_the_padded_length():
    """Their KL: batchmean over every position of rows padded to N, so the answer tokens' sum
    over rows × N (the retain batch has 2 rows and 4 answer tokens)."""
    settings = {"beta": B, "npo_weight": 0.0, "kl_weight": 1.0, "nll_weight": 0.0}
    tokens = sum(len(answer) for _, answer in RETAIN)
    per_token, _ = loss_of("npo+kl+gd", settings)
    padded, _ = loss_of("npo+kl+gd", {**settings, "kl_padded_length": 16})
    assert per_token == pytest.approx(kl_reference_policy(RETAIN), rel=1e-5)
    assert padded == pytest.approx(kl_reference_policy(RETAIN) * tokens / (len(RETAIN) * 16), rel=1e-5)


DEFAULTS = {  # docs/methods.md's table; the papers' (or the authors' code's) values
    "gd": {"alpha": 1.0, "average": "tokens"}, "kl": {"alpha": 1.0},
    "npo": {"beta": 0.1, "alpha": 1.0, "pooling": "sequence"},
    "simnpo": {"beta": 2.5, "gamma": 0.0, "alpha": 1.0}, "sequential-gd": {"chunks": 5, "alpha": 1.0},
    "rmu": {"layer": 7, "steering_coefficient": 6.5, "alpha": 1200.0, "seed": 0, "tokens": "all",
            "adaptive_scale": 0.0, "norms_from": "task"},
    "idk": {"beta": 0.1, "alpha": 1.0, "scaling": "dpo", "refusals_file": None},
    "wga": {"beta": 1.0, "gamma": 1.0, "alpha": 1.0},
    "satimp": {"beta1": 5.0, "beta2": 1.0, "gamma": 0.1, "alpha": 1.0},
    "undial": {"beta": 10.0, "gamma": 1.0, "alpha": 0.0},
    "npo+kl+gd": {"beta": 0.1, "pooling": "sequence", "npo_weight": 1.0, "kl_weight": 1.0, "nll_weight": 1.0,
                  "kl_padded_length": 0},
    "adaptive-gd": {"base_weight": 1.2, "max_weight": 2.3, "baseline": "mean"},
    "ce-u": {"skip_first": 1, "alpha": 0.0},
    "pdu": {"gamma": 1.0, "alpha": 1.0, "retain_loss_eps": 0.3, "dual_step_size": 1.0, "dual_warmup_steps": 0,
            "primal_dual": True},
    "altpo": {"beta": 0.1, "alpha": 1.0, "alternates_file": None},
}


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_defaults_are_the_documented_ones(name):
    from dataclasses import asdict

    assert asdict(METHODS[name].Settings()) == DEFAULTS[name]
    assert {n: asdict(METHODS[n].Settings()) for n in ("npo+gd", "npo+kl")} == dict.fromkeys(
        ("npo+gd", "npo+kl"), DEFAULTS["npo"])


def test_unlearn_help_offers_every_method():
    from typer.testing import CliRunner

    from lume.cli import app

    result = CliRunner().invoke(app, ["unlearn", "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert all(name in text for name in METHODS), text


LOGGED = {  # the loss parts each method records per step in lume_unlearn.json, and their values
    "ga": {"forget_nll": lambda: nll(POLICY, FORGET)},
    "gd": {"forget_nll": lambda: nll(POLICY, FORGET), "retain_nll": lambda: nll(POLICY, RETAIN)},
    "sequential-gd": {"forget_nll": lambda: nll(POLICY, FORGET), "retain_nll": lambda: nll(POLICY, RETAIN)},
    "kl": {"forget_nll": lambda: nll(POLICY, FORGET), "retain_kl": lambda: kl_reference_policy(RETAIN)},
    "npo": {"npo": lambda: npo_term(B)},
    "npo+gd": {"npo": lambda: npo_term(B), "retain_nll": lambda: nll(POLICY, RETAIN)},
    "npo+kl": {"npo": lambda: npo_term(B), "retain_kl": lambda: kl_reference_policy(RETAIN)},
    "simnpo": {"simnpo": lambda: CASES["simnpo"][1]() - A * nll(POLICY, RETAIN),
               "retain_nll": lambda: nll(POLICY, RETAIN)},
    "idk": {"dpo": lambda: idk_term(B, 1.0), "retain_nll": lambda: nll(POLICY, RETAIN)},
    "wga": {"weighted_ascent": lambda: weighted_ascent(lambda p: p ** 1.5),
            "retain_nll": lambda: nll(POLICY, RETAIN)},
    "satimp": {"weighted_ascent": lambda: weighted_ascent(lambda p: p ** 2.0 * (1 - p) ** 1.5),
               "retain_nll": lambda: nll(POLICY, RETAIN)},
    "undial": {"distillation": lambda: undial_term(3.0), "retain_nll": lambda: nll(POLICY, RETAIN)},
    "npo+kl+gd": {"npo": lambda: npo_term(B), "retain_kl": lambda: kl_reference_policy(RETAIN),
                  "retain_nll": lambda: nll(POLICY, RETAIN)},
    "adaptive-gd": {"forget_nll": lambda: nll(POLICY, FORGET), "retain_nll": lambda: nll(POLICY, RETAIN),
                    "retain_weight": lambda: 1.3},
    "ce-u": {"ce_u": lambda: ce_u_term(1), "retain_nll": lambda: nll(POLICY, RETAIN)},
    "pdu": {"flattening": flattening, "retain_nll": lambda: nll(POLICY, RETAIN), "dual": lambda: A},
    "altpo": {"altpo": lambda: idk_term(B, 2 / B), "retain_nll": lambda: nll(POLICY, RETAIN)},
}


@pytest.mark.parametrize("name", sorted(LOGGED))
def test_each_method_logs_its_loss_parts(name):
    forget, forget_examples = batch_of(FORGET)
    retain, _ = batch_of(RETAIN)
    context = loss_of(name, CASES[name][0])[1]  # prepared, with the policy in place
    logs = build_method(name, CASES[name][0]).loss(context, forget, retain)[1]
    assert logs.keys() == LOGGED[name].keys()
    assert all(logs[key] == pytest.approx(value(), rel=1e-5) for key, value in LOGGED[name].items())


def test_rmu_logs_its_two_terms():
    value, context = loss_of("rmu", {"layer": 1, "alpha": 3.0})
    forget, _ = batch_of(FORGET)
    retain, _ = batch_of(RETAIN)
    logs = build_method("rmu", {"layer": 1, "alpha": 3.0}).loss(context, forget, retain)[1]
    expected = rmu_terms(1, context.precomputed["rmu_control"].tolist(), "all")
    assert [logs["forget_mse"], logs["retain_mse"]] == pytest.approx(list(expected), rel=1e-5)


@pytest.fixture
def one_token_answers(monkeypatch):
    """Batches whose rows each have one answer token: averages over one token, where a count
    clamped wrongly (at 2 instead of 1) would halve a term."""
    import sys

    module = sys.modules[__name__]
    monkeypatch.setattr(module, "FORGET", [([1], [3])])
    monkeypatch.setattr(module, "RETAIN", [([2], [4])])
    monkeypatch.setattr(module, "REFUSALS", [([1], [5])])


@pytest.mark.parametrize("name", sorted(set(CASES) - {"rmu"}))
def test_each_loss_on_one_token_answers(name, one_token_answers):
    settings, expected = CASES[name]
    assert loss_of(name, settings)[0] == pytest.approx(expected(), rel=1e-5, abs=1e-6)


def test_rmu_on_one_token_answers(one_token_answers):
    value, context = loss_of("rmu", {"layer": 1, "alpha": 3.0, "tokens": "answer"})
    forget_term, retain_term = rmu_terms(1, context.precomputed["rmu_control"].tolist(), "answer")
    assert value == pytest.approx(forget_term + 3.0 * retain_term, rel=1e-5)


@pytest.mark.parametrize("layer, trained", [(0, {0}), (1, {0, 1}), (3, {1, 2, 3})])
def test_rmu_trains_exactly_the_mlps_of_layers_l_minus_2_to_l(tokenizer, layer, trained):
    from .conftest import make_tiny_model

    model = make_tiny_model(tokenizer, layers=4)
    build_method("rmu", {"layer": layer}).select_parameters(model)
    names = {name for name, p in model.named_parameters() if p.requires_grad}
    assert names and all(".mlp." in name for name in names)
    assert {int(name.split(".layers.")[1].split(".")[0]) for name in names} == trained


def test_rmu_refuses_a_layer_outside_the_model(tokenizer):
    from .conftest import make_tiny_model

    with pytest.raises(LumeError, match="rmu: layer 4 does not exist"):
        build_method("rmu", {"layer": 4}).select_parameters(make_tiny_model(tokenizer, layers=4))
    with pytest.raises(LumeError, match="method_settings.layer must be at least 0, got -1"):
        build_method("rmu", {"layer": -1})  # refused with the settings, before any model


def test_gd_averaged_per_example_over_both_batches():
    """AILS-NTUA's weighting: each example's token-mean NLL, forget ones −1, retain ones α."""
    value = loss_of("gd", {"alpha": A, "average": "examples"})[0]
    assert value == pytest.approx(per_example_gd(A), rel=1e-5)
    assert value != pytest.approx(CASES["gd"][1](), rel=1e-3)


@pytest.mark.parametrize("average", ["examples", "tokens"])
def test_gd_on_a_step_of_one_kind_of_rows_keeps_only_that_term(average):
    """`schedule.rows_apart`: a forget-only step is −NLL(F), a retain-only one α · NLL(R)."""
    forget, retain = batch_of(FORGET)[0], batch_of(RETAIN)[0]
    method = build_method("gd", {"alpha": A, "average": average})
    context = Context(POLICY, None, batch_of(FORGET)[1], lambda ex: collate(ex, 0))
    row_nll = lambda row: -mean(token_log_probs(POLICY, row))  # noqa: E731
    mean_of = (lambda rows: mean(row_nll(r) for r in rows)) if average == "examples" \
        else (lambda rows: nll(POLICY, rows))
    forget_only, logs = method.loss(context, forget, None)
    assert forget_only.item() == pytest.approx(-mean_of(FORGET), rel=1e-5) and set(logs) == {"forget_nll"}
    retain_only, logs = method.loss(context, None, retain)
    assert retain_only.item() == pytest.approx(A * mean_of(RETAIN), rel=1e-5) and set(logs) == {"retain_nll"}
    with pytest.raises(LumeError, match="rows_apart .* method 'npo' does not take"):
        UnlearnConfig(method="npo", schedule=ScheduleSettings(kind="chunks", rows_apart=True))


def test_ce_u_without_skipping_averages_every_answer_token():
    assert loss_of("ce-u", {"skip_first": 0})[0] == pytest.approx(ce_u_term(0), rel=1e-5)
    assert ce_u_term(0) != pytest.approx(ce_u_term(1), rel=1e-3)


def test_adaptive_gd_raises_the_retain_weight_with_the_retain_loss_after_the_first_epoch():
    from lume.stages.unlearning.methods.adaptive_gd import retain_weight

    forget, _ = batch_of(FORGET)
    retain, _ = batch_of(RETAIN)
    context = loss_of("adaptive-gd", {})[1]
    method = build_method("adaptive-gd", {})
    context.steps_per_epoch = 2
    for step in (0, 1):  # the first epoch measures the mean retain loss
        context.step = step
        assert method.loss(context, forget, retain)[1]["retain_weight"] == 1.2
    assert method.state_dict() == {"total": pytest.approx(2 * nll(POLICY, RETAIN), rel=1e-5), "count": 2}
    method.load_state_dict({"total": 2 * (nll(POLICY, RETAIN) - 0.5), "count": 2})  # a lower mean: Δ = 0.5
    context.step = 2
    value, logs = method.loss(context, forget, retain)
    expected_weight = min(max(round(0.3 * 6 ** 0.5 + 0.8, 1), 1.2), 2.3)
    assert logs["retain_weight"] == pytest.approx(expected_weight) == pytest.approx(1.5)
    assert value.item() == pytest.approx(-nll(POLICY, FORGET) + 1.5 * nll(POLICY, RETAIN), rel=1e-5)
    assert retain_weight(0.1, 0.2, 1.2, 2.3) == 1.2 and retain_weight(5.0, 0.0, 1.2, 2.3) == 2.3


def test_sha256s_baseline_divides_the_first_epochs_batch_means_by_its_retain_rows():
    """Their unlearn.py: average_positive_loss += batch mean; n_positive_examples += rows."""
    forget, _ = batch_of(FORGET)
    retain, _ = batch_of(RETAIN)
    context = loss_of("adaptive-gd", {})[1]
    method = build_method("adaptive-gd", {"baseline": "per-row"})
    context.steps_per_epoch, context.step = 2, 0
    method.loss(context, forget, retain)
    method.loss(context, forget, retain)
    assert method.state_dict() == {"total": pytest.approx(2 * nll(POLICY, RETAIN), rel=1e-5),
                                   "count": 2 * len(RETAIN)}


def test_a_validation_loss_leaves_what_the_method_keeps_between_steps_as_it_was():
    forget, _ = batch_of(FORGET)
    retain, _ = batch_of(RETAIN)
    context = loss_of("adaptive-gd", {})[1]
    method = build_method("adaptive-gd", {})
    context.steps_per_epoch, context.step = 2, 0
    method.loss(context, forget, retain)
    kept = method.state_dict()
    value = method.validation_loss(context, forget, retain)
    assert value.item() == pytest.approx(-nll(POLICY, FORGET) + 1.2 * nll(POLICY, RETAIN), rel=1e-5)
    assert method.state_dict() == kept


def test_pdu_moves_its_dual_variable_after_the_warm_up_and_keeps_it_in_checkpoints():
    forget, _ = batch_of(FORGET)
    retain, _ = batch_of(RETAIN)
    context = loss_of("pdu", {})[1]
    method = build_method("pdu", {"alpha": A, "retain_loss_eps": 0.1, "dual_step_size": 2.0, "dual_warmup_steps": 1})
    context.step = 0  # warm-up: λ stays
    method.loss(context, forget, retain)
    assert method.state_dict() == {"dual": A}
    context.step = 1
    method.loss(context, forget, retain)
    moved = A + 2.0 * (nll(POLICY, RETAIN) - 0.1)
    assert method.state_dict()["dual"] == pytest.approx(moved, rel=1e-5)
    value = method.loss(context, forget, retain)[0].item()  # the next loss uses the moved λ
    assert value == pytest.approx(flattening() + moved * (nll(POLICY, RETAIN) - 0.1), rel=1e-5)
    restored = build_method("pdu", {})
    restored.load_state_dict({"dual": 3.5})
    assert restored.dual == 3.5


def test_altpo_alternates_are_other_forget_rows_answers_of_the_same_kind(tmp_path):
    from lume.data.records import Record
    from lume.stages.unlearning.methods.altpo import read_alternates, swapped_alternates

    def row(row_id, task, output):
        return Record(row_id, row_id[:2], task, "sc" if row_id.endswith("sc1") else "qa", "forget", "?", output)

    rows = [row("d1qa0", "Task2", "1901"), row("d2qa0", "Task2", "1902"), row("d1qa1", "Task2", "Oslo"),
            row("d2qa1", "Task2", "Rome"), row("s1sc1", "Task1", "ends well.")]
    alternates = swapped_alternates(rows)
    assert alternates == {"d1qa0": "1902", "d2qa0": "1901", "d1qa1": "Rome", "d2qa1": "Oslo",
                          "s1sc1": "1901"}  # alone in its kind: another row's answer
    with pytest.raises(LumeError, match="every forget row has the same answer"):
        swapped_alternates([rows[0], row("d3qa0", "Task2", "1901")])
    (tmp_path / "alt.jsonl").write_text('{"id": "d1qa0", "alternate": "1899"}\n\n{"id": "d2qa0"}\n')
    with pytest.raises(LumeError, match="alt.jsonl:3: expected an object with text fields id and alternate"):
        read_alternates(tmp_path / "alt.jsonl")
