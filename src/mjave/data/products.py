"""Unlabelled products from any file a catalog team has: the mjave formats, CSV or Parquet.

A catalog export is usually a CSV or Parquet table with columns `id, text[, category, image,
cid]`; JSONL, JAVE TSV and CoNLL go through `mjave.data.formats` (their spans, if any, come
along). Each row becomes a `Record`; `cid` groups several texts (sentences) of one product, and
`Record.product_id` (cid, else id) is the key the catalog table is joined on. Other columns are
kept in `Record.extra`. Bad rows fail or are skipped exactly like `formats.iter_records` does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

from mjave.data.errors import DataError, RowIssues
from mjave.data.formats import EXTENSIONS, FORMATS, iter_records
from mjave.data.records import Record
from mjave.data.tabular import optional_text, read_rows, required_text
from mjave.data.validate import IdTracker, check_record

PathLike = str | os.PathLike
PRODUCT_FORMATS = FORMATS + ("csv", "parquet")
PRODUCT_EXTENSIONS = {**EXTENSIONS, ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_FIELDS = ("id", "cid", "category", "text", "image")


def detect_product_format(path: PathLike, format: str | None = None) -> str:
    """The explicit format if given, else the one the extension names."""
    if format is not None:
        if format not in PRODUCT_FORMATS:
            raise DataError(f"unknown format {format!r}; expected one of "
                            f"{', '.join(PRODUCT_FORMATS)}", path=str(path),
                            reason="unknown format")
        return format
    ext = Path(path).suffix.lower()
    if ext not in PRODUCT_EXTENSIONS:
        raise DataError(f"cannot tell the format from the extension {ext or '(none)'!r}; use "
                        f"one of {', '.join(sorted(PRODUCT_EXTENSIONS))} or name the format",
                        path=str(path), reason="unknown format")
    return PRODUCT_EXTENSIONS[ext]


def record_from_row(row: dict[str, Any]) -> Record:
    """A Record (no spans) from one CSV/Parquet row; empty optional cells are None."""
    text = row.get("text")
    if text is not None and not isinstance(text, str):
        raise DataError(f"'text' must be a string, found {type(text).__name__}", field="text",
                        reason="missing text")
    extra = {k: v for k, v in row.items() if k not in _FIELDS}
    record = Record(id=required_text(row, "id"), text=text or "", cid=optional_text(row, "cid"),
                    category=optional_text(row, "category"), image=optional_text(row, "image"),
                    extra=extra)
    check_record(record)
    return record


def _parquet_rows(path: PathLike) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading Parquet needs pyarrow: pip install 'mjave[parquet]'",
                        path=str(path), reason="pyarrow missing") from None
    try:
        pf = pq.ParquetFile(str(path))
    except Exception as e:  # ArrowInvalid, OSError: not a Parquet file
        raise DataError(f"cannot read the Parquet file: {e}", path=str(path),
                        reason="unreadable file") from None
    missing = [c for c in ("id", "text") if c not in pf.schema_arrow.names]
    if missing:
        raise DataError(f"the Parquet columns {pf.schema_arrow.names} lack "
                        f"{', '.join(missing)}", path=str(path), field=missing[0],
                        reason="no header")
    return _parquet_batches(pf)


def _parquet_batches(pf: Any) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    n = 0
    for batch in pf.iter_batches(batch_size=1024):
        for obj in batch.to_pylist():
            n += 1  # Parquet has no lines: rows are numbered from 1
            yield n, obj


def iter_products(path: PathLike, format: str | None = None, strict: bool = True,
                  issues: RowIssues | None = None) -> Iterator[Record]:
    """Stream Records from a products file. strict: the first bad row raises DataError naming
    file, line (row for Parquet) and field; lenient: bad rows are skipped into `issues`."""
    fmt = detect_product_format(path, format)
    if issues is None:
        if not strict:
            raise ValueError("lenient reading needs an `issues` tally to record skipped rows")
        issues = RowIssues()
    if fmt in FORMATS:
        return iter_records(path, fmt, strict, issues)
    rows = read_rows(path, ("id", "text"), "csv") if fmt == "csv" else _parquet_rows(path)
    return _records(rows, str(path), strict, issues)


def _records(rows: Iterator[tuple[int, dict[str, Any] | DataError]], path: str, strict: bool,
             issues: RowIssues) -> Iterator[Record]:
    ids = IdTracker("id")
    for line, row in rows:
        issues.rows_read += 1
        try:
            if isinstance(row, DataError):
                raise row
            record = record_from_row(row)
            ids.check(record.id, line)
        except DataError as e:
            err = e.located(path, line)
            if strict:
                raise err from None
            issues.skip(err)
            continue
        yield record


def read_products(path: PathLike, format: str | None = None,
                  strict: bool = True) -> tuple[list[Record], RowIssues]:
    """All valid products of a file and the tally of what was skipped."""
    issues = RowIssues()
    return list(iter_products(path, format, strict, issues)), issues
