"""The ONE decoder from model outputs to attributes and scored character spans.

Evaluation, batch prediction and serving all decode through `decode_spans` (`decode_batch` and
`decode_example`, a batch of one, wrap it), so a fix here fixes every user-facing path at once. Tags are the argmax at the first piece
of each word (`decoding="argmax"`, the paper's), or the most probable tag sequence that is valid
BIO (`decoding="viterbi"`: an `I-X` only after `B-X` or `I-X`; `viterbi_tags`); chunking and the
repair of an `I-X` without a `B-X` are those of `mjave.data.spans.bio_to_spans` (it starts a
new chunk). A CRF tagger (`decoding="crf"`) is decoded by Viterbi under its learned
`Transitions`, and its forward-backward marginals take the place of the tag probabilities
(`crf_tags`, `mjave.inference.crf`). A span's score is the mean probability
of the tags chosen on its words times the probability that the span does not extend past either
end (`span_scores`).

The work is done with numpy over a whole batch (`TokenLayout`: the encodings as flat arrays),
not per token in Python: at 20,000 texts/s a GPU leaves the host 50 microseconds per text.
tests/test_decode_equivalence.py checks it against the per-token reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Collection, Sequence

import numpy as np

from mjave.data.records import Span
from mjave.data.schema import AttributeSchema
from mjave.data.layout import TokenLayout
from mjave.data.tagging import Encoded
from mjave.inference.crf import Transitions, crf_marginals, crf_viterbi

DECODINGS = ("argmax", "viterbi", "crf")
"""How tags are chosen from the per-word tag probabilities (`ModelConfig.decoding`)."""

_FAR = np.iinfo(np.int64).max
"""Offset of a padding word: never inside a span."""

SEQUENTIAL_MEAN_MAX = 7
"""numpy sums up to 7 values one after the other (pairwise beyond): up to there the mean of a
span's tag probabilities is computed for all spans at once, bit for bit as `np.mean` does."""


@dataclass
class Decoded:
    spans: list[Span]
    span_scores: list[float]
    attributes: list[tuple[str, float]]   # (name, probability) at or above the threshold
    attr_probs: np.ndarray | None = None  # (L,) after any category restriction
    # (attribute, value, score) named without a span (`model.implicit_values`, `implicit_values`)
    implicit: list[tuple[str, str, float]] = field(default_factory=list)


@dataclass
class _Words:
    """The first pieces of words of a batch (the positions tags are read at), in flat order."""

    row: np.ndarray       # (W,) row of each word
    pos: np.ndarray       # (W,) token position in its row
    rank: np.ndarray      # (W,) index among its row's words
    counts: np.ndarray    # (B,) words per row
    starts: np.ndarray    # (B,) flat word index of each row's first word
    begin: np.ndarray     # (W,) the word's character extent (`Encoded.word_offsets`)
    end: np.ndarray


def _words(layout: TokenLayout) -> _Words:
    """First pieces with their words' extents: first piece's start to last piece's end over
    the pieces that cover characters, (0, 0) for a word without any."""
    at = np.flatnonzero(layout.first)
    row = layout.row[at]
    counts = np.bincount(row, minlength=layout.size)
    starts = np.cumsum(counts) - counts
    width = int(layout.word.max(initial=0)) + 1
    key = layout.row * width + layout.word
    valid = (layout.word >= 0) & (layout.begin != layout.end)
    group, lo, hi = _extents(key[valid], layout.begin[valid], layout.end[valid])
    begin = np.zeros(len(at), dtype=np.int64)
    end = np.zeros(len(at), dtype=np.int64)
    if len(group):
        k = key[at]
        i = np.minimum(np.searchsorted(group, k), len(group) - 1)
        hit = group[i] == k
        begin[hit], end[hit] = lo[i[hit]], hi[i[hit]]
    return _Words(row=row, pos=layout.pos[at], rank=np.arange(len(at)) - starts[row],
                  counts=counts, starts=starts, begin=begin, end=end)


