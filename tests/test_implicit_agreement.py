"""`model.implicit_agreement` (issue #31): of a closed attribute's spans with different values,
decoding keeps the one the photo's implicit head scores highest; everything else is untouched."""

from __future__ import annotations

import numpy as np

from mjave.config.model import ModelConfig
from mjave.data.schema import AttributeSchema
from mjave.inference.decode import SpanBatch
from mjave.inference.predict import decode_options

SCHEMA = AttributeSchema(("Color", "Material"), closed_values={"Color": ("red", "black")})
TEXTS = ["red shirt with black shoes", "red shirt", "Teal shirt with RED shoes",
         "red shirt with black shoes"]


def _batch() -> SpanBatch:
    # (row, begin, end, attribute id)
    spans = [(0, 0, 3, 0), (0, 15, 20, 0), (1, 0, 3, 0), (2, 0, 4, 0), (2, 16, 19, 0),
             (3, 0, 3, 0), (3, 15, 20, 1)]
    rows, begins, ends, attrs = (np.array(c) for c in zip(*spans))
    return SpanBatch(TEXTS, SCHEMA, 0.5, rows, begins, ends, attrs,
                     np.linspace(0.9, 0.6, len(spans)), np.zeros((len(TEXTS), 2)))


def _spans(batch: SpanBatch) -> list[tuple[int, str, str]]:
    return [(r, SCHEMA.attributes[j], TEXTS[r][a:b]) for r, a, b, j in
            zip(batch.rows.tolist(), batch.begins.tolist(), batch.ends.tolist(),
                batch.attrs.tolist())]


def test_the_photo_decides_between_two_colour_words_and_nothing_else_changes():
    # implicit columns: Color none, red, black; every row's photo says black
    probs = np.tile([0.1, 0.2, 0.7], (len(TEXTS), 1))
    batch = _batch()
    before = batch.scores.copy()
    batch.agree_with_implicit(probs)
    assert _spans(batch) == [
        (0, "Color", "black"),                 # two values: the photo's kept
        (1, "Color", "red"),                   # one value: the text states it, kept
        (2, "Color", "Teal"), (2, "Color", "RED"),   # teal is outside the closed set: kept
        (3, "Color", "red"), (3, "Material", "black")]   # not two Color values: kept
    assert batch.scores.tolist() == [before[1], *before[2:]]


def test_a_tie_keeps_both_and_the_switch_is_off_by_default():
    batch = _batch().agree_with_implicit(np.tile([0.2, 0.4, 0.4], (len(TEXTS), 1)))
    assert len(batch.rows) == 7
    assert decode_options(ModelConfig())["implicit_agreement"] is False
    assert decode_options(ModelConfig(implicit_agreement=True))["implicit_agreement"] is True
