"""Batch prediction over files: streaming, resumable, and a bad row never stops the sweep.

`predict_file` reads JSONL, JAVE TSV, CoNLL, CSV or Parquet (the reader registry,
`mjave.data.formats`) batch by batch and writes JSONL, CSV or Parquet batch by batch, so memory stays bounded by the batch size; the ids seen, which
duplicate detection and `resume` need, move to a temporary SQLite file past 100,000
(`mjave.inference.idset`), so memory is flat at any number of rows. A row that cannot be
predicted (no id, no text, a text that is not a string or not valid Unicode, a text over the
hard cap, an unreadable image, a FIFO or a path outside `image_root`) becomes an output row
`{"id", "error"}` and is counted by reason in the returned `PredictSummary`. Rows are checked
and turned into the Extractor's inputs by `mjave.data.rows` (the checks, limits and image-root
rule the Ray engine and the server share). Rows are predicted in chunks of at most
`batch_size` rows and `CHUNK_CHARS` characters (`mjave.inference.windows`), so a long text is
predicted on its own after the rows before it are written. Only what makes the whole run
meaningless is fatal: a missing model, an unreadable input file, an input without id/text
columns.

`resume=True` skips ids the output already holds (error rows included: delete them from the
output to retry them) and appends the rest. JSONL and CSV outputs are appended in place (an
incomplete last row, left by a kill, is cut off first); a Parquet file cannot be appended to and
is only complete once closed, so each run writes a whole file: the first `OUT.parquet`, each
resumed run a new part `OUT.part-00001.parquet` beside it (read them together with
`pyarrow.dataset.dataset([...])` or `pandas.read_parquet` on the list). See docs/inference.md.

`layout="long"` or `"wide"` writes each output row as table rows (`mjave.inference.tables`)
instead of one row with the values as lists; `predict_rows` runs the same sweep over rows held
in memory (`Extractor.predict_frame`).
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from mjave.data.errors import DataError
from mjave.data.formats import FORMATS, InputRow, detect_format, read_input
from mjave.data.formats.parquet import parquet_row_count, pyarrow_parquet
from mjave.data.outputs import check_not_input
from mjave.data.rows import (MAX_TEXT_CHARS, check_id, check_text, check_values,
                             duplicate_id, escape_surrogates, id_key, to_item)
from mjave.inference.idset import IdRegistry
from mjave.inference.windows import chunk_fits

if TYPE_CHECKING:  # tables imports this module: imported where it is used
    from mjave.inference.tables import TableLayout
from mjave.logs import make_bar

INPUT_FORMATS = FORMATS
"""Input formats: those of the reader registry (`mjave.data.formats`)."""
OUTPUT_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet",
                     ".pq": "parquet"}
CSV_COLUMNS = ("id", "cid", "category", "text", "image", "attributes", "values", "warning",
               "error", "extra")
"""Output CSV columns; `attributes`, `values` and `extra` (other input fields) hold JSON."""

PathLike = str | os.PathLike


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


@dataclass
class PredictSummary:
    """What one `predict_file` run did. `rows` = ok + failed + skipped."""

    input: str
    output: str
    rows: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0          # ids already in the output (resume)
    warned: int = 0           # ok rows predicted with a warning (e.g. zero image features)
    reasons: Counter = field(default_factory=Counter)    # failure reason -> rows
    warnings: Counter = field(default_factory=Counter)   # warning text -> rows
    files: list[str] = field(default_factory=list)       # files written by this run
    truncated_rows: int = 0   # incomplete rows of a killed run cut from the output (resume)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "output": self.output, "rows": self.rows, "ok": self.ok,
                "failed": self.failed, "skipped": self.skipped, "warned": self.warned,
                "reasons": dict(self.reasons), "warnings": dict(self.warnings),
                "files": list(self.files), "truncated_rows": self.truncated_rows,
                "seconds": self.seconds}

    def summary(self) -> str:
        """A few human-readable lines (what the CLI prints)."""
        head = (f"{self.rows} rows from {self.input}: {self.ok} predicted, {self.failed} failed"
                f", {self.skipped} skipped (already in the output) in {self.seconds:.1f} s")
        lines = [head, f"output: {', '.join(self.files) or self.output}"]
        if self.reasons:
            lines.append("failures: " + ", ".join(f"{n} x {r}"
                                                  for r, n in self.reasons.most_common()))
        if self.warnings:
            lines.append("warnings: " + ", ".join(f"{n} x {w}"
                                                  for w, n in self.warnings.most_common()))
        if self.truncated_rows:
            lines.append(f"cut {self.truncated_rows} incomplete row(s) left in the output by an "
                         "interrupted run (predicted again)")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------


def detect_input_format(path: PathLike, input_format: str | None = None) -> str:
    """The input's format: the registry's detection (`mjave.data.formats.detect_format`)."""
    return detect_format(path, input_format)


def detect_output_format(path: PathLike) -> str:
    ext = Path(path).suffix.lower()
    if ext not in OUTPUT_EXTENSIONS:
        raise DataError(f"the output format comes from its extension: use one of "
                        f"{', '.join(sorted(OUTPUT_EXTENSIONS))}, not {ext or '(none)'!r}",
                        path=str(path), reason="unknown format")
    return OUTPUT_EXTENSIONS[ext]


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}
"""Characters that `str.splitlines` (and some JSONL readers) take for a line end but JSON leaves
raw: escaped, so one output row is always one line whatever splits it."""


def json_text(value: Any) -> str:
    """A value as compact JSON (non-JSON values as their str), storable as UTF-8: a lone
    surrogate in a string stays its `\\udXXX` escape, which reads back as the same string, and
    U+0085 / U+2028 / U+2029 are escaped too (`LINE_BREAKS`)."""
    return escape_surrogates(json.dumps(value, ensure_ascii=False, default=str)
                             ).translate(LINE_BREAKS)


def text_or_none(value: Any) -> str | None:
    """A string as is (a lone surrogate as its escape), None as None, anything else as JSON
    (a Parquet string column)."""
    if value is None:
        return None
    return escape_surrogates(value) if isinstance(value, str) else json_text(value)


class _JsonlWriter:
    def __init__(self, path: Path, append: bool):
        self.path = path
        self.files = [str(path)]
        self._f = open(path, "a" if append else "w", encoding="utf-8", newline="\n")

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        self._f.write("".join(json_text(r) + "\n" for r in rows))
        self._f.flush()  # a kill loses at most the batch being written (resume cuts it off)

    def close(self) -> None:
        self._f.close()


def _csv_values(row: dict[str, Any]) -> list[str]:
    extra = {k: v for k, v in row.items() if k not in CSV_COLUMNS}
    out = []
    for col in CSV_COLUMNS:
        if col == "extra":
            v: Any = json_text(extra) if extra else ""
        elif col in ("attributes", "values"):
            v = json_text(row[col]) if col in row else ""
        else:
            v = row.get(col)
            v = "" if v is None else text_or_none(v)
        out.append(v)
    return out


def _table_cells(columns: Sequence[str]) -> Callable[[dict[str, Any]], list[str]]:
    """A table row's cells as CSV text (None as empty), in `columns` order."""
    return lambda row: ["" if row[c] is None else str(row[c]) for c in columns]


