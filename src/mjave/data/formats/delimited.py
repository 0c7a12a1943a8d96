"""CSV (or tab-separated) files with a header, read as raw rows: the header checked at once, a
bad row an error of its own (a stray quote costs one row, not the rest of the file). Used by
the CSV format and by `read_table`."""

from __future__ import annotations

import csv
from typing import Any, Iterator, Sequence

from mjave.data.errors import DataError
from mjave.data.formats.row_types import RawRow
from mjave.data.formats.text_lines import has_bad_bytes
from mjave.data.paths import PathLike


def csv_rows(path: PathLike, required: Sequence[str], delimiter: str = ",",
             unique_header: bool = False) -> Iterator[RawRow]:
    """The rows of a CSV (or tab-separated) file with a header, numbered by the line they start
    on. The header is checked now: no header, a missing `required` column (or, with
    `unique_header`, a repeated one) raises; blank rows are skipped."""
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # long texts are windowed
    try:
        # surrogateescape: a bad byte becomes a row error, not a crash of the whole read
        f = open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as e:
        raise DataError(f"cannot read the file: {e.strerror}", path=str(path),
                        reason="unreadable file") from None
    try:
        reader = csv.reader(f, delimiter=delimiter)
        header = _header(reader, path, required, unique_header)
    except BaseException:
        f.close()
        raise
    return _csv_body(f, reader.line_num + 1, header, delimiter)


def _header(reader: Any, path: PathLike, required: Sequence[str], unique: bool) -> list[str]:
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
    dupes = sorted({h for h in header if header.count(h) > 1})
    if unique and dupes:
        raise DataError(f"the header names {', '.join(dupes)} more than once", path=str(path),
                        line=1, reason="no header")
    return header


class _RowLines:
    """The lines a csv reader takes, those of the current row kept, so that a row an unclosed
    quote ran to the end of the file can be read again line by line."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines = lines
        self.row: list[str] = []
        self.at_end = False

    def __iter__(self) -> "_RowLines":
        return self

    def __next__(self) -> str:
        try:
            line = next(self.lines)
        except StopIteration:
            self.at_end = True
            raise
        self.row.append(line)
        return line


def _csv_body(f: Any, first: int, header: list[str], delimiter: str) -> Iterator[RawRow]:
    """The rows from line `first` on. A quote never closed runs its field to the end of the
    file: that row is an error naming the lines it took in, and those lines are read again as
    rows of their own, so one stray quote costs one row, not the rest of the file."""
    with f:
        lines: Iterator[str] | None = iter(f)
        line = first
        while lines is not None:
            source = _RowLines(lines)
            reader = csv.reader(source, delimiter=delimiter)
            lines = None
            while True:
                source.row = []
                start = line
                try:
                    values = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:
                    line = start + len(source.row)
                    yield start, DataError(f"malformed CSV: {e}", reason="malformed CSV")
                    continue
                line = start + len(source.row)
                if source.at_end:  # the reader asked past the last line: a quote left open
                    yield start, unclosed_quote(start, line - 1, _complete_id(values, header))
                    lines, line = iter(source.row[1:]), start + 1
                    break
                row = _csv_row(values, header, start, line - 1)
                if row is not None:
                    yield start, row


def _complete_id(values: list[str], header: list[str]) -> str | None:
    """The id of a row whose last field an open quote ran on, if it came before that field
    (so it is whole): the error row keeps it and `--resume` knows the row."""
    n = header.index("id") if "id" in header else len(values)
    return values[n] if n < len(values) - 1 and values[n] else None


def unclosed_quote(start: int, end: int, row_id: str | None = None) -> DataError:
    """The error of the row on line `start` whose quote is never closed (the field ran to the
    last line, `end`)."""
    n = end - start
    where = f"line {end}" if n == 1 else f"lines {start + 1}-{end}"
    taken = (f"; it took in the {n} line(s) after it ({where}), which are read again as rows "
             "of their own" if n else "")
    return DataError(f"a quote opened in this row is never closed{taken}",
                     reason="unclosed quote", row_id=row_id)


def _csv_row(values: list[str], header: list[str], start: int, end: int
             ) -> dict[str, Any] | DataError | None:
    """One parsed CSV row (lines `start`-`end`): the row, its error, or None when blank."""
    if not values or not any(v.strip() for v in values):
        return None
    if has_bad_bytes(values):
        return DataError("not valid UTF-8", reason="bad encoding")
    if len(values) != len(header):
        spans = (f" (the row runs over lines {start}-{end}: a quote left open?)"
                 if end > start else "")
        return DataError(f"{len(values)} fields for {len(header)} header columns{spans}",
                         reason="wrong number of columns")
    return dict(zip(header, values))


__all__ = ["csv_rows", "unclosed_quote"]
