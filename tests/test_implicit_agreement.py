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


def test_the_global_and_max_pool_reads_the_peak_region():
    import torch

    from mjave.model.mjave import MJAVE
    cfg = dict(num_attributes=2, text_dim=8, image_dim=4, attention_size=8, dropout=0.0,
               implicit_values=True, implicit_sizes=[3])
    torch.manual_seed(0)
    plain = MJAVE(ModelConfig(**cfg))
    pooled = MJAVE(ModelConfig(**cfg, implicit_image_pool="global+max"))
    assert pooled.implicit_out.in_features == 2 * plain.implicit_out.in_features == 8
    h, mask = torch.zeros(2, 3, 8), torch.ones(2, 3)
    spread = torch.full((1, 4, 4), 0.25)                       # the same mean ...
    peaked = torch.zeros(1, 4, 4)
    peaked[0, 0] = 1.0                                         # ... one region at its peak
    v = torch.cat([spread, peaked])
    v_global = v.mean(dim=1)
    assert torch.equal(v_global[0], v_global[1])
    same = plain.implicit_head(h, mask, v_global, v)
    assert torch.allclose(same[0], same[1])                    # the mean cannot tell them apart
    apart = pooled.implicit_head(h, mask, v_global, v)
    assert not torch.allclose(apart[0], apart[1])
