"""lume's tuned defaults for a target lume built: a sweep's tuned.yaml read as each method's and
recipe's starting settings there (never on a released target), what a study or the command line
gives going over them, and the report naming the sweep they came from."""

import pytest
import yaml

from lume.errors import InputError
from lume.stages.unlearning import tuned
from lume.stages.unlearning.recipes import RECIPES
from lume.study.run import load_config

TUNED_BY = {"sweep": "compare", "trial": 3, "target": "targets/abc", "part": "tuning", "documents": ["d1", "d2"]}
ENTRIES = [{"method": "npo", "steps": 20, "stop_at": 10, "select": "last", "eval_every": 0,
            "training": {"learning_rate": 1.5e-4}, "method_settings": {"beta": 0.3}, "name": "npo",
            "tuned_by": TUNED_BY},
           {"recipe": "sha256", "recipe_target": "auto", "stop_fraction": 0.6, "training": {"learning_rate": 7e-4},
            "name": "sha256", "tuned_by": {**TUNED_BY, "trial": 1}}]


@pytest.fixture
def tuned_file(tmp_path, monkeypatch):
    """A sweep's tuned.yaml as lume's tuned defaults."""
    path = tmp_path / "tuned.yaml"
    path.write_text(yaml.safe_dump({"methods": ENTRIES}))
    tuned.tuned_defaults.cache_clear()
    monkeypatch.setenv(tuned.TUNED_VARIABLE, str(path))
    yield path
    tuned.tuned_defaults.cache_clear()


@pytest.mark.tuned_defaults
def test_the_packaged_defaults_are_a_sweeps_tuned_entries_each_naming_where_it_was_tuned():
    tuned.tuned_defaults.cache_clear()
    defaults = tuned.tuned_defaults()
    assert set(defaults) == {"ga", "gd", "kl", "npo", "npo+gd", "simnpo", "rmu", *RECIPES}  # the comparison's
    for name, record in defaults.items():
        assert name in RECIPES or tuned.METHODS[name].name == name
        assert {"sweep", "trial", "target", "part", "documents"} <= set(record.tuned_by)
        assert record.tuned_by["part"] == "tuning" and record.tuned_by["documents"]
        assert "stop_at" not in record.fields  # a fraction of the run carries to a forget set of another size


def test_a_method_on_a_lume_target_starts_from_its_tuned_settings_and_what_is_given_goes_over(tuned_file):
    config = tuned.method_config("npo", {}, "lume")
    assert (config.steps, config.stop_at, config.training.learning_rate, config.method_settings["beta"]) == (
        20, 10, 1.5e-4, 0.3)
    given = tuned.method_config("npo", {"training": {"learning_rate": 1e-5}}, "lume")
    assert (given.training.learning_rate, given.method_settings["beta"], given.stop_at) == (1e-5, 0.3, 10)
    longer = tuned.method_config("npo", {"steps": 40}, "lume")  # another run length: the tuned stop goes
    assert (longer.steps, longer.stop_at, longer.training.learning_rate) == (40, None, 1.5e-4)
    released = tuned.method_config("npo", {}, "olmo-7b")
    assert (released.steps, released.stop_at) == (tuned.UnlearnConfig.steps, None)
    assert tuned.method_config("ga", {}, "lume") == tuned.UnlearnConfig(method="ga")  # never tuned


def test_a_recipe_on_a_lume_target_takes_its_tuned_settings_over_its_runs(tuned_file):
    (lume,) = RECIPES["sha256"].configs("lume").values()
    (released,) = RECIPES["sha256"].configs("olmo-1b").values()
    assert (lume.training.learning_rate, lume.stop_fraction) == (7e-4, 0.6)  # carries to another forget set
    assert released.stop_fraction is None and released.training.learning_rate != 7e-4
    (given,) = RECIPES["sha256"].configs("lume", {"training": {"learning_rate": 1e-3}}).values()
    assert (given.training.learning_rate, given.stop_fraction) == (1e-3, 0.6)
    (stopped,) = RECIPES["sha256"].configs("lume", {"stop_at": 5}).values()  # a stop given replaces the tuned one
    assert (stopped.stop_at, stopped.stop_fraction) == (5, None)


