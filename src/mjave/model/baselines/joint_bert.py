"""Joint-BERT: Chen, Zhuo and Wang (2019), "BERT for Joint Intent Classification and Slot
Filling" (arXiv:1902.10909)."""

from __future__ import annotations

from torch import Tensor, nn

from mjave.model.baselines.common import BaselineHead
from mjave.config import ModelConfig
from mjave.model.registry import register


@register("joint-bert")
class JointBERT(BaselineHead):
    """Intent (here: attributes, multi-label) = W^i h0 + b^i on [CLS]; slot (here: BIO tag)
    = W^s h_n + b^s on every token; trained with the sum of both losses.

    Nothing links the tasks but the shared encoder, so the "joint" part only acts when the
    encoder is fine-tuned (encoder.fine_tune=true). No attribute conditioning, no KL term.
    """

    name = "joint-bert"

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.intent = nn.Linear(cfg.text_dim, cfg.num_attributes)
        self.slot = nn.Linear(cfg.text_dim, cfg.num_tags)

    def logits(self, h: Tensor, mask: Tensor, tag_mask: Tensor) -> tuple[Tensor, Tensor]:
        return self.intent(h[:, 0]), self.slot(h)
