import json
import re

import pytest
import yaml

import lume.study.steps as study_steps
from lume.errors import InputError
from lume.study.run import load_config, run
from lume.study.sweep import load_sweep
from tests.test_mmlu import make_mmlu


@pytest.fixture(scope="module")
def study(tmp_path_factory, data_dir, tiny_model_dir):
    root = tmp_path_factory.mktemp("study")
    config = {
        "name": "mini", "out": str(root / "run"), "data_dir": str(data_dir),
        "target": {"preset": "smoke", "memorize": {"base": str(tiny_model_dir), "max_epochs": 1, "progress": False}},
        "methods": [{"method": "gd", "steps": 2, "training": {"learning_rate": 1e-3}, "progress": False},
                    {"method": "npo", "name": "npo-strong", "steps": 2, "training": {"learning_rate": 1e-3},
                     "method_settings": {"beta": 0.5}, "progress": False}],
        "evaluation": {"mia_set": "validation", "mmlu_dir": str(make_mmlu(root / "mmlu")), "max_new_tokens": 8,
                       "progress": False},
        "attacks": ["quantize-4"], "attack": {"mmlu": False, "progress": False},
    }
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


DATA_LOADS = []  # each time the finished study read the data's files


@pytest.fixture(scope="module")
def finished(study, cache):
    import lume.data

    real = lume.data.load
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LUME_CACHE", str(cache))
        patch.setattr(lume.data, "load", lambda *args, **kwargs: DATA_LOADS.append(args) or real(*args, **kwargs))
        return run(load_config(study))


@pytest.mark.slow
def test_a_study_reads_its_data_once_and_hands_it_to_every_stage(finished):
    """Building the target, two unlearnings, six evaluations and two attacks: one read."""
    assert len(DATA_LOADS) == 1, DATA_LOADS


@pytest.mark.slow
def test_report_numbers_match_the_summaries(finished):
    report = (finished / "report.md").read_text()
    for label in ("target", "gd", "npo-strong"):
        summary = json.loads((finished / "eval" / label / "summary.json").read_text())
        headline, numbers = [[c.strip() for c in line.strip("|").split("|")] for line in report.splitlines()
                             if line.startswith(f"| {label} |")][:2]
        low, high = summary["intervals"]["final"]
        assert headline[1].startswith(f"{summary['task_aggregate']:.3f} [")
        assert headline[2].startswith(f"{summary['mia']['mia_score']:.3f}")
        assert headline[3].startswith(f"{summary['mmlu']['accuracy']:.3f}")
        assert headline[4] == f"{summary['final']:.3f} [{low:.3f}, {high:.3f}]"
        assert numbers[1].startswith(f"{summary['scores']['forget/Task1/regurgitation']:.3f}")
        assert summary["mia"]["set"] == "held-out"  # a target lume built: its own members and non-members
    assert "on trained forget docs vs held-out docs" in report and "MIA on the SemEval files" in report
    assert "## Differences (paired bootstrap, 95 %)" in report
    assert "Published numbers" in report and "0.706" in report
    attacked = json.loads((finished / "attacks" / "gd" / "attacks.json").read_text())
    recovered = attacked["attacks"]["quantize-4"]["recovered"]["forget/all/regurgitation"]
    row = next(line for line in report.splitlines() if line.startswith("| gd | quantize-4 |"))
    assert row.split("|")[3].strip() == ("–" if recovered is None else f"{recovered:.3f}")
    assert (finished / "figures" / "robustness.png").is_file()
    assert all((finished / "figures" / f"{name}.png").is_file() for name in ("leaderboard", "forget_vs_general"))


