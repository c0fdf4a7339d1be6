"""Bad input, reused folders and interruptions: one clear line, exit 2, nothing destroyed."""

import hashlib
import json
import re

import pytest

from tests.conftest import lume_rows, run_cli, write_jsonl


def digest(folder) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


@pytest.fixture
def model_copy(tmp_path, tiny_model_dir):
    import shutil

    return shutil.copytree(tiny_model_dir, tmp_path / "model")


def test_unlearn_into_its_own_input_is_refused_and_the_weights_survive(capsys, model_copy, split_files):
    retain, forget = split_files
    before = digest(model_copy)
    code, err = run_cli(capsys, "unlearn", model_copy, retain, forget, model_copy, "--steps", 1)
    assert code == 2 and "would overwrite the input" in err and len(err.strip().splitlines()) == 1
    code, err = run_cli(capsys, "unlearn", model_copy, model_copy, "--steps", 1)
    assert code == 2 and "would overwrite the input" in err
    code, err = run_cli(capsys, "unlearn", model_copy, retain, forget, model_copy.parent, "--overwrite")
    assert code == 2 and "would overwrite the input" in err  # a folder holding the input, even with --overwrite
    assert digest(model_copy) == before


def test_an_occupied_output_folder_is_refused_unless_overwrite(capsys, tmp_path, model_copy, split_files):
    retain, forget = split_files
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, err = run_cli(capsys, "unlearn", model_copy, retain, forget, out, "--steps", 1, "--device", "cpu")
    assert code == 2 and "already holds other results" in err and "--overwrite" in err
    assert (out / "notes.txt").read_text() == "mine"
    code, err = run_cli(capsys, "unlearn", model_copy, retain, forget, out, "--steps", 1, "--device", "cpu",
                        "--overwrite")
    assert code == 0 and (out / "lume_unlearn.json").is_file()
    assert not (out / "notes.txt").exists()
    code, err = run_cli(capsys, "unlearn", model_copy, retain, forget, out, "--steps", 1, "--device", "cpu")
    assert code == 2 and "already holds a finished `lume unlearn` output" in err  # not silently replaced


def test_every_model_writer_refuses_its_input(capsys, tmp_path, model_copy):
    code, err = run_cli(capsys, "memorize", "--base", model_copy, "--out", model_copy, "--docs-per-task", 1)
    assert code == 2 and "would overwrite the input" in err
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    code, err = run_cli(capsys, "merge", model_copy, adapter, adapter, "--out", model_copy)
    assert code == 2 and "would overwrite the input" in err
    code, err = run_cli(capsys, "attack", model_copy, "--target", model_copy, "--attack", "quantize-8",
                        "--out", model_copy)
    assert code == 2 and "would overwrite the input" in err


UNLEARN_CASES = [
    (["--set", "beta=abc"], "method_settings.beta': expected a number, got 'abc'"),
    (["--steps", "0"], "steps must be at least 1, got 0"),
    (["--steps", "-3"], "steps must be at least 1, got -3"),
    (["--gradient-accumulation", "0"], "gradient_accumulation must be at least 1"),
    (["--learning-rate", "-1"], "learning_rate must be at least 0"),
    (["--learning-rate", "0"], "learning_rate must be above 0"),
    (["--batch-size", "0"], "batch_size must be at least 1"),
    (["--lora-rank", "-3"], "lora_rank must be at least 0"),
    (["--device", "banana"], "unknown device 'banana'"),
    (["--method", "nope"], "unknown method 'nope'"),
    (["--setting", "training.weight_decay=-1"], "weight_decay must be at least 0"),
    (["--setting", "training.lr=1"], "'training.lr': unknown field"),
    (["--setting", "training"], "--setting 'training': expected NAME=VALUE"),
]
EVALUATE_CASES = [
    (["--source", "bogus"], "source must be one of lume, semeval-train, semeval-validation, got 'bogus'"),
    (["--max-new-tokens", "-5"], "max_new_tokens must be at least 1"),
    (["--mmlu-limit", "0"], "mmlu_limit must be at least 1"),
    (["--docs-per-task", "0"], "docs_per_task must be at least 1"),
    (["--docs-per-task", "-1"], "docs_per_task must be at least 1"),
    (["--mia-set", "bogus"], "mia_set must be one of final, validation, none, got 'bogus'"),
    (["--device", "banana"], "unknown device 'banana'"),
    (["--dtype", "float64"], "dtype must be one of"),
    (["--setting", "bootstrap_resamples=-1"], "bootstrap_resamples must be at least 0"),
]
MEMORIZE_CASES = [
    (["--docs-per-task", "0"], "docs_per_task must be at least 1"),
    (["--docs-per-task", "-1"], "docs_per_task must be at least 1"),
    (["--learning-rate", "-1"], "learning_rate must be at least 0"),
    (["--batch-size", "0"], "batch_size must be at least 1"),
    (["--device", "banana"], "unknown device 'banana'"),
]


