"""Examples (one record, aligned and featurised) and their padded, masked tensor batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from mjave.data.records import Record
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import Encoded


@dataclass
class Example:
    """A record ready for the model. `text_features` is None when a text encoder runs in the loop."""

    record: Record
    encoded: Encoded
    attr_labels: np.ndarray                # (L,) multi-hot of the attributes in the gold spans
    text_features: np.ndarray | None = None   # (T, text_dim), T == len(encoded)
    image_features: np.ndarray | None = None  # (1 + K, image_dim): global row, then regions
    # (L,) bool: attributes whose labels are complete for this record (partial labels, from
    # `Record.known_attributes()`); None for a fully labelled record (every attribute known).
    attr_known: np.ndarray | None = None


def attribute_targets(record: Record, schema: AttributeSchema) -> np.ndarray:
    y = np.zeros(schema.num_attributes, dtype=np.float32)
    for attr in record.attributes():
        if attr in schema:
            y[schema.attr_id(attr)] = 1.0
    return y


def known_attribute_mask(record: Record, schema: AttributeSchema) -> np.ndarray | None:
    """(L,) bool: True for the schema's attributes the record's labels are complete for; None when
    the record is fully labelled (`Record.known_attributes()` is None). Known attributes outside
    the schema are ignored (the model cannot predict them)."""
    known = record.known_attributes()
    if known is None:
        return None
    mask = np.zeros(schema.num_attributes, dtype=bool)
    for attr in known:
        if attr in schema:
            mask[schema.attr_id(attr)] = True
    return mask


def collate(examples: Sequence[Example], pad_id: int = 0,
            device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Pad to the longest text of the batch; masks say which positions are real and tagged.

    `attr_known` (B, L) bool is emitted only when some example of the batch is partially
    labelled (its rows for fully labelled examples are all True), so ordinary batches are
    unchanged and take the ordinary losses."""
    B = len(examples)
    T = max(len(e.encoded) for e in examples)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.bool)
    tag_mask = torch.zeros(B, T, dtype=torch.bool)
    labels = torch.full((B, T), -100, dtype=torch.long)
    for b, e in enumerate(examples):
        n = len(e.encoded)
        input_ids[b, :n] = torch.tensor(e.encoded.input_ids)
        mask[b, :n] = True
        tag_mask[b, :n] = torch.tensor(e.encoded.label_mask)
        labels[b, :n] = torch.tensor(e.encoded.labels)
    out = {"input_ids": input_ids, "mask": mask, "tag_mask": tag_mask,
           "tag_labels": labels,
           "attr_labels": torch.from_numpy(np.stack([e.attr_labels for e in examples]))}
    if any(e.attr_known is not None for e in examples):
        L = len(examples[0].attr_labels)
        out["attr_known"] = torch.from_numpy(np.stack(
            [np.ones(L, dtype=bool) if e.attr_known is None else e.attr_known.astype(bool)
             for e in examples]))
    if examples[0].text_features is not None:
        d = examples[0].text_features.shape[-1]
        h = torch.zeros(B, T, d, dtype=torch.float32)
        for b, e in enumerate(examples):
            if e.text_features.shape[0] != len(e.encoded):
                raise ValueError(f"record {e.record.id}: stored text features have "
                                 f"{e.text_features.shape[0]} tokens but the tokenizer gives "
                                 f"{len(e.encoded)}; the feature store was built with other "
                                 "encoder settings")
            h[b, :len(e.encoded)] = torch.from_numpy(e.text_features.astype(np.float32))
        out["h"] = h
    if examples[0].image_features is not None:
        img = torch.from_numpy(np.stack([e.image_features for e in examples]).astype(np.float32))
        out["v_global"], out["v"] = img[:, 0], img[:, 1:]
    return {k: v.to(device) for k, v in out.items()}


def batches(examples: Sequence[Example], batch_size: int,
            generator: torch.Generator | None = None) -> list[list[Example]]:
    """Split into batches, shuffled by `generator` when one is given (seeded per epoch)."""
    order = (torch.randperm(len(examples), generator=generator).tolist() if generator is not None
             else list(range(len(examples))))
    return [[examples[i] for i in order[s:s + batch_size]]
            for s in range(0, len(order), batch_size)]
