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

A config file cannot exhaust the machine (`read_config_file`): only regular files of at most
MAX_CONFIG_BYTES are read (no FIFO, no /dev/zero), their values nest at most MAX_DEPTH deep and
number at most MAX_VALUES with YAML aliases expanded (no "billion laughs"), numbers are finite,
and an error names the file and key but quotes values only cut short (`show`) and never the
text of a file that does not parse.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import reprlib
import stat
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the dataclass (names the key)."""


MAX_CONFIG_BYTES = 1 << 20
"""The largest config file read (1 MiB; the shipped ones are a few KB): `include: /dev/zero` or
a huge file is refused before it fills the memory."""

MAX_DEPTH = 32
"""How deep values in a config may nest (the shipped ones: 4 levels)."""

MAX_VALUES = 100_000
"""How many values (scalars, lists and mappings) a config may hold, YAML aliases counted as
often as they are used: a few hundred bytes of nested aliases (the "billion laughs") expand
to billions, which any later copy or error message would build."""


def _bounded_repr() -> reprlib.Repr:
    """A `repr` that cuts long strings, numbers and lists and stops a few levels down."""
    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 3, 6, 6, 6, 6
    r.maxstring, r.maxlong, r.maxother = 80, 40, 80
    return r


_SHOW = _bounded_repr()
MAX_SHOWN = 200
"""Characters of a value shown in an error message."""


def show(value: Any) -> str:
    """`repr(value)` for an error message, at most about MAX_SHOWN characters: a config value
    may be huge or self-referencing, and its message is printed to a terminal."""
    text = _SHOW.repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


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
        raise ConfigError(f"{key}: {show(value)} fits none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: {show(value)} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {show(value)}")
        return from_dict(tp, value, prefix=key + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {show(value)}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {show(value)}")
        return dict(value)
    if tp is float:
        if isinstance(value, str) and SCIENTIFIC.match(value.strip()):
            value = float(value)   # `5e-5`: YAML 1.1 (PyYAML) reads it as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {show(value)}")
        return _finite(value, key)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {show(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {show(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {show(value)}")
        return value
    return value


def _finite(value: int | float, key: str) -> float:
    """`value` as a float, or a ConfigError: `.nan` compares false with every bound, so it
    would pass any range check, and `.inf` or a 400-digit integer is no setting either."""
    try:
        number = float(value)
    except OverflowError:
        raise ConfigError(f"{key}: {show(value)} is too large for a number") from None
    if not math.isfinite(number):
        raise ConfigError(f"{key}: expected a finite number, got {show(value)}")
    return number


_KEY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


def _key_name(key: Any) -> str:
    """An unknown key as its message shows it: a name as written (a typo to spot), anything
    else described, not quoted (an included file may be a secret one that parses as a
    mapping: `include: /etc/shadow`)."""
    if isinstance(key, str) and _KEY_NAME.fullmatch(key):
        return key
    if isinstance(key, str):
        return f"<a key of {len(key)} characters that is no name>"
    return f"<a key that is a {type(key).__name__}, not a name>"


def _check_keys(cls: type, data: dict[str, Any], prefix: str = "", nested: bool = True) -> None:
    """Raise ConfigError naming the first key of `data` (a dict of `cls`) that `cls` has no
    field for; `nested`: in the sections of nested config dataclasses too."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted((k for k in data if k not in names), key=str)  # keys may be any type
    if unknown:
        raise ConfigError(f"unknown key {prefix}{_key_name(unknown[0])} (known: "
                          f"{', '.join(sorted(names))})")
    if nested:
        hints = _hints(cls)
        for name, value in data.items():
            sub = _dataclass_of(hints[name])
            if sub is not None and isinstance(value, dict):
                _check_keys(sub, value, f"{prefix}{name}.")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build `cls` from a mapping; unknown keys and wrong types raise ConfigError naming the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {show(data)}")
    hints = _hints(cls)
    _check_keys(cls, data, prefix, nested=False)
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as e:  # a dataclass's own range checks (__post_init__), which may quote
        message = str(e)     # the value: cut like `show`
        raise ConfigError(message if len(message) <= 2 * MAX_SHOWN
                          else message[:2 * MAX_SHOWN] + "...") from None


def check_range(section: str, cfg: Any, rules: Mapping[str, tuple[float | None, float | None,
                                                                  bool]]) -> None:
    """Raise ConfigError naming the first field of `cfg` outside its range: `rules` maps a field
    to (low, high, high_inclusive), low always inclusive, None for no bound."""
    for name, (low, high, high_inclusive) in rules.items():
        value = getattr(cfg, name)
        if isinstance(value, float) and not math.isfinite(value):  # NaN passes every bound
            raise ConfigError(f"{section}.{name} must be a finite number, not {value!r}")
        too_low = low is not None and value < low
        too_high = high is not None and (value > high if high_inclusive else value >= high)
        if too_low or too_high:
            upper = "" if high is None else f" and {'at most' if high_inclusive else 'below'} {high}"
            lower = "" if low is None else f"at least {low}"
            raise ConfigError(f"{section}.{name} must be {lower}{upper}, not {show(value)}")


