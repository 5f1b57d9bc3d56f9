"""Typed, validated frozen dataclasses from YAML mappings: the machinery under gantrack.config.

A field's metadata holds the limits its value must respect (knob) or the knob a search sets
(searched). Every error is a UserError of one line: the dotted key, what is wrong, what is
allowed.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import functools
import importlib.util
import math
import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gantrack.runtime.errors import UserError

MAX_INT = 2**31 - 1  # a knob's integers, unless its own `le` says otherwise (seeds: 2**32 - 1)
MAX_FLOAT32 = 3.4028234663852886e38


def knob(default: Any, *, ge=None, gt=None, le=None, lt=None, choices=None, **meta) -> Any:
    """A dataclass field with the range or choices its value must respect.

    choices: a tuple, or a function returning one (a registry's names, read when a value is
    checked, so that loading params does not import TensorFlow for every section).
    words: strings a numeric knob takes besides numbers (e.g. ("auto",)); limits apply to numbers.
    """
    limits = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, **meta}
    return field(default=default, metadata={k: v for k, v in limits.items() if v is not None})


def registry(module: str, name: str, also: tuple[str, ...] = ()) -> Callable[[], tuple]:
    """choices for a knob that names an entry of the registry dict `name` in `module` (plus
    `also`): the names are the dict's keys, read from the module's source without importing it
    (the registries import TensorFlow or Optuna, seconds that loading params need not pay).
    `.source` says where they live; a test checks the keys equal the imported dict's."""

    def names() -> tuple[str, ...]:
        return (*_literal_keys(module, name), *also)

    names.source = (module, name, also)
    return names


@functools.cache
def _literal_keys(module: str, name: str) -> tuple[str, ...]:
    """The string keys of the dict literal assigned to `name` at the top of `module`."""
    spec = importlib.util.find_spec(module)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:  # NAME = {...} or NAME: type = {...}
        if not isinstance(node, ast.Assign | ast.AnnAssign) or not isinstance(node.value, ast.Dict):
            continue
        target = node.targets[0] if isinstance(node, ast.Assign) else node.target
        if isinstance(target, ast.Name) and target.id == name:
            return tuple(ast.literal_eval(key) for key in node.value.keys)
    raise LookupError(f"{module}.{name}: no dict literal with string keys")


@dataclass(frozen=True)
class FloatRange:  # search bounds, low < high (both required)
    low: float
    high: float


@dataclass(frozen=True)
class IntRange:  # search bounds, low < high, both included (both required)
    low: int
    high: int


def searched(target: str, default: Any = None, *, log: bool = False) -> Any:
    """A tune.space field: the params.yaml knob a trial sets (and `gantrack tune --apply`
    writes), searched log-uniformly when `log` (bounds must then be > 0)."""
    return field(default_factory=lambda: default, metadata={"target": target, "log": log})


