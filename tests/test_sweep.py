"""`lume sweep`: Optuna over method settings, trials as cached study steps, the best evaluated."""

import json
from pathlib import Path

import pytest
import yaml

from lume import data
from lume.errors import InputError
from lume.stages.unlearning.recipes import RECIPES
from lume.study.sweep import load_sweep, sweep
from tests.test_mmlu import make_mmlu


def write_config(folder, target, data_dir, trials: int, **extra) -> str:
    mmlu = make_mmlu(folder / "mmlu")
    config = {"name": "tiny", "out": str(folder / "run"), "data_dir": str(data_dir), "target": {"model": str(target)},
              "trials": trials, "sampler": "tpe", "seed": 0,
              "evaluation": {"mia_set": "validation", "mmlu_dir": str(mmlu), "docs_per_task": 1, "max_new_tokens": 8,
                             "bootstrap_resamples": 20},
              "methods": [{"method": "npo+gd", "steps": 2, "eval_every": 1, "select": "best",
                           "probes": {"mmlu_questions": 4},
                           "training": {"batch_size": 2},
                           "search": {"training.learning_rate": {"low": 1.0e-4, "high": 3.0e-3, "log": True}}}],
              **extra}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_sweep_runs_its_trials_evaluates_the_best_and_continues_where_it_stopped(tmp_path, tiny_target, data_dir):
    weighed = lambda trial: any(Path(trial["folder"]).rglob("*.safetensors"))  # noqa: E731
    run = sweep(load_sweep(write_config(tmp_path, tiny_target, data_dir, trials=2, keep_weights="all")))
    first = json.loads((run / "sweep.json").read_text())
    assert [t["state"] for t in first["trials"]] == ["COMPLETE", "COMPLETE"] and all(map(weighed, first["trials"]))
    assert (run / "eval" / "npo+gd" / "summary.json").is_file() and (run / "report.md").is_file()
    run = sweep(load_sweep(write_config(tmp_path, tiny_target, data_dir, trials=3)))  # continue: one more
    result = json.loads((run / "sweep.json").read_text())
    trials = result["trials"]
    assert len(trials) == 3 and all(t["state"] == "COMPLETE" for t in trials)
    assert trials[0]["params"] == first["trials"][0]["params"]
    assert all(1.0e-4 <= t["params"]["training.learning_rate"] <= 3.0e-3 for t in trials)
    best = max(trials, key=lambda t: t["value"])
    assert result["best"]["npo+gd"]["trial"] == best["trial"] and best["step"] in (1, 2)
    assert [weighed(t) for t in trials] == [t is best for t in trials]  # the others' weights deleted, their probes kept
    assert all((Path(t["folder"]) / "lume_unlearn.json").is_file() for t in trials)
    summary = json.loads((run / "eval" / "npo+gd" / "summary.json").read_text())
    assert summary["model"]["path"] == best["folder"]
    report = (run / "report.md").read_text()
    assert "## Sweep" in report and "Pareto" in report


def test_a_sweep_that_evaluates_only_its_target_still_chooses_and_reports_its_trials(tmp_path, tiny_target, data_dir):
    run = sweep(load_sweep(write_config(tmp_path, tiny_target, data_dir, trials=1, evaluate_best=False)))
    assert (run / "eval" / "target" / "summary.json").is_file() and not (run / "eval" / "npo+gd").exists()
    tuned = yaml.safe_load((run / "tuned.yaml").read_text())
    assert [entry["name"] for entry in tuned["methods"]] == ["npo+gd"]
    report = (run / "report.md").read_text()
    assert "## Sweep" in report and "| npo+gd |" not in report.split("## Sweep")[0]