class _CsvWriter:
    def __init__(self, path: Path, append: bool, columns: Sequence[str] = CSV_COLUMNS,
                 values: Callable[[dict[str, Any]], list[str]] = _csv_values):
        self.path = path
        self.files = [str(path)]
        header = not append or path.stat().st_size == 0
        self._f = open(path, "a" if append else "w", encoding="utf-8", newline="")
        self._w = csv.writer(self._f, lineterminator="\n")
        # csv quotes only the line terminator's characters: a bare "\r" in a value would end
        # the row for every reader, so a row holding one is written fully quoted
        self._quoted = csv.writer(self._f, lineterminator="\n", quoting=csv.QUOTE_ALL)
        self._values = values
        if header:
            self._w.writerow(columns)
            self._f.flush()

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        for values in map(self._values, rows):
            (self._quoted if any("\r" in v for v in values) else self._w).writerow(values)
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def parquet_schema() -> Any:
    import pyarrow as pa
    return pa.schema([
        ("id", pa.string()), ("cid", pa.string()), ("category", pa.string()),
        ("text", pa.string()), ("image", pa.string()),
        ("attributes", pa.list_(pa.struct([("name", pa.string()), ("score", pa.float64())]))),
        ("values", pa.list_(pa.struct([("attribute", pa.string()), ("value", pa.string()),
                                       ("begin", pa.int64()), ("end", pa.int64()),
                                       ("score", pa.float64())]))),
        ("warning", pa.string()), ("error", pa.string()), ("extra", pa.string()),
    ])


