"""Label Studio: read its JSON export into Records, write Records or predictions as its tasks,
and write the labelling config the tasks are made for.

Most teams label in Label Studio, so its export is a training set and `mjave predict` output is
a pre-annotation to correct there. The rules (see docs/integrations.md, "Label Studio"):

- One task is one Record: the text is `data[text_key]`, the id `data.id` if present else the
  task id, `cid` / `category` / the image (`data[image_key]`) go to their fields, every other
  data key to `extra`.
- The annotation read is a `ground_truth` one if any, else the latest (`updated_at`, then
  `created_at`, then list order); cancelled ones are never read. A task left without one is
  skipped and counted (reason `no annotation`), never read as a text without values: to a
  trainer that would say "this text has no values". `unannotated="keep"` reads it without
  spans (to predict on it).
- Only `labels` results are spans (one per label); other result types (choices, rectangles,
  relations) are left out. A result whose `value.text` is not `text[start:end]` is an error of
  the task naming the task and the field: strict reading raises, lenient skips the whole task
  (a task with a value dropped would teach the model that the value is not one). Offsets are
  code points, as Label Studio writes them since 1.x; offsets in UTF-16 units (older versions,
  texts with emoji) are recognised by the value text and converted.
- Image URLs keep their file part: `/data/local-files/?d=PATH` becomes `PATH` (relative to
  Label Studio's local files root), `/data/upload/N/FILE` becomes `upload/N/FILE` (relative to
  its media folder); other URLs are kept as they are.

Tasks are written with `from_name` "label" and `to_name` "text", the names `labeling_config`
gives the tags, so the tasks and the config always match.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import parse_qs, quote, urlsplit
from xml.sax.saxutils import escape

from mjave import __version__
from mjave.data.errors import DataError, RowIssues
from mjave.data.formats.registry import validated_records
from mjave.data.formats.predictions import prediction_record
from mjave.data.formats.registry import Format, register
from mjave.data.formats.row_types import RecordRow
from mjave.data.formats.write_issues import WriteIssues
from mjave.data.outputs import atomic_write, check_not_input
from mjave.data.paths import PathLike
from mjave.data.records import Record, Span
from mjave.data.validate import IdTracker, check_record

LABELS_NAME = "label"
"""`from_name` of every result written: the `<Labels name=...>` of `labeling_config`."""
TEXT_NAME = "text"
"""`to_name` of every result written: the `<Text name=...>` of `labeling_config`."""
IMAGE_NAME = "image"
"""The `<Image name=...>` of `labeling_config`."""
RECORD_KEYS = ("id", "cid", "category")
"""Data keys read into Record fields (besides the text and image keys); the rest go to extra."""
UNANNOTATED = ("skip", "keep")
LOCAL_FILES = "/data/local-files/?d="
"""The URL prefix Label Studio serves local-storage files under (`image_prefix=` of the writer)."""


# ----------------------------------------------------------------------------- the export file

def export_tasks(path: PathLike) -> Iterator[tuple[int, Any]]:
    """(line where the task starts, the parsed task) of each element of the export's JSON array.

    The line locates errors like the other formats' lines do. A file that is not a JSON array
    (unreadable, not UTF-8, invalid JSON) cannot be read at all: a DataError at once."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise DataError(f"cannot read the file: {e.strerror}", path=str(path),
                        reason="unreadable file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"not valid UTF-8 at byte {e.start}", path=str(path),
                        reason="bad encoding") from None
    return _array_elements(text, str(path))


class _LineCounter:
    """The 1-based line of a position in `text`, for positions that only move forward
    (counted from the last one, so a large export is not rescanned per task)."""

    def __init__(self, text: str):
        self.text, self.pos, self.line = text, 0, 1

    def at(self, i: int) -> int:
        self.line += self.text.count("\n", self.pos, i)
        self.pos = i
        return self.line