@pytest.mark.parametrize("change, message", [
    ({"sampler": "annealing"}, "unknown sampler 'annealing'"),
    ({"heartbeat": 0}, "field 'heartbeat': must be at least 1, got 0"),
    ({"methods": [{"method": "npo", "steps": 2, "search": {"steps": {"low": 1, "high": 3}}}]},
     "methods\\[0\\].eval_every.*set eval_every"),
    ({"methods": [{"method": "npo", "eval_every": 1, "search": {"training.learning_rte": {"low": 1, "high": 3}}}]},
     "learning_rte"),
    ({"methods": [{"method": "npo", "eval_every": 1, "search": {"steps": [1, 2]}}]}, "expected \\{low"),
    ({"methods": [{"method": "npo", "eval_every": 1, "search": {"steps": {"low": 1, "high": 3, "choices": [2]}}}]},
     "search.steps': expected .* nothing else, got choices, high, low"),
    ({"methods": [{"method": "npo", "eval_every": 1, "search": {"steps": {"low": 1, "high": 3, "step": 0}}}]},
     "nothing else, got high, low, step"),
    ({"sampler": "grid"}, "field 'methods\\[0\\].search.training.learning_rate': the grid sampler needs `choices`"),
])
def test_bad_sweep_files_are_refused_before_any_work(tmp_path, data_dir, change, message):
    path = write_config(tmp_path, tmp_path, data_dir, trials=1, **change)
    with pytest.raises(InputError, match=message):
        load_sweep(path)


def test_a_pruned_trial_stops_at_its_probe_and_the_sweep_goes_on(tmp_path, tiny_target, data_dir, monkeypatch):
    """The pruner sees each probe: a trial it prunes stops there (no model written), counts as
    finished, and the sweep still reports."""
    import optuna

    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: True)
    run = sweep(load_sweep(write_config(tmp_path, tiny_target, data_dir, trials=2, pruner="median")))
    result = json.loads((run / "sweep.json").read_text())
    assert [t["state"] for t in result["trials"]] == ["PRUNED", "PRUNED"] and result["best"] == {}
    folder = result["trials"][0]["folder"]
    assert not (tmp_path / "run" / "trials" / folder.split("/")[-1] / "lume_unlearn.json").exists()
    assert "## Sweep" in (run / "report.md").read_text()


