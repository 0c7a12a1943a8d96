"""The one aligner between texts/spans and model tokens, for every tokenizer.

Every path (training labels, prediction, evaluation, serving) goes through `TextAligner` and
`decode_tags`, so a text is cut, labelled and decoded the same way everywhere:

* a tokenizer turns a text into content *pieces* (ids, character offsets into the ORIGINAL string,
  and the word each piece belongs to): `CharTokenizer` (one piece per non-whitespace character, the
  official JAVE scheme for Chinese) or `HFTokenizerAdapter` (any Hugging Face fast tokenizer);
* labels are computed at WORD level with `spans.spans_to_bio` over word offsets and put on the first
  piece of each word; the other pieces get -100 so the loss ignores them;
* decoding reads the tags of first pieces only and hands word offsets to `spans.bio_to_spans`.

Truncation is a plain cut of the content pieces (keeping [SEP]); what it cuts is counted, never
silent. This module must not import torch: batches are numpy arrays.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, Sequence

import numpy as np

from mjave.data.errors import DataError, RowIssues
from mjave.data.records import Record, Span
from mjave.data.schema import AttributeSchema
from mjave.data.spans import bio_to_spans, resolve_overlaps, spans_to_bio

IGNORE_INDEX = -100
"""Label of positions the loss ignores (special tokens, continuation pieces, padding)."""

DEFAULT_MAX_LENGTH = 48
"""The paper's 46 sub-words (Table 9) plus [CLS] and [SEP]."""


# --------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pieces:
    """Content tokens of one text, without special tokens.

    `offsets[i]` indexes the original text (`text[a:b]`); `(a, a)` marks a piece that covers no
    character (e.g. a lone sentencepiece '▁'). `word_ids[i]` numbers words 0, 1, ... in order;
    the pieces of one word are contiguous.
    """

    ids: list[int]
    offsets: list[tuple[int, int]]
    word_ids: list[int]

    def __len__(self) -> int:
        return len(self.ids)


class Tokenizer(Protocol):
    """What `TextAligner` needs from a tokenizer: pieces plus the ids of the special tokens."""

    cls_id: int
    sep_id: int
    pad_id: int
    unk_id: int

    def tokenize(self, text: str) -> Pieces: ...


def read_vocab(path: str | Path) -> dict[str, int]:
    """Read a BERT vocab.txt: one token per line, id = line index.

    Splits on '\\n' only: the Chinese BERT vocab holds '\\u2028' as a token, which `splitlines()`
    would treat as a line break and shift every later id by one.
    """
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read vocabulary: {e}", path=str(path), reason="bad vocab") from None
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start an empty token
    vocab: dict[str, int] = {}
    for i, line in enumerate(lines):
        vocab[line.rstrip("\r")] = i  # a duplicated token keeps its last id, as transformers does
    if not vocab:
        raise DataError("vocabulary is empty", path=str(path), reason="bad vocab")
    return vocab


def _strip_accents(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")


class CharTokenizer:
    """One token per non-whitespace character, lower-cased, ids from a BERT vocab.txt.

    This is the JAVE scheme for Chinese: every character is its own word, so a span boundary can
    fall between any two characters (WordPiece would glue Latin letters and digits together, as in
    'HAZZYS'). Lookup order: lower-cased, lower-cased without accents (what an uncased BERT saw in
    pre-training), the character as is, else [UNK].
    """

    def __init__(self, vocab: Mapping[str, int], *, lowercase: bool = True,
                 cls_token: str = "[CLS]", sep_token: str = "[SEP]", pad_token: str = "[PAD]",
                 unk_token: str = "[UNK]"):
        self.vocab: dict[str, int] = dict(vocab)
        self.lowercase = lowercase
        missing = [t for t in (cls_token, sep_token, pad_token, unk_token) if t not in self.vocab]
        if missing:
            raise DataError(f"vocabulary lacks special tokens {missing}", field="vocab",
                            reason="bad vocab")
        self.cls_id = self.vocab[cls_token]
        self.sep_id = self.vocab[sep_token]
        self.pad_id = self.vocab[pad_token]
        self.unk_id = self.vocab[unk_token]
        self._cache: dict[str, int] = {}

    @classmethod
    def from_vocab_file(cls, path: str | Path, **kwargs: Any) -> "CharTokenizer":
        return cls(read_vocab(path), **kwargs)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs: Any) -> "CharTokenizer":
        """From a model folder holding vocab.txt (a BERT checkpoint folder works)."""
        return cls.from_vocab_file(Path(directory) / "vocab.txt", **kwargs)

    @property
    def vocab_size(self) -> int:
        return max(self.vocab.values()) + 1

    def token_id(self, ch: str) -> int:
        """Id of one character (cached: texts repeat the same few thousand characters)."""
        tid = self._cache.get(ch)
        if tid is None:
            candidates = [ch.lower(), _strip_accents(ch.lower()), ch] if self.lowercase else [ch]
            tid = next((self.vocab[c] for c in candidates if c in self.vocab), self.unk_id)
            self._cache[ch] = tid
        return tid

    def tokenize(self, text: str) -> Pieces:
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        for i, ch in enumerate(text):
            if ch.isspace():
                continue
            ids.append(self.token_id(ch))
            offsets.append((i, i + 1))
        return Pieces(ids, offsets, list(range(len(ids))))


