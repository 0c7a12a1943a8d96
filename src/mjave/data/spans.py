"""Span-level operations shared by every format and tokenizer: overlap policy and BIO conversion.

Tokens are given as character offsets `(start, end)` into the text; a token with `start == end`
(special tokens, padding) never carries a label.
"""

from __future__ import annotations

from typing import Sequence

from mjave.data.records import Span

Offsets = Sequence[tuple[int, int]]


def resolve_overlaps(spans: Sequence[Span]) -> tuple[list[Span], list[Span]]:
    """Make spans taggable with BIO: where two overlap, keep the longer, then the earlier.

    Returns (kept sorted by position, dropped). Exact duplicates count as overlaps (one is dropped).
    """
    order = sorted(spans, key=lambda s: (-(s.end - s.begin), s.begin, s.end, s.attr))
    kept: list[Span] = []
    dropped: list[Span] = []
    for s in order:
        if any(s.begin < k.end and k.begin < s.end for k in kept):
            dropped.append(s)
        else:
            kept.append(s)
    kept.sort(key=lambda s: (s.begin, s.end))
    return kept, dropped


def spans_to_bio(offsets: Offsets, spans: Sequence[Span]) -> tuple[list[str], int]:
    """Tag tokens: B- on the first token overlapping a span, I- on the following ones.

    `spans` must not overlap (see `resolve_overlaps`). Returns (tags, number of spans that no
    token covers, e.g. because they were truncated away or fall on whitespace only).
    """
    tags = ["O"] * len(offsets)
    missed = 0
    for s in spans:
        first = True
        for i, (a, b) in enumerate(offsets):
            if a == b or b <= s.begin or a >= s.end:
                continue
            tags[i] = ("B-" if first else "I-") + s.attr
            first = False
        if first:
            missed += 1
    return tags, missed


def bio_to_spans(tags: Sequence[str], offsets: Offsets, text: str) -> list[Span]:
    """Decode BIO tags back to character spans (the one decoder every path uses).

    Repair policy for an `I-X` that does not continue a chunk of X (after O, or after another
    attribute): it starts a new chunk of X, as conlleval does. Tokens with empty offsets are skipped
    and do not break a chunk. A span runs from its first token's start to its last token's end.
    """
    spans: list[Span] = []
    cur_attr: str | None = None
    cur_begin = cur_end = 0

    def close() -> None:
        if cur_attr is not None:
            spans.append(Span(cur_begin, cur_end, cur_attr, text[cur_begin:cur_end]))

    for tag, (a, b) in zip(tags, offsets):
        if a == b:
            continue
        if tag == "O" or not tag:
            close()
            cur_attr = None
            continue
        prefix, _, attr = tag.partition("-")
        if prefix == "I" and cur_attr == attr:
            cur_end = b
            continue
        close()
        cur_attr, cur_begin, cur_end = attr, a, b
    close()
    return spans