@pytest.mark.slow
def test_a_sweep_killed_mid_trial_retries_it_and_resumes_its_checkpoint(tmp_path, tiny_target, data_dir, caplog):
    """A worker killed while unlearning: the next `lume sweep` finds the trial's heartbeat stale,
    retries it with the same settings, and the run resumes from its last checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = write_config(tmp_path, tiny_target, data_dir, trials=1, heartbeat=1)
    config = yaml.safe_load(path.read_text())
    config["methods"][0].update(steps=400, eval_every=200)
    config["methods"][0]["training"]["save_every"] = 5
    path.write_text(yaml.safe_dump(config))
    worker = subprocess.Popen([sys.executable, "-m", "lume", "sweep", str(path)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((tmp_path / "run" / "trials").glob("*/checkpoints/step-*/lume_state.json")):
        assert worker.poll() is None and time.time() < deadline, "the worker ended before its first checkpoint"
        time.sleep(0.1)
    time.sleep(1.5)  # past the trial's first heartbeat (every second): a trial without one is never stale
    assert worker.poll() is None, "the worker finished its 400 steps before it could be killed"
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    time.sleep(3.5)  # past the grace period of 3 heartbeats
    with caplog.at_level("INFO", logger="lume"):
        run = sweep(load_sweep(path))
    trials = json.loads((run / "sweep.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["FAIL", "COMPLETE"] and trials[0]["params"] == trials[1]["params"]
    report = json.loads((tmp_path / "run" / "trials" / trials[1]["folder"].split("/")[-1] / "lume_unlearn.json")
                        .read_text())
    assert report["steps"] == 400 and "resuming from step" in caplog.text


def test_another_search_under_the_same_name_on_one_storage_is_refused(tmp_path, data_dir):
    from lume.errors import LumeError
    from lume.study.sweep import _storage, _study

    storage_url = f"sqlite:///{tmp_path / 'shared.db'}"
    first = load_sweep(write_config(tmp_path, tmp_path, data_dir, trials=1, storage=storage_url))
    storage = _storage(first, tmp_path)
    _study(first, first.methods[0], storage)
    _study(first, first.methods[0], storage)  # the same sweep joins (a second worker, a continued run)
    other = yaml.safe_load((tmp_path / "sweep.yaml").read_text())
    other["methods"][0]["search"]["training.learning_rate"]["high"] = 1.0e-2
    other["out"] = str(tmp_path / "elsewhere")
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    second = load_sweep(tmp_path / "other.yaml")
    with pytest.raises(LumeError, match="already holds a sweep of that name whose npo\\+gd search differs"):
        _study(second, second.methods[0], storage)


def test_trials_are_exact_across_workers_and_a_dead_workers_trial_is_never_left_running(tmp_path, tiny_target,
                                                                                        data_dir):
    """Another worker's trial (here: started, its heartbeat recorded, then silent, as when its
    worker or the database died) takes one of the `trials` places; this worker runs the rest, then
    finds that trial stale, fails it and runs its retry: exactly `trials` finished, none RUNNING."""
    from lume.study.sweep import _storage, _study

    config = load_sweep(write_config(tmp_path, tiny_target, data_dir, trials=2, heartbeat=1))
    (tmp_path / "run").mkdir()
    storage = _storage(config, tmp_path / "run")
    other = _study(config, config.methods[0], storage).ask()
    storage.record_heartbeat(other._trial_id)
    run = sweep(config)
    states = [t["state"] for t in json.loads((run / "sweep.json").read_text())["trials"]]
    assert states.count("COMPLETE") == 2 and "RUNNING" not in states and states[0] == "FAIL"


def test_the_database_lost_mid_sweep_is_one_line_and_the_restarted_sweep_finishes_clean(tmp_path, tiny_target,
                                                                                        data_dir, monkeypatch):
    import optuna
    from sqlalchemy.exc import OperationalError

    from lume.errors import LumeError

    def lost(*_args, **_kwargs):
        raise OperationalError("UPDATE trials", {}, Exception("server closed the connection unexpectedly"))

    config = load_sweep(write_config(tmp_path, tiny_target, data_dir, trials=1, heartbeat=1))
    with monkeypatch.context() as patch:
        patch.setattr(optuna.storages.RDBStorage, "set_trial_state_values", lost)
        with pytest.raises(LumeError, match="lost the database mid-sweep \\(server closed the connection "
                                            "unexpectedly\\); start the same sweep again"):
            sweep(config)
    run = sweep(config)  # its trial is found stale, failed and retried
    states = [t["state"] for t in json.loads((run / "sweep.json").read_text())["trials"]]
    assert states == ["FAIL", "COMPLETE"]


@pytest.mark.slow
def test_ctrl_c_in_a_sweep_is_lumes_note_and_the_next_start_resumes_the_trial(tmp_path, tiny_target, data_dir,
                                                                              caplog):
    import signal
    import subprocess
    import sys
    import time

    path = write_config(tmp_path, tiny_target, data_dir, trials=1)
    config = yaml.safe_load(path.read_text())
    config["methods"][0].update(steps=100, eval_every=50)
    config["methods"][0]["training"]["save_every"] = 5
    path.write_text(yaml.safe_dump(config))
    worker = subprocess.Popen([sys.executable, "-m", "lume", "sweep", str(path)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list((tmp_path / "run" / "trials").glob("*/checkpoints/step-*/lume_state.json")):
        assert worker.poll() is None and time.time() < deadline, "the worker ended before its first checkpoint"
        time.sleep(0.1)
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "lume: interrupted:" in err
    with caplog.at_level("INFO", logger="lume"):
        run = sweep(load_sweep(path))
    trials = json.loads((run / "sweep.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["FAIL", "COMPLETE"] and trials[0]["params"] == trials[1]["params"]
    assert "resuming from step" in caplog.text


def test_trials_that_fail_take_their_places_and_the_sweep_ends(tmp_path, tiny_target, data_dir, monkeypatch):
    """A diverging trial is recorded as failed and counts among `trials`: a sweep whose every
    trial fails ends after `trials` of them (it must not draw new ones forever)."""
    import lume.study.sweep
    from lume.errors import LumeError

    calls = []

    def diverging(*_args, **_kwargs):
        calls.append(1)
        if len(calls) > 4:
            raise RuntimeError("the sweep kept drawing trials")
        raise LumeError("the loss became non-finite at step 1")

    monkeypatch.setattr(lume.study.sweep, "unlearned_step", diverging)
    run = sweep(load_sweep(write_config(tmp_path, tiny_target, data_dir, trials=2)))
    trials = json.loads((run / "sweep.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["FAIL", "FAIL"] and len(calls) == 2


def test_a_one_run_recipe_is_swept_over_its_settings_for_the_target(tmp_path, tiny_target, data_dir):
    """A recipe entry's search values override its `lume` run; each trial records the recipe."""
    recipe = {"recipe": "adaptive-rmu", "eval_every": 1, "schedule": {"epochs": 1},
              "method_settings": {"layer": 1}, "probes": {"mmlu_questions": 4},
              "training": {"batch_size": 2, "modules": ["down_proj"]},
              "search": {"training.learning_rate": {"low": 1.0e-4, "high": 1.0e-3, "log": True}}}
    run = sweep(load_sweep(write_config(tmp_path, tiny_target, data_dir, trials=1, methods=[recipe])))
    (trial,) = json.loads((run / "sweep.json").read_text())["trials"]
    report = json.loads((tmp_path / "run" / "trials" / trial["folder"].split("/")[-1] / "lume_unlearn.json")
                        .read_text())
    assert trial["state"] == "COMPLETE" and report["config"]["recipe"] == "adaptive-rmu"
    (run,) = RECIPES["adaptive-rmu"].configs("lume").values()  # the other method settings are the recipe's
    assert report["config"]["method"] == "rmu" and report["config"]["method_settings"] == {**run.method_settings,
                                                                                         "layer": 1}
    assert report["config"]["training"]["learning_rate"] == trial["params"]["training.learning_rate"]