class HFTokenizerAdapter:
    """Any Hugging Face *fast* tokenizer, seen through its offsets and word ids.

    Only fast tokenizers report character offsets into the original string (`offset_mapping`) and
    the word each piece came from (`word_ids()`); a slow one would force re-aligning by string
    matching, which breaks on normalisation and whitespace, so it is refused.
    """

    def __init__(self, tokenizer: Any):
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError(
                f"{type(tokenizer).__name__} is not a fast tokenizer: mjave needs character "
                "offsets and word ids (load it with AutoTokenizer.from_pretrained(..., "
                "use_fast=True), from a folder with tokenizer.json)")
        self.tokenizer = tokenizer
        self.cls_id = self._special_id("cls_token_id", "bos_token_id")
        self.sep_id = self._special_id("sep_token_id", "eos_token_id")
        self.unk_id = self._special_id("unk_token_id")
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = pad if pad is not None else self.sep_id

    def _special_id(self, *names: str) -> int:
        for name in names:
            value = getattr(self.tokenizer, name, None)
            if value is not None:
                return int(value)
        raise TypeError(f"tokenizer {type(self.tokenizer).__name__} has none of {names}")

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs: Any) -> "HFTokenizerAdapter":
        """Load a local tokenizer folder. transformers is imported here so `mjave.data` stays light."""
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(directory), **kwargs))

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def tokenize(self, text: str) -> Pieces:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                             truncation=False, verbose=False)
        raw_ids = list(enc["input_ids"])
        raw_words = enc.word_ids()
        offsets = [_trim_whitespace(text, int(a), int(b)) for a, b in enc["offset_mapping"]]
        return Pieces([int(i) for i in raw_ids], offsets, _renumber_words(raw_words))

    def tokenize_many(self, texts: Sequence[str]) -> list[Pieces]:
        """`tokenize` of every text, in one call to the Rust tokenizer.

        The same pieces as `tokenize` (transformers hands its one text to the same
        `encode_batch`), without transformers' per-call Python work, which cost more than the
        tokenizing itself on product titles. Falls back to `tokenize` per text when the backend
        is not in the state transformers would put it in (truncation or padding set, ...).
        """
        if not texts:
            return []
        backend = self._plain_backend()
        if backend is None:
            self.tokenize(texts[0])  # transformers sets the backend up (a fresh one truncates)
            backend = self._plain_backend()
            if backend is None:
                return [self.tokenize(t) for t in texts]
        encs = backend.encode_batch(list(texts), add_special_tokens=False)
        offsets = _trim_whitespace_many(texts, [e.offsets for e in encs])
        words = _renumber_words_many([e.word_ids for e in encs])
        return [Pieces(e.ids, o, w) for e, o, w in zip(encs, offsets, words)]

    def _plain_backend(self) -> Any | None:
        """The Rust tokenizer when calling it directly equals what `tokenize` gets, else None."""
        tok = self.tokenizer
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is None or hasattr(tok, "_switch_to_input_mode"):
            return None
        try:
            plain = (backend.truncation is None and backend.padding is None
                     and backend.encode_special_tokens
                     == bool(getattr(tok, "split_special_tokens", False)))
        except AttributeError:
            return None
        return backend if plain else None


def _renumber_words(raw_words: Sequence[int | None]) -> list[int]:
    """Words are maximal runs of pieces sharing a word id; a piece without one is its own word."""
    word_ids: list[int] = []
    prev: object = object()
    n = -1
    for w in raw_words:
        if w is None or w != prev:
            n += 1
        word_ids.append(n)
        prev = w
    return word_ids


