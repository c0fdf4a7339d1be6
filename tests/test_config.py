"""Study configs: every field coerced to its type and checked when the file is read."""

import pytest

from lume.errors import InputError
from lume.study.run import load_config
from lume.stages.evaluation import EvalConfig


def config_file(tmp_path, text: str, raw: bytes | None = None):
    path = tmp_path / "study.yaml"
    path.write_bytes(raw if raw is not None else text.encode())
    return path


def test_yaml_1_1_exponents_are_numbers(tmp_path):
    text = "methods:\n  - {method: npo, training: {learning_rate: 1e-5}, steps: 3}\n"
    config = load_config(config_file(tmp_path, text))
    learning_rate = config.methods[0].entry.config.training.learning_rate
    assert learning_rate == 1e-5 and isinstance(learning_rate, float)


@pytest.mark.parametrize("text, field, message", [
    ("methods:\n  - {method: npo, steps: ten}\n", "methods[0].steps", "expected a whole number, got 'ten'"),
    ("methods: npo\n", "methods", "expected a list"),
    ("out: 5\n", "out", "expected text, got 5"),
    ("methods:\n  - {method: nope}\n", "methods[0]", "unknown method 'nope'"),
    ("methods:\n  - {method: npo, method_settings: {beta: abc}}\n", "methods[0]", "expected a number, got 'abc'"),
    ("methods:\n  - {method: npo, steps: 0}\n", "methods[0]", "steps must be at least 1"),
    ("attacks: [relearn, bogus]\n", "attacks", "unknown attack 'bogus'"),
    ("evaluation: {mia_set: bogus}\n", "evaluation", "mia_set must be one of final, validation"),
    ("target: {memorize: {docs_per_task: -1}}\n", "target.memorize", "docs_per_task must be at least 1"),
    ("methods:\n  - {steps: 3}\n", "methods[0].method", "missing"),
    ("methods:\n  - {method: npo, training: {weight_decay: lots}}\n", "methods[0].training.weight_decay",
     "expected a number, got 'lots'"),
    ("methods:\n  - {method: npo, training: {lr: 1}}\n", "methods[0].training.lr", "unknown field"),
    ("methods:\n  - {method: npo, training: {learning_rate: 0}}\n", "methods[0]", "learning_rate must be above 0"),
])
def test_bad_fields_are_named_when_the_file_is_read(tmp_path, text, field, message):
    with pytest.raises(InputError, match=rf"field '{field}'.*{message}".replace("[", r"\[").replace("]", r"\]")):
        load_config(config_file(tmp_path, text))


def test_yaml_syntax_errors_name_the_line_and_a_bom_is_accepted(tmp_path):
    with pytest.raises(InputError, match=r"study.yaml:4: YAML syntax: (did not find )?expected ',' or '}'.*"
                                         r"\(while parsing a flow mapping on line 3\)"):
        load_config(config_file(tmp_path, "name: x\nmethods:\n  - {method: npo\n"))
    assert load_config(config_file(tmp_path, "", b"\xef\xbb\xbfname: bom\n")).name == "bom"
    with pytest.raises(InputError, match=r"study.yaml:2: not UTF-8 text"):
        load_config(config_file(tmp_path, "", b"name: x\nout: \xff\n"))


def test_the_cli_reaches_every_training_setting_and_keeps_the_dataclass_defaults():
    from lume.cli import configured
    from lume.stages.target import MemorizeConfig, preset
    from lume.stages.unlearning import UnlearnConfig
    from lume.training import TrainingSettings

    config = configured(UnlearnConfig(), {"learning_rate": 1e-3, "seed": 3, "steps": None},
                        ["training.weight_decay=0.1", "training.max_grad_norm=0", "method_settings.beta=0.5"])
    assert config.training == TrainingSettings(learning_rate=1e-3, seed=3, weight_decay=0.1, max_grad_norm=0.0)
    assert config.steps == UnlearnConfig().steps and config.method_settings == {"beta": 0.5}
    demo = configured(preset("demo"), {"batch_size": 2}, [])
    assert demo.training.batch_size == 2 and demo.training.learning_rate == preset("demo").training.learning_rate
    assert configured(MemorizeConfig(), {}, []) == MemorizeConfig()


@pytest.mark.parametrize("name", ["lume-olmo-1b", "lume-olmo-7b"])
def test_the_released_target_configs_run_the_four_baselines(name):
    from pathlib import Path

    config = load_config(Path(__file__).parent.parent / "configs" / f"{name}.yaml")
    assert config.target.model == name and [m.entry.config.method for m in config.methods] == ["ga", "gd", "kl", "npo"]
    assert config.evaluation == EvalConfig(mia_set="final")


def test_the_semeval_top_config_runs_every_recipe_on_olmo_1b_with_its_published_settings():
    from pathlib import Path

    from lume.stages.unlearning.recipes import RECIPES

    config = load_config(Path(__file__).parent.parent / "configs" / "semeval-top.yaml")
    assert config.target.model == "lume-olmo-1b" and config.evaluation == EvalConfig(mia_set="final")
    recipes = [m for m in config.methods if m.entry.recipe]
    assert sorted(m.entry.recipe for m in recipes) == sorted(RECIPES)
    assert all(m.written == {"recipe": m.entry.recipe, "recipe_target": "auto"} for m in recipes)
    assert {m.entry.target_kind for m in recipes} == {"olmo-1b"}


