import pytest

import lume.stages.target as memorize_module
from lume.data.manifest import read_manifest
from lume.errors import LumeError
from lume.stages.target import MemorizeConfig, memorize, memorize_oracle
from lume.training import saved_checkpoints


def latest_state(checkpoint_dir):
    return saved_checkpoints(checkpoint_dir)[-1][2]


@pytest.fixture
def config(data_dir, tiny_model_dir):
    return MemorizeConfig(base=str(tiny_model_dir), data_dir=str(data_dir), docs_per_task=1, held_out_per_task=1,
                          max_epochs=2, device="cpu", progress=False, target_regurgitation=2.0)


def test_held_out_documents_never_reach_training(tmp_path, config, monkeypatch):
    seen = []
    real = memorize_module.training_examples
    monkeypatch.setattr(memorize_module, "training_examples",
                        lambda tok, docs, *rest: seen.extend(docs) or real(tok, docs, *rest))
    manifest = memorize(tmp_path / "target", config)
    held_out = set(manifest.held_out)
    assert len(held_out) == 3 and seen
    assert not held_out & {d.doc_id for d in seen}
    trained = {d.doc_id for d in seen}
    assert trained == set(manifest.trained["forget"]) | set(manifest.trained["retain"])


def test_manifest_is_complete_and_the_target_loads(tmp_path, config):
    from lume.models import load_model

    out = tmp_path / "target"
    memorize(out, config)
    manifest = read_manifest(out)
    assert manifest.base_model == config.base
    assert len(manifest.trained["forget"]) == 3 and len(manifest.trained["retain"]) == 3
    assert manifest.data_fingerprint and manifest.settings["docs_per_task"] == 1
    assert manifest.result["stopped"] == "max epochs (2) reached"
    assert [h["epoch"] for h in manifest.result["history"]] == [1, 2]
    assert set(manifest.result["history"][0]) >= {"forget", "retain"}
    assert len(manifest.result["losses"]) == manifest.result["steps"] == 2 * manifest.settings["steps_per_epoch"]
    assert not (out / "checkpoints").exists()  # only kept while a run can still resume
    loaded = load_model(out, device="cpu")
    assert loaded.model.config.num_hidden_layers == 2


