"""CoNLL BIO: one `token<TAB>tag` line per token, a blank line between sentences, the record's
fields in `# key = value` comments (`# text` keeps the exact text and its spacing)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

from mjave.data.errors import DataError
from mjave.data.formats.registry import Format, register
from mjave.data.formats.row_types import RecordRow
from mjave.data.formats.text_lines import decode_line, read_lines
from mjave.data.formats.write_issues import WriteIssues
from mjave.data.records import Record, Span
from mjave.data.spans import bio_to_spans, resolve_overlaps, spans_to_bio
from mjave.data.validate import check_columns, check_record

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
            s = decode_line(raw)
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


def _conll_rows(path: Path) -> Iterator[RecordRow]:
    """One row per sentence (blank-line separated), numbered by its first line."""
    block: list[tuple[int, bytes]] = []
    number = 0

    def flush() -> RecordRow:
        nonlocal number
        number += 1
        b, k = list(block), number

        def parse() -> Record:
            record = _parse_conll_block(b, k)
            check_record(record)
            return record
        return b[0][0], parse

    for n, raw in read_lines(path):
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



CONLL = register(Format("conll", (".conll", ".bio"), _conll_rows, _conll_block,
                        title="CoNLL BIO"))

__all__ = ["CJK_RE", "CONLL", "TOKEN_RE", "conll_tokens", "join_tokens"]
