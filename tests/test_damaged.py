"""The hostile cases of a week's review: absurd settings, damaged files lume wrote, folders and
locks in strange states. Each ends in one line and exit status 2 before any work where the
input is at fault (or simply works), with nothing unfinished passed off as finished and nothing
of the user's overwritten."""

import json
import os
import shutil
import time

import pytest
import yaml

from tests.conftest import run_cli, write_jsonl


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("lume: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def model(tmp_path, tiny_model_dir):
    return shutil.copytree(tiny_model_dir, tmp_path / "model")


# ---- 1. a non-finite model is never finished ----

@pytest.mark.parametrize("setting", [("--learning-rate", "inf"), ("--setting", "training.max_grad_norm=.nan"),
                                     ("--learning-rate", "nan")])
def test_non_finite_settings_are_refused_before_any_work(capsys, tmp_path, model, split_files, setting):
    retain, forget = split_files
    code, err = run_cli(capsys, "unlearn", model, retain, forget, tmp_path / "o", "--method", "ga", "--steps", 1,
                        *setting)
    assert code == 2 and "expected a finite number" in one_line(err)
    assert not (tmp_path / "o").exists()


def test_weights_that_became_non_finite_are_never_saved_as_finished(capsys, tmp_path, model, split_files,
                                                                    monkeypatch):
    import torch

    real_step = torch.optim.AdamW.step

    def poisoned(self, *args, **kwargs):
        real_step(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("inf"))  # finite loss, non-finite weights

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoned)
    retain, forget = split_files
    code, err = run_cli(capsys, "unlearn", model, retain, forget, tmp_path / "o", "--method", "ga", "--steps", 1)
    line = one_line(err)
    assert code == 2 and "the weights became non-finite by step 1" in line and "no checkpoint was kept" in line
    assert not (tmp_path / "o" / "lume_unlearn.json").exists()


# ---- 2. seeds ----

@pytest.mark.parametrize("command", [("evaluate", "MODEL", "--out", "OUT", "--seed", -5),
                                     ("unlearn", "MODEL", "RETAIN", "FORGET", "OUT", "--seed", -1),
                                     ("memorize", "--base", "MODEL", "--out", "OUT", "--seed", 2**40)])
def test_an_out_of_range_seed_is_refused_before_any_work(capsys, tmp_path, model, split_files, command):
    retain, forget = split_files
    names = {"MODEL": model, "OUT": tmp_path / "o", "RETAIN": retain, "FORGET": forget}
    code, err = run_cli(capsys, *(names.get(word, word) for word in command))
    assert code == 2 and "seed must be" in one_line(err) and not (tmp_path / "o").exists()


# ---- 3. damaged files lume wrote ----

def test_a_truncated_weights_file_is_one_line_naming_it(capsys, tmp_path, model, split_files):
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:len(weights.read_bytes()) // 2])
    code, err = run_cli(capsys, "evaluate", model, "--out", tmp_path / "e")
    assert code == 2 and "cannot load model" in one_line(err)
    retain, forget = split_files
    code, err = run_cli(capsys, "unlearn", model, retain, forget, tmp_path / "o", "--steps", 1)
    assert code == 2 and "cannot load model" in one_line(err)


def test_a_config_that_builds_no_model_is_one_line(capsys, tmp_path, model):
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "num_attention_heads": 0}))
    code, err = run_cli(capsys, "evaluate", model, "--out", tmp_path / "e")
    assert code == 2 and "cannot load model" in one_line(err)


def interrupted_unlearning(capsys, tmp_path, model, split_files):
    """An unlearning run with a checkpoint at step 2 of 4 (as a killed run leaves it)."""
    from lume.training import loop

    retain, forget = split_files
    out = tmp_path / "o"
    real = loop._Checkpoints.save

    def save_then_die(self, state):
        real(self, state)
        raise KeyboardInterrupt

    loop._Checkpoints.save = save_then_die
    try:
        code, _ = run_cli(capsys, "unlearn", model, retain, forget, out, "--steps", 4, "--save-every", 2)
    finally:
        loop._Checkpoints.save = real
    assert code == 130
    (state,) = out.glob("checkpoints/step-*/lume_state.json")
    return out, state, ("unlearn", model, retain, forget, out, "--steps", 4, "--save-every", 2)


