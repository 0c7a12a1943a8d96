"""Slot-Gated: Goo et al. (2018), "Slot-Gated Modeling for Joint Slot Filling and Intent
Prediction" (NAACL), the full-attention variant."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mjave.model.baselines.common import (AttentionPooling, BaselineHead, PackedBiLSTM,
                                          TokenAttention)
from mjave.config import ModelConfig
from mjave.model.registry import register


@register("slot-gated")
class SlotGated(BaselineHead):
    """BiLSTM states h_i; slot context c_i^S (token attention), intent context c^I (attention
    pooling queried by the final state h_T); the slot gate g_i = sum(v * tanh(c_i^S + W c^I))
    lets the intent steer tagging:

        y^I   = W^I (h_T + c^I)                 (attribute logits)
        y_i^S = W^S (h_i + g_i * c_i^S)         (tag logits)

    Deviation: the slot attention score is bilinear instead of additive (see `TokenAttention`).
    """

    name = "slot-gated"

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        a = cfg.attention_size
        d = 2 * a
        self.rnn = PackedBiLSTM(cfg.text_dim, a)
        self.slot_attention = TokenAttention(d, a)
        self.intent_attention = AttentionPooling(d, a, query_size=d)
        self.gate_w = nn.Linear(d, d, bias=False)                 # W
        self.gate_v = nn.Parameter(torch.empty(d).uniform_(-d ** -0.5, d ** -0.5))  # v
        self.attribute_out = nn.Linear(d, cfg.num_attributes)    # W^I
        self.tag_out = nn.Linear(d, cfg.num_tags)                 # W^S

    def logits(self, h: Tensor, mask: Tensor, tag_mask: Tensor) -> tuple[Tensor, Tensor]:
        states, final = self.rnn(h, mask)
        states, final = self.dropout(states), self.dropout(final)
        slot_context = self.slot_attention(states, mask)                        # (B, T, d)
        intent_context = self.intent_attention(states, mask, query=final)       # (B, d)
        gate = (self.gate_v * torch.tanh(slot_context
                                         + self.gate_w(intent_context)[:, None, :])).sum(-1)
        attr_logits = self.attribute_out(final + intent_context)
        tag_logits = self.tag_out(states + gate.unsqueeze(-1) * slot_context)
        return attr_logits, tag_logits