def test_the_recipes_study_shows_every_recipe_on_the_demo_target_tuned_on_other_documents():
    from pathlib import Path

    from lume.stages.unlearning.recipes import RECIPES
    from lume.study.sweep import load_sweep

    configs = Path(__file__).parent.parent / "configs"
    study = load_config(configs / "recipes.yaml")
    assert study.out.startswith("runs/") and study.target.preset == "demo" and not study.target.memorize
    assert sorted(m.entry.recipe for m in study.methods if m.entry.recipe) == sorted(RECIPES)
    assert [m.entry.config.method for m in study.methods if not m.entry.recipe] == ["npo+gd"]
    tuning = [load_sweep(configs / "recipes-tuning.yaml"), load_config(configs / "recipes-tuning-zjuklab.yaml"),
              load_config(configs / "recipes-tuning-zjuklab-retain.yaml")]
    for config in tuning:  # the same preset, other documents: the reported ones were never tuned on
        assert config.target.preset == "demo" and config.target.memorize["training"]["seed"] != 0
    assert {m.entry.recipe for config in tuning for m in config.methods} == set(RECIPES)


def test_yes_no_on_and_off_are_text_as_in_yaml_1_2_and_only_true_and_false_are_booleans(tmp_path, capsys):
    """`mixed_precision: no` (a choice of that setting) was the boolean False under YAML 1.1."""
    from lume.cli import name_values
    from lume.config import yaml_value
    from lume.study.run import load_config

    assert name_values(["training.mixed_precision=no", "progress=true", "x=off"], "--setting") == [
        ("training.mixed_precision", "no"), ("progress", True), ("x", "off")]
    assert yaml_value("[yes, no, on, off, True, false, 1e-5]") == ["yes", "no", "on", "off", True, False, "1e-5"]
    path = tmp_path / "s.yaml"
    path.write_text("methods: [{method: gd, training: {mixed_precision: no}}]\n")
    assert load_config(path).methods[0].entry.config.training.mixed_precision == "no"
    path.write_text("methods: [{method: gd, progress: yes}]\n")
    with pytest.raises(InputError, match="field 'methods.0..progress': expected true or false, got 'yes'"):
        load_config(path)


def test_methods_may_name_a_file_of_them_and_a_bad_one_is_named(tmp_path):
    listed = tmp_path / "tuned.yaml"
    listed.write_text("methods:\n  - {method: gd, steps: 3, name: gd-tuned, tuned_by: {sweep: s, trial: 2}}\n")
    study = config_file(tmp_path, f"methods: {listed}\n")
    (method,) = load_config(study).methods
    assert method.label == "gd-tuned" and method.entry.config.steps == 3
    assert method.tuned_by == {"sweep": "s", "trial": 2}
    study.write_text(f"methods: {tmp_path / 'nowhere.yaml'}\n")
    with pytest.raises(InputError, match="study.yaml: field 'methods': .*nowhere.yaml: no such file"):
        load_config(study)
    listed.write_text("methods:\n  - {method: gd, stepz: 3}\n")
    study.write_text(f"methods: {listed}\n")
    with pytest.raises(InputError, match=r"tuned.yaml: field 'methods\[0\].stepz': unknown field"):
        load_config(study)


def test_the_comparison_tunes_every_entry_alike_on_tuning_documents_and_reports_the_test_ones():
    """configs/compare-sweep.yaml gives every method and recipe the same trials, on a target
    with a tuning part and an oracle; configs/compare.yaml runs what it chose on the same target."""
    from pathlib import Path

    import yaml

    from lume.stages.unlearning.recipes import RECIPES
    from lume.study.sweep import load_sweep

    configs = Path(__file__).parent.parent / "configs"
    sweep = load_sweep(configs / "compare-sweep.yaml")
    labels = {m.label for m in sweep.methods}
    assert {"ga", "gd", "kl", "npo", "npo+gd", "simnpo", "rmu"} <= labels
    assert set(RECIPES) <= labels  # the merging one too
    assert sweep.target.oracle and sweep.target.memorize["tuning_per_task"] > 0
    assert sweep.target.memorize["excluded_documents"] == []  # its tuning documents stay, whatever lume's defaults
    study = yaml.safe_load((configs / "compare.yaml").read_text())
    assert study["methods"] == f"{sweep.out}/tuned.yaml" and study["target"] == yaml.safe_load(
        (configs / "compare-sweep.yaml").read_text())["target"]
    assert study["evaluation"] == yaml.safe_load((configs / "compare-sweep.yaml").read_text())["evaluation"]


def test_the_larger_comparison_runs_lumes_tuned_defaults_on_more_members_away_from_their_documents():
    """configs/compare-larger.yaml: lume's packaged tuned defaults, scored as configs/compare.yaml
    scores, on a target with more members that leaves out every document they were tuned on."""
    from pathlib import Path

    import yaml

    from lume.stages.target import AWAY_FROM_TUNING
    from lume.stages.unlearning.tuned import TUNED_FILE

    root = Path(__file__).parent.parent
    larger = yaml.safe_load((root / "configs" / "compare-larger.yaml").read_text())
    study = yaml.safe_load((root / "configs" / "compare.yaml").read_text())
    assert (root / larger["methods"]).resolve() == TUNED_FILE.resolve()
    assert larger["evaluation"] == study["evaluation"] and larger["target"]["oracle"]
    assert larger["target"]["preset"] in AWAY_FROM_TUNING and "excluded_documents" not in larger["target"]["memorize"]
    assert larger["target"]["memorize"]["docs_per_task"] > study["target"]["memorize"]["docs_per_task"]
    assert [m.label for m in load_config(root / "configs" / "compare-larger.yaml").methods] == \
        [m["name"] for m in yaml.safe_load(TUNED_FILE.read_text())["methods"]]