@pytest.mark.parametrize("damage", [b"{}", b"\xff\xfe not text", b'{"step": "two", "key": 1}'])
def test_a_damaged_checkpoint_state_is_not_used_and_the_run_starts_over(capsys, tmp_path, model, split_files,
                                                                        damage):
    out, state, command = interrupted_unlearning(capsys, tmp_path, model, split_files)
    state.write_bytes(damage)
    code, err = run_cli(capsys, *command)
    assert code == 0 and "damaged checkpoint state" in err and "not used" in err
    assert (out / "lume_unlearn.json").is_file() and "resuming" not in err


@pytest.mark.parametrize("damage", ["truncated weights", "a pickled optimiser"])
def test_a_checkpoint_whose_weights_do_not_load_is_one_line_naming_it(capsys, tmp_path, model, split_files, damage):
    import pickle

    out, state, command = interrupted_unlearning(capsys, tmp_path, model, split_files)
    folder = state.parent / "accelerate"
    if damage == "truncated weights":
        weights = next(folder.glob("*.safetensors"))
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        (folder / "optimizer.bin").write_bytes(pickle.dumps(os.system))  # a reference torch must refuse
    code, err = run_cli(capsys, *command)
    line = one_line(err)
    assert code == 2 and f"{state.parent}: damaged checkpoint" in line and "delete that folder" in line


@pytest.fixture
def evaluation(capsys, tmp_path, tiny_target, data_dir):
    out = tmp_path / "eval"
    code, _ = run_cli(capsys, "evaluate", tiny_target, "--out", out, "--mia-set", "validation", "--mmlu-limit", 1,
                      "--mmlu-subjects", 2, "--max-new-tokens", 4, "--setting", "bootstrap_resamples=10")
    assert code == 0
    return out


@pytest.mark.parametrize("damage, said", [
    (lambda p: p.write_text(p.read_text()[:50]), "not JSON"),
    (lambda p: p.write_bytes(b"\xff" + p.read_bytes()), "not UTF-8"),
    (lambda p: p.write_text("[1, 2]"), "expected a JSON object"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "final": "hacked"})), "field 'final'"),
    (lambda p: (p.parent / "mia.jsonl").unlink(), "mia.jsonl: missing"),
])
def test_a_damaged_summary_is_one_line_in_lume_report(capsys, tmp_path, evaluation, damage, said):
    damage(evaluation / "summary.json")
    code, err = run_cli(capsys, "report", evaluation)
    assert code == 2 and said in one_line(err)


def test_damaged_caches_are_redone_and_damaged_records_recomputed(capsys, tmp_path, evaluation, tiny_target):
    cache = evaluation / "cache" / "items.jsonl"
    lines = cache.read_text().splitlines()
    cache.write_bytes(("\n".join(lines[:2]) + "\n").encode() + b"\xff\xff\n" + b'{"no id": 1}\n')
    (evaluation / "summary.json").unlink()
    (tiny_target / "lume_fingerprint.json").write_bytes(b"\xff\xfe")
    code, err = run_cli(capsys, "evaluate", tiny_target, "--out", evaluation, "--mia-set", "validation",
                        "--mmlu-limit", 1, "--mmlu-subjects", 2, "--max-new-tokens", 4,
                        "--setting", "bootstrap_resamples=10")
    assert code == 0 and "a damaged cache line" in err
    (tiny_target / "lume_fingerprint.json").unlink()


@pytest.mark.parametrize("content", [b"\xff{}", b"[]", b'{"trained": 3, "held_out": []}'])
def test_a_damaged_target_manifest_is_one_line(capsys, tmp_path, model, content):
    (model / "lume_target.json").write_bytes(content)
    code, err = run_cli(capsys, "evaluate", model, "--out", tmp_path / "e")
    assert code == 2 and "lume_target.json" in one_line(err)


@pytest.mark.parametrize("content", [b"[]", b"\xff", b'{"kind": 3}'])
def test_a_damaged_unfinished_mark_still_says_unfinished(capsys, tmp_path, model, content):
    (model / "lume_unfinished.json").write_bytes(content)
    code, err = run_cli(capsys, "evaluate", model, "--out", tmp_path / "e")
    line = one_line(err)
    assert code == 2 and "unfinished lume output" in line and "damaged" in line


