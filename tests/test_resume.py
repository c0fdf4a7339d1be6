"""Stale results never pass for new ones; checkpoints survive a kill at any point."""

import json
import shutil

import pytest
import torch

import lume.training.loop as training
from lume.training import TrainingSettings
from lume.errors import LumeError
from lume.stages.unlearning import UnlearnConfig, unlearn
from lume.stages.unlearning.methods import METHODS, Method, register
from tests.conftest import make_tiny_model


def weights(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_the_fingerprint_sees_a_change_in_any_tensor(tmp_path, tokenizer, monkeypatch):
    from lume.models import model_fingerprint, save_model

    model = make_tiny_model(tokenizer)
    save_model(model, tokenizer, tmp_path / "a")
    names = [n for n, _ in model.named_parameters()]
    with torch.no_grad():
        dict(model.named_parameters())[names[len(names) // 2]][3, 5] += 1e-3  # one number, mid-file
    save_model(model, tokenizer, tmp_path / "b")
    assert model_fingerprint(tmp_path / "a") != model_fingerprint(tmp_path / "b")
    monkeypatch.setattr("lume.models.fingerprint._digest", lambda files: pytest.fail("rehashed a recorded model"))
    model_fingerprint(tmp_path / "a")  # recorded at save time, not hashed again


def test_an_unlisted_folders_fingerprint_is_cached_until_a_file_changes(tmp_path, tiny_model_dir, monkeypatch):
    from lume.models import model_fingerprint

    folder = shutil.copytree(tiny_model_dir, tmp_path / "m")
    first = model_fingerprint(folder)
    calls = []
    import lume.models.fingerprint as fingerprint

    original = fingerprint._digest
    monkeypatch.setattr(fingerprint, "_digest", lambda files: calls.append(1) or original(files))
    assert model_fingerprint(folder) == first and not calls
    (folder / "generation_config.json").write_text(json.dumps({"repetition_penalty": 1.3}))
    assert model_fingerprint(folder) != first and calls


class Poisoned(Method):
    """A finite loss whose gradient is NaN at step `poison_step` (so the weights turn NaN)."""

    name = "test-poisoned"
    poison_step = 2

    def loss(self, context, forget, retain):
        value = context.model(input_ids=forget["input_ids"], labels=forget["labels"]).loss
        step = context.precomputed.setdefault("step", [0])
        step[0] += 1
        if step[0] == self.poison_step:
            value = value + 0.0 * torch.sqrt(value * 0.0)  # d/dx sqrt(x) at 0 is inf: 0 * inf = NaN
        return value, {}


@pytest.fixture
def poisoned():
    register(Poisoned)
    yield
    METHODS.pop(Poisoned.name)


def test_a_checkpoint_with_non_finite_weights_is_never_kept(tmp_path, tiny_model_dir, sets, poisoned):
    forget, retain = sets
    config = UnlearnConfig(method=Poisoned.name, steps=4, training=TrainingSettings(batch_size=2, save_every=1),
                           progress=False)
    with pytest.raises(LumeError, match=r"weights became non-finite at step 2.*last checkpoint \(finite weights\) "
                                        r"is step 1 .*a rerun resumes from it"):
        unlearn(tiny_model_dir, tmp_path / "out", config, forget=forget, retain=retain)
    saved = training.saved_checkpoints(tmp_path / "out" / "checkpoints")
    assert [step for step, _, _ in saved] == [1]


def test_without_checkpoints_the_message_says_so(tmp_path, tiny_model_dir, sets, poisoned):
    forget, retain = sets
    config = UnlearnConfig(method=Poisoned.name, steps=4, training=TrainingSettings(batch_size=2), progress=False)
    with pytest.raises(LumeError, match=r"loss became nan at step 3.*no checkpoint was kept \(checkpoints are off"):
        unlearn(tiny_model_dir, tmp_path / "out", config, forget=forget, retain=retain)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model_dir, sets):
    out = tmp_path_factory.mktemp("whole") / "out"
    forget, retain = sets
    config = UnlearnConfig(method="npo+gd", steps=4, progress=False,
                           training=TrainingSettings(batch_size=2, save_every=1))
    report = unlearn(tiny_model_dir, out, config, forget=forget, retain=retain).to_json()
    return out, report


def _fail_on_call(number: int, real, *, after_it: bool):
    """`real`, except that its `number`-th call is killed (before it runs, or right after)."""
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == number:
            if after_it:
                real(*args, **kwargs)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("point, resumes_at", [("during the state save", 1), ("before the step is marked", 1),
                                               ("while dropping the older checkpoint", 2)])
def test_a_kill_at_each_point_of_the_checkpoint_swap_resumes_correctly(tmp_path, tiny_model_dir, sets, uninterrupted,
                                                                       monkeypatch, caplog, point, resumes_at):
    from accelerate import Accelerator

    forget, retain = sets
    config = UnlearnConfig(method="npo+gd", steps=4, training=TrainingSettings(batch_size=2, save_every=1),
                           progress=False)
    with monkeypatch.context() as patch:
        if point == "during the state save":  # the state is written, then the kill
            patch.setattr(Accelerator, "save_state", _fail_on_call(2, Accelerator.save_state, after_it=True))
        elif point == "before the step is marked":
            patch.setattr(training, "write_json_atomic", _fail_on_call(2, training.write_json_atomic, after_it=False))
        else:
            patch.setattr(training.shutil, "rmtree", _fail_on_call(1, shutil.rmtree, after_it=False))
        with pytest.raises(KeyboardInterrupt):
            unlearn(tiny_model_dir, tmp_path / "out", config, forget=forget, retain=retain)
    caplog.clear()
    with caplog.at_level("INFO", logger="lume"):
        report = unlearn(tiny_model_dir, tmp_path / "out", config, forget=forget, retain=retain).to_json()
    assert f"resuming from step {resumes_at}" in caplog.text
    whole, whole_report = uninterrupted
    assert [r["loss"] for r in report["losses"]] == [r["loss"] for r in whole_report["losses"]]
    expected, got = weights(whole), weights(tmp_path / "out")
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert report["tokens"] == whole_report["tokens"]  # every segment counted, not just the last


def test_changed_early_exit_does_not_reuse_cached_items(tmp_path, tiny_model_dir, data_dir, monkeypatch):
    import lume.inference.backends.hf as scoring
    from lume.stages.evaluation import EvalConfig, evaluate

    config = EvalConfig(data_dir=str(data_dir), docs_per_task=1, max_new_tokens=4, mia=False, mmlu=False,
                        progress=False)
    evaluate(tiny_model_dir, tmp_path / "eval", config)
    generated = []
    real = scoring.generate_greedy
    monkeypatch.setattr(scoring, "generate_greedy",
                        lambda model, tok, prompts, **kw: generated.extend(prompts) or real(model, tok, prompts, **kw))
    summary = evaluate(
        tiny_model_dir, tmp_path / "eval", EvalConfig(**{**config.__dict__, "early_exit": False})).to_json()
    assert len(generated) == summary["data"]["items"]


def test_a_reused_folder_holds_only_the_new_runs_results(tmp_path, tiny_model_dir, tokenizer, data_dir):
    from lume.stages.evaluation import EvalConfig, evaluate
    from lume.reports.study import load_study

    config = EvalConfig(data_dir=str(data_dir), docs_per_task=1, max_new_tokens=4, mia_set="validation", mmlu=False,
                        progress=False)
    evaluate(tiny_model_dir, tmp_path / "eval", config)
    assert (tmp_path / "eval" / "mia.jsonl").is_file()
    other = tmp_path / "other"
    make_tiny_model(tokenizer, seed=3).save_pretrained(other)
    tokenizer.save_pretrained(other)
    summary = evaluate(other, tmp_path / "eval", EvalConfig(**{**config.__dict__, "mia": False})).to_json()
    assert not (tmp_path / "eval" / "mia.jsonl").exists() and "mia.jsonl" not in summary["files"]
    assert load_study([tmp_path / "eval"])[0].mia_rows == []


def test_an_interrupted_lora_run_resumes_to_the_uninterrupted_adapter(tmp_path, tiny_model_dir, sets, monkeypatch):
    """The adapters are drawn after the seed is set, and their trained state comes back from the
    checkpoint: a killed and resumed LoRA run (from another random state) equals a whole one."""
    from accelerate import Accelerator
    from safetensors.torch import load_file

    forget, retain = sets
    config = UnlearnConfig(method="npo+kl+gd", steps=4, progress=False,
                           training=TrainingSettings(batch_size=2, lora_rank=4, learning_rate=1e-3, save_every=1))
    torch.manual_seed(1)
    whole = unlearn(tiny_model_dir, tmp_path / "whole", config, forget=forget, retain=retain).to_json()
    torch.manual_seed(2)
    with monkeypatch.context() as patch:
        patch.setattr(Accelerator, "save_state", _fail_on_call(2, Accelerator.save_state, after_it=True))
        with pytest.raises(KeyboardInterrupt):
            unlearn(tiny_model_dir, tmp_path / "out", config, forget=forget, retain=retain)
    torch.manual_seed(3)
    resumed = unlearn(tiny_model_dir, tmp_path / "out", config, forget=forget, retain=retain).to_json()
    assert [r["loss"] for r in resumed["losses"]] == [r["loss"] for r in whole["losses"]]
    expected, got = (load_file(tmp_path / name / "adapter" / "adapter_model.safetensors") for name in ("whole", "out"))
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