def _parquet_record(r: dict[str, Any]) -> dict[str, Any]:
    """An output row as a record of `parquet_schema`."""
    extra = {k: v for k, v in r.items() if k not in CSV_COLUMNS}
    return {"id": text_or_none(r.get("id")), "cid": text_or_none(r.get("cid")),
            "category": text_or_none(r.get("category")),
            "text": text_or_none(r.get("text")), "image": text_or_none(r.get("image")),
            "attributes": r.get("attributes"), "values": r.get("values"),
            "warning": text_or_none(r.get("warning")),
            "error": text_or_none(r.get("error")),
            "extra": json_text(extra) if extra else None}


class _ParquetWriter:
    """One file, written under a temporary name and renamed when complete (Parquet is only
    readable once its footer is written). Rows are buffered into row groups of
    `row_group_rows`, so memory stays bounded."""

    def __init__(self, path: Path, row_group_rows: int = 1024, schema: Any = None,
                 record: Callable[[dict[str, Any]], dict[str, Any]] | None = None):
        pq = pyarrow_parquet()
        self.path = path
        self.files = [str(path)]
        self._tmp = path.with_name(path.name + ".tmp")
        self._schema = parquet_schema() if schema is None else schema
        self._record = _parquet_record if record is None else record
        self._writer = pq.ParquetWriter(str(self._tmp), self._schema)
        self._rows: list[dict[str, Any]] = []
        self._group = row_group_rows

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        self._rows.extend(map(self._record, rows))
        if len(self._rows) >= self._group:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            import pyarrow as pa
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self._schema))
            self._rows = []

    def close(self) -> None:
        self._flush()
        self._writer.close()
        os.replace(self._tmp, self.path)


class _TableWriter:
    """Writes each output row of the sweep as its table rows (`TableLayout.rows`)."""

    def __init__(self, inner: Any, table: "TableLayout"):
        self.inner = inner
        self.table = table
        self.files = inner.files

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        self.inner.write([t for r in rows for t in self.table.rows(r)])

    def close(self) -> None:
        self.inner.close()


class _ListWriter:
    """Keeps the output rows in memory (`predict_rows`)."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.rows: list[dict[str, Any]] = []

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        self.rows.extend(rows)

    def close(self) -> None:
        pass


def _new_writer(path: Path, fmt: str, append: bool, table: "TableLayout | None") -> Any:
    """The writer of one output format; a table layout writes each row's table rows."""
    if table is None:
        if fmt == "parquet":
            return _ParquetWriter(path)
        return _JsonlWriter(path, append) if fmt == "jsonl" else _CsvWriter(path, append)
    if fmt == "parquet":
        inner: Any = _ParquetWriter(path, schema=table.arrow_schema(), record=dict)
    elif fmt == "csv":
        inner = _CsvWriter(path, append, table.columns, _table_cells(table.columns))
    else:
        inner = _JsonlWriter(path, append)
    return _TableWriter(inner, table)


# --------------------------------------------------------------------------------------------
# Resume: which ids the output already holds
# --------------------------------------------------------------------------------------------


class _ItemIds:
    """The ids of an output's rows, item by item. In the long layout an item's rows follow one
    another and a kill may have stopped the writer between two of them, so the last item's rows
    are dropped on resume (it is predicted again); elsewhere one row is one item."""

    def __init__(self, done: IdRegistry, whole_items: bool):
        self.done = done
        self.whole_items = whole_items
        self.key: str | None = None
        self.start = 0      # where the current item's first row begins
        self.open = False

    def add(self, key: str | None, start: int) -> None:
        """A complete row of item `key` (None: no id) that begins at byte `start`."""
        if self.open and key == self.key:
            return
        self._close()
        self.key, self.start, self.open = key, start, True

    def _close(self) -> None:
        if self.open and self.key is not None:
            self.done.add(self.key)
        self.open = False

    def end(self, good_end: int) -> int:
        """Where the rows kept for resume end, given where the complete rows end."""
        if self.whole_items and self.open:
            self.open = False
            return self.start
        self._close()
        return good_end


