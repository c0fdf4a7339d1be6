"""Plug-ins from outside lume: registries refuse clashes and wrong kinds, a `package.module:Class`
reference works wherever a name does, and an installed package's entry points are found."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lume.errors import LumeError
from lume.registry import Registry
from lume.stages.attacks import ATTACKS
from lume.stages.evaluation import SECTIONS
from lume.stages.unlearning.methods import METHODS, Method, register
from tests.conftest import run_cli

PLUGIN = Path(__file__).parents[1] / "examples" / "plugin"
REFERENCE = "lume_example_plugin.methods:CappedGradientDifference"


def test_a_second_class_under_a_taken_name_is_refused_naming_both_places():
    class Impostor(Method):
        name = "gd"

    with pytest.raises(LumeError) as refused:
        register(Impostor)
    message = str(refused.value)
    assert "two methods named 'gd'" in message
    assert "lume.stages.unlearning.methods.gradient.GradientDifference" in message and "gradient.py:" in message
    assert "test_plugins" in message and "Impostor" in message and __file__ in message
    assert METHODS["gd"].__name__ == "GradientDifference"
    register(METHODS["gd"])  # the same class again is no clash


def test_a_class_of_the_wrong_kind_is_refused():
    class NotAMethod:
        name = "not-a-method"

    with pytest.raises(LumeError, match=r"NotAMethod .* is not a method: it must be a subclass of "
                                        r"lume.stages.unlearning.methods.base.Method"):
        register(NotAMethod)
    with pytest.raises(LumeError, match="is not a section"):
        SECTIONS.register(METHODS["gd"])
    assert "not-a-method" not in METHODS


def test_every_registry_lists_its_names_in_an_unknown_names_error():
    for registry, known in ((METHODS, "npo+gd"), (SECTIONS, "mmlu"), (ATTACKS, "quantize-4")):
        with pytest.raises(LumeError, match=f"unknown {registry.kind} .nope. \\(choose from .*{re.escape(known)}"):
            registry["nope"]
    assert list(SECTIONS) == ["probes", "mia", "mmlu", "general", "extraction"]  # in their order


def test_a_reference_names_a_class_anywhere_a_name_is(capsys, tmp_path, tiny_model_dir, split_files, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN / "src"))
    retain, forget = split_files
    try:
        code, err = run_cli(capsys, "unlearn", tiny_model_dir, retain, forget, tmp_path / "out", "--method", REFERENCE,
                            "--set", "cap=0.5", "--steps", 2, "--device", "cpu")
        assert code == 0, err
        report = json.loads((tmp_path / "out" / "lume_unlearn.json").read_text())
        assert report["method"] == REFERENCE and report["method_settings"] == {"alpha": 1.0, "cap": 0.5}
        assert "forget_nll" in report["losses"][0]
    finally:
        METHODS.pop("capped-gd")
    for bad, message in (("lume_example_plugin.nowhere:X", "cannot import lume_example_plugin.nowhere"),
                         ("lume_example_plugin.methods:Missing", "has no 'Missing'"),
                         ("lume_example_plugin.methods:CappedSettings", "is not a method")):
        code, err = run_cli(capsys, "unlearn", tiny_model_dir, retain, forget, tmp_path / "bad", "--method", bad)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_study_takes_a_reference_and_labels_it_by_the_methods_name(tmp_path, monkeypatch):
    from lume.study.run import load_config

    monkeypatch.syspath_prepend(str(PLUGIN / "src"))
    study = tmp_path / "study.yaml"
    study.write_text(f"methods:\n  - method: {REFERENCE}\n    method_settings: {{cap: 2}}\n")
    try:
        method = load_config(study).methods[0]
        assert method.entry.config.method == REFERENCE  # checked against its Settings:
        assert method.entry.config.method_settings == {"cap": 2.0}
        assert method.label == "capped-gd"  # folders and reports, not the reference
    finally:
        METHODS.pop("capped-gd")


def test_a_broken_entry_point_is_named(monkeypatch):
    from importlib.metadata import EntryPoint

    broken = EntryPoint("broken", "no_such_package.module:Thing", "lume.methods")
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: [broken] if group == "lume.methods" else [])
    registry = Registry("method", Method, "lume.methods")
    with pytest.raises(LumeError, match=r"the method plug-in 'broken' = no_such_package.module:Thing .* does not "
                                        r"load: ModuleNotFoundError"):
        registry["gd"]


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory) -> Path:
    """examples/plugin installed (pip, its own pyproject.toml) into a folder of its own; built
    from a copy, so that the build leaves nothing in the repository."""
    source, target = tmp_path_factory.mktemp("plugin") / "plugin", tmp_path_factory.mktemp("site")
    shutil.copytree(PLUGIN, source)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(target), str(source)], check=True, capture_output=True)
    return target


def lume(site: Path, *args) -> subprocess.CompletedProcess:
    """`lume ARGS` in a process whose Python sees the installed plug-in."""
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "lume", *map(str, args)], env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_an_installed_plugins_method_and_section_run_end_to_end(installed_plugin, tmp_path, tiny_model_dir,
                                                                 split_files, data_dir):
    retain, forget = split_files
    assert "capped-gd" in lume(installed_plugin, "unlearn", "--help").stdout
    done = lume(installed_plugin, "unlearn", tiny_model_dir, retain, forget, tmp_path / "out", "--method", "capped-gd",
                "--steps", 2, "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "lume_unlearn.json").read_text())["method"] == "capped-gd"
    done = lume(installed_plugin, "evaluate", tmp_path / "out", "--out", tmp_path / "eval", "--section", "answer-nll",
                "--no-mia", "--no-mmlu", "--docs-per-task", 1, "--max-new-tokens", 4, "--data-dir", data_dir)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert set(summary["answer_nll"]) == {"forget", "retain"} and all(v > 0 for v in summary["answer_nll"].values())
    assert "answer_nll.jsonl" in summary["files"] and "answer NLL (forget)" in done.stdout
    done = lume(installed_plugin, "evaluate", tmp_path / "out", "--out", tmp_path / "eval-1", "--section", "answer-nll",
                "--setting", "section.answer-nll.max_answers=1", "--no-mia", "--no-mmlu", "--docs-per-task", 1,
                "--max-new-tokens", 4, "--data-dir", data_dir)  # the section's own setting, given by its name
    assert done.returncode == 0, done.stderr
    rows = (tmp_path / "eval-1" / "answer_nll.jsonl").read_text().splitlines()
    assert len((tmp_path / "eval" / "answer_nll.jsonl").read_text().splitlines()) > 2  # all: more than one a split
    assert len(rows) == 2 and {json.loads(row)["split"] for row in rows} == {"forget", "retain"}


def test_the_help_lists_what_the_registries_hold_so_a_new_file_is_listed():
    """A method, recipe or attack registered in lume's tree appears in `--help` with no list to edit."""
    code = """
from lume.stages.attacks import ATTACKS, Attack
from lume.stages.unlearning.methods import METHODS, Method
from lume.stages.unlearning.recipes import RECIPES, Recipe
for registry, base, name in ((METHODS, Method, "fresh-method"), (RECIPES, Recipe, "fresh-recipe"),
                             (ATTACKS, Attack, "fresh-attack")):
    registry.register(type(name, (base,), {"name": name}))
from typer.testing import CliRunner
from lume.cli import app
for command in ("unlearn", "attack"):
    print(CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"}).output)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert all(name in text for name in ("fresh-method", "fresh-recipe", "fresh-attack", "npo+gd", "relearn")), text


def test_the_readme_and_the_docs_list_every_registered_method_recipe_and_attack():
    """The hand-written pages name exactly what the registries hold (a new file fails here until
    its page lists it)."""
    import re

    from lume.stages.attacks import ATTACKS
    from lume.stages.unlearning.methods import METHODS
    from lume.stages.unlearning.recipes import RECIPES

    root = Path(__file__).parent.parent
    readme = " ".join((root / "README.md").read_text(encoding="utf-8").split())
    names = lambda text: set(re.findall(r"`([^`]+)`", text))  # noqa: E731
    assert names(re.search(r"Methods: (.*?) \(each", readme).group(1)) == set(METHODS)
    assert names(re.search(r"Recipes: (.*?) \(\[docs", readme).group(1)) == set(RECIPES)
    docs = {page: (root / "docs" / page).read_text(encoding="utf-8") for page in ("methods.md", "recipes.md",
                                                                                  "attacks.md")}
    assert not [m for m in METHODS if f"| `{m}` |" not in docs["methods.md"]]
    assert not [r for r in RECIPES if f"## `{r}`" not in docs["recipes.md"]]
    assert not [a for a in ATTACKS if f"`{a}`" not in docs["attacks.md"]]
