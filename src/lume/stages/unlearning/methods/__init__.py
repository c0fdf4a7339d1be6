"""Unlearning methods, one file each, registered by name (see base.py). Every module in this
folder is imported, so a new method file is all it takes to add one."""

import importlib
import pkgutil

from lume.stages.unlearning.methods.base import METHODS, Context, Method, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "Context", "Method", "register"]
