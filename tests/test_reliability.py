"""A full disk, a second writer, a polite kill: one line, nothing passed off as finished, and
the same command run again finishes the work."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import lume.stages.unlearning.unlearner as unlearner
from lume.cli import main
from lume.outputs import FINISHED_MARKERS, UNFINISHED_NAME, mark_unfinished, one_writer
from lume.stages.unlearning.methods import METHODS, register
from lume.stages.unlearning.methods.gradient import GradientDifference
from tests.conftest import run_cli


def failing(code: int, path=None):
    """A call that fails with the OS error CODE (naming PATH, when given), as a write on a full
    (ENOSPC) or read-only (EROFS) disk does."""
    def call(*args, **kwargs):
        raise OSError(code, os.strerror(code), *([str(path)] if path is not None else []))

    return call


def safetensors_full(*args, **kwargs):
    from safetensors import SafetensorError

    raise SafetensorError('Error while serializing: I/O error: No space left on device (os error 28)')


def weights(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def one_line(err: str) -> str:
    """lume's one line about the outcome (progress bars share stderr, and stay)."""
    lines = [line for line in err.splitlines() if line.startswith("lume:")]
    assert len(lines) == 1, err
    return lines[0]


UNLEARN = ("--steps", 3, "--save-every", 1, "--device", "cpu", "--method", "gd")


@pytest.mark.parametrize("point", ["the weights", "the manifest copy", "the report"])
def test_a_full_disk_while_saving_an_unlearned_model_is_one_line_and_the_rerun_finishes(
        capsys, tmp_path, tiny_target, split_files, monkeypatch, point):
    retain, forget = split_files
    whole, out = tmp_path / "whole", tmp_path / "out"
    assert run_cli(capsys, "unlearn", tiny_target, retain, forget, whole, *UNLEARN)[0] == 0
    with monkeypatch.context() as patch:
        if point == "the weights":
            patch.setattr("transformers.modeling_utils.safe_save_file", safetensors_full)
        elif point == "the manifest copy":
            patch.setattr(unlearner.shutil, "copy", failing(errno.ENOSPC, out / "lume_target.json"))
        else:
            patch.setattr(unlearner, "write_json_atomic", failing(errno.ENOSPC, out / "lume_unlearn.json"))
        code, err = run_cli(capsys, "unlearn", tiny_target, retain, forget, out, *UNLEARN)
    line = one_line(err)
    assert code == 2 and "No space left on device" in line and str(out) in line
    assert "the last checkpoint (finite weights) is step 3" in line and "a rerun resumes from it" in line
    assert not (out / "lume_unlearn.json").is_file() and (out / UNFINISHED_NAME).is_file()
    code, err = run_cli(capsys, "evaluate", out, "--out", tmp_path / "eval")
    line = one_line(err)
    command = " ".join(map(str, ("lume", "unlearn", tiny_target, retain, forget, out, *UNLEARN)))
    assert code == 2 and f"unfinished `lume unlearn` output (no lume_unlearn.json); run `{command}` again" in line
    assert not (tmp_path / "eval" / "summary.json").exists()
    assert run_cli(capsys, "unlearn", tiny_target, retain, forget, out, *UNLEARN)[0] == 0  # the same command
    assert (out / "lume_unlearn.json").is_file() and not (out / UNFINISHED_NAME).exists()
    expected, got = weights(whole), weights(out)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_an_unfinished_target_is_refused_by_every_reader_and_its_command_finishes_it(
        capsys, tmp_path, data_dir, tiny_model_dir, split_files, monkeypatch):
    target = tmp_path / "target"
    memorize = ("memorize", "--base", tiny_model_dir, "--out", target, "--docs-per-task", 1, "--max-epochs", 1,
                "--held-out-per-task", 1, "--device", "cpu", "--data-dir", data_dir)
    with monkeypatch.context() as patch:
        patch.setattr("transformers.modeling_utils.safe_save_file", safetensors_full)
        code, err = run_cli(capsys, *memorize)
    line = one_line(err)
    assert code == 2 and f"{target / 'model.safetensors'}: No space left on device" in line
    retain, forget = split_files
    refusal = f"unfinished `lume memorize` output (no lume_target.json); run `lume {' '.join(map(str, memorize))}`"
    for command in (("evaluate", target, "--out", tmp_path / "eval"),
                    ("unlearn", target, tmp_path / "unlearned", *UNLEARN),
                    ("attack", tiny_model_dir, "--target", target, "--attack", "quantize-8", "--out", tmp_path / "a")):
        code, err = run_cli(capsys, *command)
        assert code == 2 and refusal in one_line(err), command
    config = tmp_path / "study.yaml"
    config.write_text(json.dumps({"out": str(tmp_path / "run"), "target": {"model": str(target)},
                                  "methods": [{"method": "ga"}]}))
    code, err = run_cli(capsys, "run", config)
    assert code == 2 and refusal in one_line(err)
    assert run_cli(capsys, *memorize)[0] == 0
    assert (target / "lume_target.json").is_file() and not (target / UNFINISHED_NAME).exists()


