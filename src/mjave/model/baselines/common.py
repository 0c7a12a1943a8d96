"""What the neural baselines share: M-JAVE's loss conventions, a padding-proof BiLSTM, masked
attention, and a base class that makes every baseline a drop-in replacement for `MJAVE`.

Every baseline is text-only: it accepts `v_global`/`v` (the trainer passes them when
`model.use_image` is true) and ignores them. M-JAVE's ablation switches (gates, KL, ...) are
ignored too; only text_dim, num_attributes, attention_size (the hidden size) and dropout are read.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mjave.config import ModelConfig
from mjave.model.losses import IGNORE, attribute_loss, tag_loss  # noqa: F401  (re-exported)
from mjave.model.mjave import MJAVEOutput

log = logging.getLogger(__name__)

NEG_INF = -1e9


# --------------------------------------------------------------------------------------------
# Losses: the same conventions as MJAVE._add_losses, so baseline and M-JAVE losses compare.
# --------------------------------------------------------------------------------------------

# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------

def lengths_of(mask: Tensor) -> Tensor:
    """Real-token counts on the CPU (what `pack_padded_sequence` wants), at least 1."""
    return mask.long().sum(-1).clamp_min(1).cpu()


class PackedBiLSTM(nn.Module):
    """A one-layer BiLSTM over the real tokens only (packed), so padding never changes anything.

    Returns the token states (B, T, 2H), zero at padding, and the sentence state (B, 2H): the
    forward LSTM's state after the last real token next to the backward LSTM's after the first.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True, bidirectional=True)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        T = x.shape[1]
        packed = pack_padded_sequence(x, lengths_of(mask), batch_first=True,
                                      enforce_sorted=False)
        out, (h_n, _) = self.lstm(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
        final = torch.cat([h_n[0], h_n[1]], dim=-1)   # (B, 2H), in the input's batch order
        return states, final


def masked_softmax(scores: Tensor, key_mask: Tensor) -> Tensor:
    """Softmax over the last axis with padded keys (key_mask False) given zero weight.

    `key_mask` broadcasts against `scores` from the left of the key axis, e.g. (B, 1, T) keys for
    (B, T, T) scores.
    """
    return scores.masked_fill(~key_mask, NEG_INF).softmax(dim=-1)


class TokenAttention(nn.Module):
    """Per-token context c_i = sum_j a_ij s_j over the real tokens j (the slot attention of
    Liu & Lane 2016 and Goo et al. 2018).

    The papers score with an additive network g(s_i, s_j) = v^T tanh(W s_i + U s_j), which needs a
    (B, T, T, hidden) tensor; a bilinear (scaled dot-product) score (W s_i) . (U s_j) / sqrt(A)
    needs (B, T, T) only, so a batch of 128 long texts fits in memory. That is the one deviation.
    """

    def __init__(self, size: int, attention_size: int):
        super().__init__()
        self.query = nn.Linear(size, attention_size, bias=False)
        self.key = nn.Linear(size, attention_size, bias=False)
        self.scale = attention_size ** -0.5

    def forward(self, states: Tensor, mask: Tensor) -> Tensor:
        scores = self.query(states) @ self.key(states).transpose(-1, -2) * self.scale
        return masked_softmax(scores, mask[:, None, :]) @ states


class AttentionPooling(nn.Module):
    """Sentence vector sum_j a_j s_j with a_j = softmax_j(v^T tanh(W s_j [+ U q])) over the real
    tokens: the intent attention of Liu & Lane 2016 (no query) and Goo et al. 2018 (query = the
    final BiLSTM state)."""

    def __init__(self, size: int, attention_size: int, query_size: int | None = None):
        super().__init__()
        self.proj = nn.Linear(size, attention_size, bias=True)
        self.query = nn.Linear(query_size, attention_size, bias=False) if query_size else None
        self.score = nn.Linear(attention_size, 1, bias=False)

    def forward(self, states: Tensor, mask: Tensor, query: Tensor | None = None) -> Tensor:
        x = self.proj(states)
        if self.query is not None:
            if query is None:
                raise ValueError("this attention pooling needs a query")
            x = x + self.query(query)[:, None, :]
        weights = masked_softmax(self.score(torch.tanh(x)).squeeze(-1), mask)
        return (weights.unsqueeze(-1) * states).sum(1)


# --------------------------------------------------------------------------------------------
# The base class
# --------------------------------------------------------------------------------------------

class BaselineHead(nn.Module):
    """`MJAVE`'s interface (forward arguments and `MJAVEOutput`) for text-only baselines.

    Subclasses implement `logits(h, mask, tag_mask) -> (attr_logits (B, L), tag_logits (B, T,
    1 + 2L))` on dropped-out token states. One whose loss needs more than the two logits (ScalingUp)
    overrides `scores`, which also returns what `losses` needs, and `losses`. The image inputs are
    accepted and ignored so the same trainer, loader and predictor work unchanged.
    """

    name = "baseline"
    uses_image = False  # for a loader that skips image features of text-only heads (unread yet)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.dropout = nn.Dropout(cfg.dropout)
        if cfg.use_image:
            log.warning("model.architecture=%s is text-only and ignores the image; set "
                        "model.use_image=false so no image features are extracted", self.name)

    def logits(self, h: Tensor, mask: Tensor, tag_mask: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def scores(self, h: Tensor, mask: Tensor, tag_mask: Tensor) -> tuple[Tensor, Tensor, object]:
        """`logits` plus whatever `losses` needs besides them (None here)."""
        attr_logits, tag_logits = self.logits(h, mask, tag_mask)
        return attr_logits, tag_logits, None

    def losses(self, out: MJAVEOutput, attr_labels: Tensor, tag_labels: Tensor,
               tag_mask: Tensor, aux: object = None, attr_known: Tensor | None = None,
               unknown_attr_weight: float = 0.0, outside_weight: float = 0.0) -> None:
        """The joint loss of the intent/slot models: attribute BCE + tag CE (M-JAVE without KL);
        the partial-label versions when `attr_known` is given (see `mjave.model.losses`)."""
        out.loss_attr = attribute_loss(out.attr_logits, attr_labels, attr_known,
                                       unknown_attr_weight)
        out.loss_value = tag_loss(out.tag_logits, tag_labels, tag_mask, attr_known,
                                  outside_weight)
        out.loss = out.loss_attr + out.loss_value

    def forward(self, h: Tensor, mask: Tensor, tag_mask: Tensor,
                v_global: Tensor | None = None, v: Tensor | None = None,
                attr_labels: Tensor | None = None, tag_labels: Tensor | None = None,
                attr_known: Tensor | None = None, unknown_attr_weight: float = 0.0,
                outside_weight: float = 0.0) -> MJAVEOutput:
        mask = mask.bool()
        tag_mask = tag_mask.bool() & mask
        attr_logits, tag_logits, aux = self.scores(self.dropout(h), mask, tag_mask)
        out = MJAVEOutput(attr_logits, tag_logits, None, None, None)
        if attr_labels is not None and tag_labels is not None:
            self.losses(out, attr_labels, tag_labels, tag_mask, aux, attr_known,
                        unknown_attr_weight, outside_weight)
        return out
