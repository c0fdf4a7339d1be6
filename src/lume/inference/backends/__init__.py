"""Generation backends, one file each, registered by name (see base.py). Every module in this
folder is imported, so a new backend file is all it takes to add one."""

import importlib
import pkgutil

from lume.inference.backends.base import BACKENDS, Backend, BackendOptions, open_backend, register_backend

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["BACKENDS", "Backend", "BackendOptions", "open_backend", "register_backend"]