def _renumber_words_many(raw: Sequence[list[int | None]]) -> list[list[int]]:
    """`_renumber_words` of each list; lists already numbered 0, 1, ... in runs (what WordPiece
    gives) are kept as they are, found with one numpy pass over the batch."""
    plain = [None not in w for w in raw]
    counts = np.fromiter((len(w) if p else 0 for w, p in zip(raw, plain)), np.int64, len(raw))
    flat = np.fromiter(chain.from_iterable(w for w, p in zip(raw, plain) if p), np.int64,
                       int(counts.sum()))
    starts = (np.cumsum(counts) - counts)[counts > 0]
    step = np.diff(flat, prepend=0)
    ok = (step == 0) | (step == 1)
    ok[starts] = flat[starts] == 0                         # and each list starts at word 0
    owner = np.repeat(np.arange(len(raw)), counts)
    bad = np.bincount(owner[~ok], minlength=len(raw)) > 0
    return [list(w) if p and not b else _renumber_words(w)
            for w, p, b in zip(raw, plain, bad.tolist())]


def _trim_whitespace_many(texts: Sequence[str], offsets: Sequence[list[tuple[int, int]]]
                          ) -> list[list[tuple[int, int]]]:
    """`_trim_whitespace` of every piece; only texts with a piece that starts or ends on
    whitespace (or is reversed) are trimmed in Python, found with one numpy pass."""
    joined = "".join(texts)
    space = [ord(c) for c in set(joined) if c.isspace()]
    chars = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    is_space = np.append(np.isin(chars, space), False)
    counts = np.fromiter(map(len, offsets), np.int64, len(offsets))
    flat = np.fromiter(chain.from_iterable(chain.from_iterable(offsets)), np.int64,
                       2 * int(counts.sum())).reshape(-1, 2)
    base = np.repeat(np.cumsum([0, *map(len, texts[:-1])]), counts)
    a, b = flat[:, 0], flat[:, 1]
    real = a < b
    edge = is_space[np.where(real, base + a, -1)] | is_space[np.where(real, base + b - 1, -1)]
    owner = np.repeat(np.arange(len(texts)), counts)
    fix = np.bincount(owner[(real & edge) | (a > b)], minlength=len(texts)) > 0
    return [[_trim_whitespace(t, x, y) for x, y in o] if f else o
            for t, o, f in zip(texts, offsets, fix.tolist())]


def _trim_whitespace(text: str, a: int, b: int) -> tuple[int, int]:
    """Shrink offsets that include surrounding whitespace (BPE / sentencepiece pieces do)."""
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return (a, b) if a < b else (a, a)


def load_tokenizer(directory: str | Path, kind: str = "hf") -> Tokenizer:
    """`kind='char'`: `CharTokenizer` from the folder's vocab.txt; `'hf'`: its fast tokenizer."""
    if kind == "char":
        return CharTokenizer.from_pretrained(directory)
    if kind == "hf":
        return HFTokenizerAdapter.from_pretrained(directory)
    raise ValueError(f"tokenizer kind must be 'char' or 'hf', not {kind!r}")


# --------------------------------------------------------------------------------------------
# Alignment
# --------------------------------------------------------------------------------------------


@dataclass
class Encoded:
    """One text as model input: [CLS] pieces [SEP], with labels and what truncation cost.

    `offsets` are character offsets into the original text, (0, 0) for special tokens.
    `word_ids` give each piece's word (None for special tokens). `labels` hold a tag id on the
    first piece of every word and -100 elsewhere; for `encode_text` (no gold) they are all -100
    and `has_labels` is False. `cut_spans` counts spans that lost pieces to truncation (fully or
    partly); `unaligned_spans` counts spans no piece covers even before truncation (whitespace-only
    or out-of-range spans), which therefore cannot be learned.
    """

    input_ids: list[int]
    offsets: list[tuple[int, int]]
    word_ids: list[int | None]
    labels: list[int]
    truncated: bool = False
    cut_spans: int = 0
    dropped_overlaps: int = 0
    unaligned_spans: int = 0
    has_labels: bool = True
    id: str | None = None
    num_pieces: int = 0  # content pieces before truncation, for length statistics

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def label_mask(self) -> list[bool]:
        """True on the first piece of each word: where labels live and where predictions are read.

        Derived from `word_ids`, so it also exists for `encode_text`; for `encode` it equals
        `labels != -100`.
        """
        return first_piece_mask(self.word_ids)

    def word_offsets(self) -> list[tuple[int, int]]:
        """Per token: its word's offsets (first piece's start to last piece's end) on the first
        piece of each word, (0, 0) elsewhere. Only pieces kept after truncation count."""
        spans: dict[int, tuple[int, int]] = {}
        for w, (a, b) in zip(self.word_ids, self.offsets):
            if w is None or a == b:
                continue
            if w in spans:
                s, e = spans[w]
                spans[w] = (min(s, a), max(e, b))
            else:
                spans[w] = (a, b)
        return [spans.get(w, (0, 0)) if first and w is not None else (0, 0)
                for w, first in zip(self.word_ids, self.label_mask)]


