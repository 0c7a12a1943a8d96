"""Examples (one record, aligned and featurised) and their padded, masked tensor batches."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np
import torch

from mjave.data.category_tables import absent_attributes
from mjave.data.closed_values import product_values
from mjave.data.layout import TokenLayout
from mjave.data.records import Record
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import Encoded


@dataclass
class Example:
    """A record ready for the model. `text_features` is None when a text encoder runs in the loop,
    and holds its frozen lower layers' output under top-layer fine-tuning (`train_layers: K`)."""

    record: Record
    encoded: Encoded
    attr_labels: np.ndarray                # (L,) multi-hot of the attributes in the gold spans
    text_features: np.ndarray | None = None   # (T, text_dim), T == len(encoded)
    image_features: np.ndarray | None = None  # (1 + K, image_dim): global row, then regions
    # (L,) bool: attributes whose labels are complete for this record (partial labels, from
    # `Record.known_attributes()`); None for a fully labelled record (every attribute known).
    attr_known: np.ndarray | None = None
    # (T, 2L) known-value flags (`model.value_knowledge`, `mjave.data.lexicon`); None otherwise.
    knowledge: np.ndarray | None = None
    # (V,) targets of the implicit head (`model.implicit_values`): per closed attribute whose
    # value (or absence) is known, one-hot over ["none", values...]; -1 where it is not known
    # (`implicit_targets`); None for a model without the head.
    implicit_labels: np.ndarray | None = None


def attribute_targets(record: Record, schema: AttributeSchema) -> np.ndarray:
    y = np.zeros(schema.num_attributes, dtype=np.float32)
    for attr in record.attributes():
        if attr in schema:
            y[schema.attr_id(attr)] = 1.0
    return y


def implicit_targets(record: Record, schema: AttributeSchema) -> np.ndarray | None:
    """(V,) float32 targets of the implicit head for `record` (see `Example.implicit_labels`):
    its known value of each closed attribute (`mjave.data.closed_values.product_values`), a
    known absence as the "none" column; a known value outside the attribute's closed set is
    unknown (-1). None when the schema has no closed attribute."""
    if not schema.closed_values:
        return None
    known = product_values(record)
    y = np.full(schema.num_implicit_values, -1.0, dtype=np.float32)
    for attr, lo, hi in schema.implicit_slots():
        if attr not in known:
            continue
        value = known[attr]
        values = schema.closed_values[attr]
        if value is None or value in values:
            y[lo:hi] = 0.0
            y[lo if value is None else lo + 1 + values.index(value)] = 1.0
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


def mark_category_absent(examples: Sequence[Example], schema: AttributeSchema,
                         by_category: Mapping[str, frozenset[str]]) -> list[Example]:
    """`train.category_absent`: each partially labelled example also "knows" the schema's
    attributes its category never lists (`mjave.data.category_tables.absent_attributes`), so an
    unlabelled token may not be one of their values and their attribute negatives count in full.
    Fully labelled examples (every attribute known already) and examples without a category, or
    of a category `by_category` lacks, are returned as they are; the inputs are not modified."""
    out = []
    for e in examples:
        absent = (absent_attributes(e.record.category, by_category, schema.attributes)
                  if e.attr_known is not None else frozenset())
        if absent:
            known = e.attr_known.astype(bool)   # a copy
            known[[schema.attr_id(a) for a in absent]] = True
            e = replace(e, attr_known=known)
        out.append(e)
    return out


def check_text_features(examples: Sequence[Example]) -> None:
    """Stored token states must match the tokenizer's pieces one for one."""
    for e in examples:
        if e.text_features.shape[0] != len(e.encoded):
            raise ValueError(f"record {e.record.id}: stored text features have "
                             f"{e.text_features.shape[0]} tokens but the tokenizer gives "
                             f"{len(e.encoded)}; the feature store was built with other "
                             "encoder settings")


def collate(examples: Sequence[Example], pad_id: int = 0, device: torch.device | str = "cpu",
            layout: TokenLayout | None = None) -> dict[str, torch.Tensor]:
    """Pad to the longest text of the batch; masks say which positions are real and tagged.

    Built from the batch's `TokenLayout` (whole-batch numpy, no tensor per example; prediction
    passes the layout its decoder reads too). `attr_known` (B, L) bool is emitted only when
    some example of the batch is partially labelled (its rows for fully labelled examples are
    all True), so ordinary batches are unchanged and take the ordinary losses."""
    if layout is None:
        layout = TokenLayout.from_encodings([e.encoded for e in examples])
    out = {"input_ids": torch.from_numpy(layout.padded(layout.ids, pad_id)),
           "mask": torch.from_numpy(layout.padded(np.ones(len(layout.ids), dtype=bool), False)),
           "tag_mask": torch.from_numpy(layout.padded(layout.first, False)),
           "tag_labels": torch.from_numpy(layout.padded(_flat_labels(examples, layout), -100)),
           "attr_labels": torch.from_numpy(np.stack([e.attr_labels for e in examples]))}
    if any(e.attr_known is not None for e in examples):
        L = len(examples[0].attr_labels)
        out["attr_known"] = torch.from_numpy(np.stack(
            [np.ones(L, dtype=bool) if e.attr_known is None else e.attr_known.astype(bool)
             for e in examples]))
    if examples[0].text_features is not None:
        out["h"] = torch.from_numpy(_text_features(examples, layout))
    if examples[0].knowledge is not None:
        out["knowledge"] = torch.from_numpy(_knowledge(examples, layout))
    if examples[0].implicit_labels is not None:
        out["implicit_labels"] = torch.from_numpy(np.stack([e.implicit_labels for e in examples]))
    if examples[0].image_features is not None:
        img = torch.from_numpy(np.stack([e.image_features for e in examples]).astype(np.float32))
        out["v_global"], out["v"] = img[:, 0], img[:, 1:]
    return {k: v.to(device) for k, v in out.items()}


def _flat_labels(examples: Sequence[Example], layout: TokenLayout) -> np.ndarray:
    """Labels of every token, row after row (prediction encodings are all -100: no copy)."""
    labels = [e.encoded.labels for e in examples]
    if all(lab.count(-100) == len(lab) for lab in labels):
        return np.full(len(layout.ids), -100, dtype=np.int64)
    return np.concatenate([np.asarray(lab, dtype=np.int64) for lab in labels])


def _text_features(examples: Sequence[Example], layout: TokenLayout) -> np.ndarray:
    """(B, T, d) float32 cached token states, zero on padding."""
    check_text_features(examples)
    d = examples[0].text_features.shape[-1]
    h = np.zeros((len(examples), int(layout.lengths.max()), d), dtype=np.float32)
    for b, e in enumerate(examples):
        h[b, :len(e.encoded)] = e.text_features
    return h


def _knowledge(examples: Sequence[Example], layout: TokenLayout) -> np.ndarray:
    """(B, T, 2L) float32 known-value flags, zero on padding."""
    k = np.zeros((len(examples), int(layout.lengths.max()), examples[0].knowledge.shape[-1]),
                 dtype=np.float32)
    for b, e in enumerate(examples):
        k[b, :len(e.encoded)] = e.knowledge
    return k


def batches(examples: Sequence[Example], batch_size: int,
            generator: torch.Generator | None = None) -> list[list[Example]]:
    """Split into batches, shuffled by `generator` when one is given (seeded per epoch)."""
    order = (torch.randperm(len(examples), generator=generator).tolist() if generator is not None
             else list(range(len(examples))))
    return [[examples[i] for i in order[s:s + batch_size]]
            for s in range(0, len(order), batch_size)]