@pytest.mark.parametrize("command, flags, message",
                         [("unlearn", *case) for case in UNLEARN_CASES]
                         + [("evaluate", *case) for case in EVALUATE_CASES]
                         + [("memorize", *case) for case in MEMORIZE_CASES])
def test_bad_values_get_one_line_and_exit_2_before_any_work(capsys, tmp_path, tiny_model_dir, split_files, command,
                                                            flags, message):
    out = tmp_path / "out"
    retain, forget = split_files
    args = {"unlearn": ["unlearn", tiny_model_dir, retain, forget, out],
            "evaluate": ["evaluate", tiny_model_dir, "--out", out],
            "memorize": ["memorize", "--base", tiny_model_dir, "--out", out]}[command]
    code, err = run_cli(capsys, *args, *flags)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()  # refused before any work


def test_bad_paths_are_named(capsys, tmp_path, tiny_model_dir):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    code, err = run_cli(capsys, "evaluate", tiny_model_dir, "--out", a_file)
    assert code == 2 and "is a file, not a folder" in err
    code, err = run_cli(capsys, "evaluate", tiny_model_dir, "--out", a_file / "sub")
    assert code == 2 and "cannot write" in err
    code, err = run_cli(capsys, "evaluate", tmp_path / "no-such-model", "--out", tmp_path / "o")
    assert code == 2 and "no such model folder" in err and "Repo id" not in err
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    code, err = run_cli(capsys, "evaluate", bare, "--out", tmp_path / "o")
    assert code == 2 and "no tokenizer" in err and str(bare) in err
    code, err = run_cli(capsys, "data", "info", "--source", "bogus")
    assert code == 2 and "unknown data source 'bogus'" in err


def test_a_row_beyond_the_models_context_is_refused_by_name(tmp_path, tiny_model_dir):
    from lume.errors import LumeError
    from lume.stages.unlearning import UnlearnConfig, unlearn

    rows = lume_rows("long", split="forget")
    rows[0]["output"] = "word " * 5000  # 25,000 characters: valid data, but over the tiny model's 4096 tokens
    forget = write_jsonl(tmp_path / "forget.jsonl", rows)
    from lume.data import read_records

    with pytest.raises(LumeError, match=r"forget record 'longsc1' is \d+ tokens long, beyond the model's context "
                                        r"of 4096"):
        unlearn(tiny_model_dir, tmp_path / "out", UnlearnConfig(steps=1, progress=False),
                forget=read_records(forget), retain=read_records(forget, "retain"))


def test_an_evaluated_prompt_beyond_the_models_context_is_one_line_before_any_section(capsys, tmp_path,
                                                                                       tiny_model_dir):
    """A prompt of 99,000 characters passes validation (limit 100,000); evaluating it would
    exhaust the machine's memory, so it is refused by name before the model sees anything."""
    (tmp_path / "data" / "lume").mkdir(parents=True)
    forget = lume_rows("f1", split="forget") + lume_rows("long", split="forget")
    forget[2]["input"] = "word " * 19_800
    write_jsonl(tmp_path / "data" / "lume" / "forget.jsonl", forget)
    write_jsonl(tmp_path / "data" / "lume" / "retain.jsonl", lume_rows("r1", split="retain"))
    code, err = run_cli(capsys, "evaluate", tiny_model_dir, "--out", tmp_path / "e", "--data-dir", tmp_path / "data",
                        "--no-mia", "--no-mmlu")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(r"record 'longsc1' is \d+ tokens long \(and 256 to generate\), beyond the model's context of "
                     r"4096 tokens", err)
    assert not (tmp_path / "e").exists()