def test_a_damaged_study_step_record_redoes_the_step(tmp_path, caplog):
    from lume.study.steps import Steps

    steps = Steps(tmp_path)
    assert steps.state("evaluate-x", {"a": 1}, finished=False) == "new"  # never run: its folder is not replaced
    (tmp_path / "steps" / "evaluate-x.json").write_bytes(b"\xff[")
    assert steps.state("evaluate-x", {"a": 1}, finished=True) == "redo"
    assert "redoing the step" in caplog.text
    assert steps.state("evaluate-x", {"a": 1}, finished=True) == "done"


# ---- 4. sweeps ----

@pytest.mark.parametrize("space, said", [
    ({"low": 3.0e-4, "high": 1.0e-5}, "low \\(0.0003\\) must be below high"),
    ({"low": 0.0, "high": 1.0e-3, "log": True}, "log-spaced range needs low above 0"),
    ({"low": "a", "high": 1}, "low and high must be numbers"),
    ({"choices": []}, "non-empty list"),
])
def test_a_bad_search_range_is_refused_when_the_sweep_is_read(tmp_path, tiny_target, data_dir, space, said):
    from lume.errors import InputError
    from lume.study.sweep import load_sweep
    from tests.test_sweep import write_config

    path = write_config(tmp_path, tiny_target, data_dir, trials=1)
    config = yaml.safe_load(path.read_text())
    config["methods"][0]["search"] = {"training.learning_rate": space}
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(InputError, match=said):
        load_sweep(path)


@pytest.mark.parametrize("storage, said", [("not a url", "not a database URL"),
                                           ("nosuchdb://x", "no database dialect"),
                                           ("mysql://u@localhost/x", "the mysql driver is not installed")])
def test_a_bad_storage_url_or_a_missing_driver_is_refused_when_the_sweep_is_read(tmp_path, tiny_target, data_dir,
                                                                                 storage, said):
    from lume.errors import InputError
    from lume.study.sweep import load_sweep
    from tests.test_sweep import write_config

    with pytest.raises(InputError, match=said):
        load_sweep(write_config(tmp_path, tiny_target, data_dir, trials=1, storage=storage))


def test_an_unknown_search_field_is_named_once(tmp_path, tiny_target, data_dir):
    from lume.errors import InputError
    from lume.study.sweep import load_sweep
    from tests.test_sweep import write_config

    path = write_config(tmp_path, tiny_target, data_dir, trials=1)
    config = yaml.safe_load(path.read_text())
    config["methods"][0]["search"] = {"training.learning_rte": {"low": 1.0e-5, "high": 1.0e-4}}
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(InputError) as raised:
        load_sweep(path)
    assert str(raised.value).count("learning_rte") == 1


# ---- 5. a YAML alias bomb under a text field ----

def test_a_yaml_alias_bomb_under_a_text_field_is_refused_at_once(capsys, tmp_path):
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
              f"*a{i - 1}, *a{i - 1}]" for i in range(1, 9)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\nname: *a8\n")
    started = time.time()
    code, err = run_cli(capsys, "run", tmp_path / "bomb.yaml")
    assert code == 2 and time.time() - started < 10 and len(err) < 2000
    assert "unknown field" in one_line(err) or "expected text" in one_line(err)


# ---- 6, 7. study folders ----

def test_a_study_into_a_folder_of_the_users_is_refused_and_their_file_kept(capsys, tmp_path, tiny_target, data_dir):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.md").write_text("my notes")
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"out": str(out), "data_dir": str(data_dir), "target": {"model": str(tiny_target)},
                                     "methods": [{"method": "ga", "steps": 1}]}))
    code, err = run_cli(capsys, "run", study)
    assert code == 2 and "already holds other results" in one_line(err) and "--overwrite" in err
    assert (out / "report.md").read_text() == "my notes"


def test_lume_run_has_the_overwrite_its_message_names(capsys):
    from typer.testing import CliRunner

    from lume.cli import app

    text = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}).output
    assert "--overwrite" in text


# ---- 8. locks ----

@pytest.mark.parametrize("content", [b"", b"garbage\x00\xff"])
def test_a_lock_naming_no_process_is_cleared_once_old(tmp_path, caplog, content):
    from lume.outputs import one_writer

    folder = tmp_path / "out"
    lock = tmp_path / "out.lock"
    lock.write_bytes(content)
    old = time.time() - 60
    os.utime(lock, (old, old))
    with one_writer(folder):
        pass
    assert "a lock naming no process; removed it" in caplog.text


# ---- 9. probes on partial data ----

