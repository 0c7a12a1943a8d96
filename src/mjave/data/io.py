"""The one reader registry: JSONL, MEPAVE/JAVE TSV, CoNLL, CSV and Parquet, by extension or by
name, read three ways.

- `iter_records` / `read_records`: validated `Record`s from any of the five formats (labelled
  data and unlabelled products alike), strict (the first bad row raises) or lenient (bad rows
  are skipped into a `RowIssues` tally). JSONL, JAVE TSV and CoNLL are parsed by
  `mjave.data.formats` (spans included); a CSV or Parquet row becomes a Record without spans.
- `read_input`: the raw rows batch prediction streams (`InputRow`: id, text, image, the other
  fields in `extra`, or the error of an unreadable row), unchecked, so the engines check them
  with the shared `mjave.data.rows` checks and a bad row becomes an error row, not a crash.
- `read_table`: rows of a CSV/TSV/JSONL file with a header (catalog tables, synonym lists,
  suggestion files) as dicts, a bad row as a located DataError.

Rows are numbered by their 1-based line (Parquet: by row); a file that is unreadable as a whole
(missing, no id/text column) raises at once. A bad byte is an error of its row, not of the file.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from functools import partial
from json.decoder import scanstring
from typing import Any, Callable, Iterator, Sequence

from mjave.data.errors import DataError, RowIssues
from mjave.data.records import Record
from mjave.data.tabular import optional_text, required_text
from mjave.data.validate import IdTracker, check_record

PathLike = str | os.PathLike

FORMATS = ("jsonl", "jave", "conll", "csv", "parquet")
RECORD_FORMATS = ("jsonl", "jave", "conll")
"""The formats `mjave.data.formats` reads and writes (with spans)."""
EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".tsv": "jave",
              ".sample": "jave", ".txt": "jave", ".conll": "conll", ".bio": "conll",
              ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
ALIASES = {"tsv": "jave", "mepave": "jave"}
TABLE_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl",
                    ".ndjson": "jsonl"}
"""`read_table`'s formats: here a .tsv is a table with a header, not JAVE TSV."""

Row = tuple[int, dict[str, Any] | DataError]
"""(1-based line where the row starts, the row or why it could not be read)."""


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------


def detect_format(path: PathLike, format: str | None = None,
                  allowed: Sequence[str] = FORMATS) -> str:
    """The explicit format if given (`tsv` names JAVE TSV), else the one the extension names;
    DataError when it is not one of `allowed`."""
    if format is not None:
        fmt = ALIASES.get(format, format)
        if fmt not in allowed:
            raise DataError(f"unknown format {format!r}; expected one of {', '.join(allowed)}",
                            path=str(path), reason="unknown format")
        return fmt
    known = {ext: f for ext, f in EXTENSIONS.items() if f in allowed}
    ext = Path(path).suffix.lower()
    if ext not in known:
        raise DataError(f"cannot tell the format from the extension {ext or '(none)'!r}; use "
                        f"one of {', '.join(sorted(known))} or name the format "
                        f"({', '.join(allowed)})", path=str(path), reason="unknown format")
    return known[ext]


def check_readable(path: PathLike) -> Path:
    """The path, if it is a file this process can open (else a fatal DataError)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("cannot read the file: no such file", path=str(path),
                        reason="unreadable file")
    try:
        open(path, "rb").close()
    except OSError as e:
        raise DataError(f"cannot read the file: {e.strerror}", path=str(path),
                        reason="unreadable file") from None
    return path


# --------------------------------------------------------------------------------------------
# Raw readers: (line, dict | DataError); errors are not located (callers add path and line)
# --------------------------------------------------------------------------------------------


def has_bad_bytes(values: Sequence[Any]) -> bool:
    """Whether a value holds a byte that was not UTF-8 (decoded as a surrogate escape)."""
    return any(isinstance(v, str) and any("\udc80" <= c <= "\udcff" for c in v) for v in values)


def parse_json_line(text: str) -> Any:
    """One JSON value, or a DataError: invalid JSON (`invalid JSON`), or valid JSON Python
    cannot hold: nested deeper than the parser recurses (`nested too deep`) or an integer over
    Python's digit limit (`integer too long`). Those name the top-level field that holds the
    value and carry the row's id when it can be read, so the row is an error row of its own
    and never stops a whole read."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} at column {e.colno}",
                        reason="invalid JSON") from None
    except (RecursionError, ValueError) as e:
        raise unloadable_json(text, e) from None