def build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "params"
    if not isinstance(raw, dict):
        raise UserError(f"{where}: must be a mapping of keys to values, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields), key=str)  # YAML keys may be numbers or null
    if unknown:
        allowed = ", ".join(fields)
        raise UserError(f"{prefix}{unknown[0]}: unknown key; allowed in {where}: {allowed}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        hint, key = hints[name], f"{prefix}{name}"
        nested = _dataclass_in(hint)
        if nested and not (value is None and nested is not hint):  # `X | None` may be null
            values[name] = build(nested, value, prefix=f"{key}.")
        elif nested:
            values[name] = None
        else:
            values[name] = check_value(key, _coerce(key, value, hint), fields[name].metadata)
    required = [
        n
        for n, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [n for n in required if n not in values]
    if missing:
        raise UserError(f"{prefix}{missing[0]}: missing; {where} needs: {', '.join(required)}")
    return cls(**values)


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass a type hint names (`X` or `X | None`), else None."""
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return next((k for k in kinds if dataclasses.is_dataclass(k)), None)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check `value` against a type hint (int, float, str, bool, tuple[X, ...], or X | None).
    A YAML list becomes a tuple, so configs stay hashable and frozen."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise UserError(f"{key}: must not be null")
    for kind in allowed:
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise UserError(f"{key}: must be a finite number, got {value!r}")
            return float(value)
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind in (str, bool) and isinstance(value, kind):
            return value
        if typing.get_origin(kind) is tuple and isinstance(value, list):
            item = typing.get_args(kind)[0]
            return tuple(_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    names = " or ".join(
        "null" if k is type(None) else "list" if typing.get_origin(k) else k.__name__
        for k in allowed
    )
    raise UserError(f"{key}: must be {names}, got {value!r}")


def check_value(key: str, value: Any, limits: typing.Mapping[str, Any]) -> Any:
    if value is None:
        return value
    if isinstance(value, str) and "\0" in value:  # no path, name or URL holds one
        raise UserError(f"{key}: must not hold a NUL byte (\\0)")
    if limits.get("nonempty") and not str(value).strip():
        raise UserError(f"{key}: must not be empty")
    pattern = limits.get("pattern")  # (regex, what it allows): names other tools parse
    if pattern and not (isinstance(value, str) and re.fullmatch(pattern[0], value)):
        raise UserError(
            f"{key}: {str(repr(value))[:80]} is not a valid name; allowed: {pattern[1]}"
        )
    words = limits.get("words", ())  # words a numeric knob also takes (e.g. auto)
    if words and isinstance(value, str):
        if value in words:
            return value
        allowed = " or ".join(words)
        raise UserError(f"{key}: unknown value {value!r}; allowed: a number or {allowed}")
    choices = limits.get("choices")
    choices = choices() if callable(choices) else choices
    for item in value if isinstance(value, tuple) else (value,):  # a list: each item, once
        if choices is not None and item not in choices:
            raise UserError(
                f"{key}: unknown value {item!r}; allowed: {', '.join(map(str, choices))}"
            )
    if choices is not None and isinstance(value, tuple) and len(set(value)) < len(value):
        raise UserError(f"{key}: a value listed twice in {list(value)}")
    checks = {
        "ge": (lambda v, b: v >= b, ">="),
        "gt": (lambda v, b: v > b, ">"),
        "le": (lambda v, b: v <= b, "<="),
        "lt": (lambda v, b: v < b, "<"),
    }
    for name, (ok, symbol) in checks.items():
        if name in limits and not ok(value, limits[name]):
            raise UserError(f"{key}: {value!r} is out of range; must be {symbol} {limits[name]}")
    # Beyond what NumPy and TensorFlow hold: int64 or int32 counts, float32 weights and rates
    # (1e308 as a learning rate is inf in float32; 2**63 epochs an OverflowError)
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if is_int and "le" not in limits and abs(value) > MAX_INT:
        raise UserError(f"{key}: {value!r} is out of range; must be <= {MAX_INT}")
    if isinstance(value, float) and abs(value) > MAX_FLOAT32:
        raise UserError(f"{key}: {value!r} is out of range; must be within float32's "
                        f"+-{MAX_FLOAT32:.7g}")  # fmt: skip
    return value


def check_space(key: str, space: Any, root: type, targets: dict, log_scale: tuple) -> None:
    """A search space (a dataclass of ranges or choices, None: not searched) searching
    something, each bound a value its target knob (targets: name -> dotted key in root)
    accepts."""
    searched = {n: getattr(space, n) for n in targets if getattr(space, n) is not None}
    if not searched:
        raise UserError(f"{key}: nothing to search; give one of: {', '.join(targets)}")
    for name, value in searched.items():
        check_bounds(f"{key}.{name}", value, limits(root, targets[name]), name in log_scale)


def check_bounds(key: str, value: Any, limits: typing.Mapping[str, Any], log: bool) -> None:
    """A search space's choices (a tuple) or range (low < high): every bound a value the knob
    itself accepts (its `limits`), and > 0 on a log scale."""
    if isinstance(value, tuple):
        if not value:
            raise UserError(f"{key}: no choices; give a list of values or null")
        bounds = {f"{key}[{i}]": v for i, v in enumerate(value)}
    else:
        bounds = {f"{key}.low": value.low, f"{key}.high": value.high}
        if value.low >= value.high:
            raise UserError(f"{key}: low {value.low!r} must be < high {value.high!r}")
    for bound_key, bound in bounds.items():
        if log and bound <= 0:
            raise UserError(f"{bound_key}: {bound!r} is out of range; log scale needs > 0")
        check_value(bound_key, bound, limits)


def set_dotted(raw: dict, key: str, value: Any) -> Any:
    """Set a dotted key ('train.lr_g') in a nested params dict, creating sections as needed;
    returns the value it replaced (None if it had none)."""
    *sections, name = key.split(".")
    node = raw
    for section in sections:
        node = node.setdefault(section, {})
    previous = node.get(name)
    node[name] = value
    return previous


def override(raw: dict, overrides: Iterable[str]) -> dict:
    """A copy of a params dict with dotted KEY=VALUE overrides, values parsed as YAML (as
    `dvc exp run -S` sets them)."""
    from ruamel.yaml import YAML

    raw, yaml = copy.deepcopy(raw), YAML(typ="safe", pure=True)
    for item in overrides:
        key, _, value = item.partition("=")
        set_dotted(raw, key, yaml.load(value))
    return raw


def to_flat_dict(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a config into {'train.lr_g': 0.0002, ...} for logging as run params."""
    flat: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            flat.update(to_flat_dict(value, prefix=f"{key}."))
        else:
            flat[key] = value
    return flat


def limits(root: type, dotted: str) -> typing.Mapping[str, Any]:
    """The knob() limits of a dotted key of the dataclass root, e.g. 'model.generator.layers'."""
    cls, *path, name = [root, *dotted.split(".")]
    for part in path:
        cls = typing.get_type_hints(cls)[part]
    return next(f.metadata for f in dataclasses.fields(cls) if f.name == name)


def changed(before: Any, after: Any, keys: tuple[str, ...]) -> list[str]:
    """The knobs of two configs under the dotted keys ('train', 'generate.seed') whose values
    differ, as dotted names."""
    old, new = to_flat_dict(before), to_flat_dict(after)
    under = tuple(f"{key}." for key in keys)
    return [k for k in old if (k in keys or k.startswith(under)) and old[k] != new.get(k)]
