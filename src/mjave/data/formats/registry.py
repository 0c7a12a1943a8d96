"""The format registry and the one implementation of every read and write of a data file.

A format module describes its format with a `Format` and calls `register`; everything else
(detection by extension or name, strict/lenient validated reading, atomic writing, the raw
rows batch prediction streams) is done here, once, for all formats. See the package docstring
(`mjave.data.formats`) for how to add a format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Sequence

from mjave.data.errors import DataError, RowIssues
from mjave.data.formats.delimited import csv_rows
from mjave.data.formats.input_rows import InputRow, record_input_rows
from mjave.data.formats.json_text import jsonl_rows
from mjave.data.formats.row_types import RawRow, RecordRow
from mjave.data.formats.text_lines import check_readable
from mjave.data.formats.write_issues import WriteIssues
from mjave.data.outputs import atomic_write
from mjave.data.paths import PathLike
from mjave.data.records import Record
from mjave.data.validate import IdTracker, check_record


def write_chunks(chunks: Iterable[Any], f: IO[Any]) -> None:
    """A text format's file: the encoded records one after another."""
    for chunk in chunks:
        f.write(chunk)


@dataclass(frozen=True)
class Format:
    """One file format: how to read its rows and (if it can be written) write one record.

    - `read_rows(path)`: `(line, parse)` per row (`RecordRow`); `parse()` returns the Record or
      raises DataError. The registry numbers, validates and tallies; the format only parses.
    - `write(record, issues)`: the record encoded (text for a text format), or DataError when
      the format cannot hold it; what it drops (overlaps, fields) goes into `issues`. None: the
      format is read-only. `save(encoded, file)` writes the encoded records to the open file
      (default: one after another; a binary format such as spaCy's DocBin collects them).
    - `has_spans`: whether the format carries labelled spans (only those can be training or
      evaluation data).
    - `read_input(path, batch_size)`: raw `InputRow`s for prediction, when the format has a
      cheaper or laxer reader than its records (None: the records, read leniently).
    """

    name: str
    extensions: tuple[str, ...]
    read_rows: Callable[[Path], Iterator[RecordRow]]
    write: Callable[[Record, WriteIssues], Any] | None = None
    has_spans: bool = True
    aliases: tuple[str, ...] = ()
    id_field: str = "id"
    read_input: Callable[[Path, int], Iterator[InputRow]] | None = None
    save: Callable[[Iterable[Any], IO[Any]], None] = write_chunks
    binary: bool = False
    always_skip: tuple[str, ...] = ()
    """DataError reasons of rows that are skipped and counted even in strict reading: rows the
    format holds that are not records (Label Studio's unannotated tasks, predict's error rows)."""
    title: str = ""
    """How people call it (`JAVE TSV`), for help texts; default: the name."""


_FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add a format; its name, aliases and extensions must be new (ValueError otherwise)."""
    taken = {n for f in _FORMATS.values() for n in (f.name, *f.aliases)}
    clash = sorted(taken & {fmt.name, *fmt.aliases})
    exts = {e for f in _FORMATS.values() for e in f.extensions} & set(fmt.extensions)
    if clash or exts:
        raise ValueError(f"format {fmt.name!r}: {', '.join(clash + sorted(exts))} already "
                         "registered")
    if any(e != e.lower() or not e.startswith(".") for e in fmt.extensions):
        raise ValueError(f"format {fmt.name!r}: extensions are lower case and start with '.'")
    _FORMATS[fmt.name] = fmt
    return fmt


def unregister(name: str) -> None:
    """Remove a format (tests that register one of their own clean up with this)."""
    _FORMATS.pop(name, None)


def format_names(has_spans: bool | None = None, writable: bool | None = None
                 ) -> tuple[str, ...]:
    """The registered names in registration order, optionally only those with (or without)
    spans, or only those that can (or cannot) be written."""
    return tuple(f.name for f in _FORMATS.values()
                 if (has_spans is None or f.has_spans == has_spans)
                 and (writable is None or (f.write is not None) == writable))


def format_aliases() -> dict[str, str]:
    """Other names a format answers to (`tsv` for `jave`) -> its name."""
    return {a: f.name for f in _FORMATS.values() for a in f.aliases}


def format_extensions() -> dict[str, str]:
    """File extension -> format name, over all registered formats."""
    return {e: f.name for f in _FORMATS.values() for e in f.extensions}


def format_named(name: str) -> Format:
    """The registered format of a name or alias (KeyError when there is none)."""
    return _FORMATS[format_aliases().get(name, name)]


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------


def detect_format(path: PathLike, format: str | None = None,
                  allowed: Sequence[str] | None = None) -> str:
    """The explicit format if given (an alias such as `tsv` names its format), else the one the
    extension names; DataError when it is not one of `allowed` (default: every format)."""
    allowed = format_names() if allowed is None else tuple(allowed)
    if format is not None:
        fmt = format_aliases().get(format, format)
        if fmt not in allowed:
            why = _not_allowed(fmt, allowed)
            raise DataError(why or f"unknown format {format!r}; expected one of "
                            f"{', '.join(allowed)}", path=str(path), reason="unknown format")
        return fmt
    ext = Path(path).suffix.lower()
    fmt = format_extensions().get(ext)
    if fmt not in allowed:
        known = sorted(e for f in allowed for e in _FORMATS[f].extensions)
        why = _not_allowed(fmt, allowed) if fmt else None
        raise DataError(f"cannot tell the format from the extension {ext or '(none)'!r}"
                        f"{': ' + why if why else ''}; use one of {', '.join(known)} or name "
                        f"the format ({', '.join(allowed)})", path=str(path),
                        reason="unknown format")
    return fmt


def detect_labelled_format(path: PathLike, format: str | None = None) -> str:
    """`detect_format` among the formats that carry spans (what training, evaluation,
    validation and conversion read); a format without spans is refused, saying which do."""
    return detect_format(path, format, format_names(has_spans=True))


def _not_allowed(fmt: str, allowed: Sequence[str]) -> str | None:
    """Why a registered format is refused here (None when `fmt` is not registered)."""
    if fmt not in _FORMATS:
        return None
    if not _FORMATS[fmt].has_spans and all(_FORMATS[a].has_spans for a in allowed):
        return (f"{fmt} carries no spans, and labelled data must be in a format that does "
                f"({', '.join(allowed)})")
    return f"{fmt} cannot be used here (only {', '.join(allowed)})"


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


def iter_records(path: PathLike, format: str | None = None, strict: bool = True,
                 issues: RowIssues | None = None, *, labelled: bool = False
                 ) -> Iterator[Record]:
    """Stream valid Records from a file in any registered format. strict: the first bad row
    raises DataError naming file, line (row for Parquet) and field; lenient (strict=False): bad
    rows are skipped into `issues`, which is then required so that nothing goes unseen.
    `labelled`: the data must carry spans (a CSV or Parquet file is refused, saying which
    formats do)."""
    name = detect_labelled_format(path, format) if labelled else detect_format(path, format)
    if issues is None:
        if not strict:
            raise ValueError("lenient reading needs an `issues` tally to record skipped rows")
        issues = RowIssues()
    fmt = _FORMATS[name]
    return validated_records(fmt.read_rows(Path(path)), path, strict, issues, fmt.id_field,
                             fmt.always_skip)


def read_records(path: PathLike, format: str | None = None, strict: bool = True, *,
                 labelled: bool = False) -> tuple[list[Record], RowIssues]:
    """All valid Records of a file and the tally of what was skipped (see `iter_records`)."""
    issues = RowIssues()
    return list(iter_records(path, format, strict, issues, labelled=labelled)), issues


def validated_records(rows: Iterator[RecordRow], path: PathLike, strict: bool,
                      issues: RowIssues, id_field: str = "id",
                      always_skip: Sequence[str] = ()) -> Iterator[Record]:
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
            if strict and err.reason not in always_skip:
                raise err from None
            issues.skip(err)
            continue
        yield record


def write_records(records: Iterable[Record], path: PathLike, format: str | None = None, *,
                  strict: bool = True) -> WriteIssues:
    """Write Records; returns what the format could not hold (overlaps dropped, fields lost).

    The one writer of record files: every record is checked (`check_record`, unique ids); a
    record the format cannot represent raises DataError (strict) or is skipped into the
    returned issues (strict=False). The file appears only once everything is written.
    """
    fmt = _FORMATS[detect_format(path, format, format_names(writable=True))]
    encode = fmt.write
    assert encode is not None  # only writable formats were allowed
    issues = WriteIssues()
    path = Path(path)

    def encoded() -> Iterator[Any]:
        ids = IdTracker(fmt.id_field, unit="record")
        for n, record in enumerate(records, 1):
            issues.rows_read += 1
            try:
                check_record(record, fmt.id_field)
                ids.check(record.id, n)
                yield encode(record, issues)
            except DataError as e:
                err = DataError(f"record {n} (id {record.id!r}): {e.message}", path=str(path),
                                field=e.field, reason=e.reason)
                if strict:
                    raise err from None
                issues.skip(err)

    with atomic_write(path, "wb" if fmt.binary else "w", newline="\n") as f:
        fmt.save(encoded(), f)
    return issues


# --------------------------------------------------------------------------------------------
# Raw input rows (batch prediction)
# --------------------------------------------------------------------------------------------


def read_input(path: PathLike, format: str | None = None, batch_size: int = 32
               ) -> Iterator[InputRow]:
    """Stream the rows of an input file for prediction (fatal DataError only if the file itself
    is unreadable: missing, unknown format, no id/text column). A format without a raw reader
    of its own gives its records, read leniently: the rows the parser skips are error rows."""
    fmt = _FORMATS[detect_format(path, format)]
    path = check_readable(path)
    if fmt.read_input is not None:
        return fmt.read_input(path, batch_size)
    issues = RowIssues()
    records = validated_records(fmt.read_rows(path), path, False, issues, fmt.id_field)
    return record_input_rows(records, issues)


# --------------------------------------------------------------------------------------------
# Tables with a header (catalog tables, synonym lists, suggestion files)
# --------------------------------------------------------------------------------------------

TABLE_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl",
                    ".ndjson": "jsonl"}
"""`read_table`'s formats: here a .tsv is a table with a header, not JAVE TSV."""


def read_table(path: PathLike, required: Sequence[str], format: str | None = None,
               unique_header: bool = False) -> Iterator[RawRow]:
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


def _located(rows: Iterator[RawRow], path: PathLike) -> Iterator[RawRow]:
    for line, row in rows:
        yield line, row.located(str(path), line) if isinstance(row, DataError) else row


__all__ = ["Format", "TABLE_EXTENSIONS", "detect_format", "detect_labelled_format",
           "format_aliases", "format_extensions", "format_named", "format_names", "iter_records",
           "read_input", "read_records", "read_table", "register", "unregister",
           "validated_records", "write_chunks", "write_records"]