def _array_elements(text: str, path: str) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    lines = _LineCounter(text)
    i = _skip_blank(text, 0)
    if text[i:i + 1] != "[":
        raise DataError("expected a JSON array of tasks (Label Studio's JSON export), found "
                        f"{text[i:i + 10]!r}", path=path, line=lines.at(i),
                        reason="not a task list")
    i = _skip_blank(text, i + 1)
    if text[i:i + 1] == "]":
        i += 1
    else:
        while True:
            line = lines.at(i)
            try:
                task, i = decoder.raw_decode(text, i)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON: {e.msg} at column {e.colno}", path=path,
                                line=e.lineno, reason="invalid JSON") from None
            except RecursionError:
                raise DataError("the task is nested too deeply to read", path=path, line=line,
                                reason="nested too deep") from None
            yield line, task
            i = _skip_blank(text, i)
            if text[i:i + 1] == "]":
                i += 1
                break
            if text[i:i + 1] != ",":
                raise DataError(f"invalid JSON: expected ',' or ']' after a task, found "
                                f"{text[i:i + 10]!r}", path=path, line=lines.at(i),
                                reason="invalid JSON")
            i = _skip_blank(text, i + 1)
    i = _skip_blank(text, i)
    if i < len(text):
        raise DataError("invalid JSON: text after the task array", path=path, line=lines.at(i),
                        reason="invalid JSON")