def _keep_until(path: Path, end: int) -> None:
    """Cut the output at byte `end` (rows a killed run left incomplete)."""
    if end < path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(end)


def _check_layout(fields: Sequence[str], table: "TableLayout | None", path: Path) -> None:
    """Refuse to resume into an output written with another layout (or, wide, another model)."""
    from mjave.inference.tables import looks_tabular
    if table is None and not looks_tabular(fields) or (
            table is not None and tuple(fields) == table.columns):
        return
    layout = "nested" if table is None else table.name
    raise DataError(f"the output's first row has the fields {', '.join(fields)}, not those of "
                    f"--layout {layout}: it was written with another layout (or model); cannot "
                    "resume into it", path=str(path), reason="bad output")


def _jsonl_done(path: Path, table: "TableLayout | None" = None) -> tuple[IdRegistry, int]:
    """Ids in a JSONL output; an incomplete last line (a killed run) is cut off, and in the
    long layout the last item's rows too (`_ItemIds`)."""
    done = IdRegistry(folder=path.parent)
    items = _ItemIds(done, whole_items=table is not None and table.name == "long")
    good_end = 0
    cut = 0
    checked = False
    with open(path, "rb") as f:
        pos = 0
        for n, raw in enumerate(f, 1):
            pos += len(raw)
            complete = raw.endswith(b"\n")
            try:
                obj = json.loads(raw.decode("utf-8")) if raw.strip() else None
            except (UnicodeDecodeError, json.JSONDecodeError):
                obj = complete = False  # type: ignore[assignment]
            if not complete:
                if f.read(1):
                    raise DataError(f"line {n} of the output is not a complete JSON row; "
                                    "cannot resume into it", path=str(path),
                                    reason="bad output")
                cut = 1
                break
            if isinstance(obj, dict):
                if not checked:
                    _check_layout(list(obj), table, path)
                    checked = True
                items.add(id_key(obj.get("id")), good_end)
            good_end = pos
    _keep_until(path, items.end(good_end))
    return done, cut


def _csv_done(path: Path, table: "TableLayout | None" = None) -> tuple[IdRegistry, int]:
    """Ids in a CSV output written by `predict_file`; an incomplete last row is cut off, and in
    the long layout the last item's rows too (`_ItemIds`)."""
    columns = CSV_COLUMNS if table is None else table.columns
    done = IdRegistry(folder=path.parent)
    items = _ItemIds(done, whole_items=table is not None and table.name == "long")
    consumed = 0
    last_line = b""

    def lines(f: Any) -> Iterator[str]:
        nonlocal consumed, last_line
        for raw in f:
            consumed += len(raw)
            last_line = raw
            yield raw.decode("utf-8", "surrogateescape")

    good_end = 0
    cut = 0
    with open(path, "rb") as f:
        reader = csv.reader(lines(f), strict=True)
        header = True
        while True:
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error:
                cut = 1
                break
            if not last_line.endswith(b"\n"):
                cut = 1
                break
            if header:
                if tuple(values) != columns:
                    layout = "nested" if table is None else table.name
                    raise DataError(f"the output's header {values} is not the one predict_file "
                                    f"writes for --layout {layout} ({', '.join(columns)}): it "
                                    "was written with another layout (or model); cannot resume "
                                    "into it", path=str(path), reason="bad output")
                header = False
            elif values and len(values) == len(columns):
                items.add(values[0] or None, good_end)
            elif values:
                cut = 1
                break
            good_end = consumed
    _keep_until(path, items.end(good_end))
    return done, cut


def parquet_parts(path: Path) -> list[Path]:
    """`OUT.parquet` and its resume parts `OUT.part-NNNNN.parquet` that exist, in order."""
    parts = sorted(path.parent.glob(f"{path.stem}.part-[0-9][0-9][0-9][0-9][0-9]{path.suffix}"))
    return ([path] if path.exists() else []) + parts


