"""A batch of encodings as flat numpy arrays (`TokenLayout`): what the collate and the decoder
read instead of walking each encoding's Python lists token by token."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Sequence

import numpy as np

from mjave.data.tagging import Encoded


@dataclass
class TokenLayout:
    """A batch of encodings as flat arrays, row after row (no padding).

    Built once per batch from the encodings' lists; the collate (`mjave.model.batches.collate`)
    and the decoder (`mjave.inference.decode`) both read it, so no per-token Python runs on the prediction path.
    `word` is -1 where the encoding's word id is None; `first` marks first pieces of words
    (`Encoded.label_mask`).
    """

    lengths: np.ndarray   # (B,) tokens per row
    starts: np.ndarray    # (B,) flat index of each row's first token
    ids: np.ndarray       # (N,) input ids
    word: np.ndarray      # (N,) word ids, -1 for None
    begin: np.ndarray     # (N,) character offsets
    end: np.ndarray       # (N,)
    row: np.ndarray       # (N,) row of each token
    pos: np.ndarray       # (N,) position of each token in its row
    first: np.ndarray     # (N,) bool

    @classmethod
    def from_encodings(cls, encodings: Sequence[Encoded]) -> "TokenLayout":
        lengths = np.fromiter(map(len, encodings), np.int64, len(encodings))
        n = int(lengths.sum())
        starts = np.cumsum(lengths) - lengths
        offsets = np.fromiter(chain.from_iterable(chain.from_iterable(
            e.offsets for e in encodings)), np.int64, 2 * n).reshape(n, 2)
        row = np.repeat(np.arange(len(encodings)), lengths)
        word = _word_array(encodings, lengths, starts, n)
        prev = np.empty_like(word)
        prev[1:] = word[:-1]
        prev[starts[lengths > 0]] = -1
        return cls(lengths=lengths, starts=starts,
                   ids=np.fromiter(chain.from_iterable(e.input_ids for e in encodings),
                                   np.int64, n),
                   word=word, begin=offsets[:, 0], end=offsets[:, 1], row=row,
                   pos=np.arange(n) - starts[row], first=(word >= 0) & (word != prev))

    @property
    def size(self) -> int:
        return len(self.lengths)

    def padded(self, flat: np.ndarray, fill: int | bool) -> np.ndarray:
        """(B, longest row) array of `flat` laid out row by row, `fill` after each row's end."""
        width = int(self.lengths.max(initial=0))
        out = np.full((self.size, width), fill, dtype=flat.dtype)
        out[np.arange(width) < self.lengths[:, None]] = flat
        return out


def _word_array(encodings: Sequence[Encoded], lengths: np.ndarray, starts: np.ndarray,
                n: int) -> np.ndarray:
    """Flat word ids with -1 for None; fast when None is only at [CLS] and [SEP] (always, for
    the aligner's encodings)."""
    words = [e.word_ids for e in encodings]
    if all(len(w) >= 2 and w[0] is None and w[-1] is None and w.count(None) == 2 for w in words):
        out = np.full(n, -1, dtype=np.int64)
        inner = np.ones(n, dtype=bool)
        inner[starts] = False
        inner[starts + lengths - 1] = False
        out[inner] = np.fromiter(chain.from_iterable(w[1:-1] for w in words), np.int64,
                                 n - 2 * len(words))
        return out
    return np.fromiter((-1 if w is None else w for w in chain.from_iterable(words)), np.int64, n)


__all__ = ["TokenLayout"]
