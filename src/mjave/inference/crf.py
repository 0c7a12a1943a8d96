"""Decoding a CRF tagger (`decoding="crf"`, `mjave.model.crf`) on the host, in numpy.

Every path (torch, ONNX, serving) hands the decoder the per-word softmax of the tag logits, as
without a CRF. Its log is the CRF's emission score minus a constant per word, and a constant
per word is the same for every tag sequence, so it cancels in p(y): the softmax plus the learned
`Transitions` is the whole CRF, and no Viterbi goes into a graph. `crf_viterbi` picks the most
probable sequence (BIO-forbidden transitions are at `FORBIDDEN` already); `crf_marginals` gives
p(y_i = k | text) by forward-backward, which span scores read in place of the softmax, so
`min_span_score` and `max_values_per_attribute` keep their meaning.

Arrays are (B, W, K): a row's words first, `counts` (B,) words per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Transitions:
    """A CRF's learned scores as it decodes with them (`BIOCRF.potentials`): start (K,),
    matrix (K, K) [prev, next], end (K,); BIO-forbidden entries are large negatives."""

    start: np.ndarray
    matrix: np.ndarray
    end: np.ndarray

    @property
    def num_tags(self) -> int:
        return len(self.start)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lists (an exported folder keeps them in export.json)."""
        return {"start": self.start.tolist(), "matrix": self.matrix.tolist(),
                "end": self.end.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Transitions":
        return cls(*(np.asarray(d[k], dtype=np.float64) for k in ("start", "matrix", "end")))


def crf_viterbi(log_probs: np.ndarray, counts: np.ndarray, t: Transitions) -> np.ndarray:
    """(B, W) the highest-scoring tag sequence of each row (0 past its end)."""
    B, W, K = log_probs.shape
    tags = np.zeros((B, W), dtype=np.int64)
    if not W:
        return tags
    rows = np.arange(B)
    into = np.ascontiguousarray(t.matrix.T)       # [next, prev]: reductions over the last axis
    delta = t.start + log_probs[:, 0]                                 # (B, K)
    back = np.zeros((B, W, K), dtype=np.int64)
    for k in range(1, W):
        cand = delta[:, None, :] + into                               # (B, next, prev)
        best = cand.argmax(-1)
        new = np.take_along_axis(cand, best[..., None], -1)[..., 0] + log_probs[:, k]
        active = (k < counts)[:, None]
        delta = np.where(active, new, delta)
        back[:, k] = best
    cur = (delta + t.end).argmax(-1)
    for k in range(W - 1, -1, -1):
        active = k < counts
        tags[:, k] = np.where(active, cur, 0)
        if k:
            cur = np.where(active, back[rows, k, cur], cur)
    return tags


def crf_marginals(log_probs: np.ndarray, counts: np.ndarray, t: Transitions) -> np.ndarray:
    """(B, W, K) float64 p(y_i = k | text) by scaled forward-backward (rows past a row's end
    are meaningless). Scaled in probability space, where every constant factor (per word, per
    step, of the whole matrix) cancels. The products are stacked (1, K) x (K, K) matmuls, one
    per row: a (B, K) x (K, K) one would let BLAS round a row differently in batches of other
    sizes, and a text's scores must not depend on its batch."""
    B, W, K = log_probs.shape
    if not W:
        return np.zeros((B, W, K))
    phi = np.exp(log_probs - log_probs.max(-1, keepdims=True))
    trans = np.exp(t.matrix - t.matrix.max())
    trans_t = np.ascontiguousarray(trans.T)
    alpha = np.empty((B, W, K))
    a = np.exp(t.start - t.start.max()) * phi[:, 0]
    alpha[:, 0] = a = a / a.sum(-1, keepdims=True)
    for k in range(1, W):
        nxt = (a[:, None, :] @ trans)[:, 0] * phi[:, k]
        a = np.where((k < counts)[:, None], nxt / nxt.sum(-1, keepdims=True), a)
        alpha[:, k] = a
    beta = np.empty((B, W, K))
    last = np.broadcast_to(np.exp(t.end - t.end.max()), (B, K))
    beta[:, W - 1] = last
    for k in range(W - 2, -1, -1):
        nxt = ((phi[:, k + 1] * beta[:, k + 1])[:, None, :] @ trans_t)[:, 0]
        beta[:, k] = np.where((k + 1 < counts)[:, None], nxt / nxt.sum(-1, keepdims=True), last)
    joint = alpha * beta
    return joint / joint.sum(-1, keepdims=True)
