"""The inputs of `mjave review`: the suggestions and conflicts files of `mjave complete`, and the
products they are about, checked row by row before any server starts.

`suggestions.csv` columns: `product_id, attribute, value, normalized_value, score, begin, end,
evidence` (`record_id`, `mentions` and any other column are allowed; `normalized_value`, `begin`,
`end`, `evidence` and `record_id` may be missing or empty). `conflicts.csv`: `product_id,
attribute, table_value, text_value, score, begin, end, evidence` (same optional columns).
`begin`/`end` are character offsets into the product's text (the text of `record_id` when the
file names one).

Every bad row is reported, not only the first: `read_items` returns the items and a list of
`DataError`s naming file, line and field (`FILE:LINE: field 'score': ...`), so the command can
print them all and stop before the server starts. Both files are read by the one reader registry,
`mjave.data.formats`: the products file in any format mjave reads (JSONL, JAVE TSV, CoNLL, CSV,
Parquet); only the products the items name are kept.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

from mjave.data.errors import DataError
from mjave.data.formats import TABLE_EXTENSIONS, iter_records, read_table
from mjave.data.formats.text_lines import has_bad_bytes
from mjave.data.records import Record

PathLike = str | os.PathLike
Kind = Literal["suggestion", "conflict"]

MAX_FIELD_CHARS = 100_000
"""Longest cell accepted (an evidence window is ~200 characters; a whole text may be longer)."""

REQUIRED: dict[str, tuple[str, ...]] = {
    "suggestion": ("product_id", "attribute", "value", "score"),
    "conflict": ("product_id", "attribute", "table_value", "text_value", "score"),
}
OPTIONAL = ("normalized_value", "begin", "end", "evidence", "record_id")


@dataclass
class ItemIn:
    """One row to review: a suggestion (`value`) or a conflict (`value` is the text's value,
    `table_value` the catalog's)."""

    kind: Kind
    product_id: str
    attribute: str
    value: str
    score: float
    normalized_value: str | None = None
    table_value: str | None = None
    begin: int | None = None
    end: int | None = None
    evidence: str | None = None
    record_id: str | None = None
    line: int = 0
    source: str = ""

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.kind, self.product_id, self.attribute, self.value)


def _text(row: dict[str, str], name: str, required: bool) -> str | None:
    value = row.get(name)
    if value is None or not value.strip():
        if required:
            raise DataError("is empty", field=name, reason=f"empty {name}")
        return None
    if len(value) > MAX_FIELD_CHARS:
        raise DataError(f"has {len(value)} characters; the limit is {MAX_FIELD_CHARS}",
                        field=name, reason="field too long")
    return value.strip() if name in ("product_id", "attribute", "record_id") else value


def _offset(row: dict[str, str], name: str) -> int | None:
    value = (row.get(name) or "").strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        raise DataError(f"{value!r} is not a whole number", field=name,
                        reason=f"bad {name}") from None
    if n < 0:
        raise DataError(f"{n} is negative", field=name, reason=f"bad {name}")
    return n


def _score(row: dict[str, str]) -> float:
    value = (row.get("score") or "").strip()
    try:
        score = float(value)
    except ValueError:
        raise DataError(f"{value!r} is not a number", field="score", reason="bad score") from None
    if not math.isfinite(score):
        raise DataError(f"{value!r} is not a finite number", field="score", reason="bad score")
    return score


def parse_row(kind: Kind, row: dict[str, str]) -> ItemIn:
    """One item from a row of the suggestions or conflicts file (DataError without location)."""
    for name, value in row.items():
        if value is not None and has_bad_bytes([value]):
            raise DataError("is not valid UTF-8", field=name, reason="bad bytes")
    product_id = _text(row, "product_id", True)
    attribute = _text(row, "attribute", True)
    if kind == "suggestion":
        value, table_value = _text(row, "value", True), None
    else:
        value, table_value = _text(row, "text_value", True), _text(row, "table_value", True)
    score = _score(row)
    begin, end = _offset(row, "begin"), _offset(row, "end")
    if (begin is None) != (end is None):
        raise DataError("begin and end must both be given or both be empty",
                        field="begin" if begin is None else "end", reason="bad offsets")
    if begin is not None and end is not None and end <= begin:
        raise DataError(f"end {end} is not after begin {begin}", field="end",
                        reason="bad offsets")
    return ItemIn(kind, product_id, attribute, value, score,  # type: ignore[arg-type]
                  normalized_value=_text(row, "normalized_value", False),
                  table_value=table_value, begin=begin, end=end,
                  evidence=_text(row, "evidence", False), record_id=_text(row, "record_id", False))


def as_text(row: dict[str, Any]) -> dict[str, str | None]:
    """A JSONL row (`mjave complete -o SUGGESTIONS.jsonl`) as the CSV reader gives it: numbers
    as their text, null as missing; any other value is an error naming its field."""
    out: dict[str, str | None] = {}
    for k, v in row.items():
        if v is None or isinstance(v, str):
            out[k] = v
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = repr(v)
        else:
            raise DataError(f"is {type(v).__name__}, not text or a number", field=k,
                            reason=f"bad {k}")
    return out


