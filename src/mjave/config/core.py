"""The one config engine: dataclasses that round-trip to JSON/YAML, type-checked dotted overrides.

Every concern has its own dataclass (data, encoders, model, training); `RunConfig` composes them.
These helpers are generic so each config stays a plain dataclass with defaults and a docstring.

Files are sparse: a key left out keeps its default. Two rules make a config file portable:
- a field declared with `path_field()` (an input file or folder) that holds a relative path is
  read relative to the file it is written in. In memory such a path is relative to the working
  directory, as a value given with `--set` is on any command line: `load` rebases it from the
  file's folder to the working directory and `save` rebases it back, so a saved config loads to
  the same paths wherever it is written;
- a field whose type is a config dataclass may hold the path of a file of that dataclass instead
  of a mapping (`base: ../runs/oamine.yaml`), so a recipe is written once and pointed at;
- a file may start from another file of the same dataclass (`include: OTHER.yaml`, relative to
  the file): the other file's values are read first and this file's override them key by key
  (nested sections merged), so a recipe with data is its data-free recipe plus the data.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the dataclass (names the key)."""



SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
"""A number in exponent notation without a dot (`5e-5`, `1E3`): a float to YAML 1.2 and to
every user, a string to PyYAML's YAML 1.1; float fields take it."""

def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def path_field(default: str | None = None) -> Any:
    """A dataclass field naming an input path: relative values in a file are relative to it."""
    return dataclasses.field(default=default, metadata={"path": True})


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against annotation `tp`, converting where it is lossless (int->float, list->tuple)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: {value!r} fits none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, str) and SCIENTIFIC.match(value.strip()):
            value = float(value)   # `5e-5`: YAML 1.1 (PyYAML) reads it as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build `cls` from a mapping; unknown keys and wrong types raise ConfigError naming the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as e:  # a dataclass's own range checks (__post_init__)
        raise ConfigError(str(e)) from None


def check_range(section: str, cfg: Any, rules: Mapping[str, tuple[float | None, float | None,
                                                                  bool]]) -> None:
    """Raise ConfigError naming the first field of `cfg` outside its range: `rules` maps a field
    to (low, high, high_inclusive), low always inclusive, None for no bound."""
    for name, (low, high, high_inclusive) in rules.items():
        value = getattr(cfg, name)
        too_low = low is not None and value < low
        too_high = high is not None and (value > high if high_inclusive else value >= high)
        if too_low or too_high:
            upper = "" if high is None else f" and {'at most' if high_inclusive else 'below'} {high}"
            lower = "" if low is None else f"at least {low}"
            raise ConfigError(f"{section}.{name} must be {lower}{upper}, not {value!r}")


def _parse_scalar(text: str) -> Any:
    """Parse the right-hand side of `key=value` as YAML so numbers, booleans and lists work."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def set_values(cfg: T, values: Mapping[str, Any]) -> T:
    """A copy of `cfg` with dotted keys set to already-typed values (`{"model.use_image": False}`),
    type-checked as a file would be; an unknown key raises ConfigError naming it."""
    data = to_dict(cfg)
    for key, value in values.items():
        parts = key.strip().split(".")
        node: Any = data
        for p in parts[:-1]:
            if not isinstance(node, dict) or p not in node:
                raise ConfigError(f"unknown key {key}")
            node = node[p]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ConfigError(f"unknown key {key}")
        node[parts[-1]] = value
    return from_dict(type(cfg), data)


def parse_overrides(cfg: Any, overrides: list[str]) -> dict[str, Any]:
    """`["a.b=value", ...]` as a mapping of typed values (the right-hand side read as YAML, kept a
    string where the current value is a string, so `name=123` stays "123")."""
    values: dict[str, Any] = {}
    current = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        node: Any = current
        for p in key.split("."):
            node = node.get(p) if isinstance(node, dict) else None
        value = _parse_scalar(raw)
        if value is not None and not isinstance(value, str) and isinstance(node, str):
            value = raw
        values[key] = value
    return values


def apply_overrides(cfg: T, overrides: list[str]) -> T:
    """Return a copy of `cfg` with `a.b=value` overrides applied (type-checked)."""
    return set_values(cfg, parse_overrides(cfg, overrides))


def _read_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}") from None


def _dataclass_of(tp: Any) -> type | None:
    """The config dataclass an annotation names (`RunConfig`, `RunConfig | None`), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        return found[0] if len(found) == 1 else None
    return None


