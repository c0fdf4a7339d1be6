"""The layer picture of docs/architecture.md holds: every lume import points upwards or
sideways, and none hides inside a function (outside the CLI, which defers its imports so that
`lume --help` starts fast)."""

import ast
import re
from pathlib import Path

import lume

RANK = {"errors": 0, "config": 0, "files": 0, "versions": 0, "outputs": 0, "registry": 0, "compat": 0, "progress": 0,
        "results": 0,
        "data": 1,
        "models": 2, "inference": 3, "training": 4, "metrics": 5, "stages": 6, "reports": 7, "study": 8,
        "cli": 9, "__main__": 9, "__init__": 0}
ROOT = Path(lume.__file__).parent


def _layer(module_path: Path) -> str:
    return module_path.relative_to(ROOT).parts[0].removesuffix(".py")


def _lume_imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lume."):
            yield node, node.module.split(".")[1]
        elif isinstance(node, ast.ImportFrom) and node.module == "lume":
            for alias in node.names:
                yield node, alias.name


def test_every_module_has_a_layer():
    assert {_layer(path) for path in ROOT.rglob("*.py")} <= set(RANK)


def test_no_upward_imports():
    upward = []
    for path in ROOT.rglob("*.py"):
        for node, imported in _lume_imports(ast.parse(path.read_text())):
            if RANK[imported] > RANK[_layer(path)]:
                upward.append(f"{path.relative_to(ROOT)}:{node.lineno} imports lume.{imported}")
    assert not upward, upward


def test_no_lume_import_hides_in_a_function_outside_the_cli():
    hidden = []
    for path in ROOT.rglob("*.py"):
        if _layer(path) == "cli":
            continue
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                hidden += [f"{path.relative_to(ROOT)}:{node.lineno}" for node, _ in _lume_imports(function)]
    assert not hidden, hidden


def test_no_function_is_over_50_lines():
    long = [f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in ROOT.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 50]
    assert not long, long


def test_private_library_names_are_used_in_lume_compat_only():
    """`_prepare_special_tokens`, `DynamicLayer`, `_original_forward` ...: one door, lume/compat.py."""
    private = re.compile(r"\.(_prepare_special_tokens|_get_logits_processor|_original_forward)\b"
                         r"|from (transformers|accelerate)[\w.]* import (.*\bDynamicLayer\b|_)")
    found = [f"{path.relative_to(ROOT)}:{number}" for path in ROOT.rglob("*.py") if path.name != "compat.py"
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if private.search(line) and "from lume.compat import" not in line]
    assert not found, found


def test_every_package_folder_has_an_init_so_a_regular_install_ships_it():
    folders = {path.parent for path in ROOT.rglob("*.py") if "__pycache__" not in path.parts}
    assert not [str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").is_file()]


def test_every_training_stage_runs_through_the_one_stage_skeleton():
    """Building a target, unlearning and relearning are `Stage`s: no stage module runs the loop,
    makes an accelerator or claims a training output itself."""
    import lume.stages.attacks
    import lume.stages.target
    import lume.stages.unlearning.unlearner  # noqa: F401
    from lume.training.stage import Stage

    bypassing = []
    for path in (ROOT / "stages").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lume.training"):
                bypassing += [f"{path.relative_to(ROOT)} imports {a.name}" for a in node.names
                              if a.name in ("train", "make_accelerator", "gathered_weights", "check_whole_weights")]
    assert not bypassing, bypassing
    stages = {cls.__name__ for cls in Stage.__subclasses__()}
    assert {"_TargetStage", "_UnlearnStage", "_RelearnStage"} <= stages, stages


def test_a_study_takes_its_step_keys_from_the_stages_and_imports_no_training_internals():
    """What decides a step (precision included) is the stage's to say (`step_key`, `target_key`):
    the study package (studies and sweeps) imports nothing from lume.training."""
    reaching = []
    for path in (ROOT / "study").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lume.training"):
                reaching.append(f"{path.name} imports {node.module}")
    assert not reaching, reaching