def first_piece_mask(word_ids: Sequence[int | None]) -> list[bool]:
    """True where a word starts (special tokens are never word starts)."""
    out: list[bool] = []
    prev: int | None = None
    for w in word_ids:
        out.append(w is not None and w != prev)
        prev = w
    return out


def _word_spans(pieces: Pieces) -> list[tuple[int, int]]:
    """Character extent of every word: first piece's start to last piece's end."""
    n_words = pieces.word_ids[-1] + 1 if pieces.word_ids else 0
    starts = [-1] * n_words
    ends = [-1] * n_words
    for w, (a, b) in zip(pieces.word_ids, pieces.offsets):
        if a == b:
            continue
        if starts[w] < 0 or a < starts[w]:
            starts[w] = a
        ends[w] = max(ends[w], b)
    return [(s, e) if s >= 0 else (0, 0) for s, e in zip(starts, ends)]


class TextAligner:
    """Turns records into model inputs with BIO labels, the same way for every tokenizer.

    `max_length` counts [CLS] and [SEP]; None keeps whole texts (for callers that window long
    texts themselves). `schema` may be None when only `encode_text` is used.
    """

    def __init__(self, tokenizer: Tokenizer, schema: AttributeSchema | None = None,
                 max_length: int | None = DEFAULT_MAX_LENGTH):
        if max_length is not None and max_length < 3:
            raise ValueError(f"max_length must leave room for [CLS], one token and [SEP], "
                             f"got {max_length}")
        self.tokenizer = tokenizer
        self.schema = schema
        self.max_length = max_length

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_id

    def encode_text(self, text: str) -> Encoded:
        """Model input for prediction: no labels (all -100)."""
        return self._encode(text, None)

    def encode_texts(self, texts: Sequence[str]) -> list[Encoded]:
        """`encode_text` of each text, tokenized in one call where the tokenizer can
        (`tokenize_many`): the per-call overhead of a Hugging Face tokenizer exceeds the work on
        a product title."""
        many = getattr(self.tokenizer, "tokenize_many", None)
        pieces = many(texts) if many is not None else [self.tokenizer.tokenize(t) for t in texts]
        return [self._from_pieces(p, None) for p in pieces]

    def encode(self, record: Record) -> Encoded:
        """Model input with word-level BIO labels on first pieces; overlaps and cuts are counted."""
        if self.schema is None:
            raise ValueError("TextAligner has no schema: labels need one (use encode_text to "
                             "encode without labels)")
        kept, dropped = resolve_overlaps(record.spans)
        try:
            enc = self._encode(record.text, kept)
        except DataError as e:
            raise DataError(f"record {record.id!r}: {e.message}", path=e.path, line=e.line,
                            field=e.field, reason=e.reason) from None
        enc.dropped_overlaps = len(dropped)
        enc.id = record.id
        return enc

    def encode_many(self, records: Iterable[Record], issues: RowIssues | None = None
                    ) -> list[Encoded]:
        """Encode records and add what was changed to `issues`, so callers can report it."""
        out = [self.encode(r) for r in records]
        if issues is not None:
            for enc in out:
                issues.truncated_texts += int(enc.truncated)
                issues.truncated_spans += enc.cut_spans
                issues.dropped_overlaps += enc.dropped_overlaps
        return out

    def _encode(self, text: str, spans: list[Span] | None) -> Encoded:
        return self._from_pieces(self.tokenizer.tokenize(text), spans)

    def _from_pieces(self, pieces: Pieces, spans: list[Span] | None) -> Encoded:
        n = len(pieces)
        keep = n if self.max_length is None else min(n, self.max_length - 2)
        if spans is None and keep == n:
            return self._whole_unlabelled(pieces)

        labels = [IGNORE_INDEX] * n
        cut = unaligned = 0
        if spans is not None:
            assert self.schema is not None
            first = first_piece_mask(pieces.word_ids)
            words = _word_spans(pieces)
            tags, unaligned = spans_to_bio(words, spans)
            tag_ids = [self.schema.tag_id(t) for t in tags]
            labels = [tag_ids[w] if f else IGNORE_INDEX for w, f in zip(pieces.word_ids, first)]
            if keep < n:
                lost = [(a, b) for a, b in pieces.offsets[keep:] if a < b]
                cut = sum(1 for s in spans
                          if any(a < s.end and s.begin < b for a, b in lost))

        tok = self.tokenizer
        enc = Encoded(
            input_ids=[tok.cls_id, *pieces.ids[:keep], tok.sep_id],
            offsets=[(0, 0), *pieces.offsets[:keep], (0, 0)],
            word_ids=[None, *pieces.word_ids[:keep], None],
            labels=[IGNORE_INDEX, *labels[:keep], IGNORE_INDEX],
            truncated=keep < n,
            cut_spans=cut,
            unaligned_spans=unaligned,
            has_labels=spans is not None,
            num_pieces=n,
        )
        return enc

    def _whole_unlabelled(self, pieces: Pieces) -> Encoded:
        """`_from_pieces` of a text that is neither labelled nor cut, without the copies (it
        runs for every text predicted)."""
        tok = self.tokenizer
        n = len(pieces)
        return Encoded(input_ids=[tok.cls_id, *pieces.ids, tok.sep_id],
                       offsets=[(0, 0), *pieces.offsets, (0, 0)],
                       word_ids=[None, *pieces.word_ids, None],
                       labels=[IGNORE_INDEX] * (n + 2), truncated=False, cut_spans=0,
                       unaligned_spans=0, has_labels=False, num_pieces=n)