def _map_paths(cls: type, data: Any, fn: Any, include: Any = None) -> Any:
    """`data` (a dict of `cls`, nested dataclasses and lists of them included) with `fn` applied to
    every relative path held by a `path_field`; with `include`, a string where a dataclass goes is
    replaced by `include(dataclass, string)` (an included file)."""
    if not isinstance(data, dict):
        return data
    hints = _hints(cls)
    out = dict(data)
    for f in dataclasses.fields(cls):
        if f.name not in out:
            continue
        value = out[f.name]
        tp = hints[f.name]
        sub = _dataclass_of(tp)
        if f.metadata.get("path") and isinstance(value, str) and value and not os.path.isabs(value):
            out[f.name] = fn(value)
        elif sub is not None and isinstance(value, str) and include is not None:
            out[f.name] = include(sub, value)
        elif sub is not None and isinstance(value, dict):
            out[f.name] = _map_paths(sub, value, fn, include)
        elif isinstance(value, list) and typing.get_origin(tp) in (list, tuple):
            item = _dataclass_of((typing.get_args(tp) or (None,))[0])
            if item is not None:
                out[f.name] = [_map_paths(item, v, fn, include) for v in value]
    return out


def _resolve(cls: type, data: Any, folder: Path, seen: tuple[Path, ...]) -> Any:
    """`data` of a file in `folder` with its path fields made relative to the working directory
    and its included files (a path where a dataclass goes) read in."""
    return _map_paths(cls, data, lambda v: os.path.relpath(os.path.join(folder, v)),
                      lambda sub, v: _load_data(sub, folder / v, seen))


def _load_data(cls: type, path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    key = path.resolve()
    if key in seen:
        raise ConfigError(f"{path}: includes itself ({' -> '.join(str(p) for p in seen + (path,))})")
    data = _read_file(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top, got {type(data).__name__}")
    included: dict[str, Any] = {}
    if INCLUDE_KEY in data and INCLUDE_KEY not in {f.name for f in dataclasses.fields(cls)}:
        other = data.pop(INCLUDE_KEY)
        if not isinstance(other, str) or not other:
            raise ConfigError(f"{path}: '{INCLUDE_KEY}' must be the path of a file, got {other!r}")
        included = _load_data(cls, path.parent / other, seen + (key,))
    try:
        return _merge(included, _resolve(cls, data, path.parent, seen + (key,)))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


INCLUDE_KEY = "include"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`: mappings merged key by key, anything else replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = (_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict)
                  else v)
    return out


def load(cls: type[T], path: str | Path) -> T:
    """Load a dataclass from a sparse .json or .yaml/.yml file (see the module docstring for how
    its relative paths and included files are read)."""
    path = Path(path)
    data = _load_data(cls, path)
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _default_of(cls: type) -> dict[str, Any] | None:
    """`cls()` as a dict, or None when `cls` has required fields."""
    try:
        return to_dict(cls())
    except TypeError:
        return None


def _sparse(cls: type, data: dict[str, Any], default: dict[str, Any] | None) -> dict[str, Any]:
    """`data` (a dict of `cls`) without the keys that hold the values of `default` (the dict of
    `cls`'s default instance, or of the parent's default for this field), recursively."""
    if default is None:
        return data
    hints = _hints(cls)
    out: dict[str, Any] = {}
    for key, value in data.items():
        tp = hints[key]
        sub = _dataclass_of(tp)
        base = default.get(key)
        if sub is not None and isinstance(value, dict):
            value = _sparse(sub, value, base if isinstance(base, dict) else _default_of(sub))
            if not value and isinstance(base, dict):
                continue
        else:
            if isinstance(value, list) and typing.get_origin(tp) in (list, tuple):
                item = _dataclass_of((typing.get_args(tp) or (None,))[0])
                if item is not None:
                    value = [_sparse(item, v, _default_of(item)) for v in value]
            if key in default and data[key] == base:
                continue
        out[key] = value
    return out


def save(cfg: Any, path: str | Path, sparse: bool = False) -> None:
    """Write a dataclass as JSON (.json) or YAML (anything else); relative path fields are
    written relative to the file (see the module docstring), so `load` gives `cfg` back.
    `sparse` leaves out every value equal to its default (a recipe: only what differs)."""
    path = Path(path)
    folder = path.parent.resolve()
    data = _map_paths(type(cfg), to_dict(cfg), lambda v: os.path.relpath(v, folder))
    if sparse:
        data = _sparse(type(cfg), data, _default_of(type(cfg)))
    if path.suffix == ".json":
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