def _parquet_done(path: Path, schema: Any) -> IdRegistry:
    """Ids in the Parquet output and its parts; each must have the columns of `schema` (a part
    of another layout cannot be read with them)."""
    pq = pyarrow_parquet()
    done = IdRegistry(folder=path.parent)
    for p in parquet_parts(path):
        try:
            pf = pq.ParquetFile(str(p))
            names = pf.schema_arrow.names
        except Exception as e:
            raise DataError(f"cannot read the existing output to resume: {e}", path=str(p),
                            reason="bad output") from None
        if names != schema.names:
            raise DataError(f"the output has the columns {', '.join(names)}, not "
                            f"{', '.join(schema.names)}: it was written with another --layout "
                            "(or model); cannot resume into it", path=str(p),
                            reason="bad output")
        try:
            for batch in pf.iter_batches(columns=["id"]):
                for v in batch.column(0).to_pylist():
                    if v is not None:
                        done.add(v)
        except Exception as e:
            raise DataError(f"cannot read the existing output to resume: {e}", path=str(p),
                            reason="bad output") from None
    return done


def _next_part(path: Path) -> Path:
    existing = parquet_parts(path)
    if not existing:
        return path
    numbers = [int(p.stem.rsplit("-", 1)[1]) for p in existing if p != path]
    return path.with_name(f"{path.stem}.part-{max(numbers, default=0) + 1:05d}{path.suffix}")


