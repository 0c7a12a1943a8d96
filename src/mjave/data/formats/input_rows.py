"""Raw input rows for batch prediction (`InputRow`): read, not checked, so that the engines check
them with the shared `mjave.data.rows` checks and a bad row becomes an error row, not a crash."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from mjave.data.errors import DataError, RowIssues
from mjave.data.records import Record

RESERVED_FIELDS = frozenset({"id", "text", "image", "attributes", "values", "warning", "error"})
"""Fields an InputRow holds itself or a prediction writes: never taken into `extra`."""


@dataclass
class InputRow:
    """One input row as read, before any check. `number` is its 1-based line (row for Parquet).
    Fields other than id, text and image (cid, category, anything else) are in `extra`."""

    number: int
    id: Any = None
    text: Any = None
    image: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: DataError | None = None


def input_row(number: int, row: dict[str, Any] | DataError) -> InputRow:
    """An InputRow of a raw reader's row (a DataError: an error row, with the row's id when
    the reader could read it)."""
    if isinstance(row, DataError):
        return InputRow(number, row.row_id, error=row)
    extra = {k: v for k, v in row.items() if k not in RESERVED_FIELDS}
    return InputRow(number, row.get("id"), row.get("text"), row.get("image"), extra)


def record_input_rows(records: Iterable[Record], issues: RowIssues) -> Iterator[InputRow]:
    """InputRows of records read leniently into `issues`: each valid record, and each skipped
    row as an error row at its line, in file order. How a format without a raw reader of its
    own (JAVE TSV, CoNLL) feeds prediction: one parser, the rows it skips become error rows."""
    reported = 0

    def new_errors() -> Iterator[InputRow]:
        nonlocal reported
        for e in issues.skipped[reported:]:
            yield InputRow(e.line or 0, error=DataError(e.message, field=e.field,
                                                         reason=e.reason))
        reported = len(issues.skipped)

    for record in records:
        yield from new_errors()
        extra = {k: getattr(record, k) for k in ("cid", "category")
                 if getattr(record, k) is not None}
        extra.update((k, v) for k, v in record.extra.items() if k not in RESERVED_FIELDS)
        yield InputRow(issues.rows_read, record.id, record.text, record.image, extra)
    yield from new_errors()


__all__ = ["InputRow", "RESERVED_FIELDS", "input_row", "record_input_rows"]
