"""The trainable network: an optional in-loop text encoder in front of the M-JAVE head."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from mjave.model.mjave import MJAVE, MJAVEOutput


def supports_partial_labels(head: nn.Module) -> bool:
    """Whether an architecture's forward takes `attr_known` (the partial-label losses)."""
    return "attr_known" in inspect.signature(head.forward).parameters


class TextImageModel(nn.Module):
    """M-JAVE over either cached token states (`batch['h']`) or a text encoder run in the loop
    (fine-tuned BERT, or the paper's BiLSTM). Image features always come from the batch.

    Under top-layer fine-tuning (`encoder.train_layers: K`) the text encoder is in the loop and
    a batch with `h` holds the cached output of its frozen lower layers: only the top K layers
    run (`HFTextEncoder.upper`). Without `h` (prediction, export) the encoder runs whole."""

    def __init__(self, head: nn.Module, text_encoder: nn.Module | None = None):
        super().__init__()
        self.head = head
        self.text_encoder = text_encoder

    def forward(self, batch: dict[str, torch.Tensor], with_labels: bool = True,
                unknown_attr_weight: float = 0.0, outside_weight: float = 0.0) -> MJAVEOutput:
        """With labels, a batch holding `attr_known` (collated from partially labelled examples)
        is trained with the partial-label losses; the trainer drops it from the batch when
        `train.partial_labels` is off. `unknown_attr_weight` and `outside_weight`: see
        `mjave.model.losses` (`attribute_loss`, `tag_loss`)."""
        if self.text_encoder is None:
            h = batch["h"]
        elif "h" in batch:
            h = self.text_encoder.upper(batch["h"], batch["mask"].long())
        else:
            h = self.text_encoder(batch["input_ids"], batch["mask"].long())
        gold = with_labels or self.head.cfg.gold_attr_conditioning
        extra = {}
        if with_labels and batch.get("attr_known") is not None:
            extra = {"attr_known": batch["attr_known"],
                     "unknown_attr_weight": unknown_attr_weight,
                     "outside_weight": outside_weight}
        if "knowledge" in batch:   # `model.value_knowledge`: only the heads that take it
            extra["knowledge"] = batch["knowledge"]
        if with_labels and "implicit_labels" in batch:   # `model.implicit_values`
            extra["implicit_labels"] = batch["implicit_labels"]
        return self.head(h=h, mask=batch["mask"], tag_mask=batch["tag_mask"],
                         v_global=batch.get("v_global"), v=batch.get("v"),
                         attr_labels=batch.get("attr_labels") if gold else None,
                         tag_labels=batch.get("tag_labels") if with_labels else None,
                         **extra)
