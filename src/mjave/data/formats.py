"""Read and write Records as JSONL, MEPAVE/JAVE TSV or CoNLL BIO, losing nothing silently.

These are the text formats of the reader registry (`mjave.data.io`, which also reads CSV and
Parquet and detects the format); this module parses and writes them.

Every reader goes through `iter_records`, which numbers rows by their 1-based line, validates each
(`mjave.data.validate`) and either raises (strict) or skips and tallies (lenient). Writers validate
too, write to a temporary file and rename, so a failed write never leaves half a file behind.
See docs/data-formats.md for the formats themselves.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from mjave.data import io
from mjave.data.errors import DataError, RowIssues
from mjave.data.outputs import atomic_write
from mjave.data.records import Record, Span
from mjave.data.spans import bio_to_spans, resolve_overlaps, spans_to_bio
from mjave.data.validate import (IdTracker, check_columns, check_json_row, check_record,
                                 describe_difference)

FORMATS = io.RECORD_FORMATS
EXTENSIONS = {ext: fmt for ext, fmt in io.EXTENSIONS.items() if fmt in FORMATS}

PathLike = str | os.PathLike


@dataclass
class WriteIssues(RowIssues):
    """RowIssues plus what a target format cannot hold.

    `trimmed_spans`: spans whose leading/trailing whitespace BIO cannot tag (CoNLL keeps the
    non-blank part); `lost_spans`: spans of whitespace only; `dropped_fields`: record fields the
    format has no place for (JAVE TSV holds no category, image or extra keys), counted per field.
    """

    trimmed_spans: int = 0
    lost_spans: int = 0
    dropped_fields: Counter = field(default_factory=Counter)

    def merge(self, other: RowIssues) -> None:
        super().merge(other)
        if isinstance(other, WriteIssues):
            self.trimmed_spans += other.trimmed_spans
            self.lost_spans += other.lost_spans
            self.dropped_fields.update(other.dropped_fields)

    def summary(self) -> str:
        parts = [super().summary()]
        if self.trimmed_spans:
            parts.append(f"trimmed the blank edges of {self.trimmed_spans} spans (BIO cannot tag "
                         "whitespace)")
        if self.lost_spans:
            parts.append(f"lost {self.lost_spans} spans that cover only whitespace")
        if self.dropped_fields:
            fields = ", ".join(f"'{k}' ({n} records)"
                               for k, n in sorted(self.dropped_fields.items()))
            parts.append(f"the format holds no {fields}")
        return "; ".join(p for p in parts if p)


def detect_format(path: PathLike, format: str | None = None) -> str:
    """The explicit format if given, else the one the file extension names (one of `FORMATS`:
    the registry's detection, `mjave.data.io.detect_format`, limited to these formats)."""
    return io.detect_format(path, format, FORMATS)


# ----------------------------------------------------------------------------- line reading

def _decode(raw: bytes) -> str:
    """One line as text; a bad byte is a row error, not a crash of the whole read."""
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not valid UTF-8 at byte {e.start} of the line",
                        reason="bad encoding") from None
    return s[:-1] if s.endswith("\r") else s


def _lines(path: PathLike) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw bytes without the newline). Only '\\n' ends a line."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read the file: {e.strerror}", path=str(path),
                        reason="unreadable file") from None
    with f:
        for n, raw in enumerate(f, 1):
            raw = raw[:-1] if raw.endswith(b"\n") else raw
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            yield n, raw


Row = tuple[int, Callable[[], Record]]


def _line_rows(path: PathLike, parse: Callable[[str], Record]) -> Iterator[Row]:
    """One row per non-blank line (JSONL and TSV); a line of tabs is a row (of empty columns)."""
    for n, raw in _lines(path):
        if raw.strip(b" \r"):
            yield n, (lambda raw=raw: parse(_decode(raw)))


# ----------------------------------------------------------------------------- JSONL

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


def _parse_json_line(line: str) -> Record:
    return record_from_json(io.parse_json_line(line))


def _jsonl_line(record: Record, issues: WriteIssues) -> str:
    try:
        return json.dumps(record_to_json(record), ensure_ascii=False) + "\n"
    except (TypeError, ValueError) as e:
        raise DataError(f"an extra field cannot be written as JSON: {e}", field="extra",
                        reason="unwritable extra") from None


# ----------------------------------------------------------------------------- JAVE TSV

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


# ----------------------------------------------------------------------------- CoNLL BIO

# Han, kana, CJK punctuation and full-width forms: one token per character, no spaces around.
_CJK = ("\u2e80-\u2fff\u3001-\u303f\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf"
        "\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff01-\uffef\U00020000-\U0003ffff")