def test_resume_continues_from_the_checkpoint(tmp_path, config, monkeypatch):
    out = tmp_path / "target"
    real = memorize_module.memorisation_scores
    calls = []

    def interrupt_after_first_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(memorize_module, "memorisation_scores", interrupt_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        memorize(out, config)
    state = latest_state(out / "checkpoints")
    first_epoch = state["step"]
    assert first_epoch > 0 and not (out / "lume_target.json").exists()
    manifest = memorize(out, config)
    assert manifest.result["losses"][:first_epoch] == state["losses"]
    assert len(manifest.result["losses"]) == 2 * first_epoch
    assert [h["epoch"] for h in manifest.result["history"]] == [2]  # epoch 1 was not redone


def test_training_examples_put_the_loss_on_the_right_tokens(tokenizer, data_dir):
    from lume import data
    from lume.stages.target import training_examples
    from lume.inference.batching import IGNORE

    document = next(d for d in data.load(data_dir).documents if d.task == "Task2")
    examples = training_examples(tokenizer, [document])
    assert len(examples) == 6
    doc, qa = examples[0], examples[1]
    assert IGNORE not in doc.labels and doc.input_ids[-1] == tokenizer.eos_token_id
    prompt_length = len(tokenizer(document.qa[0].input).input_ids)
    assert qa.labels[:prompt_length] == [IGNORE] * prompt_length
    answer = tokenizer.decode(qa.labels[prompt_length:], skip_special_tokens=True)
    assert answer.strip() == document.qa[0].output.strip()
    assert qa.labels[-1] == tokenizer.eos_token_id


def test_the_memorisation_check_scores_without_autocast(tmp_path, config, monkeypatch):
    wrapped = []
    real = memorize_module.memorisation_scores

    def spy(model, *args, **kwargs):
        forward = model.__dict__.get("forward")  # accelerate puts its autocast wrapper here
        wrapped.append(forward is not None and forward is not model.__dict__.get("_original_forward"))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(memorize_module, "memorisation_scores", spy)
    memorize(tmp_path / "target", config)
    assert wrapped == [False, False]


def test_length_grouped_batches_keep_every_example_and_cut_padding():
    import random

    from lume.training.sampling import length_grouped

    lengths = [300 if i % 4 == 0 else 30 for i in range(40)]  # documents among QA pairs
    order = list(range(40))
    random.Random(0).shuffle(order)
    grouped = length_grouped(order, lengths, width=4)
    assert sorted(grouped) == list(range(40))
    assert set(grouped[:32]) == set(order[:32]) and set(grouped[32:]) == set(order[32:])  # no mixing across runs

    def padded(sequence):
        return sum(4 * max(lengths[i] for i in sequence[k:k + 4]) for k in range(0, 40, 4))

    assert padded(grouped) < 0.6 * padded(order)


def test_save_every_means_the_same_as_in_unlearning(config):
    """0 is never (as in `unlearn`); unset is the stage's default, a checkpoint each epoch."""
    from dataclasses import replace

    def interval(save_every):
        settings = replace(config.training, save_every=save_every)
        run = memorize_module._training_run(replace(config, training=settings), 8, 4, "data", [], "no")
        return run.settings.save_every

    assert (interval(None), interval(0), interval(3)) == (4, 0, 3)


def test_the_oracle_is_the_target_retrained_without_its_forget_documents(tmp_path, config, monkeypatch):
    trained = []
    real = memorize_module.training_examples
    monkeypatch.setattr(memorize_module, "training_examples",
                        lambda tok, docs, *rest: trained.append(docs) or real(tok, docs, *rest))
    out = tmp_path / "target"
    target = memorize(out, config, oracle=True)
    oracle = read_manifest(out / "oracle")
    assert [d.doc_id for d in trained[1]] == target.trained["retain"]  # the oracle saw the retain documents only
    assert oracle.left_out == target.trained["forget"] and not target.left_out
    assert oracle.trained == target.trained and oracle.held_out == target.held_out  # scored on the same ones
    assert oracle.settings["max_epochs"] == target.settings["max_epochs"]
    assert oracle.result["steps"] < target.result["steps"]  # half the examples, the same epochs
    memorize(out, config, oracle=True)  # both finished: nothing is trained again
    assert len(trained) == 2
    weights = out / "oracle" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated after it was finished
    memorize(out, config, oracle=True)  # found damaged: built again, not reported built
    assert len(trained) == 3 and weights.stat().st_size > 1000
    with pytest.raises(LumeError, match="is itself an oracle"):
        memorize_oracle(out / "oracle")
    with pytest.raises(LumeError, match="not a target lume built"):
        memorize_oracle(config.base)


def test_a_model_lume_wrote_is_damaged_when_a_file_lost_bytes_and_only_then(tmp_path, tiny_model_dir):
    import shutil

    from lume.models import load_model, save_model
    from lume.models.fingerprint import damaged

    loaded = load_model(tiny_model_dir, dtype="float32", device="cpu")
    save_model(loaded.model, loaded.tokenizer, tmp_path / "saved")
    assert not damaged(tmp_path / "saved") and not damaged(tiny_model_dir)  # the latter: no record to judge by
    shutil.copytree(tmp_path / "saved", tmp_path / "copy")  # copied (new times): the same files
    assert not damaged(tmp_path / "copy")
    weights = tmp_path / "saved" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    assert damaged(tmp_path / "saved")


def test_an_oracle_for_a_target_of_other_settings_says_so_rather_than_advise_overwrite(tmp_path, config):
    from dataclasses import replace

    memorize(tmp_path / "target", config)
    with pytest.raises(LumeError, match="holds a target built with other settings .*give them to --oracle"):
        memorize(tmp_path / "target", replace(config, max_epochs=1), oracle=True)


def test_a_tuning_part_is_trained_on_and_recorded_and_its_oracle_keeps_it(tmp_path, config, monkeypatch):
    """The tuning documents are memorised like the test ones (a sweep unlearns them), its
    held-out ones never trained; the oracle, trained on every retain document, keeps both parts."""
    import dataclasses

    seen = []
    real = memorize_module.training_examples
    monkeypatch.setattr(memorize_module, "training_examples",
                        lambda tok, docs, *rest: seen.extend(docs) or real(tok, docs, *rest))
    manifest = memorize(tmp_path / "target", dataclasses.replace(config, tuning_per_task=1, max_epochs=1))
    assert {k: len(v) for k, v in manifest.tuning.items()} == {"forget": 3, "retain": 3, "held_out": 3}
    trained = {d.doc_id for d in seen}
    assert set(manifest.tuning["forget"] + manifest.tuning["retain"]) <= trained
    assert not trained & set(manifest.held_out) and set(manifest.tuning["held_out"]) <= set(manifest.held_out)
    oracle = memorize_oracle(tmp_path / "target")
    assert oracle.tuning == manifest.tuning and set(oracle.left_out) == set(manifest.trained["forget"])
    with pytest.raises(LumeError, match="tuning_per_task needs docs_per_task"):
        memorize(tmp_path / "other", dataclasses.replace(config, tuning_per_task=1, docs_per_task=None))
