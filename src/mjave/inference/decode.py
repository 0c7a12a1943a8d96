"""The ONE decoder from model outputs to attributes and scored character spans.

Evaluation, batch prediction and serving all call `decode_example`, so a fix here fixes every
user-facing path at once. Tags are the argmax at the first piece of each word; chunking and the
repair of an `I-X` without a `B-X` are `mjave.data.spans.bio_to_spans`'s (it starts a new chunk).
A span's score is the mean probability of the tags chosen on its words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

import numpy as np

from mjave.data.records import Span
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import Encoded, decode_tags


@dataclass
class Decoded:
    spans: list[Span]
    span_scores: list[float]
    attributes: list[tuple[str, float]]   # (name, probability) at or above the threshold
    attr_probs: np.ndarray | None = None  # (L,) after any category restriction


def decode_example(encoded: Encoded, text: str, tag_probs: np.ndarray, attr_probs: np.ndarray,
                   schema: AttributeSchema, threshold: float = 0.5,
                   allowed: Collection[str] | None = None) -> Decoded:
    """`tag_probs` (T_padded, num_tags) and `attr_probs` (L,) of one text, as numpy arrays.

    `allowed`: restrict the output to these attributes (e.g. those its category has in
    training); the tags of other attributes are never chosen and their attributes never reported.
    """
    if allowed is not None:
        keep = np.zeros(schema.num_tags, dtype=bool)
        keep[0] = True
        attr_keep = np.zeros(schema.num_attributes, dtype=bool)
        for a in allowed:
            if a in schema:
                j = schema.attr_id(a)
                keep[1 + 2 * j] = keep[2 + 2 * j] = attr_keep[j] = True
        tag_probs = np.where(keep, tag_probs, 0.0)
        attr_probs = np.where(attr_keep, attr_probs, 0.0)
    tag_ids = tag_probs.argmax(-1)
    spans = decode_tags(encoded, tag_ids, text, schema)
    chosen = tag_probs[np.arange(len(tag_ids)), tag_ids]
    word_offsets = encoded.word_offsets()
    label_mask = encoded.label_mask
    scores = []
    for s in spans:
        inside = [chosen[i] for i in range(len(encoded.input_ids))
                  if label_mask[i] and word_offsets[i][0] < s.end and word_offsets[i][1] > s.begin]
        scores.append(float(np.mean(inside)) if inside else 0.0)
    attributes = [(schema.attributes[j], float(p)) for j, p in enumerate(attr_probs) if p >= threshold]
    return Decoded(spans, scores, attributes, attr_probs)