def _open_output(path: Path, fmt: str, resume: bool, summary: PredictSummary,
                 table: "TableLayout | None" = None) -> tuple[Any, IdRegistry]:
    """The writer for this run and the ids the output already holds (resume only). JSONL and
    CSV are written in place, not by atomic rename: a killed run's rows must stay where
    `resume` finds them (`predict_file` has refused an output that is the input before).
    `table`: write that table layout (None: nested)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    done = IdRegistry(folder=path.parent)
    if fmt == "parquet":
        for stale in path.parent.glob(f"{path.stem}*{path.suffix}.tmp"):
            stale.unlink()  # left by a killed run; it never became readable
        if resume:
            done = _parquet_done(path, parquet_schema() if table is None
                                 else table.arrow_schema())
            return _new_writer(_next_part(path), fmt, False, table), done
        for old in parquet_parts(path):
            old.unlink()  # a fresh run replaces the output and its resume parts
        return _new_writer(path, fmt, False, table), done
    exists = path.exists() and path.stat().st_size > 0
    if resume and exists:
        done, summary.truncated_rows = (_jsonl_done(path, table) if fmt == "jsonl"
                                        else _csv_done(path, table))
    return _new_writer(path, fmt, resume and exists, table), done


# --------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------




@dataclass
class _Pending:
    row: InputRow
    out: dict[str, Any]
    item: dict[str, Any] | None = None   # the Extractor's input (`mjave.data.rows.to_item`)
    error: DataError | None = None


def _base_row(row: InputRow, include_text: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"id": row.id}
    for k in ("cid", "category"):
        if k in row.extra:
            out[k] = row.extra[k]
    if include_text and isinstance(row.text, str):
        out["text"] = row.text
    if row.image is not None and not isinstance(row.image, (bytes, bytearray)):
        out["image"] = row.image  # a path; no image blobs in the output
    return out


def writable_row(row: InputRow) -> InputRow:
    """The row if every field can be written as standard JSON (`check_values`), else an
    error row keeping only its id: a NaN, an integer too long to write or a value nested too
    deep cannot go into any output, so it must not stop the writer (and the sweep). An error
    row from the reader keeps its id only when that is a valid id (a row whose `cid` is too
    long may have an id like `[Infinity]`)."""
    if row.error is not None:
        return row if row.id is None or id_key(row.id) is not None else \
            InputRow(row.number, None, error=row.error)
    try:
        check_values({"id": row.id, "text": row.text, "image": row.image, **row.extra})
    except DataError as e:
        return InputRow(row.number, row.id if id_key(row.id) is not None else None, error=e)
    return row


def _with_extra(out: dict[str, Any], row: InputRow) -> dict[str, Any]:
    for k, v in row.extra.items():
        out.setdefault(k, v)
    return out


SORTED_BATCHES = 8
"""Batches of rows `predict_file` gathers, then predicts ordered by length (and writes in order)."""


class _Sweep:
    """State of one `predict_file` run: checks rows, batches them, writes in input order."""

    def __init__(self, extractor: Any, writer: Any, done: IdRegistry, summary: PredictSummary,
                 batch_size: int, image_root: PathLike | None, include_text: bool, bar: Any):
        self.extractor = extractor
        self.writer = writer
        self.done = done
        # ids of this run -> first row number, on disk past 100k ids (flat memory)
        self.seen = IdRegistry(folder=Path(writer.files[0]).parent if writer.files else None)
        self.summary = summary
        self.batch_size = batch_size
        self.image_root = image_root
        self.include_text = include_text
        self.bar = bar
        self.buffer: list[_Pending] = []
        # rows gathered before a flush: it predicts them by length, batch_size at a time, so
        # more rows per flush means less padding (CHUNK_CHARS still bounds a flush)
        self.chunk_items = batch_size * SORTED_BATCHES
        self.to_predict = 0
        self.chars = 0   # characters of the texts to predict in the buffer
        self.max_text_chars = getattr(extractor, "max_text_chars", MAX_TEXT_CHARS)

    def add(self, row: InputRow) -> None:
        self.summary.rows += 1
        row = writable_row(row)
        done_key = id_key(row.id)
        if done_key and done_key in self.done:   # resume: error rows with an id included
            self.summary.skipped += 1
            self._tick(1)
            return
        out = _base_row(row, self.include_text)
        if row.error is not None:
            self._fail(row, out, row.error)
            return
        try:
            key = check_id(row.id)
        except DataError as e:
            self._fail(row, out, e)
            return
        first = self.seen.get(key)
        if first is not None:
            self._fail(row, out, duplicate_id(key, f"row {first}"))
            return
        self.seen.add(key, row.number)
        try:
            text = check_text(row.text, self.max_text_chars)
            item = to_item(row, self.image_root, uses_image=self.extractor.uses_image,
                           missing_image=self.extractor.missing_image, confine=True)
        except DataError as e:
            self._fail(row, out, e)
            return
        if not chunk_fits(self.to_predict, self.chars, len(text), self.chunk_items):
            self.flush()  # a long text: the rows before it are written first
        self.buffer.append(_Pending(row, out, item))
        self.to_predict += 1
        self.chars += len(text)
        if self.to_predict >= self.chunk_items:
            self.flush()

    def _fail(self, row: InputRow, out: dict[str, Any], error: DataError) -> None:
        msg = str(error)
        out["error"] = f"row {row.number}: {msg}" if row.number else msg
        self.buffer.append(_Pending(row, _with_extra(out, row), error=error))
        self.summary.failed += 1
        self.summary.reasons[error.reason] += 1
        if len(self.buffer) >= 4 * self.chunk_items:
            self.flush()

    def _tick(self, n: int) -> None:
        if self.bar is not None and n:
            self.bar.update(n)

    def flush(self) -> None:
        if not self.buffer:
            return
        todo = [p for p in self.buffer if p.error is None]
        # by length, batch_size at a time: batches of like lengths carry little padding
        todo.sort(key=lambda p: len(p.item["text"]))
        results = [res for s in range(0, len(todo), self.batch_size)
                   for res in self.extractor.predict_batch(
                       [p.item for p in todo[s:s + self.batch_size]], errors="return")]
        for p, res in zip(todo, results):
            if "error" in res:
                p.out["error"] = f"row {p.row.number}: {res['error']}"
                self.summary.failed += 1
                self.summary.reasons[res.get("reason", "error")] += 1
            else:
                p.out["attributes"] = res["attributes"]
                p.out["values"] = res["values"]
                if res.get("warning"):
                    p.out["warning"] = res["warning"]
                    self.summary.warned += 1
                    self.summary.warnings[re.split(r"[:(]", res["warning"])[0].strip()] += 1
                self.summary.ok += 1
            _with_extra(p.out, p.row)
        self.writer.write([p.out for p in self.buffer])
        self._tick(len(self.buffer))
        self.buffer = []
        self.to_predict = 0
        self.chars = 0


def predict_file(model_dir_or_extractor: Any, input_path: PathLike, output_path: PathLike,
                 batch_size: int = 32, device: str = "auto", resume: bool = False,
                 image_root: PathLike | None = None, progress: Any = None,
                 input_format: str | None = None, include_text: bool = True,
                 max_text_chars: int | None = None, max_image_pixels: int | None = None,
                 layout: str = "nested") -> PredictSummary:
    """Predict every row of `input_path` into `output_path` (format by extension).

    `model_dir_or_extractor`: a model folder or a loaded `Extractor` (then `device` is unused).
    `progress`: True for a tqdm bar, or a factory `progress(total=, desc=, unit=)` returning a
    tqdm-like object. `image_root`: folder image paths are relative to, and where
    `<cid or id>.jpg|.jpeg|.png|.webp` is looked for when a row names no image (as in training);
    it confines them as the server's does (`mjave.data.rows.image_in_root`: no `..`, no path
    outside it, symlinks included). `max_text_chars` / `max_image_pixels`: the limits of the
    loaded model (None: `mjave.data.rows`' defaults); a given Extractor keeps its own.
    `layout`: "nested" (one row per input row, values as lists), "long" (one row per value) or
    "wide" (one column per attribute): `mjave.inference.tables`.
    Raises DataError / FileNotFoundError / ImportError only for fatal problems; bad rows are
    error rows, counted in the summary.
    """
    start = time.perf_counter()
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, not {batch_size}")
    for name, limit in (("max_text_chars", max_text_chars), ("max_image_pixels", max_image_pixels)):
        if limit is not None and limit < 1:
            raise ValueError(f"{name} must be positive, not {limit}")
    from mjave.inference.tables import LAYOUTS, TableLayout
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    input_path, output_path = Path(input_path), Path(output_path)
    out_fmt = detect_output_format(output_path)
    check_not_input(output_path, [input_path])
    rows = read_input(input_path, input_format, batch_size)
    if isinstance(model_dir_or_extractor, (str, os.PathLike)):
        from mjave.inference.extractor import Extractor
        extractor = Extractor.load(model_dir_or_extractor, device=device, batch_size=batch_size)
        if max_text_chars is not None:
            extractor.max_text_chars = max_text_chars
        if max_image_pixels is not None:
            extractor.max_image_pixels = max_image_pixels
    else:
        if (max_text_chars, max_image_pixels) != (None, None):
            raise ValueError("max_text_chars / max_image_pixels apply to a model folder; set "
                             "them on the Extractor you pass")
        extractor = model_dir_or_extractor
    summary = PredictSummary(str(input_path), str(output_path))
    total = (parquet_row_count(input_path)
             if detect_input_format(input_path, input_format) == "parquet" else None)
    table = None if layout == "nested" else TableLayout.of(layout, extractor.attributes)
    writer, done = _open_output(output_path, out_fmt, resume, summary, table)
    summary.files = list(writer.files)
    bar = make_bar(progress, total, f"predict {input_path.name}", "row")
    sweep = _Sweep(extractor, writer, done, summary, batch_size, image_root, include_text, bar)
    try:
        _run_sweep(sweep, rows)
    finally:
        # Also on an exception (Ctrl-C): what was written stays readable, so resume continues.
        if bar is not None:
            bar.close()
        writer.close()
        summary.seconds = time.perf_counter() - start
    return summary


def _run_sweep(sweep: _Sweep, rows: Iterable[InputRow]) -> None:
    """Every row through the sweep, then its id sets closed (also on an exception)."""
    try:
        for row in rows:
            sweep.add(row)
        sweep.flush()
    finally:
        sweep.seen.close()
        sweep.done.close()


def predict_rows(extractor: Any, rows: Iterable[InputRow], batch_size: int = 32,
                 image_root: PathLike | None = None, include_text: bool = True
                 ) -> tuple[list[dict[str, Any]], PredictSummary]:
    """The output rows (nested) of rows held in memory, and the summary: the sweep of
    `predict_file` (same checks, error rows, duplicate ids and batches), so a DataFrame
    (`Extractor.predict_frame`) gets what a file of the same rows gets."""
    start = time.perf_counter()
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, not {batch_size}")
    writer = _ListWriter()
    summary = PredictSummary("(rows)", "(rows)")
    sweep = _Sweep(extractor, writer, IdRegistry(), summary, batch_size, image_root,
                   include_text, None)
    _run_sweep(sweep, rows)
    summary.seconds = time.perf_counter() - start
    return writer.rows, summary


__all__ = ["CSV_COLUMNS", "INPUT_FORMATS", "InputRow", "PredictSummary", "detect_input_format",
           "detect_output_format", "json_text", "parquet_parts", "parquet_schema",
           "predict_file", "predict_rows", "read_input", "text_or_none", "writable_row"]