def decode_tags(encoded: Encoded, tag_ids: Sequence[int], text: str,
                schema: AttributeSchema) -> list[Span]:
    """Per-token tag ids (e.g. a model's argmax, one row of a padded batch) back to char spans.

    Only first pieces of words are read (the others were never trained); each word spans all its
    kept pieces, and `spans.bio_to_spans` does the chunking and its repair policy. `tag_ids` may be
    longer than the encoding (padding is ignored).
    """
    if len(tag_ids) < len(encoded.input_ids):
        raise ValueError(f"{len(tag_ids)} tag ids for {len(encoded.input_ids)} tokens")
    tags: list[str] = []
    offsets: list[tuple[int, int]] = []
    num_tags = schema.num_tags
    for i, (first, off) in enumerate(zip(encoded.label_mask, encoded.word_offsets())):
        if not first:
            continue
        t = int(tag_ids[i])
        if not 0 <= t < num_tags:
            raise ValueError(f"tag id {t} at token {i} is outside the schema's {num_tags} tags")
        tags.append(schema.tag_name(t))
        offsets.append(off)
    return bio_to_spans(tags, offsets, text)


def batch_pad(encodeds: Sequence[Encoded], pad_id: int) -> dict[str, np.ndarray]:
    """Pad a batch to its longest member: int64 arrays the training code turns into tensors.

    Keys: input_ids (pad_id), attention_mask (0/1), labels (-100 on padding), label_mask (bool,
    first pieces of words: where predictions are read, also for unlabelled texts), lengths.
    """
    b = len(encodeds)
    t = max((len(e.input_ids) for e in encodeds), default=0)
    input_ids = np.full((b, t), pad_id, dtype=np.int64)
    attention = np.zeros((b, t), dtype=np.int64)
    labels = np.full((b, t), IGNORE_INDEX, dtype=np.int64)
    label_mask = np.zeros((b, t), dtype=bool)
    lengths = np.zeros((b,), dtype=np.int64)
    for i, e in enumerate(encodeds):
        n = len(e.input_ids)
        input_ids[i, :n] = e.input_ids
        attention[i, :n] = 1
        labels[i, :n] = e.labels
        label_mask[i, :n] = e.label_mask
        lengths[i] = n
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
            "label_mask": label_mask, "lengths": lengths}


__all__ = [
    "DEFAULT_MAX_LENGTH", "IGNORE_INDEX", "CharTokenizer", "Encoded", "HFTokenizerAdapter",
    "Pieces", "TextAligner", "Tokenizer", "batch_pad", "decode_tags", "first_piece_mask",
    "load_tokenizer", "read_vocab",
]