def test_a_full_disk_during_an_evaluation_keeps_the_finished_items_and_the_rerun_finishes(
        capsys, tmp_path, tiny_model_dir, data_dir, monkeypatch):
    import lume.stages.evaluation.evaluator as evaluator

    out = tmp_path / "eval"
    command = ("evaluate", tiny_model_dir, "--out", out, "--docs-per-task", 1, "--max-new-tokens", 4, "--no-mia",
               "--no-mmlu", "--data-dir", data_dir)
    with monkeypatch.context() as patch:
        patch.setattr(evaluator, "write_json_atomic", failing(errno.ENOSPC, out / "summary.json"))
        code, err = run_cli(capsys, *command)
    line = one_line(err)
    assert code == 2 and f"{out / 'summary.json'}: No space left on device" in line
    assert f"the items finished so far are kept in {out / 'cache'}; the same command resumes" in line
    code, err = run_cli(capsys, "report", out)
    assert code == 2 and "unfinished `lume evaluate` output (no summary.json)" in one_line(err)
    assert run_cli(capsys, *command)[0] == 0 and (out / "summary.json").is_file()


def test_a_model_that_cannot_fit_is_refused_before_writing_and_says_how_much_is_needed(
        capsys, tmp_path, tiny_target, split_files, monkeypatch):
    import shutil

    retain, forget = split_files
    monkeypatch.setattr("lume.models.loading.shutil.disk_usage", lambda _path: shutil._ntuple_diskusage(1, 1, 2**20))
    code, err = run_cli(capsys, "unlearn", tiny_target, retain, forget, tmp_path / "out", *UNLEARN)
    line = one_line(err)
    assert code == 2 and "training with checkpoints (two at a time" in line and "MiB, 1 MiB are free" in line
    assert not (tmp_path / "out" / "model.safetensors").exists()  # refused before training, so before writing


def test_other_os_errors_are_not_passed_off_as_a_full_disk(capsys, tmp_path, tiny_model_dir, monkeypatch):
    import lume.stages.evaluation.evaluator as evaluator

    monkeypatch.setattr(evaluator, "load_model", failing(errno.EIO))
    with pytest.raises(OSError, match="Input/output error"):  # a fault, with its traceback
        run_cli(capsys, "evaluate", tiny_model_dir, "--out", tmp_path / "eval")


def test_every_output_kind_is_finished_by_its_marker_alone(tmp_path):
    from lume.outputs import refuse_unfinished
    from lume.errors import LumeError

    for kind, marker in FINISHED_MARKERS.items():
        folder = tmp_path / kind
        folder.mkdir()
        mark_unfinished(folder, kind, "key")
        with pytest.raises(LumeError, match=f"unfinished `lume {kind}` output \\(no {marker}\\)"):
            refuse_unfinished(folder)
        (folder / marker).write_text("{}")  # written last: a kill before the mark is dropped leaves it finished
        refuse_unfinished(folder)