def _skip_blank(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


# ----------------------------------------------------------------------------- reading tasks

def choose_annotation(annotations: Any) -> tuple[int, dict[str, Any]] | None:
    """(index, annotation) of the one to read: a ground-truth one first, then the latest
    (`updated_at`, then `created_at`, then list order); cancelled ones never. None if none."""
    if annotations is None:
        return None
    if not isinstance(annotations, list):
        raise DataError(f"'annotations' must be a list, found {type(annotations).__name__}",
                        field="annotations", reason="bad annotation")
    best: tuple[tuple[bool, str, int], dict[str, Any]] | None = None
    for k, a in enumerate(annotations):
        if not isinstance(a, dict):
            raise DataError(f"an annotation must be an object, found {type(a).__name__}",
                            field=f"annotations[{k}]", reason="bad annotation")
        if a.get("was_cancelled"):
            continue
        key = (bool(a.get("ground_truth")), str(a.get("updated_at") or a.get("created_at") or ""),
               k)
        if best is None or key > best[0]:
            best = (key, a)
    return None if best is None else (best[0][2], best[1])


def image_path(url: str) -> str:
    """The file part of a Label Studio image URL: `/data/local-files/?d=P` -> `P`,
    `/data/upload/N/F` -> `upload/N/F`; any other value unchanged (also with a host)."""
    parts = urlsplit(url)
    if parts.path.rstrip("/").endswith("/data/local-files"):
        d = parse_qs(parts.query).get("d")
        if d:
            return d[0]
    if parts.path.startswith("/data/upload/"):
        return parts.path[len("/data/"):]
    return url


def utf16_to_index(text: str, units: int) -> int | None:
    """The code-point index of a UTF-16 offset (what JavaScript counts), None if it falls
    inside a character or past the end."""
    n = 0
    for i, c in enumerate(text):
        if n == units:
            return i
        n += 2 if ord(c) > 0xFFFF else 1
        if n > units:
            return None
    return len(text) if n == units else None


def _offsets(text: str, start: int, end: int, value_text: Any) -> tuple[int, int]:
    """(begin, end) in code points: as given, or converted from UTF-16 units when that is what
    makes `value.text` match."""
    if value_text is None or text[start:end] == value_text:
        return start, end
    if any(ord(c) > 0xFFFF for c in text):
        b, e = utf16_to_index(text, start), utf16_to_index(text, end)
        if b is not None and e is not None and text[b:e] == value_text:
            return b, e
    return start, end


def _result_spans(text: str, result: dict[str, Any], where: str) -> list[Span]:
    """The spans of one `labels` result (one per label), checked against the text."""
    value = result.get("value")
    if not isinstance(value, dict):
        raise DataError("a labels result has no 'value' object", field=f"{where}.value",
                        reason="bad span")
    start, end = value.get("start"), value.get("end")
    for name, v in (("start", start), ("end", end)):
        if type(v) is not int:
            raise DataError(f"{name} must be an integer, found {v!r}",
                            field=f"{where}.value.{name}", reason="non-int offset")
    value_text = value.get("text")
    if value_text is not None and not isinstance(value_text, str):
        raise DataError(f"text must be a string, found {value_text!r}",
                        field=f"{where}.value.text", reason="value mismatch")
    begin, end = _offsets(text, start, end, value_text)
    if not 0 <= begin < end <= len(text):
        raise DataError(f"[{start}:{end}] is not a span of the text (length {len(text)})",
                        field=f"{where}.value.end", reason="span out of range")
    if value_text is not None and text[begin:end] != value_text:
        raise DataError(f"{value_text!r} differs from text[{start}:{end}] "
                        f"{text[start:end]!r}", field=f"{where}.value.text",
                        reason="value mismatch")
    labels = value.get("labels")
    if (not isinstance(labels, list) or not labels
            or not all(isinstance(a, str) and a.strip() for a in labels)):
        raise DataError(f"labels must be a non-empty list of attribute names, found {labels!r}",
                        field=f"{where}.value.labels", reason="missing attr")
    return [Span(begin, end, attr, text[begin:end]) for attr in labels]


def annotation_spans(text: str, annotation: dict[str, Any], where: str,
                     to_name: str | None = None) -> list[Span]:
    """The spans of an annotation's `labels` results, sorted, each once. `to_name` picks the
    text tag whose labels are read; None: the only one the results label (two is an error)."""
    result = annotation.get("result", [])
    if not isinstance(result, list):
        raise DataError(f"'result' must be a list, found {type(result).__name__}",
                        field=f"{where}.result", reason="bad annotation")
    spans: set[Span] = set()
    targets: set[Any] = set()
    for j, r in enumerate(result):
        if not isinstance(r, dict) or r.get("type") != "labels":
            continue
        if to_name is not None and r.get("to_name") != to_name:
            continue
        targets.add(r.get("to_name"))
        if len(targets) > 1:
            raise DataError(f"the results label more than one text ({sorted(map(str, targets))}"
                            "); name the one to read (to_name)", field=f"{where}.result[{j}]"
                            ".to_name", reason="several texts")
        spans.update(_result_spans(text, r, f"{where}.result[{j}]"))
    return sorted(spans, key=lambda s: (s.begin, s.end, s.attr))


def _str_field(data: dict[str, Any], key: str) -> str | None:
    """A string data value (an int id as its digits), None when absent."""
    v = data.get(key)
    if isinstance(v, int) and not isinstance(v, bool) and key == "id":
        v = str(v)
    if v is not None and not isinstance(v, str):
        raise DataError(f"must be a string, found {type(v).__name__}", field=f"data.{key}",
                        reason=f"bad {key}")
    return v


def task_record(task: Any, text_key: str = "text", image_key: str = "image",
                to_name: str | None = None, unannotated: str = "skip") -> Record:
    """The Record of one exported task (the rules are in the module docstring). Errors name
    the task and the field (`annotations[1].result[0].value.text`)."""
    if not isinstance(task, dict):
        raise DataError(f"expected a task object, found {type(task).__name__}",
                        reason="not an object")
    tid = task.get("id")
    try:
        return _task_record(task, text_key, image_key, to_name, unannotated)
    except DataError as e:
        raise DataError(f"task {tid}: {e.message}" if tid is not None else e.message,
                        field=e.field, reason=e.reason, row_id=e.row_id) from None


def _task_record(task: dict[str, Any], text_key: str, image_key: str, to_name: str | None,
                 unannotated: str) -> Record:
    data = task.get("data")
    if not isinstance(data, dict):
        raise DataError(f"'data' must be an object, found {type(data).__name__}", field="data",
                        reason="bad data")
    text = data.get(text_key)
    if not isinstance(text, str):
        raise DataError(f"no text: expected a string, found {type(text).__name__}",
                        field=f"data.{text_key}", reason="missing text")
    tid = task.get("id")
    rid = _str_field(data, "id") or (str(tid) if isinstance(tid, (int, str)) else None)
    if not rid:
        raise DataError("neither data.id nor the task id is set", field="data.id",
                        reason="missing id")
    chosen = choose_annotation(task.get("annotations"))
    if chosen is None and unannotated != "keep":
        raise DataError("no annotation (or only cancelled ones)", field="annotations",
                        reason="no annotation", row_id=rid)
    spans = [] if chosen is None else annotation_spans(text, chosen[1],
                                                        f"annotations[{chosen[0]}]", to_name)
    image = _str_field(data, image_key)
    skip = {text_key, image_key, *RECORD_KEYS}
    record = Record(id=rid, text=text, spans=spans, cid=_str_field(data, "cid"),
                    category=_str_field(data, "category"),
                    image=None if image is None else image_path(image),
                    extra={k: v for k, v in data.items() if k not in skip})
    try:
        check_record(record)
    except DataError as e:
        raise DataError(e.message, field=f"data.{text_key}" if e.field == "text" else e.field,
                        reason=e.reason, row_id=rid) from None
    return record


def labelstudio_rows(path: PathLike, *, text_key: str = "text", image_key: str = "image",
                     to_name: str | None = None, unannotated: str = "skip",
                     tally: RowIssues | None = None) -> Iterator[RecordRow]:
    """(line, parse) of each task, as the format registry reads rows. With `tally`, a task
    without an annotation is left out and counted there (reason `no annotation`) rather than
    yielded, so strict reading does not fail on it; without, it is a row error like any other."""
    if unannotated not in UNANNOTATED:
        raise ValueError(f"unannotated must be one of {UNANNOTATED}, not {unannotated!r}")
    for line, task in export_tasks(path):
        if tally is not None and unannotated == "skip" and _unannotated(task):
            tally.rows_read += 1
            tally.skip(DataError(f"task {task.get('id')}: no annotation (or only cancelled "
                                 "ones)", path=str(path), line=line, field="annotations",
                                 reason="no annotation"))
            continue
        yield line, (lambda task=task: task_record(task, text_key, image_key, to_name,
                                                   unannotated))


def _unannotated(task: Any) -> bool:
    """Whether a task has no annotation to read (False when that cannot be told: its row
    then fails with the reason)."""
    try:
        return isinstance(task, dict) and choose_annotation(task.get("annotations")) is None
    except DataError:
        return False


def read_labelstudio(path: PathLike, strict: bool = True, issues: RowIssues | None = None, *,
                     text_key: str = "text", image_key: str = "image",
                     to_name: str | None = None, unannotated: str = "skip"
                     ) -> Iterator[Record]:
    """Stream the Records of a Label Studio JSON export. strict: the first bad task raises a
    DataError naming the file, the line the task starts on, the task id and the field; lenient
    (strict=False): bad tasks are skipped into `issues` (then required). Tasks without an
    annotation are skipped into `issues` either way (or read without spans: `unannotated=
    "keep"`)."""
    if issues is None:
        if not strict:
            raise ValueError("lenient reading needs an `issues` tally to record skipped rows")
        issues = RowIssues()
    rows = labelstudio_rows(path, text_key=text_key, image_key=image_key, to_name=to_name,
                            unannotated=unannotated, tally=issues)
    return validated_records(rows, path, strict, issues)


# ----------------------------------------------------------------------------- writing tasks

def task_data(record: Record, text_key: str = "text", image_key: str = "image",
              image_prefix: str | None = None) -> dict[str, Any]:
    """The `data` of a record's task: the text, id, cid, category, image, then its extras.
    `image_prefix` (e.g. `LOCAL_FILES`) turns a file path into the URL Label Studio serves."""
    data: dict[str, Any] = {text_key: record.text, "id": record.id}
    for key in ("cid", "category"):
        if getattr(record, key) is not None:
            data[key] = getattr(record, key)
    if record.image is not None:
        data[image_key] = image_url(record.image, image_prefix)
    for k, v in record.extra.items():
        data.setdefault(k, v)  # an extra never overrides a Record field
    return data


def image_url(image: str, prefix: str | None) -> str:
    """`prefix` + the quoted path, for a plain path; a URL (or no prefix) unchanged."""
    if prefix is None or urlsplit(image).scheme or image.startswith("/data/"):
        return image
    return prefix + quote(image, safe="/")


def span_results(spans: Sequence[Span], scored: bool) -> list[dict[str, Any]]:
    """Label Studio `labels` results of spans (`score` per result when `scored`)."""
    results = []
    for i, s in enumerate(spans):
        r: dict[str, Any] = {"id": f"r{i}", "from_name": LABELS_NAME, "to_name": TEXT_NAME,
                             "type": "labels", "value": {"start": s.begin, "end": s.end,
                                                         "text": s.value, "labels": [s.attr]}}
        if scored and s.score is not None:
            r["score"] = s.score
        results.append(r)
    return results


def record_task(record: Record, predicted: bool, model_version: str | None = None,
                text_key: str = "text", image_key: str = "image",
                image_prefix: str | None = None) -> dict[str, Any]:
    """One import task: the record's spans as an annotation, or (`predicted`) as a prediction
    whose score is its least certain value's (the task to review first scores lowest)."""
    task: dict[str, Any] = {"data": task_data(record, text_key, image_key, image_prefix)}
    result = span_results(record.spans, scored=predicted)
    if not predicted:
        task["annotations"] = [{"result": result}]
        return task
    prediction: dict[str, Any] = {"model_version": model_version or f"mjave {__version__}"}
    scores = [s.score for s in record.spans if s.score is not None]
    if scores:
        prediction["score"] = min(scores)
    prediction["result"] = result
    task["predictions"] = [prediction]
    return task


AS = ("auto", "annotations", "predictions")


def write_labelstudio_tasks(items: Iterable[Record | dict[str, Any]], path: PathLike, *,
                            as_: str = "auto", model_version: str | None = None,
                            text_key: str = "text", image_key: str = "image",
                            image_prefix: str | None = None, strict: bool = True,
                            inputs: Iterable[Any] = ()) -> RowIssues:
    """Write Records or `mjave predict` rows (dicts) as a Label Studio task file (JSON array).

    `as_`: "auto" writes predict rows and records with scored spans as predictions, other
    records as annotations; "annotations" / "predictions" force one. A bad item raises
    (strict) or is skipped into the returned issues; predict error rows are always skipped
    and counted (reason `error row`): they hold nothing to label. `path` must not be one of
    `inputs`; the file appears only once complete."""
    if as_ not in AS:
        raise ValueError(f"as_ must be one of {AS}, not {as_!r}")
    check_not_input(path, inputs)
    issues = RowIssues()
    ids = IdTracker(unit="item")
    with atomic_write(path, newline="\n") as f:
        f.write("[")
        first = True
        for n, item in enumerate(items, 1):
            issues.rows_read += 1
            try:
                record = item if isinstance(item, Record) else prediction_record(item)
                check_record(record)
                ids.check(record.id, n)
                predicted = as_ == "predictions" or (as_ == "auto" and (
                    not isinstance(item, Record) or any(s.score is not None
                                                        for s in record.spans)))
                task = record_task(record, predicted, model_version, text_key, image_key,
                                   image_prefix)
                line = json.dumps(task, ensure_ascii=False, allow_nan=False)
            except (DataError, TypeError, ValueError) as e:
                err = _write_error(e, n, item, str(path))
                if strict and err.reason != "error row":
                    raise err from None
                issues.skip(err)
                continue
            f.write(("\n" if first else ",\n") + line)
            first = False
        f.write("\n]\n")
    return issues


def _write_error(e: Exception, n: int, item: Any, path: str) -> DataError:
    """The error of item `n`, naming it by its id where it has one."""
    rid = item.id if isinstance(item, Record) else (item.get("id") if isinstance(item, dict)
                                                    else None)
    if isinstance(e, DataError):
        message, field, reason = e.message, e.field, e.reason
    else:  # json.dumps: an extra that JSON cannot hold (an object, NaN)
        message, field, reason = f"cannot be written as JSON: {e}", "extra", "unwritable extra"
    return DataError(f"item {n} (id {rid!r}): {message}", path=path, field=field, reason=reason,
                     row_id=rid)


# ----------------------------------------------------------------------------- labelling config

def labeling_config(attributes: Iterable[str], image: bool = False, *, text_key: str = "text",
                    image_key: str = "image") -> str:
    """The labelling config (XML) of an attribute schema: one `<Label>` per attribute (each
    once, in the given order), the text to label, and the product image above it when
    `image`. Its tag names are the `from_name` / `to_name` the written tasks use."""
    names = list(dict.fromkeys(attributes))
    if not names:
        raise ValueError("a labelling config needs at least one attribute")

    def attr(v: str) -> str:
        return '"' + escape(v, {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}) + '"'

    lines = ["<View>"]
    if image:
        lines.append(f"  <Image name={attr(IMAGE_NAME)} value={attr('$' + image_key)}/>")
    lines.append(f"  <Labels name={attr(LABELS_NAME)} toName={attr(TEXT_NAME)}>")
    lines += [f"    <Label value={attr(a)}/>" for a in names]
    lines.append("  </Labels>")
    lines.append(f"  <Text name={attr(TEXT_NAME)} value={attr('$' + text_key)}/>")
    lines.append("</View>")
    return "\n".join(lines) + "\n"


def record_attributes(records: Iterable[Record]) -> tuple[list[str], bool]:
    """(the attributes of the records' spans, sorted; whether any record has an image): what
    `labeling_config` needs to describe a set of records."""
    attrs: set[str] = set()
    image = False
    for r in records:
        attrs.update(s.attr for s in r.spans)
        image = image or r.image is not None
    return sorted(attrs), image



# ----------------------------------------------------------------------------- the registry

def _encode(record: Record, issues: WriteIssues) -> dict[str, Any]:
    """A record as one task: scored spans (predictions read with `--from predictions`) go out
    as a prediction to correct, gold spans as an annotation."""
    return record_task(record, predicted=any(s.score is not None for s in record.spans))


def _save(tasks: Iterable[dict[str, Any]], f: Any) -> None:
    """The task file: one JSON array, a task per line."""
    f.write("[")
    for n, task in enumerate(tasks):
        f.write(("\n" if n == 0 else ",\n") + json.dumps(task, ensure_ascii=False,
                                                          allow_nan=False))
    f.write("\n]\n")


LABELSTUDIO = register(Format(
    "labelstudio", (), labelstudio_rows, _encode, save=_save, title="Label Studio JSON",
    always_skip=("no annotation",)))
"""No extension of its own (`.json` is JSONL's): name it, `--from labelstudio`. A task without
an annotation is skipped and counted even in strict reading (see the module docstring)."""

__all__ = ["IMAGE_NAME", "LABELS_NAME", "LOCAL_FILES", "TEXT_NAME", "annotation_spans",
           "choose_annotation", "export_tasks", "image_path", "image_url", "labeling_config",
           "LABELSTUDIO", "labelstudio_rows", "read_labelstudio", "record_attributes",
           "record_task", "task_data", "task_record", "utf16_to_index",
           "write_labelstudio_tasks"]
