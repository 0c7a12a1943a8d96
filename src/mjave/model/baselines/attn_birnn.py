"""Attn-BiRNN: Liu and Lane (2016), "Attention-Based Recurrent Neural Network Models for Joint
Intent Detection and Slot Filling" (Interspeech), the attention-based BiRNN variant."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mjave.model.baselines.common import (AttentionPooling, BaselineHead, PackedBiLSTM,
                                          TokenAttention)
from mjave.config import ModelConfig
from mjave.model.registry import register


@register("attn-birnn")
class AttnBiRNN(BaselineHead):
    """BiLSTM states s_i; tag i from [s_i; c_i] with c_i an attention context over all tokens;
    attributes from an attention-pooled sentence vector. The tasks share the BiLSTM only.

    Deviation: token attention is bilinear instead of additive (see `TokenAttention`)."""

    name = "attn-birnn"

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        a = cfg.attention_size
        self.rnn = PackedBiLSTM(cfg.text_dim, a)
        self.slot_attention = TokenAttention(2 * a, a)
        self.intent_attention = AttentionPooling(2 * a, a)
        self.attribute_out = nn.Linear(2 * a, cfg.num_attributes)
        self.tag_out = nn.Linear(4 * a, cfg.num_tags)

    def logits(self, h: Tensor, mask: Tensor, tag_mask: Tensor) -> tuple[Tensor, Tensor]:
        states, _ = self.rnn(h, mask)
        states = self.dropout(states)
        context = self.slot_attention(states, mask)
        pooled = self.intent_attention(states, mask)
        return (self.attribute_out(pooled),
                self.tag_out(torch.cat([states, context], dim=-1)))
