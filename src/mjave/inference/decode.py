"""The ONE decoder from model outputs to attributes and scored character spans.

Evaluation, batch prediction and serving all call `decode_example`, so a fix here fixes every
user-facing path at once. Tags are the argmax at the first piece of each word; chunking and the
repair of an `I-X` without a `B-X` are `mjave.data.spans.bio_to_spans`'s (it starts a new chunk).
A span's score is the mean probability of the tags chosen on its words times the probability
that the span does not extend past either end (`span_scores`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Sequence

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
    scores = span_scores(encoded, spans, tag_ids, tag_probs, schema)
    attributes = [(schema.attributes[j], float(p)) for j, p in enumerate(attr_probs) if p >= threshold]
    return Decoded(spans, scores, attributes, attr_probs)


def span_scores(encoded: Encoded, spans: Sequence[Span], tag_ids: np.ndarray,
                tag_probs: np.ndarray, schema: AttributeSchema) -> list[float]:
    """How sure the model is of each span *as it stands*: the mean probability of the tags
    chosen on its words, times the probability that it does not go on at either end
    (1 - p(B-a) - p(I-a) on the word before it, 1 - p(I-a) on the word after it).

    The mean alone rates a confidently tagged head of a longer value ("Now" of "Now Foods")
    as high as the whole value; the boundary factors send such truncated spans down the
    ranking, which is what a score threshold (`mjave complete --min-precision`) relies on.
    """
    words = [i for i in range(len(encoded.input_ids)) if encoded.label_mask[i]]
    offsets = encoded.word_offsets()
    chosen = tag_probs[np.arange(len(tag_ids)), tag_ids]
    scores = []
    for s in spans:
        inside = [k for k, i in enumerate(words)
                  if offsets[i][0] < s.end and offsets[i][1] > s.begin]
        if not inside:
            scores.append(0.0)
            continue
        j = schema.attr_id(s.attr)
        b, i_tag = 1 + 2 * j, 2 + 2 * j
        score = float(np.mean([chosen[words[k]] for k in inside]))
        if inside[0] > 0:
            before = tag_probs[words[inside[0] - 1]]
            score *= max(0.0, 1.0 - float(before[b]) - float(before[i_tag]))
        if inside[-1] + 1 < len(words):
            score *= max(0.0, 1.0 - float(tag_probs[words[inside[-1] + 1]][i_tag]))
        scores.append(score)
    return scores
