"""JSON text as mjave reads it: one value per line, and valid JSON that Python cannot load
(nested too deep, an integer too long) made an error of its row, naming the field, instead of a
crash of the whole read. Used by the JSONL format and by `read_table`'s JSONL tables."""

from __future__ import annotations

import json
import re
import sys
from json.decoder import scanstring
from typing import Any, Iterator, Sequence

from mjave.data.errors import DataError
from mjave.data.formats.row_types import RawRow
from mjave.data.paths import PathLike


def parse_json_line(text: str) -> Any:
    """One JSON value, or a DataError: invalid JSON (`invalid JSON`), or valid JSON Python
    cannot hold: nested deeper than the parser recurses (`nested too deep`) or an integer over
    Python's digit limit (`integer too long`). Those name the top-level field that holds the
    value and carry the row's id when it can be read, so the row is an error row of its own
    and never stops a whole read."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} at column {e.colno}",
                        reason="invalid JSON") from None
    except (RecursionError, ValueError) as e:
        raise unloadable_json(text, e) from None


def unloadable_json(text: str, error: BaseException) -> DataError:
    """The error of valid JSON that `json.loads` failed on with `error`: each top-level member
    of the object is loaded on its own, so the error names the first field that fails and
    keeps the id when that loads (an id too long to be an integer is kept as its digits)."""
    fields = json_members(text)
    row_id = None
    found: tuple[str, BaseException] | None = None
    for key, raw in fields:
        try:
            value = json.loads(raw)
        except (RecursionError, ValueError) as e:
            if not isinstance(e, json.JSONDecodeError):
                found = found or (key, e)
            value = raw if key == "id" and re.fullmatch(r"-?[0-9]+", raw) else None
        if key == "id":
            row_id = value
    key, error = found or (None, error)
    if isinstance(error, RecursionError):
        message, reason = "the value is nested too deeply to read", "nested too deep"
    else:
        message = (f"the value holds an integer of more than {sys.get_int_max_str_digits()} "
                   "digits, more than Python reads")
        reason = "integer too long"
    return DataError(message, field=key, reason=reason, row_id=row_id)


def json_members(text: str) -> list[tuple[str, str]]:
    """(key, raw JSON text) of each member of the JSON object `text`, found without parsing the
    values (so a value too deep for the parser is still stepped over); [] if not an object."""
    members: list[tuple[str, str]] = []
    i = _skip_space(text, 0)
    if text[i:i + 1] != "{":
        return members
    i += 1
    while True:
        i = _skip_space(text, i)
        if text[i:i + 1] != '"':
            return members
        try:
            key, i = scanstring(text, i + 1)
        except ValueError:
            return members
        i = _skip_space(text, i)
        if text[i:i + 1] != ":":
            return members
        start = _skip_space(text, i + 1)
        end = _json_value_end(text, start)
        members.append((key, text[start:end].strip()))
        i = _skip_space(text, end)
        if text[i:i + 1] != ",":
            return members
        i += 1


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _json_value_end(text: str, i: int) -> int:
    """Where the JSON value starting at `i` ends: brackets are counted, strings skipped."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c == '"':
            try:
                i = scanstring(text, i + 1)[1]
            except ValueError:
                return len(text)
            if depth == 0:
                return i
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            if depth == 0:
                return i
            depth -= 1
            if depth == 0:
                return i + 1
        elif c == "," and depth == 0:
            return i
        i += 1
    return i


def jsonl_rows(path: PathLike, required: Sequence[str] = ()) -> Iterator[RawRow]:
    """One JSON object per non-blank line; a line that is not one (or lacks a `required` key)
    is an error row."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                obj = parse_json_line(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                yield n, DataError(f"not valid UTF-8 at byte {e.start}", reason="bad encoding")
                continue
            except DataError as e:
                yield n, e
                continue
            if not isinstance(obj, dict):
                yield n, DataError(f"expected a JSON object, found {type(obj).__name__}",
                                   reason="not an object")
                continue
            missing = [k for k in required if k not in obj]
            if missing:
                yield n, DataError(f"missing required key '{missing[0]}'", field=missing[0],
                                   reason=f"missing {missing[0]}")
                continue
            yield n, obj



__all__ = ["json_members", "jsonl_rows", "parse_json_line", "unloadable_json"]
