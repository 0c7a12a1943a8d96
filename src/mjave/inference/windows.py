"""Long texts as overlapping windows of tokenizer pieces, and the merge of their predictions.

A model is trained on at most `max_length` tokens ([CLS] and [SEP] included), so a longer text is
never cut: it is split into windows of at most `max_length - 2` content pieces that overlap by
`budget - stride` pieces, each window is predicted on its own, and the results are merged:

* window ends fall on word boundaries where possible (a word longer than a window is the only
  thing ever cut inside), so every word is seen whole by at least one window;
* offsets stay relative to the FULL text: a window is a slice of the full text's `Encoded`, so
  the one decoder (`mjave.inference.decode.decode_example`) yields full-text spans directly;
* spans: identical spans from several windows become one (the max score); of two overlapping
  spans the one farther from a cut window edge wins (more context on both sides), then the
  higher score; the text's own start and end are not cuts;
* attribute scores: the max over windows (an attribute is mentioned if any window mentions it).

These are pure functions over `Encoded` and offsets (no torch, no model), so evaluation can
window the same way.

Long texts are also bounded in time: `chunk_bounds` cuts a list of items into the chunks the
Extractor predicts one after the other (at most `batch_size` items and `CHUNK_CHARS`
characters), so a long text is predicted in a chunk of its own instead of holding the short
texts of its batch, and `mjave predict` writes the rows before it first. Texts over the hard
cap (`mjave.data.rows.MAX_TEXT_CHARS`) are refused by the row checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import lt
from typing import Sequence

import numpy as np

from mjave.data.records import Span
from mjave.data.tagging import Encoded, first_piece_mask
from mjave.inference.decode import best_per_attribute


CHUNK_CHARS = 20_000
"""The characters one prediction chunk holds at most, unless one text alone is longer (then
that text is its chunk). A batch of 32 titles or descriptions stays one chunk; a 100,000
character text (~800 windows of 128 pieces) does not hold 31 other rows while it runs."""


def chunk_fits(items: int, chars: int, size: int, max_items: int,
               max_chars: int = CHUNK_CHARS) -> bool:
    """Whether a text of `size` characters joins a chunk that holds `items` texts of `chars`
    characters (an empty chunk takes any text)."""
    return items == 0 or (items < max_items and chars + size <= max_chars)


def chunk_bounds(sizes: Sequence[int], max_items: int, max_chars: int = CHUNK_CHARS
                 ) -> list[tuple[int, int]]:
    """`[start, end)` of consecutive chunks of items of `sizes` characters, in order: each of
    at most `max_items` items and `max_chars` characters, or one item longer than that."""
    if max_items < 1:
        raise ValueError(f"max_items must be positive, not {max_items}")
    bounds: list[tuple[int, int]] = []
    start, chars = 0, 0
    for i, size in enumerate(sizes):
        if not chunk_fits(i - start, chars, size, max_items, max_chars):
            bounds.append((start, i))
            start, chars = i, 0
        chars += size
    if start < len(sizes):
        bounds.append((start, len(sizes)))
    return bounds


@dataclass(frozen=True)
class Window:
    """Content pieces `[start, end)` of a full encoding (0 = the first piece after [CLS]).

    `char_start` / `char_end` are the characters the window covers in the full text;
    `cut_left` / `cut_right` say whether that side is a cut (False at the text's own edges).
    """

    start: int
    end: int
    char_start: int
    char_end: int
    cut_left: bool
    cut_right: bool

    def margin(self, span: Span) -> float:
        """Characters between the span and the nearest cut edge (inf when no side is cut)."""
        left = span.begin - self.char_start if self.cut_left else math.inf
        right = self.char_end - span.end if self.cut_right else math.inf
        return min(left, right)


def _content(encoded: Encoded) -> tuple[list[tuple[int, int]], list[int | None]]:
    """Offsets and word ids of the content pieces (without [CLS] and [SEP])."""
    if encoded.truncated:
        raise ValueError("windowing needs the whole text: encode it with a TextAligner whose "
                         "max_length is None")
    return list(encoded.offsets[1:-1]), list(encoded.word_ids[1:-1])


def _word_starts(word_ids: Sequence[int | None]) -> list[bool]:
    """True where a piece starts a word (a cut there splits no word)."""
    return first_piece_mask(word_ids)


def _char_extent(offsets: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """Lowest start and highest end of the pieces that cover characters (C-level iterators
    when every piece does, as WordPiece's do: this runs once per text when predicting)."""
    part = offsets[start:end]
    if not part:
        return (0, 0)
    begins, ends = zip(*part)
    if all(map(lt, begins, ends)):
        return (min(begins), max(ends))
    real = [(a, b) for a, b in part if a < b]
    if not real:
        return (0, 0)
    return (min(a for a, _ in real), max(b for _, b in real))


def _sizes(max_length: int, stride: int | None) -> tuple[int, int]:
    """(content pieces per window, stride), checked."""
    budget = max_length - 2
    if budget < 1:
        raise ValueError(f"max_length must leave room for [CLS], one piece and [SEP], "
                         f"got {max_length}")
    stride = max(1, budget // 2) if stride is None else stride
    if not 1 <= stride <= budget:
        raise ValueError(f"stride must be between 1 and {budget} pieces, got {stride}")
    return budget, stride


def plan_windows(encoded: Encoded, max_length: int, stride: int | None = None) -> list[Window]:
    """Windows covering every content piece of `encoded` (an untruncated encoding).

    Each holds at most `max_length - 2` pieces; consecutive windows start about `stride` pieces
    apart (default: half a window), both moved back to a word start where one is in reach.
    A text that fits gives one window covering all of it.
    """
    budget, stride = _sizes(max_length, stride)
    offsets, word_ids = _content(encoded)
    n = len(offsets)
    starts = _word_starts(word_ids)

    def snap_back(pos: int, lowest: int) -> int:
        """The nearest word start in (lowest, pos], else `pos` (a hard cut inside a word)."""
        p = pos
        while p > lowest and not starts[p]:
            p -= 1
        return p if p > lowest else pos

    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(start + budget, n)
        if end < n:
            end = snap_back(end, start)
        spans.append((start, end))
        if end >= n:
            break
        nxt = snap_back(min(start + stride, end), start)
        start = nxt if nxt > start else start + 1
    windows = []
    for s, e in spans:
        a, b = _char_extent(offsets, s, e)
        windows.append(Window(s, e, a, b, cut_left=s > 0, cut_right=e < n))
    return windows


def window_encoding(encoded: Encoded, window: Window) -> Encoded:
    """The model input of one window: [CLS] + its pieces + [SEP], offsets into the full text."""
    offsets, word_ids = _window_lists(encoded, window)
    s, e = window.start, window.end
    return Encoded(
        input_ids=[encoded.input_ids[0], *_content_slice(encoded.input_ids, s, e),
                   encoded.input_ids[-1]],
        offsets=[(0, 0), *offsets, (0, 0)],
        word_ids=[None, *word_ids, None],
        labels=[-100] * (e - s + 2),
        truncated=False,
        has_labels=False,
        id=encoded.id,
        num_pieces=e - s,
    )


def _window_lists(encoded: Encoded, window: Window) -> tuple[list, list]:
    """The window's content offsets and word ids (checks that the text is whole)."""
    if encoded.truncated:
        _content(encoded)  # raises: windows need the whole text
    s, e = window.start, window.end
    return (_content_slice(encoded.offsets, s, e), _content_slice(encoded.word_ids, s, e))


def _content_slice(values: list, start: int, end: int) -> list:
    """`values[1:-1][start:end]` without copying all of `values` first (a long text has many
    windows)."""
    n = len(values) - 2
    if start < 0 or end < 0 or n < 0:
        return values[1:-1][start:end]
    return values[1 + min(start, n):1 + min(end, n)]


def text_windows(encoded: Encoded, max_length: int, stride: int | None = None
                 ) -> tuple[list[Window], list[Encoded]]:
    """`plan_windows` and the `window_encoding` of each window.

    A text that fits in one window (almost every product title) is its own window encoding
    when it is an unlabelled whole-text encoding (`TextAligner.encode_text`): then
    `window_encoding` would rebuild an equal object, so `encoded` itself is returned.
    """
    budget, stride = _sizes(max_length, stride)
    n = len(encoded.input_ids) - 2
    if n <= budget and _is_whole_text(encoded):
        a, b = _char_extent(encoded.offsets, 1, n + 1)
        return [Window(0, n, a, b, cut_left=False, cut_right=False)], [encoded]
    windows = plan_windows(encoded, max_length, stride)
    return windows, [window_encoding(encoded, w) for w in windows]


def _is_whole_text(encoded: Encoded) -> bool:
    """True when `window_encoding` of a window over all of `encoded` equals `encoded`."""
    e = encoded
    return (not e.truncated and not e.has_labels and e.num_pieces == len(e.input_ids) - 2
            and e.cut_spans == e.dropped_overlaps == e.unaligned_spans == 0
            and len(e.offsets) == len(e.word_ids) == len(e.labels) == len(e.input_ids)
            and e.offsets[0] == e.offsets[-1] == (0, 0)
            and e.word_ids[0] is None and e.word_ids[-1] is None
            and e.labels.count(-100) == len(e.labels))


def merge_spans(windows: Sequence[Window], spans: Sequence[Sequence[Span]],
                scores: Sequence[Sequence[float]], max_values_per_attribute: int = 0
                ) -> tuple[list[Span], list[float]]:
    """One non-overlapping span list from per-window spans (see the module docstring).

    `max_values_per_attribute` k > 0: of the merged spans, only the k best-scoring of each
    attribute are kept (each window was limited alone, so the text may hold more).
    Returns spans sorted by position and their scores.
    """
    if not (len(windows) == len(spans) == len(scores)):
        raise ValueError("one span list and one score list per window")
    best: dict[tuple[str, int, int], tuple[float, float, Span]] = {}
    for w, ss, sc in zip(windows, spans, scores):
        for span, score in zip(ss, sc):
            key = span.key()
            margin = w.margin(span)
            old = best.get(key)
            if old is None:
                best[key] = (margin, float(score), span)
            else:
                best[key] = (max(old[0], margin), max(old[1], float(score)), span)
    ranked = sorted(best.values(), key=lambda t: (-t[0], -t[1], t[2].begin, t[2].end, t[2].attr))
    kept: list[tuple[Span, float]] = []
    for _, score, span in ranked:
        if all(span.end <= k.begin or k.end <= span.begin for k, _ in kept):
            kept.append((span, score))
    if max_values_per_attribute > 0 and kept:
        ids = {a: j for j, a in enumerate(sorted({span.attr for span, _ in kept}))}
        keep = best_per_attribute(np.zeros(len(kept), dtype=np.int64),
                                  np.array([ids[span.attr] for span, _ in kept]),
                                  np.array([score for _, score in kept]),
                                  np.array([span.begin for span, _ in kept]),
                                  max_values_per_attribute)
        kept = [t for t, k in zip(kept, keep.tolist()) if k]
    kept.sort(key=lambda t: (t[0].begin, t[0].end, t[0].attr))
    return [s for s, _ in kept], [sc for _, sc in kept]


def merge_attribute_probs(probs: Sequence[np.ndarray]) -> np.ndarray:
    """Attribute probabilities of the whole text: the max over its windows."""
    if not len(probs):
        raise ValueError("no windows to merge")
    return np.max(np.stack([np.asarray(p) for p in probs]), axis=0)


__all__ = ["CHUNK_CHARS", "Window", "chunk_bounds", "chunk_fits", "merge_attribute_probs",
           "merge_spans", "plan_windows", "text_windows", "window_encoding"]
