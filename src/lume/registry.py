"""Registries of named plug-ins: unlearning methods, evaluation sections, generation backends, attacks.

One type for all four. A registry refuses a second class under a name already taken (naming
both places) and a class that is not of its kind; it finds plug-ins from outside lume two
ways: installed packages' entry points (group `lume.methods`, `lume.sections`,
`lume.backends`, `lume.attacks`; loaded on first lookup), and a reference `package.module:Class`
given wherever a name is (CLI, YAML, sweep). `docs/plugins.md` walks through writing one.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping

from lume.errors import LumeError

log = logging.getLogger(__name__)


def place(cls: type) -> str:
    """Where a class is defined: `module.Class (file:line)`."""
    where = f"{cls.__module__}.{cls.__qualname__}"
    try:
        return f"{where} ({inspect.getsourcefile(cls)}:{inspect.getsourcelines(cls)[1]})"
    except (OSError, TypeError):
        return where


def plugin_names(group: str) -> list[str]:
    """The names installed packages offer in an entry-point group, without loading them (for `--help`)."""
    return sorted(entry.name for entry in importlib.metadata.entry_points(group=group))


class Registry(Mapping):
    """Classes of one kind by name (a mapping: `name in registry`, `registry[name]`, iteration
    over names); `registry[name]` also resolves `package.module:Class` references."""

    def __init__(self, kind: str, base: type, group: str, order: Callable[[type], object] | None = None):
        self.kind, self.base, self.group, self.order = kind, base, group, order
        self._classes: dict[str, type] = {}
        self._plugins_loaded = False

    def register(self, cls: type | None = None, *, name: str | None = None):
        """Add CLS under NAME (default: its `name`); usable as `@registry.register` or
        `@registry.register(name="...")`."""
        def add(cls: type) -> type:
            self._check_kind(cls)
            key = name or cls.name
            taken = self._classes.get(key)
            if taken is not None and taken is not cls:
                raise LumeError(f"two {self.kind}s named {key!r}: {place(taken)} and {place(cls)}; rename one")
            self._classes[key] = cls
            return cls

        return add if cls is None else add(cls)

    def listed(self) -> list[str]:
        """Every name for `--help` and the docs: those registered, then installed plug-ins'
        (named without loading them, so a broken one cannot break the help)."""
        return [*self._classes, *(name for name in plugin_names(self.group) if name not in self._classes)]

    def _check_kind(self, cls) -> None:
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            what = place(cls) if isinstance(cls, type) else repr(cls)
            raise LumeError(f"{what} is not a {self.kind}: it must be a subclass of "
                            f"{self.base.__module__}.{self.base.__qualname__}")

    def _load_plugins(self) -> None:
        """Register the entry points of installed packages (once)."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for entry in importlib.metadata.entry_points(group=self.group):
            try:
                loaded = entry.load()
            except Exception as error:  # a broken plug-in is named, not a traceback
                package = entry.dist.name if entry.dist else "an installed package"
                raise LumeError(f"the {self.kind} plug-in {entry.name!r} = {entry.value} of {package} does not load: "
                                f"{type(error).__name__}: {error}") from None
            self.register(loaded, name=entry.name)
            log.debug(f"{self.kind} {entry.name!r}: the plug-in {entry.value}")

    def _referenced(self, reference: str) -> type:
        """The class a `package.module:Class` reference names, checked to be of this kind."""
        module_name, _, attribute = reference.partition(":")
        if not module_name or module_name.startswith(".") or not attribute:
            raise LumeError(f"{self.kind} {reference!r}: expected package.module:Class (an importable module, "
                            "not a relative one, and a class name)")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise LumeError(f"{self.kind} {reference!r}: cannot import {module_name} ({error})") from None
        if not hasattr(module, attribute):
            raise LumeError(f"{self.kind} {reference!r}: {module_name} has no {attribute!r}")
        cls = getattr(module, attribute)
        # registered under its own name (a backend, which has none, under the reference), so
        # that it is listed, its name cannot be taken twice, and its output files are known
        return self.register(cls, name=getattr(cls, "name", reference))

    def __getitem__(self, name: str) -> type:
        if ":" in name:
            return self._referenced(name)
        self._load_plugins()
        if name not in self._classes:
            raise LumeError(f"unknown {self.kind} {name!r} (choose from {', '.join(self)}, "
                            "or give package.module:Class)")
        return self._classes[name]

    def __contains__(self, name) -> bool:
        self._load_plugins()
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        self._load_plugins()
        names = list(self._classes)
        return iter(sorted(names, key=lambda n: self.order(self._classes[n])) if self.order else sorted(names))

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._classes)

    def pop(self, name: str) -> type:
        """Remove a class (tests that register one for a while)."""
        return self._classes.pop(name)
