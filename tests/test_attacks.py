import json

import pytest
import torch

from lume.training import TrainingSettings
from lume.results import AttackResults
from lume.stages.attacks import AttackConfig, attack
from lume.stages.attacks.base import recovered_fraction, split_for_relearning
from lume.stages.attacks.quantize import quantize_weights


def test_relearning_halves_never_share_a_document(data_dir):
    from lume import data

    forget = [d for d in data.load(data_dir).documents if d.split == "forget"][:40]
    relearned, measured = split_for_relearning(forget, seed=0)
    assert relearned and measured
    assert not {d.doc_id for d in relearned} & {d.doc_id for d in measured}
    assert len(relearned) + len(measured) == len(forget)
    assert split_for_relearning(forget, seed=0)[0] == relearned


def test_relearning_a_target_of_one_forget_document_per_task_is_refused_in_one_line(tmp_path, data_dir,
                                                                                  tiny_target):
    """Half of one document is none: the attack used to crash drawing from an empty pool."""
    from lume.errors import LumeError

    config = AttackConfig(data_dir=str(data_dir), relearn_steps=1, mmlu=False, progress=False)
    with pytest.raises(LumeError, match="at least 2 forget documents per task.* 1 in Task1, Task2, Task3"):
        attack(tiny_target, tiny_target, tmp_path / "out", ["quantize-4", "relearn"], config)
    assert not (tmp_path / "out" / "attacks.json").exists()


def test_quantisation_rounds_each_channel_to_the_given_levels(tiny_model):
    import copy

    model = quantize_weights(copy.deepcopy(tiny_model), bits=4)
    original = tiny_model.model.layers[0].mlp.up_proj.weight
    weight = model.model.layers[0].mlp.up_proj.weight
    assert not torch.equal(weight, original)
    for row in weight[:5]:
        assert len(torch.unique(row)) <= 15  # 2 * (2**3 - 1) + 1 levels
    assert (weight - original).abs().max() <= original.abs().max() / 7 / 2 + 1e-6
    eight = quantize_weights(copy.deepcopy(tiny_model), bits=8).model.layers[0].mlp.up_proj.weight
    assert (eight - original).abs().mean() < (weight - original).abs().mean()


def test_recovered_fraction():
    target = {"forget/Task1/regurgitation": 1.0, "forget/Task1/knowledge": 1.0, "retain/Task1/knowledge": 1.0}
    unlearned = {"forget/Task1/regurgitation": 0.2, "forget/Task1/knowledge": 1.0, "retain/Task1/knowledge": 0.9}
    attacked = {"forget/Task1/regurgitation": 0.6, "forget/Task1/knowledge": 1.0, "retain/Task1/knowledge": 0.9}
    result = recovered_fraction(target, unlearned, attacked)
    assert result["forget/Task1/regurgitation"] == pytest.approx(0.5)
    assert result["forget/Task1/knowledge"] is None  # unlearning removed nothing
    assert result["forget/all/regurgitation"] == pytest.approx(0.5)
    assert "retain/Task1/knowledge" not in result


@pytest.mark.slow
def test_every_attack_runs_on_a_tiny_model_and_keeps_it_loadable(tmp_path, data_dir, tiny_model_dir):
    from lume.stages.target import MemorizeConfig, memorize

    target = tmp_path / "target"
    memorize(target, MemorizeConfig(base=str(tiny_model_dir), data_dir=str(data_dir), docs_per_task=2,
                                    held_out_per_task=1, max_epochs=1, device="cpu", progress=False))
    config = AttackConfig(data_dir=str(data_dir), relearn_steps=2, mmlu=False, public_max_tokens=32,
                          progress=False)
    results = attack(target, target, tmp_path / "out", ["relearn", "relearn-public", "quantize-8", "quantize-4",
                                                        "probe"], config)
    saved = json.loads((tmp_path / "out" / "attacks.json").read_text())
    assert set(saved["attacks"]) == {"relearn", "relearn-public", "quantize-8", "quantize-4", "probe"}
    assert AttackResults.from_json(saved) == results  # the file reads back as the typed result
    relearn = results.attacks["relearn"]
    assert not set(relearn.details["relearned_documents"]) & set(relearn.details["measured_documents"])
    assert {k.split("/")[0] for k in relearn.details["scores"]} == {"forget", "retain"}
    assert set(saved["attacks"]["relearn"]) >= {"recovered", "retain_change", "mmlu_change", "scores", "baseline"}
    probe = results.attacks["probe"]
    views = {"rephrased", "qa_containment", "rephrased_qa_containment"}
    assert probe.by_view and not relearn.by_view
    assert set(probe.details["unlearned"]) == views and set(probe.recovered) == views
    with pytest.raises(Exception, match="unknown attack 'melt'"):
        attack(target, target, tmp_path / "x", ["melt"], config)


