"""Mixed precision chosen by the hardware: both branches of `auto` through the capability seam,
on any machine, and the choice recorded where a run is reported and keyed."""

import json

import pytest

from lume.training import TrainingSettings, precision


def pretend(monkeypatch, native: bool, kind: str = "cpu"):
    monkeypatch.setattr(precision, "native_bf16", lambda _kind: native)
    monkeypatch.setattr(precision, "device_type", lambda _cpu: kind)


def test_auto_is_the_default_of_every_stage_that_trains():
    from lume.stages.attacks import AttackConfig
    from lume.stages.target import PRESETS, MemorizeConfig
    from lume.stages.unlearning import UnlearnConfig

    assert TrainingSettings().mixed_precision == "auto"
    assert MemorizeConfig().training.mixed_precision == UnlearnConfig().training.mixed_precision == "auto"
    assert AttackConfig().relearn.mixed_precision == "auto"
    assert all(p.training.mixed_precision == "auto" for p in PRESETS.values())


@pytest.mark.parametrize("native, kind, used", [(True, "cpu", "bf16"), (False, "cpu", "no"), (True, "cuda", "bf16"),
                                                (False, "cuda", "no")])
def test_auto_picks_bf16_only_where_the_device_computes_it_natively(monkeypatch, native, kind, used):
    pretend(monkeypatch, native, kind)
    chosen = precision.choose("auto")
    assert chosen.used == used and chosen.asked == "auto"
    assert ("natively" in chosen.reason) == native
    assert chosen.line().startswith("mixed precision: " + ("bf16 autocast" if native else "float32"))


def test_explicit_bf16_on_an_emulating_cpu_runs_as_asked_and_says_the_measured_slowdown(monkeypatch):
    pretend(monkeypatch, native=False)
    monkeypatch.setattr(precision, "bf16_slowdown", lambda: 65.4)
    chosen = precision.choose("bf16")
    assert chosen.used == "bf16"
    assert "65x slower than in float32" in chosen.reason and "auto would pick float32" in chosen.reason
    pretend(monkeypatch, native=True)
    assert precision.choose("bf16").reason == "asked for"  # native: nothing to warn of
    assert precision.choose("fp16").used == "fp16" and precision.choose("no").used == "no"


def test_the_slowdown_is_timed_on_the_spot():
    assert precision.bf16_slowdown(seconds=0.01) > 0


def test_cache_keys_resolve_auto_so_a_result_from_other_hardware_is_not_reused(monkeypatch):
    pretend(monkeypatch, native=False)
    assert precision.chosen_mixed_precision("auto", None) == "no"
    pretend(monkeypatch, native=True)
    assert precision.chosen_mixed_precision("auto", "cpu") == "bf16"
    assert precision.chosen_mixed_precision("fp16", None) == "fp16"


@pytest.mark.parametrize("native, used", [(False, "no"), (True, "bf16")])
def test_unlearn_records_the_precision_it_trained_in(monkeypatch, tmp_path, tiny_model_dir, data_dir, caplog,
                                                    fresh_accelerate_state, native, used):
    from lume import data
    from lume.stages.unlearning import UnlearnConfig, unlearn

    pretend(monkeypatch, native)
    documents = data.load(data_dir).documents
    forget = [r for d in documents if d.split == "forget" for r in d.records][:2]
    retain = [r for d in documents if d.split == "retain" for r in d.records][:2]
    config = UnlearnConfig(method="npo+gd", steps=1, training=TrainingSettings(batch_size=1), progress=False)
    with caplog.at_level("INFO", logger="lume"):
        unlearn(tiny_model_dir, tmp_path / "out", config, forget=forget, retain=retain)
    report = json.loads((tmp_path / "out" / "lume_unlearn.json").read_text())
    assert report["precision"]["mixed_precision"] == used and report["precision"]["asked"] == "auto"
    assert "mixed precision: " + ("bf16 autocast" if native else "float32") in caplog.text


def test_memorize_records_the_precision_it_trained_in(monkeypatch, tmp_path, tiny_model_dir, data_dir,
                                                      fresh_accelerate_state):
    from lume.data.manifest import read_manifest
    from lume.stages.target import memorize, preset

    pretend(monkeypatch, native=False)
    config = preset("smoke", base=str(tiny_model_dir), data_dir=str(data_dir), max_epochs=1, min_epochs=2,
                     progress=False)
    memorize(tmp_path / "target", config)
    assert read_manifest(tmp_path / "target").result["precision"]["mixed_precision"] == "no"


def test_a_study_step_is_redone_when_auto_resolves_differently(monkeypatch, tmp_path):
    """The study's step key holds the resolved precision: a run moved to bf16 hardware is not 'done'."""
    from lume.stages.unlearning import UnlearnConfig
    from lume.stages.unlearning.recipes.run import Entry
    from lume.study import steps

    keys = []
    monkeypatch.setattr(steps, "model_fingerprint", lambda _path: "model")

    class Recorder:
        def state(self, _step, key, _finished):
            keys.append(key)
            return "done"

    dataset = type("Dataset", (), {"fingerprint": "data"})()
    for native in (False, True):
        pretend(monkeypatch, native)
        steps.unlearned_step(Recorder(), "target", Entry.of_method(UnlearnConfig(method="npo")), "npo", tmp_path,
                             dataset)
    assert keys[0]["mixed_precision"] == "no" and keys[1]["mixed_precision"] == "bf16"
    assert keys[0]["settings"] == keys[1]["settings"]