CJK_RE = re.compile(f"[{_CJK}]")
TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")
_COMMENT_RE = re.compile(r"# (\S+) = (.*)\Z", re.S)
_TAG_RE = re.compile(r"O|[BI]-\S.*")
_KEY_RE = re.compile(r"[A-Za-z_][\w.-]*")
_META_KEYS = ("id", "cid", "category", "image", "text")


def conll_tokens(text: str, cuts: Iterable[int] = ()) -> list[tuple[int, int]]:
    """Token offsets: each CJK character alone, else `\\w+|[^\\w\\s]`, also split at `cuts`.

    Splitting at span boundaries is what makes the exported tags spell the spans exactly.
    """
    cut_set = sorted(set(cuts))
    out: list[tuple[int, int]] = []
    for m in TOKEN_RE.finditer(text):
        a, b = m.span()
        for c in cut_set:
            if a < c < b:
                out.append((a, c))
                a = c
        out.append((a, b))
    return out


def join_tokens(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Text and offsets for tokens without a `# text`: single spaces, none next to CJK."""
    parts: list[str] = []
    offsets: list[tuple[int, int]] = []
    pos = 0
    for i, tok in enumerate(tokens):
        if i and not (CJK_RE.match(tokens[i - 1][-1]) or CJK_RE.match(tok[0])):
            parts.append(" ")
            pos += 1
        parts.append(tok)
        offsets.append((pos, pos + len(tok)))
        pos += len(tok)
    return "".join(parts), offsets


def _locate(text: str, tokens: list[str], lines: list[int]) -> list[tuple[int, int]]:
    """Offsets of tokens in `# text`, in order, with only whitespace between them."""
    offsets: list[tuple[int, int]] = []
    pos = 0
    for tok, line in zip(tokens, lines):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if not text.startswith(tok, pos):
            raise DataError(f"token {tok!r} does not match '# text' at character {pos} "
                            f"({text[pos:pos + len(tok) + 5]!r})", line=line, field="token",
                            reason="token mismatch")
        offsets.append((pos, pos + len(tok)))
        pos += len(tok)
    if text[pos:].strip():
        raise DataError(f"'# text' goes on after the last token: {text[pos:pos + 20]!r}",
                        field="text", reason="token mismatch")
    return offsets


def _parse_conll_block(block: list[tuple[int, bytes]], number: int) -> Record:
    meta: dict[str, Any] = {}
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    for n, raw in block:
        try:
            s = _decode(raw)
        except DataError as e:
            raise e.located(line=n) from None
        if s.startswith("# ") or (s.startswith("#") and "\t" not in s):
            m = _COMMENT_RE.match(s)
            if m:
                key, value = m.groups()
                if key.endswith("_json"):
                    key = key[:-5]
                    try:
                        value = json.loads(value)
                    except json.JSONDecodeError as e:
                        raise DataError(f"invalid JSON in comment: {e.msg}", line=n, field=key,
                                        reason="invalid JSON") from None
                meta[key] = value
            continue
        parts = s.split("\t")
        try:
            check_columns(parts, ("token", "tag"))
        except DataError as e:
            raise e.located(line=n) from None
        tok, tag = parts
        if not tok or tok != tok.strip():
            raise DataError(f"bad token {tok!r}", line=n, field="token", reason="bad token")
        if not _TAG_RE.fullmatch(tag):
            raise DataError(f"not a BIO tag: {tag!r} (expected O, B-<attr> or I-<attr>)", line=n,
                            field="tag", reason="bad tag")
        tokens.append(tok)
        tags.append(tag)
        lines.append(n)
    for key in ("id", "cid", "category", "image", "text"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise DataError(f"'{key}' must be a string, found {meta[key]!r}", field=key,
                            reason=f"bad {key}")
    if "text" in meta:
        text = meta["text"]
        offsets = _locate(text, tokens, lines)
    elif tokens:
        text, offsets = join_tokens(tokens)
    else:
        raise DataError("the sentence has no tokens and no '# text'", field="text",
                        reason="empty text")
    extra = {k: v for k, v in meta.items() if k not in _META_KEYS}
    return Record(id=meta.get("id", str(number)), text=text,
                  spans=bio_to_spans(tags, offsets, text), cid=meta.get("cid"),
                  category=meta.get("category"), image=meta.get("image"), extra=extra)


def _conll_rows(path: PathLike) -> Iterator[Row]:
    """One row per sentence (blank-line separated), numbered by its first line."""
    block: list[tuple[int, bytes]] = []
    number = 0

    def flush() -> Row:
        nonlocal number
        number += 1
        b, k = list(block), number

        def parse() -> Record:
            record = _parse_conll_block(b, k)
            check_record(record)
            return record
        return b[0][0], parse

    for n, raw in _lines(path):
        if raw.strip():
            block.append((n, raw))
        elif block:
            yield flush()
            block = []
    if block:
        yield flush()


def _comment(key: str, value: Any) -> str:
    """`# key = value`, or `# key_json = <json>` when the value is not a one-line string."""
    if not _KEY_RE.fullmatch(key):
        raise DataError(f"CoNLL comments cannot hold the key {key!r}", field=key,
                        reason="not representable")
    if isinstance(value, str) and not key.endswith("_json") and len(f"x{value}x".splitlines()) == 1:
        return f"# {key} = {value}\n"
    return f"# {key}_json = {json.dumps(value, ensure_ascii=False)}\n"


def _trim(text: str, s: Span) -> Span | None:
    """The span without blank edges (what BIO can tag), or None if nothing is left."""
    b, e = s.begin, s.end
    while b < e and text[b].isspace():
        b += 1
    while e > b and text[e - 1].isspace():
        e -= 1
    return Span(b, e, s.attr, text[b:e]) if b < e else None


def _conll_block(record: Record, issues: WriteIssues) -> str:
    kept, dropped = resolve_overlaps(record.spans)
    for s in kept:
        if len(f"x{s.attr}x".splitlines()) > 1 or "\t" in s.attr or s.attr != s.attr.strip():
            raise DataError(f"a CoNLL tag cannot hold the attribute name {s.attr!r}",
                            field="attr", reason="not representable")
    head = [_comment("id", record.id)]
    head += [_comment(k, getattr(record, k)) for k in ("cid", "category", "image")
             if getattr(record, k) is not None]
    head.append(_comment("text", record.text))
    head += [_comment(k, v) for k, v in record.extra.items() if k not in _META_KEYS]
    trimmed = [_trim(record.text, s) for s in kept]
    spans = [t for t in trimmed if t is not None]
    offsets = conll_tokens(record.text, [c for s in spans for c in (s.begin, s.end)])
    tags, missed = spans_to_bio(offsets, spans)
    # Counted only once the record is known to be writable, so a skipped record adds nothing.
    issues.dropped_overlaps += len(dropped)
    issues.lost_spans += len(trimmed) - len(spans) + missed
    issues.trimmed_spans += sum(t is not None and t != s for s, t in zip(kept, trimmed))
    body = [f"{record.text[a:b]}\t{t}\n" for (a, b), t in zip(offsets, tags)]
    return "".join(head + body) + "\n"


# ----------------------------------------------------------------------------- public API

_ROWS: dict[str, Callable[[PathLike], Iterator[Row]]] = {
    "jsonl": lambda p: _line_rows(p, _parse_json_line),
    "jave": lambda p: _line_rows(p, _parse_jave_line),
    "conll": _conll_rows,
}
_ID_FIELD = {"jsonl": "id", "jave": "sid", "conll": "id"}
_WRITERS: dict[str, Callable[[Record, WriteIssues], str]] = {
    "jsonl": _jsonl_line, "jave": _jave_line, "conll": _conll_block,
}


def iter_records(path: PathLike, format: str | None = None, strict: bool = True,
                 issues: RowIssues | None = None) -> Iterator[Record]:
    """Stream valid Records. strict: the first bad row raises DataError; lenient (strict=False):
    bad rows are skipped into `issues`, which is then required so that nothing goes unseen."""
    fmt = detect_format(path, format)
    if issues is None:
        if not strict:
            raise ValueError("lenient reading needs an `issues` tally to record skipped rows")
        issues = RowIssues()
    return _iter(path, fmt, strict, issues)


def _iter(path: PathLike, fmt: str, strict: bool, issues: RowIssues) -> Iterator[Record]:
    return io.validated_records(_ROWS[fmt](path), path, strict, issues, _ID_FIELD[fmt])


def read_records(path: PathLike, format: str | None = None,
                 strict: bool = True) -> tuple[list[Record], RowIssues]:
    """All valid Records of a file and the tally of what was skipped."""
    issues = RowIssues()
    return list(iter_records(path, format, strict, issues)), issues


def write_records(records: Iterable[Record], path: PathLike, format: str | None = None, *,
                  strict: bool = True) -> WriteIssues:
    """Write Records; returns what the format could not hold (overlaps dropped, fields lost).

    A record the format cannot represent raises DataError (strict) or is skipped into the
    returned issues (strict=False). The file appears only once everything is written.
    """
    fmt = detect_format(path, format)
    write = _WRITERS[fmt]
    issues = WriteIssues()
    ids = IdTracker(_ID_FIELD[fmt], unit="record")
    path = Path(path)
    with atomic_write(path, newline="\n") as f:
        for n, record in enumerate(records, 1):
            issues.rows_read += 1
            try:
                check_record(record, _ID_FIELD[fmt])
                ids.check(record.id, n)
                f.write(write(record, issues))
            except DataError as e:
                err = DataError(f"record {n} (id {record.id!r}): {e.message}", path=str(path),
                                field=e.field, reason=e.reason)
                if strict:
                    raise err from None
                issues.skip(err)
    return issues