@pytest.mark.slow
def test_html_is_one_self_contained_file(finished):
    page = (finished / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4
    assert not re.search(r'src="(?!data:)', page)
    assert "<table>" in page


@pytest.mark.slow
def test_no_label_becomes_markup_in_the_html_report(finished, tmp_path, capsys):
    """A folder's name reaches the page as text, whatever it holds (a study's method names are
    checked when read; `lume report` takes any folder)."""
    import shutil

    from tests.conftest import run_cli

    hostile = "<img src=x onerror=alert(3)> [a](javascript:alert(1)) <script>b"  # a folder name: no slash
    shutil.copytree(finished / "eval" / "gd", tmp_path / hostile)
    code, _ = run_cli(capsys, "report", finished / "eval" / "target", tmp_path / hostile, "--out", tmp_path / "r")
    page = (tmp_path / "r" / "report.html").read_text()
    assert code == 0 and "&lt;img src=x onerror=alert(3)&gt;" in page
    assert "<img src=x" not in page and "<script" not in page and "href=" not in page


@pytest.mark.slow
def test_unlearned_models_are_flagged_against_the_target_mmlu(finished):
    target = json.loads((finished / "eval" / "target" / "summary.json").read_text())
    gd = json.loads((finished / "eval" / "gd" / "summary.json").read_text())
    assert gd["mmlu"]["target_mmlu"] == target["mmlu"]["accuracy"]
    assert gd["mmlu"]["below_threshold"] == (gd["mmlu"]["accuracy"] < 0.75 * target["mmlu"]["accuracy"])


@pytest.mark.slow
def test_a_rerun_redoes_nothing(finished, study, cache, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("finished work was redone")

    import lume.stages.target

    for name in ("unlearn", "evaluate"):
        monkeypatch.setattr(study_steps, name, fail)
    monkeypatch.setattr(lume.stages.target, "memorize", fail)  # the cached target is built there
    monkeypatch.setenv("LUME_CACHE", str(cache))
    (finished / "report.md").unlink()
    assert run(load_config(study)) == finished
    assert (finished / "report.md").is_file()


def test_a_misspelt_field_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("methods:\n  - {method: npo, stpes: 3}\n")
    with pytest.raises(InputError, match=r"field 'methods\[0\].stpes': unknown field"):
        load_config(path)
    path.write_text("evaluation: {mmlu_limt: 3}\n")
    with pytest.raises(InputError, match=r"field 'evaluation.mmlu_limt'"):
        load_config(path)
    path.write_text("taget: {}\n")
    with pytest.raises(InputError, match=r"field 'taget'"):
        load_config(path)


def test_the_default_config_is_the_demo():
    config = load_config(None)
    assert config.target.preset == "demo" and len(config.methods) >= 2


@pytest.mark.slow
def test_a_changed_method_under_the_same_name_is_redone_with_its_evaluation(finished, study, cache, monkeypatch,
                                                                            caplog, tmp_path):
    config = yaml.safe_load(study.read_text())
    config["methods"][0]["steps"] = 3  # `gd` keeps its name, not its settings
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    calls = []
    for name in ("unlearn", "evaluate"):
        real = getattr(study_steps, name)
        monkeypatch.setattr(study_steps, name, lambda *a, _real=real, _name=name, **k: calls.append(
            (_name, a[1].name)) or _real(*a, **k))
    monkeypatch.setenv("LUME_CACHE", str(cache))
    caplog.clear()
    with caplog.at_level("INFO", logger="lume"):
        run(load_config(changed))
    assert calls == [("unlearn", "gd"), ("evaluate", "gd")]
    out = caplog.text
    assert "unlearn-gd: settings changed since the last run; redoing it" in out
    assert "evaluate-gd: model changed since the last run" in out
    report = json.loads((finished / "models" / "gd" / "lume_unlearn.json").read_text())
    assert report["steps"] == 3


def test_conflicts_in_a_study_file_are_refused_when_it_is_read(tmp_path, tiny_model_dir):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"methods": [{"recipe": "zjuklab", "training": {"lora_rank": 0}}]}))
    with pytest.raises(InputError, match=r"s.yaml: field 'methods\[0\].recipe': recipe 'zjuklab' merges LoRA adapters"):
        load_config(path)
    path.write_text(yaml.safe_dump({"target": {"model": str(tiny_model_dir), "oracle": True}}))
    with pytest.raises(InputError, match=r"s.yaml: field 'target.oracle': only a target lume built has an oracle"):
        load_config(path)


@pytest.mark.slow
def test_a_damaged_finished_model_is_redone_not_reused(finished, study, cache, monkeypatch, caplog):
    monkeypatch.setenv("LUME_CACHE", str(cache))
    run(load_config(study))  # every step as the file says (another test here may have changed one)
    weights = finished / "models" / "gd" / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[:1000])
    with caplog.at_level("WARNING", logger="lume"):
        run(load_config(study))
    assert "gd: the finished model in" in caplog.text and weights.stat().st_size == size


@pytest.mark.parametrize("entry, message", [
    ({"method": "gd", "training": {"layers": [5]}}, "layer 5 does not exist: the model has 2 decoder layers"),
    ({"method": "rmu", "method_settings": {"layer": 2}}, "rmu: layer 2 does not exist"),
    ({"recipe": "ails-ntua", "recipe_target": "olmo-7b"}, "layer -8 does not exist"),
    ({"recipe": "adaptive-rmu", "recipe_target": "olmo-7b"}, "rmu: layer 26 does not exist")])
def test_a_layer_the_given_target_lacks_is_refused_when_the_file_is_read(tmp_path, tiny_model_dir, entry, message):
    """Read from the target's config.json with no weights loaded: before the target's evaluation."""
    for loader, extra in ((load_config, {}), (load_sweep, {"eval_every": 1, "search": {
            "training.learning_rate": {"low": 1e-5, "high": 1e-4}}})):
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump({"target": {"model": str(tiny_model_dir)}, "methods": [{**entry, **extra}]}))
        with pytest.raises(InputError, match=rf"s.yaml: field 'methods\[0\]': {message}"):
            loader(path)
    path.write_text(yaml.safe_dump({"target": {"model": str(tiny_model_dir)}, "methods": [
        {"method": "gd", "training": {"layers": [1, -2]}}, {"method": "rmu", "method_settings": {"layer": 1}}]}))
    assert len(load_config(path).methods) == 2  # layers it has pass


def test_olmo_settings_for_a_target_the_study_builds_are_refused_when_read(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"methods": [{"recipe": "ails-ntua", "recipe_target": "olmo-1b"}]}))
    with pytest.raises(InputError, match=r"field 'methods\[0\].recipe_target': olmo-1b: the settings for the "):
        load_config(path)