def _extents(key: np.ndarray, begin: np.ndarray, end: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted distinct keys with the min begin and max end of each."""
    if not len(key):
        return key, begin, end
    if np.all(key[1:] >= key[:-1]):   # words come in order: one run per word
        cut = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        return key[cut], np.minimum.reduceat(begin, cut), np.maximum.reduceat(end, cut)
    group, inverse = np.unique(key, return_inverse=True)
    lo = np.full(len(group), _FAR, dtype=np.int64)
    hi = np.full(len(group), -_FAR, dtype=np.int64)
    np.minimum.at(lo, inverse, begin)
    np.maximum.at(hi, inverse, end)
    return group, lo, hi


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def decode_example(encoded: Encoded, text: str, tag_probs: np.ndarray, attr_probs: np.ndarray,
                   schema: AttributeSchema, threshold: float = 0.5,
                   allowed: Collection[str] | None = None, decoding: str = "argmax",
                   min_span_score: float = 0.0, max_values_per_attribute: int = 0,
                   transitions: Transitions | None = None) -> Decoded:
    """`tag_probs` (T_padded, num_tags) and `attr_probs` (L,) of one text, as numpy arrays.

    `allowed`: restrict the output to these attributes (e.g. those its category has in
    training); the tags of other attributes are never chosen and their attributes never reported.
    `transitions`: a CRF tagger's, for `decoding="crf"`.
    """
    tag_probs = np.asarray(tag_probs)
    if len(tag_probs) < len(encoded.input_ids):
        raise ValueError(f"{len(tag_probs)} tag ids for {len(encoded.input_ids)} tokens")
    return decode_batch(TokenLayout.from_encodings([encoded]), [text], tag_probs[None],
                        np.asarray(attr_probs)[None], schema, threshold, [allowed],
                        decoding, min_span_score, max_values_per_attribute, transitions)[0]


def decode_batch(layout: TokenLayout, texts: Sequence[str], tag_probs: np.ndarray,
                 attr_probs: np.ndarray, schema: AttributeSchema, threshold: float = 0.5,
                 allowed: Sequence[Collection[str] | None] | None = None,
                 decoding: str = "argmax", min_span_score: float = 0.0,
                 max_values_per_attribute: int = 0,
                 transitions: Transitions | None = None) -> list[Decoded]:
    """`decode_example` of every row of a batch: `tag_probs` (B, T_padded, num_tags),
    `attr_probs` (B, L), `allowed` one restriction (or None) per row, or None for none."""
    return decode_spans(layout, texts, tag_probs, attr_probs, schema, threshold,
                        allowed, decoding, min_span_score,
                        max_values_per_attribute, transitions).decoded()


@dataclass
class SpanBatch:
    """The decoded spans of a batch as arrays, one entry per span in decoding order (rows
    ascending, then word order): what `Decoded` objects and the Extractor's result dicts are
    built from, without a Python object per span in between."""

    texts: Sequence[str]
    schema: AttributeSchema
    threshold: float
    rows: np.ndarray        # (S,) row of each span, ascending
    begins: np.ndarray      # (S,) character offsets
    ends: np.ndarray        # (S,)
    attrs: np.ndarray       # (S,) attribute ids
    scores: np.ndarray      # (S,) float64, `span_scores`
    attr_probs: np.ndarray  # (B, L) after any category restriction
    # Per row, the values named without a span (`with_implicit`); None for a model without them.
    implicit: list[list[tuple[str, str, float]]] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def with_implicit(self, probs: np.ndarray, threshold: float) -> "SpanBatch":
        """Attach the implicit head's choices from its (B, V) probabilities (a softmax per
        closed attribute, `implicit_probs`)."""
        spanned: list[set[str]] = [set() for _ in self.texts]
        for r, j in zip(self.rows.tolist(), self.attrs.tolist()):
            spanned[r].add(self.schema.attributes[j])
        self.implicit = [implicit_values(probs[r], self.schema, spanned[r], threshold)
                         for r in range(len(self.texts))]
        return self

    def agree_with_implicit(self, probs: np.ndarray) -> "SpanBatch":
        """Where a text has spans of one closed attribute with different values, keep only those
        whose value the implicit head scores highest (`probs`: its (B, V) probabilities).

        Why (issue #31): in "red shirt with black shoes" both colour words are Color values of
        some product; which one is this product's is what the photo says, and the implicit
        head, trained on every product's value, reads the photo's colour far better than the
        tagger learns the word-photo match from the few outfit sentences. A text with one value
        of the attribute keeps it (the text states it), and a span whose value is outside the
        closed set is kept (the head cannot judge it). Applied before `with_implicit`."""
        closed = {self.schema.attr_id(a): (lo, {v: k for k, v in
                                                enumerate(self.schema.closed_values[a])})
                  for a, lo, _ in self.schema.implicit_slots()}
        if not closed or not len(self.rows):
            return self
        from mjave.data.normalize import casefold_strip
        judged: dict[tuple[int, int], list[tuple[int, str, float]]] = {}
        for i, (r, a, b, j) in enumerate(zip(self.rows.tolist(), self.begins.tolist(),
                                             self.ends.tolist(), self.attrs.tolist())):
            if j in closed:
                lo, index = closed[j]
                value = casefold_strip(self.texts[r][a:b])
                if value in index:
                    judged.setdefault((r, j), []).append(
                        (i, value, float(probs[r, lo + 1 + index[value]])))
        keep = np.ones(len(self.rows), dtype=bool)
        for spans in judged.values():
            if len({v for _, v, _ in spans}) > 1:
                best = max(p for _, _, p in spans)
                for i, _, p in spans:
                    keep[i] = p >= best
        if not keep.all():
            self.rows, self.begins, self.ends, self.attrs, self.scores = (
                a[keep] for a in (self.rows, self.begins, self.ends, self.attrs, self.scores))
        return self

    def implicit_row(self, row: int) -> list[tuple[str, str, float]]:
        return [] if self.implicit is None else self.implicit[row]

    def attribute_hits(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, attribute ids, probabilities) at or above the threshold, row by row."""
        rows, cols = np.nonzero(self.attr_probs >= self.threshold)
        return rows, cols, self.attr_probs[rows, cols]

    def decoded(self) -> list[Decoded]:
        """One `Decoded` per row."""
        names = self.schema.attributes
        spans: list[list[Span]] = [[] for _ in self.texts]
        scores: list[list[float]] = [[] for _ in self.texts]
        for r, a, b, j, sc in zip(self.rows.tolist(), self.begins.tolist(), self.ends.tolist(),
                                  self.attrs.tolist(), self.scores.tolist()):
            spans[r].append(Span(a, b, names[j], self.texts[r][a:b]))
            scores[r].append(sc)
        attributes: list[list[tuple[str, float]]] = [[] for _ in self.texts]
        rows, cols, probs = self.attribute_hits()
        for r, j, p in zip(rows.tolist(), cols.tolist(), probs.tolist()):
            attributes[r].append((names[j], p))
        return [Decoded(s, sc, at, self.attr_probs[r], self.implicit_row(r))
                for r, (s, sc, at) in enumerate(zip(spans, scores, attributes))]

    def decoded_row(self, row: int) -> Decoded:
        """The `Decoded` of one row."""
        lo, hi = np.searchsorted(self.rows, [row, row + 1])
        names, text = self.schema.attributes, self.texts[row]
        spans = [Span(a, b, names[j], text[a:b]) for a, b, j in
                 zip(self.begins[lo:hi].tolist(), self.ends[lo:hi].tolist(),
                     self.attrs[lo:hi].tolist())]
        probs = self.attr_probs[row]
        hit = np.flatnonzero(probs >= self.threshold)
        return Decoded(spans, self.scores[lo:hi].tolist(),
                       [(names[j], p) for j, p in zip(hit.tolist(), probs[hit].tolist())],
                       probs, self.implicit_row(row))


def decode_spans(layout: TokenLayout, texts: Sequence[str], tag_probs: np.ndarray,
                 attr_probs: np.ndarray, schema: AttributeSchema, threshold: float = 0.5,
                 allowed: Sequence[Collection[str] | None] | None = None,
                 decoding: str = "argmax", min_span_score: float = 0.0,
                 max_values_per_attribute: int = 0,
                 transitions: Transitions | None = None) -> SpanBatch:
    """`decode_batch` as arrays (`SpanBatch`). `decoding`: "argmax" (per word), "viterbi"
    (`viterbi_tags`) or "crf" (`crf_tags` with the tagger's `transitions`; its marginals are
    the probabilities spans are scored with); spans scoring below `min_span_score` are dropped; with
    `max_values_per_attribute` k > 0 only the k best-scoring spans of each attribute of a text
    are kept (`best_per_attribute`; 0 keeps them all)."""
    if decoding not in DECODINGS:
        raise ValueError(f"decoding must be one of {DECODINGS}, not {decoding!r}")
    if tag_probs.shape[1] < int(layout.lengths.max(initial=0)):
        raise ValueError(f"{tag_probs.shape[1]} tag ids for "
                         f"{int(layout.lengths.max())} tokens")
    words = _words(layout)
    probs = tag_probs[words.row, words.pos]                  # (W, num_tags): rows read
    tag_keep, attr_keep = _restrictions(allowed, schema, layout.size)
    if tag_keep is not None:
        probs = np.where(tag_keep[words.row], probs, 0.0)
        attr_probs = np.where(attr_keep, attr_probs, 0.0)
    if decoding == "crf":
        probs, tags = crf_tags(probs, words, transitions)
    elif decoding == "viterbi":
        tags = viterbi_tags(probs, words)
    else:
        tags = probs.argmax(-1)
    _check_tags(tags, words, schema.num_tags)
    chosen = probs[np.arange(len(tags)), tags]
    rows, begins, ends, attrs = _chunks(tags, words)
    scores = _score(words, probs, chosen, rows, begins, ends, attrs)
    if min_span_score > 0.0:
        keep = scores >= min_span_score
        rows, begins, ends, attrs, scores = (a[keep] for a in (rows, begins, ends, attrs, scores))
    if max_values_per_attribute > 0:
        keep = best_per_attribute(rows, attrs, scores, begins, max_values_per_attribute)
        rows, begins, ends, attrs, scores = (a[keep] for a in (rows, begins, ends, attrs, scores))
    return SpanBatch(texts, schema, threshold, rows, begins, ends, attrs, scores, attr_probs)


def implicit_values(probs: np.ndarray, schema: AttributeSchema, spanned: Collection[str],
                    threshold: float) -> list[tuple[str, str, float]]:
    """(attribute, value, score) for each closed attribute of `schema` the text has no span of:
    its most probable value, when that beats "none" and scores at least `threshold` (issue #31:
    a value without a span). `probs`: one row of `implicit_probs`."""
    out = []
    for attr, lo, hi in schema.implicit_slots():
        if attr in spanned:
            continue
        k = int(np.argmax(probs[lo:hi]))
        score = float(probs[lo + k])
        if k > 0 and score >= threshold:
            out.append((attr, schema.closed_values[attr][k - 1], score))
    return out


def implicit_probs(logits: np.ndarray, schema: AttributeSchema) -> np.ndarray:
    """(B, V) probabilities of the implicit head's (B, V) logits: a softmax over each closed
    attribute's columns ("none" and its values)."""
    out = np.empty_like(logits, dtype=np.float64)
    for _, lo, hi in schema.implicit_slots():
        z = logits[:, lo:hi].astype(np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        out[:, lo:hi] = z / z.sum(axis=1, keepdims=True)
    return out


def merge_implicit(rows: Sequence[Sequence[tuple[str, str, float]]], spanned: Collection[str]
                   ) -> list[tuple[str, str, float]]:
    """The implicit values of an item read in several windows: per attribute the best-scoring
    window's choice, none for an attribute the merged spans have."""
    best: dict[str, tuple[str, str, float]] = {}
    for row in rows:
        for attr, value, score in row:
            if attr not in spanned and (attr not in best or score > best[attr][2]):
                best[attr] = (attr, value, score)
    return list(best.values())


def best_per_attribute(rows: np.ndarray, attrs: np.ndarray, scores: np.ndarray,
                       begins: np.ndarray, k: int) -> np.ndarray:
    """(S,) mask of the spans to keep when each text reports at most `k` values per attribute:
    per (row, attribute) the k highest `scores`, the earlier span on a tie.

    Catalogs such as OA-Mine and WDC-PAVE annotate one value per attribute and product; a
    tagger that marks two stretches of a title as Brand is then wrong at least once, and the
    span score says which one to believe."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    order = np.lexsort((begins, -scores, attrs, rows))      # last key sorts first
    r, a = rows[order], attrs[order]
    n = len(order)
    start = np.ones(n, dtype=bool)
    start[1:] = (r[1:] != r[:-1]) | (a[1:] != a[:-1])
    first = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    keep = np.zeros(n, dtype=bool)
    keep[order] = np.arange(n) - first < k
    return keep


@lru_cache(maxsize=4096)
def _keep_masks(schema: AttributeSchema, allowed: tuple[str, ...]
                ) -> tuple[np.ndarray, np.ndarray]:
    """(num_tags,) and (L,) masks of what an `allowed` list keeps (O always)."""
    keep = np.zeros(schema.num_tags, dtype=bool)
    keep[0] = True
    attr_keep = np.zeros(schema.num_attributes, dtype=bool)
    for a in allowed:
        if a in schema:
            j = schema.attr_id(a)
            keep[1 + 2 * j] = keep[2 + 2 * j] = attr_keep[j] = True
    return keep, attr_keep


def _restrictions(allowed: Sequence[Collection[str] | None] | None, schema: AttributeSchema,
                  size: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(B, num_tags) and (B, L) keep masks, or (None, None) when no row is restricted."""
    if allowed is None or all(a is None for a in allowed):
        return None, None
    tag_keep = np.ones((size, schema.num_tags), dtype=bool)
    attr_keep = np.ones((size, schema.num_attributes), dtype=bool)
    for b, a in enumerate(allowed):
        if a is not None:
            tag_keep[b], attr_keep[b] = _keep_masks(schema, tuple(a))
    return tag_keep, attr_keep


_LOG_FLOOR = 1e-30
"""Probabilities are floored here before the log: a tag a restriction zeroed stays possible
only when every tag of its word is (it then costs the same as any other)."""


def viterbi_tags(probs: np.ndarray, words: _Words) -> np.ndarray:
    """(W,) tags: per row, the valid BIO sequence with the largest product of the words' tag
    probabilities (`probs` (W, 1 + 2L), words in flat order, O at 0, B-l at 1 + 2l and I-l
    at 2 + 2l). Valid: an I-l only right after B-l or I-l. Words without characters are left
    out (they break nothing in the chunking) and get O.

    Per-word argmax often yields an I-X after another attribute's tag or after O, which the
    chunker turns into a separate, truncated span ("25 Mg" -> "Mg"); the sequence maximum
    decides the boundary from both words' evidence. When the argmax sequence is valid it is
    the maximum, so this changes nothing there. The recursion needs no K x K transition
    matrix: O and B-l may follow anything, I-l only B-l or I-l."""
    tags = np.zeros(len(probs), dtype=np.int64)
    live = np.flatnonzero(words.begin != words.end)
    if not len(live):
        return tags
    row = words.row[live]
    counts = np.bincount(row, minlength=len(words.counts))
    rank = np.arange(len(live)) - (np.cumsum(counts) - counts)[row]
    B, W, K = len(counts), int(counts.max()), probs.shape[-1]
    lp = np.zeros((B, W, K))
    lp[row, rank] = np.log(np.maximum(probs[live].astype(np.float64), _LOG_FLOOR))
    b_cols, i_cols = np.arange(1, K, 2), np.arange(2, K, 2)
    score = lp[:, 0].copy()
    score[:, i_cols] = -np.inf                       # a sequence cannot open with I
    back = np.zeros((B, W, K), dtype=np.int64)
    rows = np.arange(B)
    for k in range(1, W):
        best_prev = score.argmax(-1)                 # O and B-l follow anything
        from_b = score[:, b_cols] >= score[:, i_cols]
        new = np.empty_like(score)
        new[:] = score[rows, best_prev][:, None]
        back[:, k] = best_prev[:, None]
        new[:, i_cols] = np.where(from_b, score[:, b_cols], score[:, i_cols])
        back[:, k, i_cols] = np.where(from_b, b_cols, i_cols)
        active = (k < counts)[:, None]
        score = np.where(active, new + lp[:, k], score)
    best = np.zeros((B, W), dtype=np.int64)
    cur = score.argmax(-1)
    for k in range(W - 1, -1, -1):
        active = k < counts
        best[:, k] = np.where(active, cur, 0)
        if k:
            cur = np.where(active, back[rows, k, cur], cur)
    tags[live] = best[row, rank]
    return tags


def crf_tags(probs: np.ndarray, words: _Words, transitions: Transitions | None
             ) -> tuple[np.ndarray, np.ndarray]:
    """(W, K) CRF marginals and (W,) Viterbi tags of a batch's words (`decoding="crf"`). All
    words of a row take part, those without characters too: the CRF was trained over every
    first piece (`tag_mask`). A tag a restriction zeroed is floored like in `viterbi_tags`."""
    if transitions is None:
        raise ValueError("decoding='crf' needs the CRF's transitions: a model trained with "
                         "model.decoding=crf")
    if transitions.num_tags != probs.shape[-1]:
        raise ValueError(f"CRF transitions over {transitions.num_tags} tags for tag "
                         f"probabilities over {probs.shape[-1]}")
    B, W = len(words.counts), int(words.counts.max(initial=0))
    lp = np.zeros((B, W, probs.shape[-1]))
    lp[words.row, words.rank] = np.log(np.maximum(probs.astype(np.float64), _LOG_FLOOR))
    at = (words.row, words.rank)
    return (crf_marginals(lp, words.counts, transitions)[at],
            crf_viterbi(lp, words.counts, transitions)[at])


def _check_tags(tags: np.ndarray, words: _Words, num_tags: int) -> None:
    bad = np.flatnonzero(tags >= num_tags)
    if len(bad):
        k = bad[0]
        raise ValueError(f"tag id {int(tags[k])} at token {int(words.pos[k])} is outside the "
                         f"schema's {num_tags} tags")


def _chunks(tags: np.ndarray, words: _Words
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row, begin, end, attribute id) of every BIO chunk, as `bio_to_spans` cuts them: words
    without characters are skipped and break nothing; `I-X` continues only a chunk of X."""
    live = np.flatnonzero(words.begin != words.end)
    tag, row = tags[live], words.row[live]
    attr = (tag - 1) // 2
    same_row = np.r_[False, row[1:] == row[:-1]]
    prev_tag = np.where(same_row, np.r_[0, tag[:-1]], 0)
    prev_attr = np.r_[-1, attr[:-1]]
    inside = (tag > 0) & (tag % 2 == 0)
    goes_on = inside & (prev_tag > 0) & (prev_attr == attr)
    first = np.flatnonzero((tag > 0) & ~goes_on)
    last = np.flatnonzero((tag > 0) & ~np.r_[goes_on[1:], False])
    return (row[first], words.begin[live[first]], words.end[live[last]], attr[first])


def _score(words: _Words, probs: np.ndarray, chosen: np.ndarray, rows: np.ndarray,
           begins: np.ndarray, ends: np.ndarray, attrs: np.ndarray) -> np.ndarray:
    """`span_scores` of spans given as arrays (float64, one per span). A span's words are all
    the words of its row that overlap it (its own chunk's, unless offsets are odd)."""
    width = int(words.counts.max(initial=0))
    if not len(rows) or not width:
        return np.zeros(len(rows))
    w_begin = np.full((len(words.counts), width), _FAR, dtype=np.int64)
    w_end = np.full((len(words.counts), width), -_FAR, dtype=np.int64)
    w_begin[words.row, words.rank] = words.begin
    w_end[words.row, words.rank] = words.end
    inside = (w_begin[rows] < ends[:, None]) & (w_end[rows] > begins[:, None])   # (S, width)
    count = inside.sum(1)
    has = count > 0
    k0 = inside.argmax(1)
    k1 = width - 1 - inside[:, ::-1].argmax(1)
    base = words.starts[rows]
    score = _inside_means(chosen, base, k0, inside, count, k1 - k0 + 1 == count)
    before = has & (k0 > 0)
    after = has & (k1 + 1 < words.counts[rows])
    b_col, i_col = 1 + 2 * attrs, 2 + 2 * attrs
    prev = np.where(before, base + k0 - 1, 0)
    nxt = np.where(after, base + k1 + 1, 0)
    f_before = ((1.0 - probs[prev, b_col].astype(np.float64))
                - probs[prev, i_col].astype(np.float64))
    f_after = 1.0 - probs[nxt, i_col].astype(np.float64)
    score = np.where(before, score * np.where(f_before > 0.0, f_before, 0.0), score)
    score = np.where(after, score * np.where(f_after > 0.0, f_after, 0.0), score)
    return np.where(has, score, 0.0)


def _inside_means(chosen: np.ndarray, base: np.ndarray, k0: np.ndarray, inside: np.ndarray,
                  count: np.ndarray, contiguous: np.ndarray) -> np.ndarray:
    """Per span, `float(np.mean(chosen tag probabilities of its words))`, bit for bit.

    numpy adds up to `SEQUENTIAL_MEAN_MAX` values one by one from 0 in the array's dtype and
    divides the sum by the count in float64, so spans of that few contiguous words (nearly all)
    are done for all at once from their first word (`base` + `k0`, flat word indices); the
    others call np.mean.
    `_vector_mean_ok` checks that the numpy in use does this.
    """
    out = np.zeros(len(count))
    fast = contiguous & (count > 0) & (count <= SEQUENTIAL_MEAN_MAX)
    if not _vector_mean_ok(chosen.dtype):
        fast[:] = False
    if fast.any():
        total = np.zeros(len(count), dtype=chosen.dtype)
        first, last = base + k0, len(chosen) - 1
        for k in range(int(count[fast].max())):
            total = total + np.where(k < count, chosen[np.minimum(first + k, last)], 0)
        mean = (total.astype(np.float64) / np.maximum(count, 1)).astype(chosen.dtype)
        out[fast] = mean[fast]
    for s in np.flatnonzero((count > 0) & ~fast):
        out[s] = float(np.mean(chosen[base[s] + np.flatnonzero(inside[s])]))
    return out


@lru_cache(maxsize=8)
def _vector_mean_ok(dtype: np.dtype) -> bool:
    """Whether the batched mean equals np.mean for this dtype with the numpy in use."""
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        return False
    rng = np.random.default_rng(0)
    for n in range(1, SEQUENTIAL_MEAN_MAX + 1):
        x = (rng.random((200, n)) * rng.choice([1e-3, 1.0, 1e3], (200, 1))).astype(dtype)
        total = np.zeros(200, dtype=dtype)
        for k in range(n):
            total = total + x[:, k]
        mine = (total.astype(np.float64) / n).astype(dtype)
        if any(mine[i] != np.mean(x[i]) for i in range(200)):
            return False
    return True


def span_scores(encoded: Encoded, spans: Sequence[Span], tag_ids: np.ndarray,
                tag_probs: np.ndarray, schema: AttributeSchema) -> list[float]:
    """How sure the model is of each span *as it stands*: the mean probability of the tags
    chosen on its words, times the probability that it does not go on at either end
    (1 - p(B-a) - p(I-a) on the word before it, 1 - p(I-a) on the word after it).

    The mean alone rates a confidently tagged head of a longer value ("Now" of "Now Foods")
    as high as the whole value; the boundary factors send such truncated spans down the
    ranking, which is what a score threshold (`mjave complete --min-precision`) relies on.
    """
    if not spans:
        return []
    tag_probs = np.asarray(tag_probs)
    words = _words(TokenLayout.from_encodings([encoded]))
    probs = tag_probs[words.pos]
    chosen = probs[np.arange(len(words.pos)), np.asarray(tag_ids)[words.pos]]
    attrs = np.array([schema._index.get(s.attr, -1) for s in spans], dtype=np.int64)
    rows = np.zeros(len(spans), dtype=np.int64)
    begins = np.array([s.begin for s in spans], dtype=np.int64)
    ends = np.array([s.end for s in spans], dtype=np.int64)
    scores = _score(words, probs, chosen, rows, begins, ends, np.maximum(attrs, 0))
    unknown = [s for s, j, sc in zip(spans, attrs.tolist(), _has_inside(words, begins, ends))
               if j < 0 and sc]
    if unknown:
        schema.attr_id(unknown[0].attr)  # raises the DataError naming it
    return scores.tolist()


def _has_inside(words: _Words, begins: np.ndarray, ends: np.ndarray) -> list[bool]:
    """Per span of a single row, whether some word overlaps it."""
    return (((words.begin[None, :] < ends[:, None]) & (words.end[None, :] > begins[:, None]))
            .any(1).tolist())