def test_a_study_records_the_tuned_defaults_its_entries_ran_with(tuned_file, tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("methods: [{method: npo}, {method: npo, name: own, steps: 5, stop_at: 3, select: last,\n"
                    "  eval_every: 0, training: {learning_rate: 1.0e-5}, method_settings: {beta: 0.1}},\n"
                    "  {recipe: sha256}, {method: gd}]\n")
    npo, own, sha256, gd = load_config(path).methods
    assert npo.entry.config.training.learning_rate == 1.5e-4
    assert npo.tuned_by == {**TUNED_BY, "defaults": True}
    assert own.tuned_by is None and own.entry.config.training.learning_rate == 1e-5  # every tuned value given
    assert sha256.tuned_by["trial"] == 1 and sha256.entry.config.stop_fraction == 0.6
    assert gd.tuned_by is None
    path.write_text("target: {model: lume-olmo-1b}\nmethods: [{method: npo}]\n")  # a released target: untouched
    (released,) = load_config(path).methods
    assert released.tuned_by is None and released.entry.config.stop_at is None


def test_a_bad_tuned_file_is_named_with_its_entry(tuned_file):
    tuned_file.write_text("methods: [{method: npo, stepz: 3, tuned_by: {sweep: s}}]\n")
    with pytest.raises(InputError, match=r"tuned.yaml: field 'methods\[0\].stepz': unknown field"):
        tuned.tuned_defaults()
    tuned.tuned_defaults.cache_clear()
    tuned_file.write_text("methods: [{method: npo, steps: 3}]\n")
    with pytest.raises(InputError, match=r"field 'methods\[0\]': expected `method` or `recipe` and `tuned_by`"):
        tuned.tuned_defaults()


def test_the_report_says_a_models_settings_are_lumes_tuned_defaults_and_counts_the_documents_shared(tmp_path):
    import json

    from lume.reports.study import TUNED_RECORD, tuned_notes
    from tests.conftest import model_entry

    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "items.jsonl").write_text("".join(json.dumps({"doc_id": d}) + "\n" for d in ("d2", "d3")))
    (tmp_path / TUNED_RECORD).write_text(json.dumps({"npo": {**TUNED_BY, "defaults": True}}))
    mia = [{"id": "task1/d4", "set": "held-out"}]
    (line,) = [line for line in tuned_notes(tmp_path, [model_entry("npo", {}, mia)], [folder]) if line.startswith("-")]
    assert line == ("- npo: lume's defaults for a target it built, settings chosen by sweep compare (trial 3) on the "
                    "tuning documents of targets/abc; **1 of the 3 documents scored here were tuned on**")


def test_the_demo_target_leaves_out_every_document_the_tuned_defaults_were_tuned_on(tuned_file, data_dir):
    from lume import data
    from lume.stages.target import preset

    documents = data.load(data_dir).documents
    tuned_on = [documents[0].doc_id, documents[-1].doc_id]
    ENTRIES_WITH = [{**entry, "tuned_by": {**entry["tuned_by"], "documents": tuned_on}} for entry in ENTRIES]
    tuned_file.write_text(yaml.safe_dump({"methods": ENTRIES_WITH}))
    demo = preset("demo")
    assert demo.excluded_documents == sorted(tuned_on) and preset("smoke").excluded_documents == []
    everything = data.select_documents(documents, None, 1, seed=0)
    assert set(tuned_on) <= {d.doc_id for d in everything.chosen + everything.held_out}
    away = data.select_documents(documents, None, 1, seed=0, excluded=frozenset(demo.excluded_documents))
    assert not set(tuned_on) & {d.doc_id for d in away.chosen + away.held_out}
    assert len(away.chosen) + len(away.held_out) == len(documents) - 2


def test_lume_unlearn_on_a_lume_target_runs_the_tuned_defaults_under_the_options_given(
        tuned_file, tiny_target, data_dir, tmp_path, capsys, monkeypatch):
    import json

    from tests.conftest import run_cli

    monkeypatch.setenv("LUME_DATA_DIR", str(data_dir))
    code, err = run_cli(capsys, "unlearn", tiny_target, tmp_path / "out", "--method", "npo", "--steps", 1,
                        "--batch-size", 2)
    assert code == 0, err
    assert "npo: lume's tuned defaults for a target it built (sweep compare, trial 3)" in err
    config = json.loads((tmp_path / "out" / "lume_unlearn.json").read_text())["config"]
    assert (config["steps"], config["stop_at"], config["training"]["learning_rate"]) == (1, None, 1.5e-4)