@pytest.mark.parametrize("entry, message", [
    ({"recipe": "sha256", "eval_every": 1, "search": {"training.learning_rte": {"low": 1, "high": 3}}},
     "learning_rte"),
    ({"recipe": "sha256", "eval_every": 1, "search": {"method_settings.beta": {"low": 1, "high": 3}}}, "beta"),
])
def test_a_recipe_sweep_that_cannot_run_is_refused_before_any_work(tmp_path, data_dir, entry, message):
    entry = {"search": {"training.learning_rate": {"low": 1.0e-4, "high": 1.0e-3}}, **entry}
    with pytest.raises(InputError, match=message):
        load_sweep(write_config(tmp_path, tmp_path, data_dir, trials=1, methods=[entry]))


@pytest.fixture(scope="module")
def target_with_tuning(tmp_path_factory, tiny_model_dir, data_dir):
    """The tiny model as a lume target with a tuning part: one more document per task and split
    trained on, one more held out per task."""
    import shutil

    from lume import data
    from lume.data.manifest import TargetManifest

    folder = tmp_path_factory.mktemp("tuning-target") / "model"
    shutil.copytree(tiny_model_dir, folder)
    dataset = data.load(data_dir)
    selection = data.select_documents(dataset.documents, 1, 2, seed=0, tuning_per_task=1)
    TargetManifest.from_selection(selection, base_model="tiny", data_fingerprint=dataset.fingerprint).write(folder)
    return folder


