"""Row checks shared by every reader, so a bad row fails the same way whatever its format.

Each check raises `DataError` naming the field and a short `reason` category; the reader adds the
file and line (`DataError.located`). Messages say what was expected and what was found, because the
person reading them is fixing a data file by hand.
"""

from __future__ import annotations

from typing import Any

from mjave.data.errors import DataError
from mjave.data.records import Record
from mjave.data.schema import AttributeSchema

_OPTIONAL_STR_KEYS = ("cid", "category", "image")
_SPAN_KEYS = ("attr", "begin", "end", "value")


def _clip(s: str, n: int = 40) -> str:
    """A repr short enough for one error line."""
    return repr(s if len(s) <= n else s[:n] + "...")


def check_json_row(obj: Any) -> None:
    """The shape of one JSONL object: types and required keys (offsets are checked later)."""
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, found {type(obj).__name__}",
                        reason="not an object")
    if "id" not in obj:
        raise DataError("missing required key 'id'", field="id", reason="missing id")
    if "text" not in obj:
        raise DataError("missing required key 'text'", field="text", reason="missing text")
    for key in _OPTIONAL_STR_KEYS:
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise DataError(f"'{key}' must be a string, found {type(obj[key]).__name__}",
                            field=key, reason=f"bad {key}")
    spans = obj.get("spans", [])
    if not isinstance(spans, list):
        raise DataError(f"'spans' must be a list, found {type(spans).__name__}", field="spans",
                        reason="bad spans")
    for i, s in enumerate(spans):
        if not isinstance(s, dict):
            raise DataError(f"a span must be an object with keys {', '.join(_SPAN_KEYS)}, "
                            f"found {type(s).__name__}", field=f"spans[{i}]", reason="bad span")
        for key in _SPAN_KEYS:
            if key not in s:
                reason = "missing attr" if key == "attr" else f"missing span {key}"
                raise DataError(f"span has no '{key}'", field=f"spans[{i}].{key}", reason=reason)


def check_record(record: Record, id_field: str = "id") -> None:
    """Everything a Record must satisfy before training or evaluation may trust its spans."""
    if not isinstance(record.id, str) or not record.id:
        raise DataError(f"the id must be a non-empty string, found {record.id!r}", field=id_field,
                        reason="missing id")
    text = record.text
    if not isinstance(text, str):
        raise DataError(f"the text must be a string, found {type(text).__name__}", field="text",
                        reason="missing text")
    if not text.strip():
        raise DataError("the text is empty" if not text else "the text is only whitespace",
                        field="text", reason="empty text")
    for i, s in enumerate(record.spans):
        where = f"spans[{i}]"
        if not isinstance(s.attr, str) or not s.attr.strip():
            raise DataError(f"span has no attribute name (attr={s.attr!r})", field=f"{where}.attr",
                            reason="missing attr")
        for name in ("begin", "end"):
            v = getattr(s, name)
            if type(v) is not int:  # bool is an int subclass and 3.0 is not an index: both refused
                raise DataError(f"span {name} must be an integer, found {v!r}",
                                field=f"{where}.{name}", reason="non-int offset")
        if s.begin < 0:
            raise DataError(f"span begin {s.begin} is negative", field=f"{where}.begin",
                            reason="span out of range")
        if s.end > len(text):
            raise DataError(f"span end {s.end} is past the end of the text (length {len(text)})",
                            field=f"{where}.end", reason="span out of range")
        if s.begin >= s.end:
            raise DataError(f"span begin {s.begin} is not before its end {s.end}",
                            field=f"{where}.end", reason="empty span")
        if not isinstance(s.value, str):
            raise DataError(f"span value must be a string, found {s.value!r}",
                            field=f"{where}.value", reason="value mismatch")
        if s.value != text[s.begin:s.end]:
            raise DataError(f"value {_clip(s.value)} differs from text[{s.begin}:{s.end}] "
                            f"{_clip(text[s.begin:s.end])}", field=f"{where}.value",
                            reason="value mismatch")


class IdTracker:
    """Refuses a second row with the same id in one file, naming where the first one was."""

    def __init__(self, field: str = "id", unit: str = "line"):
        self.field = field
        self.unit = unit
        self._first: dict[str, int] = {}

    def check(self, record_id: str, where: int) -> None:
        first = self._first.get(record_id)
        if first is not None:
            raise DataError(f"duplicate {self.field} {record_id!r}; "
                            f"first seen on {self.unit} {first}",
                            field=self.field, reason="duplicate id")
        self._first[record_id] = where


def first_difference(a: str, b: str) -> int:
    """Index of the first character where two strings differ (len of the shorter if a prefix)."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def describe_difference(expected: str, found: str, expected_name: str, found_name: str) -> str:
    """`... differs at character 5: raw text has '...', tagged text has '...'`."""
    i = first_difference(expected, found)

    def at(s: str) -> str:
        return _clip(s[i:i + 12], 12) if i < len(s) else "(end of text)"

    return (f"{found_name} differs from the {expected_name} at character {i}: "
            f"{expected_name} has {at(expected)}, {found_name} has {at(found)}")


def check_columns(parts: list[str], names: tuple[str, ...]) -> None:
    """A TSV/CoNLL line must have exactly the expected tab-separated columns."""
    if len(parts) != len(names):
        raise DataError(f"expected {len(names)} tab-separated columns ({', '.join(names)}), "
                        f"found {len(parts)}", reason="wrong column count")


def check_known_attributes(record: Record, schema: AttributeSchema) -> None:
    """At predict/evaluation time: every gold attribute must be one the model was trained on."""
    for i, s in enumerate(record.spans):
        if s.attr not in schema:
            try:
                schema.attr_id(s.attr)
            except DataError as e:
                raise DataError(e.message, field=f"spans[{i}].attr", reason=e.reason) from None
