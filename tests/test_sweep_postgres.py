"""`lume sweep` across workers on a real PostgreSQL server (the field's way to spread a sweep over
a cluster): two workers share the trials, one is killed mid-trial and its trial is retried, and
the finished sweep equals a one-worker sweep of the same seed. The server is Debian's
`postgresql` package, started here in a temporary folder; its absence fails the test."""

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from lume.errors import InputError, LumeError
from lume.study.sweep import load_sweep
from tests.test_sweep import write_config

pytestmark = pytest.mark.slow


def _postgres_binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    assert found, f"PostgreSQL's {name} is missing: install Debian's postgresql package (.ci/run does)"
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on a free local port, as user `postgres` when the tests run as root
    (the server refuses root; pytest's temporary folders are root's alone, so the server's is
    made directly under the system's); yields a function making a fresh database's URL."""
    folder = Path(tempfile.mkdtemp(prefix="lume-postgres-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", _free_port()
    subprocess.run([*as_user, _postgres_binary("initdb"), "-D", str(data), "-U", "lume", "-A", "trust"],
                   check=True, capture_output=True)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    subprocess.run([*as_user, _postgres_binary("pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"),
                    "-w", "start"], check=True, capture_output=True)
    made = []

    def database(name: str) -> str:
        subprocess.run([*as_user, _postgres_binary("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "lume",
                        name], check=True, capture_output=True)
        made.append(name)
        return f"postgresql+psycopg://lume@127.0.0.1:{port}/{name}"

    yield database
    subprocess.run([*as_user, _postgres_binary("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                   capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


def config_on(folder: Path, target, data_dir, storage: str) -> Path:
    """Two grid trials (the same two settings whatever the workers' order), long enough to be
    killed in, checkpointed every 5 steps."""
    path = write_config(folder, target, data_dir, trials=2, heartbeat=1, sampler="grid", storage=storage)
    config = yaml.safe_load(path.read_text())
    method = config["methods"][0]
    method.update(steps=200, eval_every=100)
    method["training"]["save_every"] = 5
    method["search"] = {"training.learning_rate": {"choices": [1.0e-4, 1.0e-3]}}
    path.write_text(yaml.safe_dump(config))
    return path


def worker(path: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lume", "sweep", str(path)], stdout=subprocess.DEVNULL,
                            stderr=log.open("w"))


def completed(run: Path) -> dict[float, float]:
    trials = json.loads((run / "sweep.json").read_text())["trials"]
    return {t["params"]["training.learning_rate"]: t["value"] for t in trials if t["state"] == "COMPLETE"}


def test_two_workers_on_postgres_share_a_sweep_survive_a_kill_and_equal_one_worker(tmp_path, tiny_target, data_dir,
                                                                                  postgres):
    alone = config_on(tmp_path / "alone", tiny_target, data_dir, postgres("alone"))
    assert subprocess.run([sys.executable, "-m", "lume", "sweep", str(alone)], capture_output=True).returncode == 0
    expected = completed(tmp_path / "alone" / "run")
    assert sorted(expected) == [1.0e-4, 1.0e-3]

    shared = config_on(tmp_path / "shared", tiny_target, data_dir, postgres("shared"))
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    first, second = worker(shared, logs[0]), worker(shared, logs[1])
    trials = tmp_path / "shared" / "run" / "trials"
    deadline = time.time() + 180
    while len(list(trials.glob("*/checkpoints/step-*/lume_state.json"))) < 2:  # both workers mid-trial
        assert first.poll() is None and second.poll() is None and time.time() < deadline, [
            log.read_text()[-2000:] for log in logs]
        time.sleep(0.1)
    time.sleep(1.5)  # past each trial's first heartbeat
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert second.wait(timeout=600) == 0, logs[1].read_text()[-2000:]  # it finishes its trial, retries the other
    run = tmp_path / "shared" / "run"
    states = [t["state"] for t in json.loads((run / "sweep.json").read_text())["trials"]]
    assert sorted(states) == ["COMPLETE", "COMPLETE", "FAIL"]
    assert completed(run) == pytest.approx(expected, rel=1e-6)
    best = json.loads((run / "sweep.json").read_text())["best"]["npo+gd"]
    assert best["value"] == pytest.approx(max(expected.values()), rel=1e-6)


def test_a_missing_driver_or_a_host_that_does_not_answer_is_one_line_quickly(tmp_path, tiny_target, data_dir,
                                                                            monkeypatch):
    from lume.study.sweep import _storage

    path = config_on(tmp_path, tiny_target, data_dir, "postgresql+nosuchdriver://lume@127.0.0.1/x")
    with pytest.raises(InputError, match="field 'storage'"):
        load_sweep(path)
    path = config_on(tmp_path, tiny_target, data_dir, f"postgresql+psycopg://lume@127.0.0.1:{_free_port()}/x")
    started = time.time()
    with pytest.raises(LumeError, match="storage postgresql.*cannot use the database"):
        _storage(load_sweep(path), tmp_path)
    assert time.time() - started < 30
    with socket.socket() as silent:  # a local server that takes the connection and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        path = config_on(tmp_path, tiny_target, data_dir,
                         f"postgresql+psycopg://lume@127.0.0.1:{silent.getsockname()[1]}/x")
        monkeypatch.setattr("lume.study.sweep.CONNECT_TIMEOUT", 2)
        started = time.time()
        with pytest.raises(LumeError, match="cannot use the database"):
            _storage(load_sweep(path), tmp_path)
        assert time.time() - started < 30
