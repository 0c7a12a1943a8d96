"""Records of table rows (CSV, Parquet): one row is one text, without spans."""

from __future__ import annotations

from functools import partial
from typing import Any, Iterator

from mjave.data.errors import DataError
from mjave.data.formats.row_types import RawRow, RecordRow
from mjave.data.records import Record
from mjave.data.tabular import optional_text, required_text
from mjave.data.validate import check_record

_FIELDS = ("id", "cid", "category", "text", "image")


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


def table_record_rows(rows: Iterator[RawRow]) -> Iterator[RecordRow]:
    """The raw rows of a table as rows of records (an error row raises when parsed)."""
    return ((line, partial(_parse_row, row)) for line, row in rows)


def _parse_row(row: dict[str, Any] | DataError) -> Record:
    if isinstance(row, DataError):
        raise row
    return record_from_row(row)


__all__ = ["record_from_row", "table_record_rows"]
