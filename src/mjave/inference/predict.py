"""Run a network over examples and decode: the loop behind validation, evaluation and prediction."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mjave.data.records import Record
from mjave.data.schema import AttributeSchema
from mjave.inference.decode import Decoded, decode_example
from mjave.model.batches import Example, batches, collate
from mjave.model.network import TextImageModel


@torch.no_grad()
def predict_examples(net: TextImageModel, examples: Sequence[Example], schema: AttributeSchema,
                     batch_size: int = 256, device: torch.device | str = "cpu",
                     threshold: float = 0.5, pad_id: int = 0,
                     restrict_to_category: bool = False) -> tuple[list[Decoded], np.ndarray]:
    """Decoded spans and attributes per example, plus the (N, L) attribute probabilities.

    `restrict_to_category`: decode only attributes the schema saw with each record's category."""
    net.eval()
    decoded: list[Decoded] = []
    probs: list[np.ndarray] = []
    for chunk in batches(examples, batch_size):
        batch = collate(chunk, pad_id=pad_id, device=device)
        out = net(batch, with_labels=False)
        tag_probs = out.tag_logits.float().softmax(-1).cpu().numpy()
        attr_probs = out.attr_probs.float().cpu().numpy()
        for e, tp, ap in zip(chunk, tag_probs, attr_probs):
            allowed = (schema.allowed_attributes(e.record.category) if restrict_to_category
                       else None)
            decoded.append(decode_example(e.encoded, e.record.text, tp, ap, schema, threshold,
                                          allowed))
            probs.append(decoded[-1].attr_probs)
    return decoded, (np.stack(probs) if probs else np.zeros((0, schema.num_attributes)))


def as_records(examples: Sequence[Example], decoded: Sequence[Decoded]) -> list[Record]:
    """Predicted records (same ids, texts and products as the inputs) for the metrics."""
    return [Record(id=e.record.id, text=e.record.text, spans=list(d.spans), cid=e.record.cid,
                   category=e.record.category, image=e.record.image)
            for e, d in zip(examples, decoded)]
