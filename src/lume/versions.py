"""The versions that decide a run's numbers, recorded beside them so a rerun can match them."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("lume-unlearning", "torch", "transformers", "rouge-score", "scikit-learn", "accelerate", "peft", "vllm")


def installed_versions() -> dict[str, str]:
    """Python's and each installed package of PACKAGES' version (one not installed is left out)."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found