def test_a_sweep_tunes_and_scores_on_the_tuning_documents_and_a_study_reports_the_test_ones(
        tmp_path, target_with_tuning, data_dir):
    """SemEval's structure: settings chosen on documents the reported run never sees."""
    from lume.stages.unlearning.unlearner import _fingerprint, manifest_records
    from lume.study.run import load_config, run

    config = yaml.safe_load(open(write_config(tmp_path, target_with_tuning, data_dir, trials=1)))
    config["evaluation"]["docs_per_task"] = None  # the target's own documents
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(config))
    out = sweep(load_sweep(tmp_path / "sweep.yaml"))
    parts = {part: manifest_records(target_with_tuning, data_dir, part) for part in ("test", "tuning")}
    trial = json.loads((out / "sweep.json").read_text())["trials"][0]["folder"]
    report = json.loads((Path(trial) / "lume_unlearn.json").read_text())
    assert report["config"]["part"] == "tuning"
    assert report["forget"]["fingerprint"] == _fingerprint(parts["tuning"][0]) != _fingerprint(parts["test"][0])
    summary = json.loads((out / "eval" / "npo+gd" / "summary.json").read_text())
    assert summary["data"]["part"] == "tuning" and summary["data"]["documents"] == 6
    scored = {json.loads(line)["doc_id"] for line in (out / "eval" / "npo+gd" / "items.jsonl").read_text().splitlines()}
    assert scored == {r.doc_id for r in parts["tuning"][0] + parts["tuning"][1]}
    assert "Scored on the target's tuning documents** (target, npo+gd)" in (out / "report.md").read_text()
    tuned = yaml.safe_load((out / "tuned.yaml").read_text())["methods"]  # the chosen settings, as a study's
    (chosen,) = json.loads((out / "sweep.json").read_text())["best"].values()
    assert tuned[0]["training"]["learning_rate"] == chosen["params"]["training.learning_rate"]
    assert tuned[0]["tuned_by"]["part"] == "tuning" and len(tuned[0]["tuned_by"]["documents"]) == 9
    kept = json.loads((out / "sweep.json").read_text())["trials"][0]["step"]  # no step picked on test documents:
    assert (tuned[0].get("stop_fraction"), tuned[0]["select"], tuned[0]["eval_every"]) == (  # the kept one, unprobed,
        (round(kept / report["steps"], 4), "last", 0) if kept else (None, "best", 1))  # as far through any run
    study = {"out": str(tmp_path / "study"), "data_dir": str(data_dir), "target": {"model": str(target_with_tuning)},
             "methods": str(out / "tuned.yaml"), "evaluation": {**config["evaluation"], "mia_set": "none"}}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    folder = run(load_config(tmp_path / "study.yaml"))
    report = json.loads((folder / "models" / "npo+gd" / "lume_unlearn.json").read_text())
    assert report["forget"]["fingerprint"] == _fingerprint(parts["test"][0])
    assert report["config"]["training"]["learning_rate"] == chosen["params"]["training.learning_rate"]
    if kept:  # trained to the kept step, without probes
        assert report["steps"] == kept and "probes" not in report
    summary = json.loads((folder / "eval" / "npo+gd" / "summary.json").read_text())
    text = (folder / "report.md").read_text()
    assert "part" not in summary["data"] and "tuning documents**" not in text
    assert "npo+gd: settings chosen by sweep tiny (trial 0) on the tuning documents" in text
    assert "none of the 12 documents scored here was tuned on" in text  # the test part: 6 trained, 6 held out
    study["evaluation"]["part"], study["out"] = "tuning", str(tmp_path / "leaky")  # scored where it was tuned
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    text = (run(load_config(tmp_path / "study.yaml")) / "report.md").read_text()
    assert "**9 of the 9 documents scored here were tuned on**" in text


def test_a_sweep_on_a_target_without_tuning_documents_says_it_tunes_on_the_reported_ones(
        tmp_path, tiny_target, data_dir, caplog):
    from lume.study.sweep import tuning_part

    with caplog.at_level("WARNING", logger="lume"):
        assert tuning_part(tiny_target, data.load(data_dir)) == "test"
    assert "has no tuning documents: the sweep chooses settings on the documents a study" in caplog.text