def unloadable_json(text: str, error: BaseException) -> DataError:
    """The error of valid JSON that `json.loads` failed on with `error`: each top-level member
    of the object is loaded on its own, so the error names the first field that fails and
    keeps the id when that loads (an id too long to be an integer is kept as its digits)."""
    fields = json_members(text)
    row_id = None
    found: tuple[str, BaseException] | None = None
    for key, raw in fields:
        try:
            value = json.loads(raw)
        except (RecursionError, ValueError) as e:
            if not isinstance(e, json.JSONDecodeError):
                found = found or (key, e)
            value = raw if key == "id" and re.fullmatch(r"-?[0-9]+", raw) else None
        if key == "id":
            row_id = value
    key, error = found or (None, error)
    if isinstance(error, RecursionError):
        message, reason = "the value is nested too deeply to read", "nested too deep"
    else:
        message = (f"the value holds an integer of more than {sys.get_int_max_str_digits()} "
                   "digits, more than Python reads")
        reason = "integer too long"
    return DataError(message, field=key, reason=reason, row_id=row_id)


def json_members(text: str) -> list[tuple[str, str]]:
    """(key, raw JSON text) of each member of the JSON object `text`, found without parsing the
    values (so a value too deep for the parser is still stepped over); [] if not an object."""
    members: list[tuple[str, str]] = []
    i = _skip_space(text, 0)
    if text[i:i + 1] != "{":
        return members
    i += 1
    while True:
        i = _skip_space(text, i)
        if text[i:i + 1] != '"':
            return members
        try:
            key, i = scanstring(text, i + 1)
        except ValueError:
            return members
        i = _skip_space(text, i)
        if text[i:i + 1] != ":":
            return members
        start = _skip_space(text, i + 1)
        end = _json_value_end(text, start)
        members.append((key, text[start:end].strip()))
        i = _skip_space(text, end)
        if text[i:i + 1] != ",":
            return members
        i += 1


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _json_value_end(text: str, i: int) -> int:
    """Where the JSON value starting at `i` ends: brackets are counted, strings skipped."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c == '"':
            try:
                i = scanstring(text, i + 1)[1]
            except ValueError:
                return len(text)
            if depth == 0:
                return i
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            if depth == 0:
                return i
            depth -= 1
            if depth == 0:
                return i + 1
        elif c == "," and depth == 0:
            return i
        i += 1
    return i


def jsonl_rows(path: PathLike, required: Sequence[str] = ()) -> Iterator[Row]:
    """One JSON object per non-blank line; a line that is not one (or lacks a `required` key)
    is an error row."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                obj = parse_json_line(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                yield n, DataError(f"not valid UTF-8 at byte {e.start}", reason="bad encoding")
                continue
            except DataError as e:
                yield n, e
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


def csv_rows(path: PathLike, required: Sequence[str], delimiter: str = ",",
             unique_header: bool = False) -> Iterator[Row]:
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


def _csv_body(f: Any, first: int, header: list[str], delimiter: str) -> Iterator[Row]:
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


