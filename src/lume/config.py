"""Settings checked where they are made: values coerced to their dataclass field's type, ranges
checked, and every problem one clear error naming the setting (and, from a file, the file).

Each settings field is declared once, with `setting`: its type (the annotation), default, range
and help. The CLI's options and their `--help` are generated from it (`lume.cli`), and
`check_settings` checks the ranges.

A YAML file, the CLI and `--set NAME=VALUE` all pass through here, so `learning_rate: 1e-5`
(a string to YAML 1.1) is read as the number it means, and `steps: ten` is refused at once
rather than after the target model has been built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import reprlib
import types
import typing
from collections.abc import Iterable
from pathlib import Path

import yaml

from lume.errors import InputError, LumeError

# Upper bounds of sizes that would only exhaust memory (a batch of millions fails after minutes)
MAX_BATCH = 4096
MAX_NEW_TOKENS_LIMIT = 32768
MAX_SEED = 2**32 - 1  # numpy's seeds (accelerate seeds it too) stop there

_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict, _SHOWN.maxstring, _SHOWN.maxother = 2, 4, 4, 60, 60


def settings_key(value, length: int = 16) -> str:
    """A short hash of settings (JSON, keys sorted): keys checkpoints, caches, cached targets and
    sweep trials, so the same settings always find the same files."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]


def shown(value) -> str:
    """A value as an error message quotes it: cut short, so that a huge value (a YAML alias bomb
    under a text field) never floods the line or the memory."""
    return _SHOWN.repr(value)


def shown_name(key) -> str:
    """A field name as an error message names it (cut short when absurdly long)."""
    text = str(key) if isinstance(key, (str, int, float, bool)) or key is None else shown(key)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_name(expected) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text", dict: "a mapping",
            list: "a list"}.get(expected, getattr(expected, "__name__", str(expected)))


_BOOL = "tag:yaml.org,2002:bool"


class YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # the C parser where built: fast
    """Safe YAML whose booleans are YAML 1.2's, true and false only: YAML 1.1 also reads yes, no,
    on and off as booleans, which would make `mixed_precision: no` the boolean False."""

    yaml_implicit_resolvers = {first: [(tag, pattern) for tag, pattern in resolvers if tag != _BOOL]
                               for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


YamlLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def yaml_value(text: str):
    """TEXT (a file's or a `NAME=VALUE` option's) read as YAML by YamlLoader; raises yaml.YAMLError."""
    return yaml.load(text, Loader=YamlLoader)


def _coerce(expected, value, name: str):
    """`value` as `expected` (int, float, bool, str, dict, list[...], X | None, or a nested
    settings dataclass given as a mapping, whose fields are checked the same way); else LumeError."""
    if dataclasses.is_dataclass(expected):
        if dataclasses.is_dataclass(value):
            return dataclasses.asdict(value)
        if not isinstance(value, dict):
            raise LumeError(f"{name}: expected a mapping of {expected.__name__} fields, got {shown(value)}")
        types_of = typing.get_type_hints(expected)
        unknown = [key for key in value if key not in types_of]
        if unknown:
            raise LumeError(f"{name}.{shown_name(unknown[0])}: unknown field ({choices_of(types_of)})")
        return {key: _coerce(types_of[key], item, f"{name}.{key}") for key, item in value.items()}
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _coerce(next(a for a in args if a is not type(None)), value, name)
    if origin is list:
        if not isinstance(value, list):
            raise LumeError(f"{name}: expected a list, got {shown(value)}")
        return [_coerce(args[0], item, f"{name}[{i}]") for i, item in enumerate(value)] if args else value
    target = origin or expected
    if target is float:
        return _number(value, name)
    if target in (bool, int, str, dict, list) and (
            not isinstance(value, target) or (target is int and isinstance(value, bool))):
        raise LumeError(f"{name}: expected {_type_name(target)}, got {shown(value)}")
    return value


def _number(value, name: str) -> float:
    """A finite float from a number or its text (`1e-5` is text to YAML 1.1); inf and nan are refused."""
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise LumeError(f"{name}: expected a number, got {shown(value)}")
    if not math.isfinite(number):
        raise LumeError(f"{name}: expected a finite number, got {shown(value)}")
    return float(number)


# A name that becomes a folder and a label: one path component (no separator, no `..`, no leading
# dot), and none of the quotes, brackets and angle brackets that Markdown or HTML would read
_SAFE_NAME = re.compile(r"\w[\w .+=,@()-]{0,99}")


def safe_name(value: str) -> str:
    """`value` as a folder's and a report label's name; else LumeError saying what is allowed."""
    if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value) or value[-1] in " .":
        raise LumeError(f"{shown(value)} cannot name a folder: use 1-100 letters, digits and . _ + = , @ ( ) - "
                        "or spaces, starting with a letter or digit, not ending in a space or a dot")
    return value