def test_a_huge_field_fails_validation_with_its_line(capsys, tmp_path):
    rows = lume_rows("a") + lume_rows("b")
    rows[2]["input"] = "x" * 1_000_000
    path = write_jsonl(tmp_path / "forget.jsonl", rows)
    code, err = run_cli(capsys, "data", "validate", path)
    assert code == 2 and f"{path}:3: field 'input': 1,000,000 characters long" in err


def test_binary_data_names_line_and_byte_offset_and_a_bom_is_accepted(capsys, tmp_path):
    from lume.data import read_records

    good = "".join(json.dumps(r) + "\n" for r in lume_rows("a"))
    path = tmp_path / "forget.jsonl"
    path.write_bytes(good.encode() + b'{"id": "b\xff\xfe"}\n')
    code, err = run_cli(capsys, "data", "validate", path)
    offset = len(good.encode()) + len('{"id": "b')
    assert code == 2 and f"{path}:3: not UTF-8 text (invalid start byte at byte offset {offset})" in err
    path.write_bytes(b"\xef\xbb\xbf" + good.encode())
    assert len(read_records(path)) == 2


def test_overlapping_forget_and_retain_sets_are_warned_about(caplog):
    from lume.data import Record, warn_overlap

    shared = Record("dsc1", "d", "Task1", "sc", "forget", "in", "out")
    assert warn_overlap([shared], [Record("xsc1", "x", "Task1", "sc", "retain", "in", "out")]) == 1
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "1 forget rows also appear in the retain set" in caplog.text
    assert warn_overlap([shared], [Record("ysc1", "y", "Task1", "sc", "retain", "other", "out")]) == 0


def test_ctrl_c_says_what_was_kept_and_how_to_resume(capsys, tmp_path, tiny_model_dir, monkeypatch):
    import lume.stages.evaluation.evaluator as evaluation
    from lume.stages.evaluation.probe_section import Probes

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Probes, "run", interrupted)  # once the model is loaded, while items are scored
    code, err = run_cli(capsys, "evaluate", tiny_model_dir, "--out", tmp_path / "eval")
    assert code == 130 and f"the items finished so far are kept in {tmp_path / 'eval' / 'cache'}" in err
    assert "the same command resumes" in err
    monkeypatch.setattr(evaluation, "load_model", interrupted)  # before any work: nothing kept, nothing left
    code, err = run_cli(capsys, "evaluate", tiny_model_dir, "--out", tmp_path / "early")
    assert code == 130 and "before any result was written; nothing to resume" in err
    assert not (tmp_path / "early").exists()


@pytest.mark.parametrize("command", [
    ("evaluate", "MODEL", "--mmlu-limit", 0),
    ("attack", "MODEL", "--target", "MODEL", "--attack", "probe", "--mmlu-limit", 0),
])
def test_one_setting_name_means_one_thing_in_every_command(capsys, tmp_path, tiny_model_dir, command):
    """mmlu_limit: questions per subject, at least 1, in evaluation and attacks alike (MMLU is
    switched off with --no-mmlu in both)."""
    code, err = run_cli(capsys, *(tiny_model_dir if part == "MODEL" else part for part in command),
                        "--out", tmp_path / "out")
    assert code == 2 and "mmlu_limit must be at least 1, got 0" in err


def test_merge_settings_are_checked_as_every_stages_are(capsys, tmp_path, tiny_model_dir):
    for flags, message in ((["--combination", "average"], "combination must be one of ties, linear, sum"),
                           (["--density", "1.5"], "density must be between 0 and 1"),
                           (["--setting", "density=0"], "density must be above 0")):
        code, err = run_cli(capsys, "merge", tiny_model_dir, tmp_path / "a", tmp_path / "b", "--out", tmp_path / "m",
                            *flags)
        assert code == 2 and message in err, err


