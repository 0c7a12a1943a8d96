"""Sep-BERT (the paper's section 4 baseline): BERT with feed-forward layers, one per subtask."""

from __future__ import annotations

from torch import Tensor, nn

from mjave.model.baselines.common import BaselineHead
from mjave.config import ModelConfig
from mjave.model.registry import register


@register("sep-bert")
class SepBERT(BaselineHead):
    """Attribute prediction and value extraction as two separate models on the text states.

    The attribute model is a feed-forward network on h0 ([CLS]); the value model a linear BIO
    layer on every token. They share no trainable parameter and neither sees the other's output,
    so with frozen (cached) features this is exactly two independently trained models (their
    losses are summed, but the gradients of disjoint parameters do not mix). With a fine-tuned
    encoder both heads sit on the one encoder mjave runs, which the original did not do.
    """

    name = "sep-bert"

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.attribute_model = nn.Sequential(
            nn.Linear(cfg.text_dim, cfg.attention_size), nn.ReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.attention_size, cfg.num_attributes))
        self.value_model = nn.Linear(cfg.text_dim, cfg.num_tags)

    def logits(self, h: Tensor, mask: Tensor, tag_mask: Tensor) -> tuple[Tensor, Tensor]:
        return self.attribute_model(h[:, 0]), self.value_model(h)