HOLD = """
import sys, time
from lume.outputs import one_writer
with one_writer(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def holder(folder, seconds: float) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(seconds)], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "holding"
    return process


def test_a_second_writer_stops_naming_the_holder_or_waits_with_wait(capsys, tmp_path, tiny_model_dir, data_dir):
    out = tmp_path / "eval"
    command = ("evaluate", tiny_model_dir, "--out", out, "--docs-per-task", 1, "--max-new-tokens", 4, "--no-mia",
               "--no-mmlu", "--data-dir", data_dir)
    process = holder(out, 60)
    code, err = run_cli(capsys, *command)
    assert code == 2 and f"{out}: process {process.pid} is writing here" in one_line(err) and "--wait" in err
    assert not out.exists()
    process.kill()
    process.wait()
    code, err = run_cli(capsys, *command)  # the dead holder's lock is taken over
    assert code == 0 and f"took over the lock left by process {process.pid}, which is no longer running" in err
    process = holder(out, 3)
    started = time.time()
    code, err = run_cli(capsys, *command, "--wait")
    assert code == 0 and f"waiting for process {process.pid}" in err and time.time() - started > 1
    assert process.wait() == 0


def test_one_writer_is_re_entrant_within_a_process(tmp_path):
    with one_writer(tmp_path / "out", wait=False):
        with one_writer(tmp_path / "out", wait=False):  # a study step holding its stage's folder
            assert (tmp_path / "out.lock").exists()
    assert not (tmp_path / "out.lock").exists()


class SlowGradientDifference(GradientDifference):
    """GD that takes `delay` seconds a step (in the process to be signalled), so that a signal
    arrives mid-run; the same method name, so the same run key, everywhere."""

    name = "test-slow-gd"
    delay = 0.0

    def loss(self, context, forget, retain):
        time.sleep(self.delay)
        return super().loss(context, forget, retain)


SLOW_CLI = """
from lume.cli import main
from lume.stages.unlearning.methods import register
from tests.test_reliability import SlowGradientDifference
SlowGradientDifference.delay = 0.2
register(SlowGradientDifference)
main()
"""


@pytest.fixture
def slow_method():
    register(SlowGradientDifference)
    yield
    METHODS.pop(SlowGradientDifference.name)


@pytest.mark.slow
def test_sigterm_says_what_was_kept_and_the_rerun_gives_the_same_weights(capsys, tmp_path, tiny_target, split_files,
                                                                        slow_method):
    retain, forget = split_files
    out, whole = tmp_path / "out", tmp_path / "whole"
    flags = ("--steps", 20, "--save-every", 1, "--device", "cpu", "--method", SlowGradientDifference.name)
    arguments = [str(a) for a in ("unlearn", tiny_target, retain, forget, out, *flags)]
    process = subprocess.Popen([sys.executable, "-c", SLOW_CLI, *arguments], stderr=subprocess.PIPE, text=True,
                               cwd=os.getcwd())
    deadline = time.time() + 120
    while not list(out.glob("checkpoints/step-00000003/lume_state.json")) and time.time() < deadline:
        time.sleep(0.05)
    # a second writer of other settings into the same folder is refused, naming the running one
    code, err = run_cli(capsys, "unlearn", tiny_target, retain, forget, out, "--steps", 2, "--device", "cpu")
    assert code == 2 and f"process {process.pid} is writing here" in one_line(err)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert "lume: interrupted: the last checkpoint (finite weights) is step" in err and "a rerun resumes from it" in err
    assert not (out / "lume_unlearn.json").exists()
    code, err = run_cli(capsys, "evaluate", out, "--out", tmp_path / "eval")
    assert code == 2 and "unfinished `lume unlearn` output" in one_line(err)
    main(arguments)  # the same command: resumes from the last checkpoint
    assert "resuming from step" in capsys.readouterr().err
    assert run_cli(capsys, "unlearn", tiny_target, retain, forget, whole, *flags)[0] == 0
    report = json.loads((out / "lume_unlearn.json").read_text())
    assert report["steps"] == 20 and report["losses"] == json.loads((whole / "lume_unlearn.json").read_text())["losses"]
    expected, got = weights(whole), weights(out)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


@pytest.fixture
def sighup_handler():
    """SIGHUP's handler as the test sets it (a test run under nohup starts with it ignored), restored after."""
    before = signal.getsignal(signal.SIGHUP)
    yield lambda handler: signal.signal(signal.SIGHUP, handler)
    signal.signal(signal.SIGHUP, before)


def test_sighup_stops_like_ctrl_c(capsys, tmp_path, tiny_model_dir, monkeypatch, sighup_handler):
    from lume.stages.evaluation.probe_section import Probes

    sighup_handler(signal.SIG_DFL)
    monkeypatch.setattr(Probes, "run", lambda *a, **k: os.kill(os.getpid(), signal.SIGHUP))
    code, err = run_cli(capsys, "evaluate", tiny_model_dir, "--out", tmp_path / "eval")
    assert code == 128 + signal.SIGHUP
    assert f"lume: interrupted: the items finished so far are kept in {tmp_path / 'eval' / 'cache'}" in err
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL  # the handler is lume's only while it runs


def test_a_hangup_ignored_at_start_stays_ignored(capsys, tmp_path, tiny_model_dir, monkeypatch, sighup_handler):
    """`nohup lume run ...`: the closed terminal's SIGHUP must not stop a study meant to outlive it."""
    from lume.stages.evaluation.probe_section import Probes

    sighup_handler(signal.SIG_IGN)
    run = Probes.run

    def hung_up_then_run(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGHUP)
        return run(*args, **kwargs)

    monkeypatch.setattr(Probes, "run", hung_up_then_run)
    code, _ = run_cli(capsys, "evaluate", tiny_model_dir, "--out", tmp_path / "eval")
    assert code == 0 and (tmp_path / "eval" / "summary.json").is_file()
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN


def test_a_read_only_place_is_one_line_saying_what_to_do(capsys, tmp_path, tiny_model_dir, monkeypatch):
    import lume.stages.evaluation.evaluator as evaluator

    monkeypatch.setattr(evaluator, "mark_finished", failing(errno.EROFS, tmp_path / "eval" / "x"))
    code, err = run_cli(capsys, "evaluate", tiny_model_dir, "--out", tmp_path / "eval", "--no-mia", "--no-mmlu",
                        "--docs-per-task", 1, "--max-new-tokens", 4)
    line = one_line(err)
    assert code == 2 and f"{tmp_path / 'eval' / 'x'}: Read-only file system" in line
    monkeypatch.setattr("lume.cli.app", failing(errno.EACCES, "/data/runs"))
    code, err = run_cli(capsys, "evaluate", tiny_model_dir)
    assert code == 2 and one_line(err) == ("lume: error: /data/runs: Permission denied; make it writable and run the "
                                           "same command again")


def torch_writer_full(*args, **kwargs):
    raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 576 vs 448")


def disk_of(free: int):
    """shutil.disk_usage of a disk with FREE bytes left."""
    import shutil

    return lambda _path: shutil._ntuple_diskusage(2**40, 2**40 - free, free)


def test_a_full_disk_while_torch_saves_the_optimizer_state_is_one_line(capsys, tmp_path, tiny_target, split_files,
                                                                       monkeypatch):
    """torch.save's writer keeps no OS error: on a disk with no room left it is a full disk."""
    import lume.files

    retain, forget = split_files
    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", torch_writer_full)
        patch.setattr(lume.files.shutil, "disk_usage", disk_of(0))
        code, err = run_cli(capsys, "unlearn", tiny_target, retain, forget, tmp_path / "out", *UNLEARN)
    line = one_line(err)
    assert code == 2 and "No space left on device" in line and str(tmp_path / "out") in line
    with monkeypatch.context() as patch, pytest.raises(RuntimeError, match="unexpected pos"):
        patch.setattr(lume.files.shutil, "disk_usage", disk_of(2**30))  # room left: another fault, not hidden
        with lume.files.writing_to(tmp_path / "x"):
            torch_writer_full()


def test_a_result_that_cannot_fit_is_said_before_training(capsys, tmp_path, tiny_target, split_files, monkeypatch):
    import lume.models.loading
    import lume.training.stage

    retain, forget = split_files
    monkeypatch.setattr(lume.models.loading.shutil, "disk_usage", disk_of(2**20))
    monkeypatch.setattr(lume.training.stage, "train", lambda *a, **k: pytest.fail("trained for a result with no room"))
    code, err = run_cli(capsys, "unlearn", tiny_target, retain, forget, tmp_path / "out", *UNLEARN)  # save-every 1
    assert code == 2 and "training with checkpoints (two at a time" in one_line(err) and "1 MiB are free" in err
    code, err = run_cli(capsys, "unlearn", tiny_target, retain, forget, tmp_path / "out", *UNLEARN, "--save-every", 0)
    assert code == 2 and "saving the trained model needs" in one_line(err) and "1 MiB are free" in err


def test_a_read_only_place_says_what_to_do_before_what_was_kept(capsys, tmp_path, tiny_model_dir, monkeypatch):
    """A read-only cache mid-evaluation: "the same command resumes" alone would send the user to
    the same error; the line says to make it writable first."""
    import lume.stages.evaluation.evaluator as evaluator

    class ReadOnlyCache:
        name, dtype_part = "read-only", "generation"

        def run(self, evaluation, loaded):
            raise OSError(errno.EROFS, "Read-only file system", "/cache/x")

    monkeypatch.setattr(evaluator, "_sections", lambda _config: [ReadOnlyCache()])
    code, err = run_cli(capsys, "evaluate", tiny_model_dir, "--out", tmp_path / "e", "--no-mia", "--no-mmlu",
                        "--docs-per-task", 1, "--max-new-tokens", 4)
    assert code == 2 and one_line(err).startswith("lume: error: /cache/x: Read-only file system; make it writable "
                                                  "and run the same command again: the items finished so far are kept")