def test_a_cache_that_is_a_file_is_one_line_before_any_work(capsys, tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("not a folder")
    monkeypatch.setenv("LUME_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(capsys, "run")
    assert code == 2 and "lume's cache (LUME_CACHE, else XDG_CACHE_HOME/lume) is a file, not a folder" in err
    assert len(err.strip().splitlines()) == 1


def test_paths_that_are_not_utf8_or_not_ascii_under_the_c_locale_are_written_and_read_back(tmp_path,
                                                                                          tiny_target, data_dir):
    """A folder name of bytes that are not UTF-8, and a non-ASCII one under a true C locale,
    reach lume as lone surrogates: every file that records them is written and read back."""
    import os
    import subprocess
    import sys

    import shutil

    model = os.fsdecode(os.fsencode(str(tmp_path)) + "/m\xf6dell-".encode() + b"\xfe")
    shutil.copytree(tiny_target, model)  # the tokenizer and weights, read and written by Rust libraries
    unlearned = os.fsdecode(os.fsencode(str(tmp_path)) + b"/vergessen-\xfd")
    out = os.fsdecode(os.fsencode(str(tmp_path)) + "/\xe9val-".encode() + b"\xff")
    env = {**os.environ, "PYTHONUTF8": "0", "LC_ALL": "C"}
    merged = os.fsdecode(os.fsencode(str(tmp_path)) + b"/merged-\xfc")
    for args in (["unlearn", model, unlearned, "--method", "ga", "--steps", "1", "--lora-rank", "2"],
                 ["merge", model, f"{unlearned}/adapter", f"{unlearned}/adapter", "--out", merged],
                 ["evaluate", unlearned, "--out", out, "--docs-per-task", "1", "--no-mia", "--no-mmlu",
                  "--max-new-tokens", "4"]):
        data = ["--data-dir", str(data_dir)] if args[0] != "merge" else []
        done = subprocess.run([sys.executable, "-m", "lume", *args, *data], env=env, capture_output=True, timeout=600)
        assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")[-2000:]
    folder = next(p for p in tmp_path.iterdir() if p.name.startswith("\xe9val") or p.name.endswith("\udcff"))
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert os.fsencode(summary["model"]["path"]) == os.fsencode(unlearned)


def test_a_non_ascii_folder_in_a_study_file_under_the_c_locale_is_the_folder_of_its_utf8_bytes(tmp_path):
    """The file is UTF-8; under the C locale Python names such a folder by lone surrogates."""
    import os
    import subprocess
    import sys

    path = tmp_path / "s.yaml"
    path.write_text("out: r\u00e9sultats\ntarget: {model: m\u00f6dell}\n", encoding="utf-8")
    show = ("import os, sys; from lume.study.run import load_config; c = load_config(sys.argv[1]); "
            "sys.stdout.buffer.write(os.fsencode(c.out) + b'|' + os.fsencode(c.target.model))")
    done = subprocess.run([sys.executable, "-c", show, str(path)], capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONUTF8": "0", "LC_ALL": "C"}, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == "r\u00e9sultats|m\u00f6dell".encode(), done.stderr[-2000:]


def test_misleading_or_silent_cases_say_what_is_so(capsys, tmp_path, tiny_target):
    """A study given a folder, a lock just created by a starting process, a target scored on
    other data: each said as it is."""
    from lume.errors import LumeError
    from lume.outputs import one_writer

    code, err = run_cli(capsys, "run", tmp_path)
    assert code == 2 and "a folder, not a study's YAML file" in err
    (tmp_path / "out.lock").write_text("")  # a writer has just created it, and not yet written its process id
    with pytest.raises(LumeError, match="another process \\(starting now\\) is writing here"):
        with one_writer(tmp_path / "out"):
            pass
    (tmp_path / "data" / "lume").mkdir(parents=True)
    write_jsonl(tmp_path / "data" / "lume" / "forget.jsonl", lume_rows("f1", split="forget"))
    write_jsonl(tmp_path / "data" / "lume" / "retain.jsonl", lume_rows("r1", split="retain"))
    code, err = run_cli(capsys, "evaluate", tiny_target, "--out", tmp_path / "e", "--data-dir", tmp_path / "data",
                        "--docs-per-task", 1, "--no-mia", "--no-mmlu", "--max-new-tokens", 4)
    assert code == 0 and "was trained on other data" in err


def test_an_interrupted_study_names_the_steps_it_kept(capsys, tmp_path, tiny_target, data_dir, monkeypatch):
    import yaml

    import lume.study.run

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"out": str(tmp_path / "run"), "data_dir": str(data_dir),
                                     "target": {"model": str(tiny_target)}, "methods": [{"method": "ga", "steps": 1}],
                                     "evaluation": {"mia": False, "mmlu": False, "max_new_tokens": 4,
                                                    "progress": False}}))
    monkeypatch.setattr(lume.study.run, "unlearned_step", interrupted)  # after the target's evaluation finished
    code, err = run_cli(capsys, "run", study)
    assert code == 130 and f"lume: interrupted: the study's finished steps are kept in {tmp_path / 'run'}" in err
