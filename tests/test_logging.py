"""lume's messages go through `logging`: -q leaves errors and the final table, -v adds detail,
$LUME_LOG_LEVEL sets the default, and only the main process of several logs."""

import logging

import pytest

from lume.cli import main, set_up_logging
from tests.conftest import lume_rows, run_cli, write_jsonl


def evaluate(capsys, tiny_model_dir, tmp_path, data_dir, *flags) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `lume FLAGS evaluate` of the tiny model (probes only)."""
    arguments = [*flags, "evaluate", tiny_model_dir, "--out", tmp_path / "eval", "--no-mia", "--no-mmlu",
                 "--docs-per-task", 1, "--max-new-tokens", 4, "--data-dir", data_dir, "--overwrite"]
    try:
        main([str(a) for a in arguments])
        code = 0
    except SystemExit as exited:
        code = exited.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_quiet_prints_only_the_final_table_and_verbose_adds_detail(capsys, tmp_path, tiny_model_dir, data_dir):
    code, out, err = evaluate(capsys, tiny_model_dir, tmp_path, data_dir)
    assert code == 0 and "LUME evaluation of" in out and "written:" in err and "generating" in err
    assert "writing a `lume evaluate` output" not in err and "Loading weights" not in err  # lume's bars only
    code, out, err = evaluate(capsys, tiny_model_dir, tmp_path, data_dir, "-q")
    assert code == 0 and "LUME evaluation of" in out and err == ""  # no progress bar, no info
    code, out, err = evaluate(capsys, tiny_model_dir, tmp_path, data_dir, "--verbose")
    assert code == 0 and f"{tmp_path / 'eval'}: writing a `lume evaluate` output" in err
    assert "Loading weights" in err  # the libraries' own bars: detail, under -v only
    code, out, err = evaluate(capsys, tiny_model_dir, tmp_path, data_dir)
    assert code == 0 and "written:" in err and "Loading weights" not in err  # off again after -v
    code, err = run_cli(capsys, "-q", "evaluate", tmp_path / "missing", "--out", tmp_path / "x")
    assert code == 2 and err.count("\n") == 1 and "no such model folder" in err  # errors still print


def test_the_log_level_comes_from_the_environment(capsys, tmp_path, tiny_model_dir, data_dir, monkeypatch):
    monkeypatch.setenv("LUME_LOG_LEVEL", "warning")
    code, out, err = evaluate(capsys, tiny_model_dir, tmp_path, data_dir)
    assert code == 0 and "written:" not in err and "LUME evaluation of" in out
    monkeypatch.setenv("LUME_LOG_LEVEL", "chatty")
    code, out, err = evaluate(capsys, tiny_model_dir, tmp_path, data_dir)
    assert code == 2 and "LUME_LOG_LEVEL='CHATTY': expected one of DEBUG, INFO, WARNING, ERROR" in err


@pytest.mark.parametrize("rank, everyone, level", [("0", "", logging.INFO), ("1", "", logging.ERROR),
                                                   ("1", "1", logging.INFO)])
def test_only_the_main_process_logs_unless_asked(monkeypatch, rank, everyone, level):
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("LUME_LOG_ALL_PROCESSES", everyone)
    monkeypatch.delenv("LUME_LOG_LEVEL", raising=False)
    set_up_logging()
    try:
        assert logging.getLogger("lume").level == level
    finally:  # as `lume.cli.main` leaves it
        logging.getLogger("lume").handlers.clear()
        logging.getLogger("lume").setLevel(logging.NOTSET)
        logging.getLogger("lume").propagate = True


def test_a_root_logger_configured_by_a_library_does_not_print_lines_twice(capsys, tmp_path, tiny_model_dir,
                                                                          data_dir):
    import io

    elsewhere = io.StringIO()
    handler = logging.StreamHandler(elsewhere)
    logging.root.addHandler(handler)  # as a library's logging.basicConfig would
    try:
        code, out, err = evaluate(capsys, tiny_model_dir, tmp_path, data_dir)
    finally:
        logging.root.removeHandler(handler)
    assert code == 0 and err.count("written:") == 1 and "written:" not in elsewhere.getvalue()


def test_quiet_silences_the_libraries_warnings_and_optunas_lines(capfd, tmp_path, tiny_target, data_dir):
    """Under -q a LoRA run (peft reads a deprecated transformers alias) and a sweep (Optuna's own
    [I] lines) print nothing but lume's own final lines."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.test_sweep import write_config

    retain, forget = (write_jsonl(tmp_path / f"{split}.jsonl", lume_rows(split[0] + "1", split=split))
                      for split in ("retain", "forget"))
    lume = Path(sys.executable).parent / "lume"
    done = subprocess.run([str(lume), "-q", "unlearn", str(tiny_target), str(retain), str(forget),
                           str(tmp_path / "lora"), "--steps", "1", "--lora-rank", "4", "--device", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Warning" not in done.stderr, done.stderr
    (tmp_path / "s").mkdir()
    try:
        main(["-q", "sweep", str(write_config(tmp_path / "s", tiny_target, data_dir, trials=1))])
    except SystemExit as exited:
        assert exited.code == 0
    assert "[I " not in capfd.readouterr().err


def test_a_librarys_plain_tqdm_bar_shows_under_verbose_only(capsys, caplog):
    """transformers converts the built-in GGUF model under a plain tqdm bar, not its own."""
    from tqdm.auto import tqdm

    from lume.models.loading import library_bars

    for level, shown in (("INFO", False), ("DEBUG", True), ("ERROR", False)):
        caplog.set_level(level, logger="lume")
        with library_bars():
            list(tqdm(range(3), desc="Converting"))
        assert ("Converting" in capsys.readouterr().err) is shown, level
