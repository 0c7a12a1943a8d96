"""JSONL: one JSON object per line (`id`, `text`, optional `cid`, `category`, `image`, `spans`;
other keys are kept in `Record.extra`). mjave's own format: it holds everything a Record has."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from mjave.data.errors import DataError
from mjave.data.formats.input_rows import InputRow, input_row
from mjave.data.formats.json_text import jsonl_rows, parse_json_line
from mjave.data.formats.registry import Format, register
from mjave.data.formats.row_types import RecordRow
from mjave.data.formats.text_lines import line_rows
from mjave.data.formats.write_issues import WriteIssues
from mjave.data.records import Record, Span
from mjave.data.validate import check_json_row, check_record

_JSON_KEYS = ("id", "cid", "category", "text", "image", "spans")


def record_from_json(obj: Any) -> Record:
    """A Record from one parsed JSONL object (checked); unknown keys go to `extra`."""
    check_json_row(obj)
    spans = [Span(s["begin"], s["end"], s["attr"], s["value"]) for s in obj.get("spans", [])]
    extra = {k: v for k, v in obj.items() if k not in _JSON_KEYS}
    record = Record(id=obj["id"], text=obj["text"], spans=spans, cid=obj.get("cid"),
                    category=obj.get("category"), image=obj.get("image"), extra=extra)
    check_record(record)
    return record


def record_to_json(record: Record) -> dict[str, Any]:
    """Key order id, cid, category, text, image, spans, then extras; None fields are left out."""
    obj: dict[str, Any] = {"id": record.id}
    for key in ("cid", "category"):
        if getattr(record, key) is not None:
            obj[key] = getattr(record, key)
    obj["text"] = record.text
    if record.image is not None:
        obj["image"] = record.image
    obj["spans"] = [{"attr": s.attr, "begin": s.begin, "end": s.end, "value": s.value}
                    for s in record.spans]
    for k, v in record.extra.items():
        obj.setdefault(k, v)  # an extra never overrides a Record field
    return obj


def _parse_line(line: str) -> Record:
    return record_from_json(parse_json_line(line))


def _read_rows(path: Path) -> Iterator[RecordRow]:
    return line_rows(path, _parse_line)


def _write(record: Record, issues: WriteIssues) -> str:
    try:
        return json.dumps(record_to_json(record), ensure_ascii=False) + "\n"
    except (TypeError, ValueError) as e:
        raise DataError(f"an extra field cannot be written as JSON: {e}", field="extra",
                        reason="unwritable extra") from None


def _read_input(path: Path, batch_size: int) -> Iterator[InputRow]:
    """Raw objects, unchecked: a prediction input needs no spans and may hold any key."""
    return (input_row(n, row) for n, row in jsonl_rows(path))


JSONL = register(Format("jsonl", (".jsonl", ".json", ".ndjson"), _read_rows, _write,
                        read_input=_read_input, title="JSONL"))

__all__ = ["JSONL", "record_from_json", "record_to_json"]