def test_a_multi_objective_sweep_over_a_recipe_and_two_methods_keeps_each_pareto_front(tmp_path, tiny_target,
                                                                                        data_dir):
    """objectives [forget, retain]: each trial's two values are its chosen step's probe means (forget
    minimised), each method's Pareto front is kept, its best by the final formula evaluated, and the
    report shows the trials and the trade-off figure."""
    search = {"training.learning_rate": {"low": 1.0e-4, "high": 3.0e-3, "log": True}}
    common = {"eval_every": 1, "select": "best", "probes": {"mmlu_questions": 4}}
    methods = [{"method": "npo+gd", "steps": 2, "training": {"batch_size": 2}, "search": search, **common},
               {"method": "gd", "steps": 2, "training": {"batch_size": 2}, "search": search, **common},
               {"recipe": "adaptive-rmu", "schedule": {"epochs": 1}, "method_settings": {"layer": 1},
                "training": {"batch_size": 2, "modules": ["down_proj"]}, "search": search, **common}]
    run = sweep(load_sweep(write_config(tmp_path, tiny_target, data_dir, trials=2, methods=methods,
                                        objectives=["forget", "retain"])))
    result = json.loads((run / "sweep.json").read_text())
    assert result["objectives"] == ["forget", "retain"] and set(result["pareto"]) == {"npo+gd", "gd", "adaptive-rmu"}
    finished = [t for t in result["trials"] if t["state"] == "COMPLETE"]
    assert len(finished) == 6 and all(t["values"] == [t["forget_mean"], t["retain_mean"]] for t in finished)
    for method, numbers in result["pareto"].items():
        mine = [t for t in finished if t["method"] == method]
        front = [t for t in mine if t["trial"] in numbers]
        dominated = [t for t in mine if any(o["forget_mean"] <= t["forget_mean"] and o["values"] != t["values"]
                                            and o["retain_mean"] >= t["retain_mean"] for o in mine)]
        assert front and not any(t in dominated for t in front) and result["best"][method]["trial"] in numbers
        assert (run / "eval" / method / "summary.json").is_file()
    report = (run / "report.md").read_text()
    assert "Pareto front (npo+gd: trials" in report
    assert (run / "figures" / "sweep_pareto.png").is_file()


@pytest.mark.parametrize("extra, message", [
    ({"objectives": ["final", "forget"]}, "final already weighs"),
    ({"objectives": ["forgetting"]}, "expected a list of distinct objectives"),
    ({"objectives": ["forget", "retain"], "pruner": "median"}, "Optuna prunes single-objective searches only"),
    ({"objectives": ["forget", "mia"], "sampler": "cmaes"}, "sampler cmaes searches one objective"),
])
def test_objectives_that_cannot_be_searched_are_refused_when_read(tmp_path, tiny_target, data_dir, extra, message):
    with pytest.raises(InputError, match=message):
        load_sweep(write_config(tmp_path, tiny_target, data_dir, trials=1, **extra))


def test_a_recipe_that_merges_is_swept_on_its_merged_model_probed_once(tmp_path, tiny_target, data_dir):
    """zjuklab trains two LoRA models and merges them: no run's probes score the merged model, so
    each trial probes it once, as merged, and its chosen settings carry no kept step."""
    entry = {"recipe": "zjuklab", "schedule": {"epochs": 1}, "probes": {"mmlu_questions": 4},
             "training": {"batch_size": 2},
             "search": {"training.learning_rate": {"low": 1.0e-4, "high": 1.0e-3, "log": True}}}
    run = sweep(load_sweep(write_config(tmp_path, tiny_target, data_dir, trials=1, methods=[entry])))
    (trial,) = json.loads((run / "sweep.json").read_text())["trials"]
    report = json.loads((Path(trial["folder"]) / "lume_unlearn.json").read_text())
    assert trial["state"] == "COMPLETE" and report["merge"] is not None and "probes" not in report
    assert trial["value"] == trial["selection_score"] and trial["step"] == report["steps"]
    assert trial["forget_mean"] is not None and trial["mmlu_dev"] is not None
    (tuned,) = yaml.safe_load((run / "tuned.yaml").read_text())["methods"]
    assert tuned["recipe"] == "zjuklab" and "stop_fraction" not in tuned


