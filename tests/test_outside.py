"""Nothing outside a run's folder is written or removed, and nothing a user put in it is
removed without --overwrite (which never removes an input)."""

import pytest
import yaml

import lume.study.steps as steps_module
from lume.errors import InputError, LumeError
from lume.stages.unlearning import UnlearnConfig
from lume.stages.unlearning.recipes.run import Entry
from lume.study.config import TargetConfig
from lume.study.run import RunConfig, load_config, run
from lume.study.steps import Steps
from lume.study.sweep import load_sweep
from tests.conftest import run_cli

UNSAFE_NAMES = ["../../../victim", "/abs/path", "a/b", "a\"b'c<img src=x onerror=alert(2)>", "..", ".hidden", "",
                "x" * 101, "back\\slash"]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_a_method_name_that_is_not_one_folder_name_is_refused_when_read(tmp_path, name):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"methods": [{"method": "ga", "steps": 1, "name": name}]}))
    with pytest.raises(InputError, match=r"field 'methods\[0\].name': .* cannot name a folder"):
        load_config(path)
    path.write_text(yaml.safe_dump({"methods": [{"method": "ga", "steps": 1, "eval_every": 1, "name": name,
                                                 "search": {"training.learning_rate": {"low": 1e-5, "high": 1e-4}}}]}))
    with pytest.raises(InputError, match=r"field 'methods\[0\].name': .* cannot name a folder"):
        load_sweep(path)


def test_names_with_spaces_signs_and_letters_of_any_script_are_kept(tmp_path):
    path = tmp_path / "study.yaml"
    names = ["NPO beta=0.5", "ails-ntua (tuned)", "méthode_2", "npo+gd@1e-4"]
    path.write_text(yaml.safe_dump({"methods": [{"method": "ga", "name": n} for n in names]}))
    assert [m.label for m in load_config(path).methods] == names


def test_a_new_study_step_never_replaces_a_folder_it_did_not_write(tmp_path, monkeypatch):
    """Only a step this study ran before (its record says so) has its folder replaced."""
    calls = []
    monkeypatch.setattr(steps_module, "unlearn", lambda *args, overwrite, **kw: calls.append(overwrite))
    monkeypatch.setattr(steps_module, "model_fingerprint", lambda _path: "fingerprint")
    dataset = type("Data", (), {"fingerprint": "data", "records": []})()
    steps = Steps(tmp_path / "run")
    target = tmp_path / "target"
    steps_module.unlearned_step(steps, target, Entry.of_method(UnlearnConfig(method="ga", steps=1)), "ga",
                                tmp_path / "run/models/ga", dataset)
    assert calls == [False]  # never run before: a folder there is the user's, refused unless --overwrite
    steps_module.unlearned_step(steps, target, Entry.of_method(UnlearnConfig(method="ga", steps=2)), "ga",
                                tmp_path / "run/models/ga", dataset)
    assert calls == [False, True]  # this study's own earlier result, of other settings: replaced


def test_overwrite_never_removes_the_study_input(tmp_path, data_dir):
    out = tmp_path / "o" / "us3"
    inner = out / "inner"
    inner.mkdir(parents=True)
    (inner / "config.json").write_text("{}")
    for folder, model in ((out, inner), (inner, inner)):
        config = RunConfig(out=str(folder), data_dir=str(data_dir), target=TargetConfig(model=str(model)))
        with pytest.raises(LumeError, match="would overwrite the input"):
            run(config, overwrite=True)
        assert (inner / "config.json").read_text() == "{}"


@pytest.mark.parametrize("out", [".", "", "/"])
def test_an_output_folder_that_holds_the_current_one_is_one_line(capsys, tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thesis.txt").write_text("mine")
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"out": out}))
    code, err = run_cli(capsys, "run", path, "--overwrite")
    assert code == 2 and "must be a folder of its own" in err and len(err.strip().splitlines()) == 1
    assert "study.yaml: field 'out'" in err  # refused when the file is read, naming it
    code, err = run_cli(capsys, "evaluate", tmp_path, "--out", out, "--overwrite")
    assert code == 2 and "must be a folder of its own" in err
    assert (tmp_path / "thesis.txt").read_text() == "mine"