def pyarrow_parquet() -> Any:
    """`pyarrow.parquet`, with the install hint when it is missing."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("Parquet needs pyarrow: pip install 'mjave[parquet]'") from None
    return pq


def parquet_rows(path: PathLike, required: Sequence[str] = ("id", "text"),
                 batch_size: int = 1024) -> Iterator[Row]:
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


def _parquet_batches(pf: Any, batch_size: int) -> Iterator[Row]:
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


# --------------------------------------------------------------------------------------------
# Tables with a header
# --------------------------------------------------------------------------------------------


def read_table(path: PathLike, required: Sequence[str], format: str | None = None,
               unique_header: bool = False) -> Iterator[Row]:
    """Stream the rows of a CSV/TSV/JSONL table. A header without a required column is fatal
    (raised at once); a bad row is yielded as a DataError located at its file and line."""
    fmt = format or _table_format(path)
    if fmt == "jsonl":
        try:
            open(path, "rb").close()
        except OSError as e:
            raise DataError(f"cannot read the file: {e.strerror}", path=str(path),
                            reason="unreadable file") from None
        rows = jsonl_rows(path, required)
    else:
        rows = csv_rows(path, required, "\t" if fmt == "tsv" else ",", unique_header)
    return _located(rows, path)


def _table_format(path: PathLike) -> str:
    ext = Path(path).suffix.lower()
    if ext not in TABLE_EXTENSIONS:
        raise DataError(f"cannot tell the format from the extension {ext or '(none)'!r}; use "
                        f"one of {', '.join(sorted(TABLE_EXTENSIONS))}", path=str(path),
                        reason="unknown format")
    return TABLE_EXTENSIONS[ext]


def _located(rows: Iterator[Row], path: PathLike) -> Iterator[Row]:
    for line, row in rows:
        yield line, row.located(str(path), line) if isinstance(row, DataError) else row


# --------------------------------------------------------------------------------------------
# Records (labelled data and products)
# --------------------------------------------------------------------------------------------

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


def iter_records(path: PathLike, format: str | None = None, strict: bool = True,
                 issues: RowIssues | None = None) -> Iterator[Record]:
    """Stream valid Records from a file in any of the five formats. strict: the first bad row
    raises DataError naming file, line (row for Parquet) and field; lenient (strict=False): bad
    rows are skipped into `issues`, which is then required so that nothing goes unseen."""
    fmt = detect_format(path, format)
    if issues is None:
        if not strict:
            raise ValueError("lenient reading needs an `issues` tally to record skipped rows")
        issues = RowIssues()
    if fmt in RECORD_FORMATS:
        from mjave.data.formats import iter_records as iter_text_records
        return iter_text_records(path, fmt, strict, issues)
    rows = (csv_rows(check_readable(path), ("id", "text")) if fmt == "csv"
            else parquet_rows(path))
    return _records(rows, str(path), strict, issues)


def _records(rows: Iterator[Row], path: str, strict: bool, issues: RowIssues
             ) -> Iterator[Record]:
    return validated_records(((line, partial(_parse_row, row)) for line, row in rows), path,
                             strict, issues)


def _parse_row(row: dict[str, Any] | DataError) -> Record:
    if isinstance(row, DataError):
        raise row
    return record_from_row(row)


def validated_records(rows: Iterator[tuple[int, Callable[[], Record]]], path: PathLike,
                      strict: bool, issues: RowIssues, id_field: str = "id"
                      ) -> Iterator[Record]:
    """The records of `(line, parse)` rows, ids checked unique: a row whose `parse()` (or id)
    fails raises located (strict) or is skipped into `issues` (lenient). Every format's record
    reader ends here."""
    ids = IdTracker(id_field)
    for line, parse in rows:
        issues.rows_read += 1
        try:
            record = parse()
            ids.check(record.id, line)
        except DataError as e:
            err = e.located(str(path), line)
            if strict:
                raise err from None
            issues.skip(err)
            continue
        yield record


def read_records(path: PathLike, format: str | None = None,
                 strict: bool = True) -> tuple[list[Record], RowIssues]:
    """All valid Records of a file (any of the five formats) and the tally of what was
    skipped."""
    issues = RowIssues()
    return list(iter_records(path, format, strict, issues)), issues


# --------------------------------------------------------------------------------------------
# Raw input rows (batch prediction)
# --------------------------------------------------------------------------------------------

_RESERVED = {"id", "text", "image", "attributes", "values", "warning", "error"}


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
    extra = {k: v for k, v in row.items() if k not in _RESERVED}
    return InputRow(number, row.get("id"), row.get("text"), row.get("image"), extra)


def read_input(path: PathLike, format: str | None = None, batch_size: int = 32
               ) -> Iterator[InputRow]:
    """Stream the rows of an input file for prediction (fatal DataError only if the file itself
    is unreadable: missing, unknown format, no id/text column). JAVE TSV and CoNLL rows come
    through `mjave.data.formats` (the one parser); the rows it skips become error rows."""
    fmt = detect_format(path, format)
    path = check_readable(path)
    if fmt in ("jave", "conll"):
        return _text_format_rows(path, fmt)
    if fmt == "jsonl":
        rows = jsonl_rows(path)
    elif fmt == "csv":
        rows = _no_empty_image(csv_rows(path, ("id", "text")))
    else:
        rows = parquet_rows(path, ("id", "text"), batch_size)
    return (input_row(n, row) for n, row in rows)


def _no_empty_image(rows: Iterator[Row]) -> Iterator[Row]:
    """An empty CSV image cell means no image."""
    for n, row in rows:
        if isinstance(row, dict) and row.get("image") == "":
            row["image"] = None
        yield n, row


def _text_format_rows(path: Path, fmt: str) -> Iterator[InputRow]:
    from mjave.data.formats import iter_records as iter_text_records

    issues = RowIssues()
    reported = 0

    def new_errors() -> Iterator[InputRow]:
        nonlocal reported
        for e in issues.skipped[reported:]:
            yield InputRow(e.line or 0, error=DataError(e.message, field=e.field,
                                                         reason=e.reason))
        reported = len(issues.skipped)

    for record in iter_text_records(path, fmt, strict=False, issues=issues):
        yield from new_errors()
        extra = {k: getattr(record, k) for k in ("cid", "category")
                 if getattr(record, k) is not None}
        extra.update((k, v) for k, v in record.extra.items() if k not in _RESERVED)
        yield InputRow(issues.rows_read, record.id, record.text, record.image, extra)
    yield from new_errors()


__all__ = ["EXTENSIONS", "FORMATS", "InputRow", "RECORD_FORMATS", "Row", "TABLE_EXTENSIONS",
           "check_readable", "csv_rows", "detect_format", "has_bad_bytes", "input_row",
           "iter_records", "json_members", "jsonl_rows", "parquet_row_count", "parquet_rows",
           "parse_json_line", "pyarrow_parquet", "read_input", "read_records", "read_table",
           "record_from_row", "unclosed_quote", "unloadable_json", "validated_records"]
