"""Rows of CSV/TSV (with a header) and JSONL files as dicts, numbered by their first line.

The catalog table, the synonym list and unlabelled products in CSV are all "a header and rows";
this is the one reader for them, so a bad row fails the same way everywhere: a `DataError`
naming the file, the line and the field. Whether a bad row stops the read is the caller's choice.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Iterator

from mjave.data.errors import DataError

PathLike = str | os.PathLike
TABULAR_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl",
                      ".ndjson": "jsonl"}

Row = tuple[int, dict[str, Any] | DataError]
"""(1-based line where the row starts, the row or why it could not be read)."""


def tabular_format(path: PathLike) -> str:
    """csv, tsv or jsonl, from the extension."""
    ext = Path(path).suffix.lower()
    if ext not in TABULAR_EXTENSIONS:
        raise DataError(f"cannot tell the format from the extension {ext or '(none)'!r}; use "
                        f"one of {', '.join(sorted(TABULAR_EXTENSIONS))}", path=str(path),
                        reason="unknown format")
    return TABULAR_EXTENSIONS[ext]


def _open(path: PathLike):
    try:
        # surrogateescape: a bad byte becomes a row error, not a crash of the whole read
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as e:
        raise DataError(f"cannot read the file: {e.strerror}", path=str(path),
                        reason="unreadable file") from None


def _bad_bytes(values: Any) -> bool:
    return any(isinstance(v, str) and any("\udc80" <= c <= "\udcff" for c in v) for v in values)


def read_rows(path: PathLike, required: tuple[str, ...], format: str | None = None
              ) -> Iterator[Row]:
    """Stream the rows of a CSV/TSV/JSONL file. A header without a required column is fatal
    (raised at once); a bad row is yielded as a DataError located at its line."""
    fmt = format or tabular_format(path)
    f = _open(path)
    try:
        if fmt == "jsonl":
            rows = _json_rows(f, required)
        else:
            rows = _csv_rows(f, path, required, "\t" if fmt == "tsv" else ",")
    except BaseException:
        f.close()
        raise
    return _located(f, rows, path)


def _located(f: Any, rows: Iterator[Row], path: PathLike) -> Iterator[Row]:
    with f:
        for line, row in rows:
            yield line, row.located(str(path), line) if isinstance(row, DataError) else row


def _csv_rows(f: Any, path: PathLike, required: tuple[str, ...], delimiter: str
              ) -> Iterator[Row]:
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    reader = csv.reader(f, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"the file is empty; it needs a header naming {', '.join(required)}",
                        path=str(path), line=1, reason="no header") from None
    except csv.Error as e:
        raise DataError(f"cannot read the header: {e}", path=str(path), line=1,
                        reason="no header") from None
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"the header {header} lacks the column(s) {', '.join(missing)} "
                        f"(expected a header naming {', '.join(required)})", path=str(path),
                        line=1, field=missing[0], reason="no header")
    return _csv_body(reader, header)


def _csv_body(reader: Any, header: list[str]) -> Iterator[Row]:
    last = reader.line_num
    while True:
        start = last + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            last = reader.line_num
            yield start, DataError(f"malformed CSV: {e}", reason="malformed CSV")
            continue
        last = reader.line_num
        if not values or not any(v.strip() for v in values):
            continue  # blank line
        if _bad_bytes(values):
            yield start, DataError("not valid UTF-8", reason="bad encoding")
        elif len(values) != len(header):
            yield start, DataError(f"{len(values)} fields for {len(header)} header columns",
                                   reason="wrong number of columns")
        else:
            yield start, dict(zip(header, values))


def _json_rows(f: Any, required: tuple[str, ...]) -> Iterator[Row]:
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        if _bad_bytes([line]):
            yield n, DataError("not valid UTF-8", reason="bad encoding")
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield n, DataError(f"invalid JSON: {e.msg} at column {e.colno}",
                               reason="invalid JSON")
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


def optional_text(row: dict[str, Any], key: str) -> str | None:
    """A string cell, or None when absent, empty or blank. Ints are accepted as their decimal
    form (numeric ids in JSONL or Parquet); other types are refused."""
    v = row.get(key)
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    if v is not None and not isinstance(v, str):
        raise DataError(f"'{key}' must be a string, found {type(v).__name__}", field=key,
                        reason=f"bad {key}")
    return v if v is not None and v.strip() else None


def required_text(row: dict[str, Any], key: str) -> str:
    """`optional_text` that refuses an absent, empty or blank cell."""
    v = optional_text(row, key)
    if v is None:
        raise DataError(f"'{key}' is empty", field=key, reason=f"empty {key}")
    return v
