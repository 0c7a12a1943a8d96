"""Parquet with `id` and `text` columns (others as in CSV): large unlabelled product tables,
read a batch at a time so memory stays bounded. Needs pyarrow (`pip install 'mjave[parquet]'`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

from mjave.data.errors import DataError
from mjave.data.formats.input_rows import InputRow, input_row
from mjave.data.formats.registry import Format, register
from mjave.data.formats.row_types import RawRow, RecordRow
from mjave.data.formats.table_records import table_record_rows
from mjave.data.paths import PathLike


def pyarrow_parquet() -> Any:
    """`pyarrow.parquet`, with the install hint when it is missing."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("Parquet needs pyarrow: pip install 'mjave[parquet]'") from None
    return pq


def parquet_rows(path: PathLike, required: Sequence[str] = ("id", "text"),
                 batch_size: int = 1024) -> Iterator[RawRow]:
    """The rows of a Parquet file, numbered from 1, read `batch_size` rows at a time (memory
    stays bounded). The file and its columns are checked now."""
    pq = pyarrow_parquet()
    try:
        pf = pq.ParquetFile(str(path))
    except Exception as e:  # ArrowInvalid, OSError: not a Parquet file
        raise DataError(f"cannot read the Parquet file: {e}", path=str(path),
                        reason="unreadable file") from None
    names = pf.schema_arrow.names
    missing = [c for c in required if c not in names]
    if missing:
        raise DataError(f"the Parquet columns {names} lack {', '.join(missing)}",
                        path=str(path), field=missing[0], reason="no header")
    return _parquet_batches(pf, batch_size)


def _parquet_batches(pf: Any, batch_size: int) -> Iterator[RawRow]:
    n = 0
    for batch in pf.iter_batches(batch_size=max(1, batch_size)):
        for obj in batch.to_pylist():
            n += 1  # Parquet has no lines: rows are numbered from 1
            yield n, obj


def parquet_row_count(path: PathLike) -> int | None:
    """Rows of a Parquet file from its footer (None when unreadable)."""
    try:
        return int(pyarrow_parquet().ParquetFile(str(path)).metadata.num_rows)
    except Exception:
        return None


def _read_rows(path: Path) -> Iterator[RecordRow]:
    return table_record_rows(parquet_rows(path))


def _read_input(path: Path, batch_size: int) -> Iterator[InputRow]:
    return (input_row(n, row) for n, row in parquet_rows(path, ("id", "text"), batch_size))


PARQUET = register(Format("parquet", (".parquet", ".pq"), _read_rows, has_spans=False,
                          read_input=_read_input, title="Parquet"))

__all__ = ["PARQUET", "parquet_row_count", "parquet_rows", "pyarrow_parquet"]