def test_the_oracles_measures_are_objectives_against_its_model_probed_once_on_the_same_documents(
        tmp_path, tiny_target, data_dir, monkeypatch):
    """objectives [privleak, forget_quality]: each trial's values are |privleak| of its chosen
    step's probe MIA AUC against the oracle's, and the KS p-value of their probe forget documents'
    losses; the oracle (here a copy of the target: privleak 0 before unlearning) is probed once."""
    import shutil

    from lume.metrics.oracle import forget_quality, privleak
    from lume.study import course, sweep as sweep_module

    oracle = tmp_path / "oracle"
    shutil.copytree(tiny_target, oracle)
    monkeypatch.setattr(sweep_module, "build_oracle", lambda target, data: oracle)
    monkeypatch.setattr(course, "build_oracle", lambda target, data: oracle)
    path = write_config(tmp_path, tiny_target, data_dir, trials=2, objectives=["privleak", "forget_quality"])
    config = yaml.safe_load(Path(path).read_text())
    config["target"]["oracle"] = True
    Path(path).write_text(yaml.safe_dump(config))
    run = sweep(load_sweep(path))
    (probed_oracle,) = (run / "oracle-probes").iterdir()
    oracle_row = json.loads(probed_oracle.read_text())
    for trial in json.loads((run / "sweep.json").read_text())["trials"]:
        report = json.loads((Path(trial["folder"]) / "lume_unlearn.json").read_text())
        row = next(r for r in report["probes"] if r["step"] == report["selection"]["step"])
        assert trial["values"] == pytest.approx([abs(privleak(row["mia_auc"], oracle_row["mia_auc"])),
                                                 forget_quality(row["member_losses"], oracle_row["member_losses"])])
    start = next(r for r in report["probes"] if r["step"] == 0)
    assert start["mia_auc"] == pytest.approx(oracle_row["mia_auc"])  # the oracle is the target here
    config["target"]["oracle"] = False
    Path(path).write_text(yaml.safe_dump(config))
    with pytest.raises(InputError, match="privleak, forget_quality: measured against the oracle; build the target"):
        load_sweep(path)


def test_the_quasi_random_sampler_spreads_a_few_trials_over_the_range_never_pinned_to_its_low_end(
        tmp_path, tiny_target, data_dir):
    import math

    import optuna

    from lume.study.sweep import _sampler

    config = load_sweep(write_config(tmp_path, tiny_target, data_dir, trials=4, sampler="qmc"))
    (method,) = config.methods
    study = optuna.create_study(sampler=_sampler(config, method, seed=0))
    study.optimize(lambda t: t.suggest_float("lr", 1e-5, 1e-3, log=True), n_trials=4)
    fractions = sorted((math.log(t.params["lr"]) - math.log(1e-5)) / math.log(100) for t in study.trials)
    assert fractions[0] > 1e-6 and fractions[-1] - fractions[0] > 0.5  # unscrambled Sobol gives exactly 0


def test_the_tuned_settings_name_a_built_target_by_its_place_in_the_cache(tmp_path, monkeypatch):
    from lume.study.sweep import _portable

    monkeypatch.setenv("LUME_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "targets" / "abc123").mkdir(parents=True)
    assert _portable(tmp_path / "cache" / "targets" / "abc123") == "$LUME_CACHE/targets/abc123"
    assert _portable(tmp_path / "mine") == str(tmp_path / "mine")  # a target given by path stays that path