def test_probes_on_sets_that_lack_a_task_still_score(capsys, tmp_path, model):
    from tests.conftest import lume_rows

    retain = write_jsonl(tmp_path / "retain.jsonl", lume_rows("r1", split="retain") + lume_rows("r2", split="retain"))
    forget = write_jsonl(tmp_path / "forget.jsonl", lume_rows("f1", split="forget") + lume_rows("f2", split="forget"))
    code, err = run_cli(capsys, "unlearn", model, retain, forget, tmp_path / "o", "--steps", 1, "--eval-every", 1)
    assert code == 0, err
    report = json.loads((tmp_path / "o" / "lume_unlearn.json").read_text())
    assert all(row["task_aggregate"] is None and row["selection_score"] >= 0 for row in report["probes"])


# ---- 10. sizes ----

def test_sizes_that_would_exhaust_memory_are_refused_at_once(capsys, tmp_path, model, split_files):
    retain, forget = split_files
    started = time.time()
    code, err = run_cli(capsys, "unlearn", model, retain, forget, tmp_path / "o", "--batch-size", 10_000_000)
    assert code == 2 and "batch_size must be at most 4096" in one_line(err) and time.time() - started < 10
    code, err = run_cli(capsys, "evaluate", model, "--out", tmp_path / "e", "--max-new-tokens", 10**9)
    assert code == 2 and "max_new_tokens must be at most" in one_line(err)


def test_a_study_of_a_hundred_thousand_methods_is_refused_at_once(capsys, tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text("methods:\n" + "  - {method: ga}\n" * 100_000)
    started = time.time()
    code, err = run_cli(capsys, "run", study)
    assert code == 2 and "a study runs at most 200" in one_line(err) and time.time() - started < 30


def test_a_repeated_method_label_is_refused_when_the_study_is_read(capsys, tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text("methods:\n  - {method: ga}\n  - {method: ga}\n")
    code, err = run_cli(capsys, "run", study)
    assert code == 2 and "two methods are labelled 'ga'" in one_line(err)


# ---- 11. smaller ----

@pytest.mark.parametrize("reference", [":Foo", ".x:Y", "os:"])
def test_a_malformed_class_reference_is_one_line(capsys, tmp_path, model, split_files, reference):
    retain, forget = split_files
    code, err = run_cli(capsys, "unlearn", model, retain, forget, tmp_path / "o", "--method", reference)
    assert code == 2 and "expected package.module:Class" in one_line(err)


def test_a_command_that_fails_before_any_work_leaves_nothing_behind(capsys, tmp_path, model):
    (model / "model.safetensors").write_bytes(b"not weights")
    code, _ = run_cli(capsys, "evaluate", model, "--out", tmp_path / "e")
    assert code == 2 and not (tmp_path / "e").exists()


def test_setting_a_method_with_no_settings_says_so(capsys, tmp_path, model, split_files):
    retain, forget = split_files
    code, err = run_cli(capsys, "unlearn", model, retain, forget, tmp_path / "o", "--method", "ga",
                        "--set", "unknown.key=1")
    line = one_line(err)
    assert code == 2 and "there are no settings here to set" in line and "expected one of )" not in line


def test_the_progress_rate_is_the_mean_rate_since_the_start(monkeypatch):
    import logging

    from lume import progress

    calls = []

    def clock() -> float:  # the bar starts at 0 s; everything after is at 39 s
        calls.append(1)
        return 0.0 if len(calls) == 1 else 39.0

    monkeypatch.setattr(progress, "_clock", clock)
    logging.getLogger("lume").setLevel(logging.INFO)
    shown = []
    real_update = progress.Progress.update

    def update(self, task, **fields):
        shown.append(fields.get("rate"))
        return real_update(self, task, **fields)

    monkeypatch.setattr(progress.Progress, "update", update)
    with progress.progress_bar("x", 40, "items") as advance:
        advance(40)
    logging.getLogger("lume").setLevel(logging.NOTSET)
    assert shown[-1] == "1.03 items/s"


def test_a_read_only_cache_with_a_new_model_says_nothing_was_kept(capsys, tmp_path, model, monkeypatch):
    import errno

    import lume.models.fingerprint as fingerprint

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "cache" / "fingerprints" / "x.json"))

    monkeypatch.setattr(fingerprint, "write_json_atomic", read_only)
    code, err = run_cli(capsys, "evaluate", model, "--out", tmp_path / "e")
    line = one_line(err)
    assert code == 2 and "Read-only file system" in line and "kept" not in line and "make it writable" in line
