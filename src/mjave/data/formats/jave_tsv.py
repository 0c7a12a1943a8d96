"""MEPAVE/JAVE TSV: `cid, sid, raw text, tagged text` per line, spans as `<Attr>value</Attr>`
markup in the tagged text. Holds no category, image or extra fields, and no overlapping spans."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Iterator

from mjave.data.errors import DataError
from mjave.data.formats.registry import Format, register
from mjave.data.formats.row_types import RecordRow
from mjave.data.formats.text_lines import line_rows
from mjave.data.formats.write_issues import WriteIssues
from mjave.data.records import Record, Span
from mjave.data.spans import resolve_overlaps
from mjave.data.validate import check_columns, check_record, describe_difference

JAVE_COLUMNS = ("cid", "sid", "raw text", "tagged text")
_NAME = r"[^<>/\s](?:[^<>\t\n\r]*[^<>\s])?"
TAG_RE = re.compile(rf"<(/?)({_NAME})>")
_NAME_RE = re.compile(_NAME)


def parse_tagged(tagged: str, raw: str) -> list[Span]:
    """Spans of `<Attr>value</Attr>` markup, as offsets into `raw` (which the markup must spell)."""
    spans: list[Span] = []
    plain: list[str] = []
    pos = 0  # characters of plain text so far
    last = 0  # end of the previous tag in `tagged`
    open_: tuple[str, int, int] | None = None  # (attr, plain begin, tagged position)
    for m in TAG_RE.finditer(tagged):
        plain.append(tagged[last:m.start()])
        pos += m.start() - last
        last = m.end()
        closing, name = m.group(1) == "/", m.group(2)
        if not closing:
            if open_ is not None:
                raise DataError(f"nested tag <{name}> at character {m.start()} inside <{open_[0]}> "
                                f"(opened at character {open_[2]}); spans cannot nest or overlap "
                                "in this format", field="tagged text", reason="nested tag")
            open_ = (name, pos, m.start())
        elif open_ is None:
            raise DataError(f"closing tag </{name}> at character {m.start()} has no opening tag",
                            field="tagged text", reason="unbalanced tag")
        elif open_[0] != name:
            raise DataError(f"closing tag </{name}> at character {m.start()} does not match the "
                            f"open <{open_[0]}> (character {open_[2]})", field="tagged text",
                            reason="mismatched tag")
        else:
            if pos == open_[1]:
                raise DataError(f"tag <{name}> at character {open_[2]} encloses no text",
                                field="tagged text", reason="empty span")
            spans.append(Span(open_[1], pos, name, "".join(plain)[open_[1]:pos]))
            open_ = None
    if open_ is not None:
        raise DataError(f"tag <{open_[0]}> opened at character {open_[2]} is never closed",
                        field="tagged text", reason="unbalanced tag")
    plain.append(tagged[last:])
    text = "".join(plain)
    if text != raw:
        raise DataError(describe_difference(raw, text, "raw text", "tagged text without its tags"),
                        field="tagged text", reason="text mismatch")
    return spans


def render_tagged(text: str, spans: Iterable[Span]) -> str:
    """The tagged column for `text`; `spans` must not overlap (see resolve_overlaps)."""
    out, last = [], 0
    for s in sorted(spans, key=lambda s: (s.begin, s.end)):
        out += [text[last:s.begin], f"<{s.attr}>", text[s.begin:s.end], f"</{s.attr}>"]
        last = s.end
    out.append(text[last:])
    return "".join(out)


def _parse_jave_line(line: str) -> Record:
    parts = line.split("\t")
    check_columns(parts, JAVE_COLUMNS)
    cid, sid, raw, tagged = parts
    if not sid:
        raise DataError("the sid column is empty", field="sid", reason="missing id")
    if not raw.strip():
        raise DataError("the raw text is empty", field="raw text", reason="empty text")
    record = Record(id=sid, text=raw, spans=parse_tagged(tagged, raw), cid=cid or None)
    check_record(record, id_field="sid")
    return record


def _jave_line(record: Record, issues: WriteIssues) -> str:
    for name, value in (("cid", record.cid or ""), ("sid", record.id), ("text", record.text)):
        bad = next((c for c in "\t\n\r" if c in value), None)
        if bad is not None:
            raise DataError(f"JAVE TSV cannot hold {bad!r} in the {name}", field=name,
                            reason="not representable")
    m = TAG_RE.search(record.text)
    if m:
        raise DataError(f"the text contains {m.group(0)!r}, which would read back as a tag",
                        field="text", reason="not representable")
    kept, dropped = resolve_overlaps(record.spans)
    for s in kept:
        if not _NAME_RE.fullmatch(s.attr):
            raise DataError(f"JAVE TSV cannot hold the attribute name {s.attr!r} in a tag",
                            field="attr", reason="not representable")
    # Counted only once the record is known to be writable, so a skipped record adds nothing.
    issues.dropped_overlaps += len(dropped)
    for name in ("category", "image"):
        if getattr(record, name) is not None:
            issues.dropped_fields[name] += 1
    for key in record.extra:
        issues.dropped_fields[key] += 1
    return f"{record.cid or ''}\t{record.id}\t{record.text}\t{render_tagged(record.text, kept)}\n"



def _read_rows(path: Path) -> Iterator[RecordRow]:
    return line_rows(path, _parse_jave_line)


JAVE = register(Format("jave", (".tsv", ".sample", ".txt"), _read_rows, _jave_line,
                       aliases=("tsv", "mepave"), id_field="sid", title="JAVE TSV"))

__all__ = ["JAVE", "JAVE_COLUMNS", "TAG_RE", "parse_tagged", "render_tagged"]
