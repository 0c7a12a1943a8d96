"""RNN-LSTM: Hakkani-Tür et al. (2016), "Multi-Domain Joint Semantic Frame Parsing using
Bi-directional RNN-LSTM" (Interspeech)."""

from __future__ import annotations

from torch import Tensor, nn

from mjave.model.baselines.common import BaselineHead, PackedBiLSTM
from mjave.config import ModelConfig
from mjave.model.registry import register


@register("rnn-lstm")
class RNNLSTM(BaselineHead):
    """One BiLSTM reads the text; each token's state is tagged, and the sentence-level labels
    (there: intent and domain at the final step; here: attributes) come from the final states of
    both directions. Hidden size per direction = attention_size."""

    name = "rnn-lstm"

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        hidden = cfg.attention_size
        self.rnn = PackedBiLSTM(cfg.text_dim, hidden)
        self.attribute_out = nn.Linear(2 * hidden, cfg.num_attributes)
        self.tag_out = nn.Linear(2 * hidden, cfg.num_tags)

    def logits(self, h: Tensor, mask: Tensor, tag_mask: Tensor) -> tuple[Tensor, Tensor]:
        states, final = self.rnn(h, mask)
        return self.attribute_out(self.dropout(final)), self.tag_out(self.dropout(states))
