"""The two shapes of a row on its way from a file to a Record, named once for every reader."""

from __future__ import annotations

from typing import Any, Callable

from mjave.data.errors import DataError
from mjave.data.records import Record

RawRow = tuple[int, dict[str, Any] | DataError]
"""(1-based line where the row starts, the row as read or why it could not be read): what the
table readers (CSV, Parquet, JSONL objects) yield, before any check."""

RecordRow = tuple[int, Callable[[], Record]]
"""(1-based line, parse): what a format's `read_rows` yields. Parsing is deferred so that the
registry can locate and tally a row's error (strict or lenient) in one place."""

__all__ = ["RawRow", "RecordRow"]