def choices_of(names) -> str:
    """`expected one of a, b, c`, or that there is nothing to set."""
    return f"expected one of {', '.join(sorted(names))}" if names else "there are no settings here to set"


def merged(settings, overrides: dict):
    """A copy of dataclass `settings` with `overrides` (checked values); a nested settings
    dataclass, or a mapping (a recipe's method settings), takes a mapping of its own fields over
    its current ones, so overriding one of a recipe's method settings keeps the others."""
    changes = {}
    for key, value in overrides.items():
        current = getattr(settings, key, None)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            value = merged(current, value)
        elif isinstance(current, dict) and isinstance(value, dict):
            value = {**current, **value}
        changes[key] = value
    return dataclasses.replace(settings, **changes)


def coerce_fields(cls, values, *, where: str = "", source: str | Path = "<settings>") -> dict:
    """`values` checked against dataclass `cls`: known field names, each value of its field's type."""
    if not isinstance(values, dict):
        raise InputError(source, f"expected a mapping, got {values!r}", field=where or None)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    coerced = {}
    for key, value in values.items():
        field_name = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise InputError(source, f"unknown field ({choices_of(names)})", field=shown_name(field_name))
        try:
            coerced[key] = _coerce(hints[key], value, field_name)
        except LumeError as error:
            located, _, message = str(error).partition(": ")  # the innermost field's name, then the problem
            raise InputError(source, message, field=located) from None
    return coerced


def build(cls, values, *, where: str = "", source: str | Path = "<settings>"):
    """An instance of `cls` from checked values; its own range checks are located the same way."""
    coerced = coerce_fields(cls, values, where=where, source=source)
    try:
        return merged(cls(), coerced)
    except LumeError as error:
        raise InputError(source, str(error), field=where or None) from None


def setting(default=dataclasses.MISSING, help: str = "", *, factory=None, at_least: float | None = None,
            at_most: float | None = None, above: float | None = None, between: tuple[float, float] | None = None,
            choices=None, check=None, option: str | None = None, decides: bool = True):
    """A settings field: its default (or `factory`), its help text, and its range: `at_least`,
    `at_most`, `above` (strictly), `between` (both ends included), `choices` (a tuple, or a
    callable giving them), or `check` (a callable that raises LumeError for a value not None it
    refuses, where the choices are only known when asked). `option`: the CLI's name for it, where
    it differs from `--field-name`. `decides`: whether it changes what the stage computes (False
    for progress bars, logging, checkpoint intervals): only deciding fields key results."""
    metadata = {"help": help, "at_least": at_least, "at_most": at_most, "above": above, "between": between,
                "choices": choices, "check": check, "option": option, "decides": decides}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def restated(cls, name: str, default=dataclasses.MISSING, *, factory=None, help: str | None = None):
    """Field NAME of settings class CLS again, for a subclass: another default (or `factory`), its
    range and flags kept, its help kept unless given."""
    base = next(f for f in dataclasses.fields(cls) if f.name == name)
    metadata = {**base.metadata, "help": base.metadata["help"] if help is None else help}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def with_dotted(mapping: dict, values) -> dict:
    """A copy of the nested mapping with each (dotted name, value) of VALUES set, in order (e.g.
    ("training.learning_rate", 1e-4): a later one over an earlier)."""
    for dotted, value in values:
        mapping = _with_one(mapping, dotted.split("."), value)
    return mapping


def _with_one(mapping: dict, names: list[str], value) -> dict:
    head, *rest = names
    if not rest:
        return {**mapping, head: value}
    inner = mapping.get(head)
    return {**mapping, head: _with_one(inner if isinstance(inner, dict) else {}, rest, value)}


