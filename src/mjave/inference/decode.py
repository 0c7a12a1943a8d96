"""The ONE decoder from model outputs to attributes and scored character spans.

Evaluation, batch prediction and serving all call `decode_example`, so a fix here fixes every
user-facing path at once. Tags are the argmax at the first piece of each word; chunking and the
repair of an `I-X` without a `B-X` are `mjave.data.spans.bio_to_spans`'s (it starts a new chunk).
A span's score is the mean probability of the tags chosen on its words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mjave.data.records import Span
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import Encoded, decode_tags


@dataclass
class Decoded:
    spans: list[Span]
    span_scores: list[float]
    attributes: list[tuple[str, float]]   # (name, probability) at or above the threshold


def decode_example(encoded: Encoded, text: str, tag_probs: np.ndarray, attr_probs: np.ndarray,
                   schema: AttributeSchema, threshold: float = 0.5) -> Decoded:
    """`tag_probs` (T_padded, num_tags) and `attr_probs` (L,) of one text, as numpy arrays."""
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
    return Decoded(spans, scores, attributes)
