"""The trainable network: an optional in-loop text encoder in front of the M-JAVE head."""

from __future__ import annotations

import torch
from torch import nn

from mjave.model.mjave import MJAVE, MJAVEOutput


class TextImageModel(nn.Module):
    """M-JAVE over either cached token states (`batch['h']`) or a text encoder run in the loop
    (fine-tuned BERT, or the paper's BiLSTM). Image features always come from the batch."""

    def __init__(self, head: nn.Module, text_encoder: nn.Module | None = None):
        super().__init__()
        self.head = head
        self.text_encoder = text_encoder

    def forward(self, batch: dict[str, torch.Tensor], with_labels: bool = True) -> MJAVEOutput:
        if self.text_encoder is None:
            h = batch["h"]
        else:
            h = self.text_encoder(batch["input_ids"], batch["mask"].long())
        gold = with_labels or self.head.cfg.gold_attr_conditioning
        return self.head(h=h, mask=batch["mask"], tag_mask=batch["tag_mask"],
                         v_global=batch.get("v_global"), v=batch.get("v"),
                         attr_labels=batch.get("attr_labels") if gold else None,
                         tag_labels=batch.get("tag_labels") if with_labels else None)