def test_training_leaves_no_autocast_behind(tiny_model, tokenizer, tmp_path):
    import copy

    from lume.stages.attacks.relearn import relearned
    from lume.training import TrainingSettings, prompt_answer_example

    untouched = copy.deepcopy(tiny_model)
    examples = [prompt_answer_example(tokenizer, "Who?", "Nobody")]
    still = AttackConfig(relearn=TrainingSettings(learning_rate=0.0), relearn_steps=2, progress=False)
    trained = relearned(copy.deepcopy(tiny_model), examples, still, tokenizer.pad_token_id, tmp_path)
    ids = torch.tensor([tokenizer("Jamal Eddine Dkhissi was a Moroccan actor.").input_ids])
    with torch.no_grad():
        assert torch.equal(trained(input_ids=ids).logits, untouched(input_ids=ids).logits)


def test_relearning_trains_the_weights_its_settings_choose_as_every_stage_does(tiny_model, tokenizer, tmp_path):
    """The relearning attack goes through the stage skeleton: `relearn.layers` is honoured (it
    was ignored), its scratch checkpoints are dropped."""
    import copy

    from lume.stages.attacks.relearn import relearned
    from lume.training import TrainingSettings, prompt_answer_example

    examples = [prompt_answer_example(tokenizer, "Who?", "Nobody")]
    last_layer = AttackConfig(relearn=TrainingSettings(learning_rate=1e-2, layers=[-1]), relearn_steps=2,
                              progress=False)
    before = {name: p.detach().clone() for name, p in tiny_model.named_parameters()}
    trained = relearned(copy.deepcopy(tiny_model), examples, last_layer, tokenizer.pad_token_id, tmp_path)
    after = dict(trained.named_parameters())
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith("model.layers.1.") for name in changed), changed
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_an_attack_that_changes_nothing_recovers_exactly_zero(tmp_path, data_dir, smollm2_folder):
    """SmolLM2 as the target and its 4-bit copy as the "unlearned" model: their scores differ,
    so a relearning step at learning rate 0 must recover exactly 0 of the difference."""
    from lume import data
    from lume.data.manifest import TargetManifest
    from lume.models import load_model, save_model

    unlearned = tmp_path / "unlearned"
    loaded = load_model(smollm2_folder, dtype="float32", device="cpu")
    save_model(quantize_weights(loaded.model, bits=4), loaded.tokenizer, unlearned)
    selection = data.select_documents(data.load(data_dir).documents, per_task=2, seed=0)
    TargetManifest.from_selection(selection, base_model="smollm2-135m", data_fingerprint="-").write(unlearned)
    config = AttackConfig(data_dir=str(data_dir), relearn_steps=1, relearn=TrainingSettings(learning_rate=0.0),
                          mmlu=False,
                          max_new_tokens=24, progress=False)
    results = attack(unlearned, smollm2_folder, tmp_path / "out", ["relearn"], config)
    relearn = results.attacks["relearn"]
    measured = [v for v in relearn.recovered.values() if v is not None]  # None: nothing was removed
    assert measured and all(v == 0.0 for v in measured), relearn.recovered
    assert relearn.recovered["forget/all/regurgitation"] == 0.0
    assert relearn.retain_change == 0.0


@pytest.mark.slow
def test_an_attack_that_restores_the_target_recovers_exactly_one(data_dir, smollm2_folder):
    """The recovery arithmetic on a known answer: an "attacked" model that is the target itself
    recovers all that unlearning removed (1.0 wherever something was removed), and its retain
    change is the target's retain scores minus the unlearned model's."""
    from lume import data
    from lume.models import load_model
    from lume.stages.attacks import Attacker

    target = load_model(smollm2_folder, dtype="float32", device="cpu")
    unlearned = load_model(smollm2_folder, dtype="float32", device="cpu")
    quantize_weights(unlearned.model, bits=4)
    dataset = data.load(data_dir)
    selection = data.select_documents(dataset.documents, per_task=1, seed=0)
    config = AttackConfig(data_dir=str(data_dir), mmlu=False, max_new_tokens=24, progress=False)
    attacker = Attacker(unlearned, target, selection, config, dataset.data_dir)
    documents = attacker.forget + attacker.retain
    report = attacker.report(target.model, documents)
    base = report.details["baseline"]
    removed = [k for k in report.recovered if k.count("/") == 2 and k.split("/")[1] != "all"
               and abs(base["target"][k] - base["unlearned"][k]) > 1e-9]
    assert removed, base  # 4-bit rounding changed some forget score
    assert all(report.recovered[k] == pytest.approx(1.0) for k in removed)
    assert report.recovered["forget/all/regurgitation"] == pytest.approx(1.0)
    retain = [k for k in base["target"] if k.startswith("retain/")]
    expected = sum(base["target"][k] - base["unlearned"][k] for k in retain) / len(retain)
    assert report.retain_change == pytest.approx(expected)