def read_items(path: PathLike, kind: Kind) -> tuple[list[ItemIn], list[DataError]]:
    """All good rows of a suggestions (`kind="suggestion"`) or conflicts file (CSV, or JSONL by
    its extension), and one located DataError per bad row (a missing column in the header raises at once)."""
    items: list[ItemIn] = []
    errors: list[DataError] = []
    seen: dict[tuple[str, str, str, str], int] = {}
    fmt = "jsonl" if TABLE_EXTENSIONS.get(Path(str(path)).suffix.lower()) == "jsonl" else "csv"
    for line, row in read_table(path, REQUIRED[kind], fmt, unique_header=True):
        try:
            if isinstance(row, DataError):
                raise row
            item = parse_row(kind, as_text(row) if fmt == "jsonl" else row)
            first = seen.get(item.key)
            if first is not None:
                raise DataError(f"the same {kind} ({item.product_id}, {item.attribute}, "
                                f"{item.value!r}) is on line {first} already",
                                reason="duplicate row")
            seen[item.key] = line
        except DataError as e:
            errors.append(e.located(str(path), line))
            continue
        item.line, item.source = line, str(path)
        items.append(item)
    return items, errors


def iter_product_records(path: PathLike, format: str | None = None) -> Iterator[Record]:
    """The records of a products file, in any format mjave reads (strict: a bad row raises)."""
    return iter_records(path, format)


def read_products(path: PathLike, product_ids: Iterable[str], record_ids: Iterable[str] = (),
                  format: str | None = None) -> dict[str, list[Record]]:
    """The records (texts) of the named products, by product id (`Record.product_id`, or the
    record id when it is one of `record_ids` or a product id), in file order."""
    wanted = set(product_ids)
    wanted_records = set(record_ids)
    out: dict[str, list[Record]] = {}
    for record in iter_product_records(path, format):
        pid = record.product_id
        if pid in wanted:
            out.setdefault(pid, []).append(record)
        elif record.id in wanted:
            out.setdefault(record.id, []).append(record)
        elif record.id in wanted_records:
            out.setdefault(pid, []).append(record)
    return out


def _norm_find(text: str, value: str) -> list[tuple[int, int]]:
    """Occurrences of `value` in `text` as original offsets: the normaliser of
    `mjave.data.normalize` when present (NFKC, case, punctuation, word boundaries), else a plain
    case-insensitive search."""
    try:
        from mjave.data.normalize import find_in_original
    except ImportError:
        find_in_original = None
    if find_in_original is not None:
        found = find_in_original(text, value)
        if found:
            return found
    lower, needle = text.casefold(), value.casefold().strip()
    out, i = [], lower.find(needle) if needle else -1
    # casefold can change lengths ("ß" -> "ss"): only use the offsets when it did not
    while i >= 0 and len(lower) == len(text) and needle:
        out.append((i, i + len(needle)))
        i = lower.find(needle, i + len(needle))
    return out


def same_value(a: str, b: str) -> bool:
    """Equal after normalisation (`mjave.data.normalize.collapse_punctuation` when present)."""
    try:
        from mjave.data.normalize import collapse_punctuation
    except ImportError:
        return " ".join(a.casefold().split()) == " ".join(b.casefold().split())
    return collapse_punctuation(a) == collapse_punctuation(b)


def locate(text: str, value: str, begin: int | None, end: int | None) -> tuple[int, int] | None:
    """Where `value` is in `text`: `[begin, end)` when it holds the value, else the first
    occurrence found by `_norm_find`, else None."""
    if begin is not None and end is not None and 0 <= begin < end <= len(text) \
            and same_value(text[begin:end], value):
        return begin, end
    found = _norm_find(text, value)
    return found[0] if found else None


def find_all(text: str, value: str) -> list[tuple[int, int]]:
    """Every occurrence of `value` in `text` (original offsets), see `_norm_find`."""
    return _norm_find(text, value)


def choose_record(item: ItemIn, records: list[Record]) -> tuple[Record, tuple[int, int] | None]:
    """The text an item is about: the record it names, else the first whose text holds the value
    at `begin`/`end`, else the first holding the value anywhere, else the first; and where the
    value is in it (None when it is not)."""
    if item.record_id is not None:
        for r in records:
            if r.id == item.record_id:
                return r, locate(r.text, item.value, item.begin, item.end)
    for r in records:
        if item.begin is not None and item.end is not None and item.end <= len(r.text) \
                and same_value(r.text[item.begin:item.end], item.value):
            return r, (item.begin, item.end)
    for r in records:
        span = locate(r.text, item.value, None, None)
        if span is not None:
            return r, span
    return records[0], None


def check_products(items: list[ItemIn], products: dict[str, list[Record]],
                   products_path: PathLike) -> list[DataError]:
    """One located error per item whose product is not in the products file."""
    errors = []
    for item in items:
        if item.product_id not in products:
            errors.append(DataError(f"product {item.product_id!r} is not in the products file "
                                    f"{products_path}", path=item.source, line=item.line,
                                    field="product_id", reason="unknown product"))
    return errors


__all__ = ["ItemIn", "check_products", "choose_record", "find_all", "locate", "parse_row",
           "read_items", "read_products", "same_value"]