# Raised when a setting's default changes what a run computes: keys leave defaults out (below), so
# only this tells an old result from a new one. tests/test_identity.py pins every default.
IDENTITY_VERSION = 1


def default_of(field: dataclasses.Field):
    """A settings field's default value (a fresh one where it has a factory)."""
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def identity(settings) -> dict:
    """What in `settings` (a settings dataclass) decides a stage's result: each deciding field
    whose value is not its default, nested settings the same way. A cosmetic field never counts,
    and a new option at its default leaves the keys of the runs that do not use it unchanged."""
    found = {}
    for field in dataclasses.fields(settings):
        if not field.metadata.get("decides", True):
            continue
        value = getattr(settings, field.name)
        if dataclasses.is_dataclass(value):
            nested = identity(value)
            if nested:
                found[field.name] = nested
        elif value != default_of(field):
            found[field.name] = value
    return found


def made_with(recorded: dict, settings, source: str | Path) -> bool:
    """Whether settings an output recorded (a mapping, in SOURCE) have the identity of `settings`;
    ones written by a lume whose settings differ, which no longer build, count as different."""
    try:
        built = build(type(settings), recorded, source=source)
    except LumeError:
        return False
    return identity(built) == identity(settings)


def decided_by(settings, **context) -> dict:
    """A result's key: the identity of the `settings` that made it and its `context` (the inputs'
    fingerprints, the precision the settings resolved to ...)."""
    return {"version": IDENTITY_VERSION, "settings": identity(settings), **context}


def identity_key(settings, length: int = 16, **context) -> str:
    """A short hash of `decided_by(settings, **context)`: names checkpoints and cached results."""
    return settings_key(decided_by(settings, **context), length)


def help_of(cls, name: str) -> str:
    """A settings field's help text."""
    return next(f for f in dataclasses.fields(cls) if f.name == name).metadata.get("help", "")


def check_settings(config) -> None:
    """Each field of a settings dataclass within its declared range (see `setting`), in field order."""
    for item in dataclasses.fields(config):
        meta = item.metadata
        if meta.get("at_least") is not None:
            at_least(config, meta["at_least"], item.name)
        if meta.get("above") is not None:
            above(config, meta["above"], item.name)
        if meta.get("at_most") is not None:
            at_most(config, meta["at_most"], item.name)
        if meta.get("between") is not None:
            between(config, *meta["between"], item.name)
        if meta.get("choices") is not None:
            choices = meta["choices"]
            one_of(config, item.name, choices() if callable(choices) else choices)
        if meta.get("check") is not None and getattr(config, item.name) is not None:
            meta["check"](getattr(config, item.name))


def at_least(config, minimum: float, *names: str) -> None:
    """Each named setting is None or at least `minimum`."""
    for name in names:
        value = getattr(config, name)
        if value is not None and not value >= minimum:
            raise LumeError(f"{name} must be at least {minimum}, got {shown(value)}")


def at_most(config, maximum: float, *names: str) -> None:
    """Each named setting is None or at most `maximum` (sizes that would exhaust memory first)."""
    for name in names:
        value = getattr(config, name)
        if value is not None and not value <= maximum:
            raise LumeError(f"{name} must be at most {maximum}, got {shown(value)}")


def seed_range(config, *names: str) -> None:
    """Seeds are whole numbers from 0 to 2³² − 1 (what every seeded library accepts)."""
    at_least(config, 0, *names)
    at_most(config, MAX_SEED, *names)


def above(config, minimum: float, *names: str) -> None:
    """Each named setting is None or strictly above `minimum`."""
    for name in names:
        value = getattr(config, name)
        if value is not None and not value > minimum:
            raise LumeError(f"{name} must be above {minimum}, got {shown(value)}")


def above_zero(config, *names: str) -> None:
    above(config, 0, *names)


def between(config, low: float, high: float, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and not low <= value <= high:
            raise LumeError(f"{name} must be between {low} and {high}, got {shown(value)}")


def one_of(config, name: str, choices: Iterable) -> None:
    value, choices = getattr(config, name), tuple(choices)
    if value not in choices:
        raise LumeError(f"{name} must be one of {', '.join(map(str, choices))}, got {shown(value)}")
