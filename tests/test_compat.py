"""The private transformers, accelerate and torch names lume uses (all in lume/compat.py) are still
there in the installed versions; when an upgrade moves one, these fail saying which."""

from importlib.metadata import version

import torch

from lume.compat import missing_private_names, original_forward


def test_every_private_name_exists():
    missing = missing_private_names()
    assert not missing, "\n".join(missing)


def test_accelerate_keeps_the_original_forward_of_a_mixed_precision_model(tokenizer, fresh_accelerate_state):  # noqa: F811
    from accelerate import Accelerator

    from tests.conftest import make_tiny_model

    model = make_tiny_model(tokenizer)
    own_forward = model.forward
    prepared = Accelerator(mixed_precision="bf16", cpu=True).prepare(model)
    assert original_forward(prepared) == own_forward, (
        f"accelerate {version('accelerate')} no longer keeps a mixed-precision model's own forward in "
        "`_original_forward`; lume.compat.original_forward (scoring without autocast mid-training) needs another way")
    assert original_forward(torch.nn.Linear(2, 2)) is None


def test_the_installed_versions_are_within_the_tested_bounds_and_ci_tests_the_lowest():
    import re
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    root = Path(__file__).parents[1]
    bounds = {Requirement(r).name: Requirement(r).specifier
              for r in tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]}
    lowest = dict(pin.split("==") for pin in re.search(r"^LOWEST := (.*)$", (root / "Makefile").read_text(),
                                                         re.MULTILINE)[1].split())
    for package in ("transformers", "accelerate", "typer"):
        assert version(package) in bounds[package], f"{package} {version(package)} is outside {bounds[package]}"
        floor = next(s.version for s in bounds[package] if s.operator == ">=")
        expected = f"{floor}.0" if floor.count(".") == 1 else floor  # ">=1.10" is first released as 1.10.0
        assert lowest[package] == expected, f"Makefile LOWEST has {package}=={lowest[package]}, pyproject >={floor}"
