"""CSV with a header (`id`, `text`, optional `cid`, `category`, `image`, any other column): the
table a catalog team exports. One row is one unlabelled text: no spans, so CSV is read wherever
products are read (predict, label, complete, review) and refused where labels are needed."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from mjave.data.formats.delimited import csv_rows
from mjave.data.formats.input_rows import InputRow, input_row
from mjave.data.formats.registry import Format, register
from mjave.data.formats.row_types import RawRow, RecordRow
from mjave.data.formats.table_records import table_record_rows
from mjave.data.formats.text_lines import check_readable

_REQUIRED = ("id", "text")


def _read_rows(path: Path) -> Iterator[RecordRow]:
    return table_record_rows(csv_rows(check_readable(path), _REQUIRED))


def _read_input(path: Path, batch_size: int) -> Iterator[InputRow]:
    """The raw rows (the header is checked now, not at the first row)."""
    return (input_row(n, row) for n, row in _no_empty_image(csv_rows(path, _REQUIRED)))


def _no_empty_image(rows: Iterator[RawRow]) -> Iterator[RawRow]:
    """An empty CSV image cell means no image."""
    for n, row in rows:
        if isinstance(row, dict) and row.get("image") == "":
            row["image"] = None
        yield n, row


CSV = register(Format("csv", (".csv",), _read_rows, has_spans=False, read_input=_read_input,
                      title="CSV"))

__all__ = ["CSV"]