def _parse_scalar(text: str, key: str) -> Any:
    """Parse the right-hand side of `key=value` as YAML so numbers, booleans and lists work
    (text that is no YAML stays a string), with the limits of a config file."""
    try:
        return _parse_text(text, "yaml", f"override {key}")
    except ConfigError:
        if _is_yaml(text):
            raise
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
            raise ConfigError(f"override {show(item)} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        node: Any = current
        for p in key.split("."):
            node = node.get(p) if isinstance(node, dict) else None
        value = _parse_scalar(raw, key)
        if value is not None and not isinstance(value, str) and isinstance(node, str):
            value = raw
        values[key] = value
    return values


def apply_overrides(cfg: T, overrides: list[str]) -> T:
    """Return a copy of `cfg` with `a.b=value` overrides applied (type-checked)."""
    return set_values(cfg, parse_overrides(cfg, overrides))


def read_config_file(path: str | Path) -> Any:
    """The data of a config file (JSON for .json, else YAML), or a ConfigError that names the
    file and never quotes it: only a regular file of at most MAX_CONFIG_BYTES is read (a FIFO
    would block, /dev/zero never ends, an included /etc/shadow must not be echoed), and its
    data must keep within MAX_DEPTH and MAX_VALUES."""
    path = Path(path)
    return _parse_text(_read_config_text(path), "json" if path.suffix == ".json" else "yaml",
                             str(path))


def _read_config_text(path: Path) -> str:
    """The UTF-8 text of a regular file of at most MAX_CONFIG_BYTES. Opened without blocking
    (a FIFO with no writer would wait forever) and checked on the open file, so a file swapped
    after a check cannot slip through."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: not a regular file (a config must be one)")
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {info.st_size} bytes; a config file may have at most "
                              f"{MAX_CONFIG_BYTES}")
        raw = _read_at_most(fd, MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_CONFIG_BYTES:  # it grew while read
        raise ConfigError(f"{path}: a config file may have at most {MAX_CONFIG_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None


def _read_at_most(fd: int, limit: int) -> bytes:
    """Up to `limit` bytes of an open file (fewer at its end)."""
    chunks: list[bytes] = []
    while limit > 0:
        chunk = os.read(fd, min(limit, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        limit -= len(chunk)
    return b"".join(chunks)


def _is_yaml(text: str) -> bool:
    """Whether `text` is valid YAML syntax (its values may still be refused)."""
    try:
        for _ in yaml.parse(text, Loader=yaml.SafeLoader):
            pass
    except (yaml.YAMLError, RecursionError):
        return False
    return True


def _parse_text(text: str, syntax: str, where: str) -> Any:
    """`text` parsed as "json" or "yaml", checked by `_check_size`; errors name `where` and
    say where in the text, never what the text says there."""
    kind = "JSON" if syntax == "json" else "YAML"
    try:
        data = json.loads(text) if syntax == "json" else yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: not valid JSON: {e.msg} at line {e.lineno}, column "
                          f"{e.colno}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{where}: not valid YAML: {_unquoted(e.problem or e.context)}{at}"
                          ) from None
    except yaml.YAMLError:
        raise ConfigError(f"{where}: not valid YAML") from None
    except RecursionError:
        raise ConfigError(f"{where}: values nested too deeply (at most {MAX_DEPTH} levels)"
                          ) from None
    except ValueError as e:  # a 5,000-digit integer, a date that is none
        raise ConfigError(f"{where}: not valid {kind}: {str(e)[:MAX_SHOWN]}") from None
    _check_size(data, where)
    return data


_QUOTED = re.compile(r"'[^']{5,}'|\"[^\"]{5,}\"")


def _unquoted(problem: Any) -> str:
    """A PyYAML problem ("found undefined alias 'x'") without the text it quotes from the file,
    but for a character or two ("found character '\\t'"): the file may be a secret one."""
    return _QUOTED.sub("'...'", str(problem))[:MAX_SHOWN]


def _check_size(data: Any, where: str) -> None:
    """Refuse data nested deeper than MAX_DEPTH or holding more than MAX_VALUES values, with
    shared (aliased) values counted at each use but walked once, so checking a bomb is cheap;
    a value that contains itself is refused as too deep."""
    seen: dict[int, tuple[int, int]] = {}   # id -> (values, levels below)

    def walk(value: Any, depth: int) -> tuple[int, int]:
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where}: values nested too deeply (at most {MAX_DEPTH} levels)")
        if not isinstance(value, (dict, list)):
            return 1, 0
        if id(value) in seen:
            count, below = seen[id(value)]
            if depth + below > MAX_DEPTH:
                raise ConfigError(f"{where}: values nested too deeply (at most {MAX_DEPTH} "
                                  "levels)")
            return count, below
        count, below = 1, 0
        for item in (list(value) + list(value.values())) if isinstance(value, dict) else value:
            n, b = walk(item, depth + 1)
            count, below = count + n, max(below, b + 1)
            if count > MAX_VALUES:
                raise ConfigError(f"{where}: more than {MAX_VALUES} values (YAML aliases "
                                  "count at each use)")
        seen[id(value)] = (count, below)
        return count, below

    walk(data, 0)


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
    try:
        key = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise ConfigError(f"{path}: cannot read config (a symbolic link loop)") from None
    if key in seen:
        raise ConfigError(f"{path}: includes itself ({' -> '.join(str(p) for p in seen + (path,))})")
    data = read_config_file(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top, got {type(data).__name__}")
    included: dict[str, Any] = {}
    if INCLUDE_KEY in data and INCLUDE_KEY not in {f.name for f in dataclasses.fields(cls)}:
        other = data.pop(INCLUDE_KEY)
        if not isinstance(other, str) or not other:
            raise ConfigError(f"{path}: '{INCLUDE_KEY}' must be the path of a file, got "
                              f"{show(other)}")
        included = _load_data(cls, path.parent / other, seen + (key,))
    try:
        _check_keys(cls, data)   # here, per file: the message names the file with the key
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
