"""The equations of section 2: shapes, masks, switches, gradients and the KL mapping."""

import dataclasses
import math

import pytest
import torch

from mjave.model import ABLATIONS, MJAVE, ModelConfig
from mjave.model.mjave import kl_term, value_to_attribute_probs

L, DT, DI, K = 3, 16, 12, 5


def make(**overrides):
    torch.manual_seed(0)
    cfg = ModelConfig(text_dim=DT, image_dim=DI, num_attributes=L, attention_size=8,
                      dropout=0.0, **overrides)
    return MJAVE(cfg).eval()


def batch(lengths=(6, 4), T=None, seed=1):
    g = torch.Generator().manual_seed(seed)
    B = len(lengths)
    T = T or max(lengths)
    h = torch.randn(B, T, DT, generator=g)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, n in enumerate(lengths):
        mask[b, :n] = True
    tag_mask = mask.clone()
    tag_mask[:, 0] = False
    for b, n in enumerate(lengths):
        tag_mask[b, n - 1] = False
    vg = torch.randn(B, DI, generator=g)
    v = torch.randn(B, K, DI, generator=g)
    attrs = (torch.rand(B, L, generator=g) > 0.5).float()
    tags = torch.randint(0, 1 + 2 * L, (B, T), generator=g)
    return dict(h=h, mask=mask, tag_mask=tag_mask, v_global=vg, v=v, attr_labels=attrs,
                tag_labels=tags)


def test_shapes_and_losses():
    m = make()
    out = m(**batch())
    assert out.attr_logits.shape == (2, L)
    assert out.tag_logits.shape == (2, 6, 1 + 2 * L)
    assert out.global_gate.shape == (2, 6, 8)
    assert out.regional_gate.shape == (2, K, 8)
    assert out.image_attention.shape == (2, 6, K)
    assert torch.allclose(out.image_attention.sum(-1), torch.ones(2, 6))
    assert out.loss is not None and torch.isfinite(out.loss)
    expected = out.loss_attr + out.loss_value + 0.5 * out.loss_kl
    assert torch.allclose(out.loss, expected)


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_padding_never_changes_outputs(name):
    m = make(**ABLATIONS[name])
    b = batch(lengths=(6, 4))
    padded = {k: v for k, v in b.items()}
    extra = 5
    for key in ("h", "tag_labels"):
        x = b[key]
        pad = torch.randn(x.shape[0], extra, *x.shape[2:]) * 100 if x.is_floating_point() \
            else torch.randint(0, 3, (x.shape[0], extra))
        padded[key] = torch.cat([x, pad], 1)
    for key in ("mask", "tag_mask"):
        padded[key] = torch.cat([b[key], torch.zeros(2, extra, dtype=torch.bool)], 1)
    a, p = m(**b), m(**padded)
    assert torch.allclose(a.attr_logits, p.attr_logits, atol=1e-5)
    assert torch.allclose(a.tag_logits, p.tag_logits[:, :6], atol=1e-5)
    assert torch.allclose(a.loss, p.loss, atol=1e-5)


def test_single_text_equals_its_row_in_a_batch():
    m = make()
    b = batch(lengths=(6, 4))
    one = {k: v[1:2] for k, v in b.items()}
    one = {k: (v[:, :4] if k in ("h", "mask", "tag_mask", "tag_labels") else v) for k, v in one.items()}
    full, single = m(**b), m(**one)
    assert torch.allclose(full.tag_logits[1, :4], single.tag_logits[0], atol=1e-5)
    assert torch.allclose(full.attr_logits[1], single.attr_logits[0], atol=1e-5)


def _image_sensitivity(m):
    b = batch()
    b2 = dict(b, v_global=torch.randn_like(b["v_global"]), v=torch.randn_like(b["v"]))
    o1, o2 = m(**b), m(**b2)
    return (o1.tag_logits - o2.tag_logits).abs().max().item(), \
        (o1.attr_logits - o2.attr_logits).abs().max().item()


def test_jave_ignores_the_image_and_needs_none():
    m = make(use_image=False)
    tag_diff, attr_diff = _image_sensitivity(m)
    assert tag_diff == 0 and attr_diff == 0
    b = batch()
    b.pop("v"), b.pop("v_global")
    assert m(**b).loss is not None


def test_both_image_branches_off_is_invariant_to_image():
    m = make(global_cross_attention=False, regional_cross_attention=False)
    assert _image_sensitivity(m) == (0.0, 0.0)


def test_image_branches_each_change_outputs():
    tag_diff, attr_diff = _image_sensitivity(make())
    assert tag_diff > 1e-4 and attr_diff > 1e-4
    # global branch only: attribute logits depend on the image through h' (Eq. 5, 7)
    tag_diff, attr_diff = _image_sensitivity(make(regional_cross_attention=False))
    assert attr_diff > 1e-4
    # regional branch only: attributes are image-blind, tags are not (Eq. 9)
    tag_diff, attr_diff = _image_sensitivity(make(global_cross_attention=False))
    assert attr_diff == 0 and tag_diff > 1e-4


def test_switches_remove_their_parameters():
    assert not hasattr(make(attr_conditioning=False).tagger, "w8")
    assert not hasattr(make(regional_gate=False).tagger, "w9")
    assert not hasattr(make(global_gate=False).cross, "gate_text")
    out = make(global_gate=False)(**batch())
    assert out.global_gate is None
    out = make(regional_gate=False)(**batch())
    assert out.regional_gate is None
    out = make(kl_lambda=0.0)(**batch())
    assert out.loss_kl is None
    assert torch.allclose(out.loss, out.loss_attr + out.loss_value)


def test_without_attr_pred_tags_do_not_depend_on_attribute_head():
    m = make(attr_conditioning=False, regional_cross_attention=False)
    b = batch()
    o1 = m(**b)
    with torch.no_grad():
        m.attribute_head.w5.bias.add_(3.0)
    o2 = m(**b)
    assert torch.allclose(o1.tag_logits, o2.tag_logits)
    assert not torch.allclose(o1.attr_logits, o2.attr_logits)


def test_without_mtl_losses_do_not_cross_tasks():
    m = make(multitask=False).train()
    out = m(**batch())
    m.zero_grad()
    out.loss_value.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in m.attribute_head.parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in m.cross.parameters())
    assert out.loss_kl is None


def test_every_gate_gets_gradient():
    m = make().train()
    out = m(**batch())
    out.loss.backward()
    for name in ("cross.gate_text.weight", "cross.gate_image.weight", "tagger.w9.weight",
                 "tagger.w10.weight", "tagger.w8.weight", "cross.k_v.weight"):
        grad = dict(m.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_gold_conditioning_uses_labels():
    m = make(gold_attr_conditioning=True)
    b = batch()
    o1 = m(**b)
    b2 = dict(b, attr_labels=1 - b["attr_labels"])
    o2 = m(**b2)
    assert not torch.allclose(o1.tag_logits, o2.tag_logits)


def test_no_softmax_option_uses_raw_scores():
    m = make(attention_softmax=False)
    out = m(**batch())
    assert not torch.allclose(out.image_attention.sum(-1), torch.ones(2, 6))


def test_value_to_attribute_probs_hand_computed():
    # one text, 3 positions, L=2 -> tags O, B-a, I-a, B-b, I-b
    p = torch.tensor([[[0.6, 0.1, 0.1, 0.1, 0.1],
                       [0.0, 0.9, 0.05, 0.05, 0.0],
                       [0.2, 0.0, 0.7, 0.0, 0.1]]])
    tag_mask = torch.tensor([[True, True, True]])
    q = value_to_attribute_probs(p, tag_mask)
    assert torch.allclose(q, torch.tensor([[(0.9 + 0.7) / 2, (0.1 + 0.1) / 2]]))
    # masking out position 1 removes its maxima
    q2 = value_to_attribute_probs(p, torch.tensor([[True, False, True]]))
    assert torch.allclose(q2, torch.tensor([[(0.1 + 0.7) / 2, (0.1 + 0.1) / 2]]))
    a = torch.tensor([[0.8, 0.1]])
    expected = 0.8 * torch.log(torch.tensor(0.8 / 0.8)) + 0.1 * torch.log(torch.tensor(0.1 / 0.1))
    assert torch.allclose(kl_term(a, q), expected, atol=1e-6)
    assert kl_term(torch.tensor([[0.9, 0.2]]), q).item() > 0


def test_config_roundtrip_and_ablation_names():
    from mjave.config import from_dict, to_dict
    cfg = ModelConfig(num_attributes=7, use_image=False)
    assert from_dict(ModelConfig, to_dict(cfg)) == cfg
    for overrides in ABLATIONS.values():
        assert dataclasses.replace(ModelConfig(), **overrides)


def test_decoding_restricted_to_allowed_attributes():
    import numpy as np
    from mjave.data.records import Span
    from mjave.data.schema import AttributeSchema
    from mjave.data.tagging import Encoded
    from mjave.inference.decode import decode_example
    schema = AttributeSchema(("Brand", "Color"))  # tags: O, B-Brand, I-Brand, B-Color, I-Color
    enc = Encoded(input_ids=[1, 5, 6, 2], offsets=[(0, 0), (0, 3), (4, 8), (0, 0)],
                  word_ids=[None, 0, 1, None], labels=[-100, 0, 0, -100])
    probs = np.array([[1, 0, 0, 0, 0], [0.1, 0.6, 0, 0.3, 0], [0.8, 0, 0.1, 0.1, 0],
                      [1, 0, 0, 0, 0]], dtype=float)
    attr = np.array([0.9, 0.7])
    free = decode_example(enc, "red shoe", probs, attr, schema)
    assert free.spans == [Span(0, 3, "Brand", "red")]
    assert [a for a, _ in free.attributes] == ["Brand", "Color"]
    only_color = decode_example(enc, "red shoe", probs, attr, schema, allowed=("Color",))
    assert only_color.spans == [Span(0, 3, "Color", "red")]
    assert [a for a, _ in only_color.attributes] == ["Color"]
    assert only_color.attr_probs.tolist() == [0.0, 0.7]


def test_span_score_is_the_tag_mean_times_the_chance_it_ends_where_it_does():
    import numpy as np
    from mjave.data.records import Span
    from mjave.data.schema import AttributeSchema
    from mjave.data.tagging import Encoded
    from mjave.inference.decode import decode_example
    schema = AttributeSchema(("Brand", "Color"))  # tags: O, B-Brand, I-Brand, B-Color, I-Color
    text = "now foods red tea"
    enc = Encoded(input_ids=[1, 5, 6, 7, 8, 2],
                  offsets=[(0, 0), (0, 3), (4, 9), (10, 13), (14, 17), (0, 0)],
                  word_ids=[None, 0, 1, 2, 3, None], labels=[-100, 0, 0, 0, 0, -100])
    probs = np.array([[1, 0, 0, 0, 0],
                      [0.1, 0.9, 0, 0, 0],        # "now": B-Brand
                      [0.5, 0, 0.4, 0.1, 0],      # "foods": O wins, but I-Brand is 0.4
                      [0.2, 0, 0, 0.8, 0],        # "red": B-Color
                      [0.7, 0, 0, 0, 0.3],        # "tea": O, I-Color 0.3
                      [1, 0, 0, 0, 0]], dtype=float)
    d = decode_example(enc, text, probs, np.array([0.9, 0.9]), schema)
    assert d.spans == [Span(0, 3, "Brand", "now"), Span(10, 13, "Color", "red")]
    # "now": 0.9, and "foods" may continue it (I-Brand 0.4): 0.9 * 0.6
    # "red": 0.8; "foods" before it is B-Color with 0.1, "tea" after it I-Color with 0.3
    assert d.span_scores == pytest.approx([0.9 * 0.6, 0.8 * 0.9 * 0.7])
    # a value the model is sure ends where it does keeps the plain mean
    probs[2] = [0.9, 0, 0.0, 0.1, 0]
    probs[4] = [1.0, 0, 0, 0, 0.0]
    d = decode_example(enc, text, probs, np.array([0.9, 0.9]), schema)
    assert d.span_scores == pytest.approx([0.9, 0.8 * (1 - 0.1)])


def test_paper_kl_goes_negative_and_the_bernoulli_kl_does_not():
    """Eq. 13 over vectors of independent probabilities is no divergence: a tagger that marks
    more than the classifier predicts lowers it below 0. The Bernoulli form is >= 0 and 0 only
    at agreement; hand-computed for one pair."""
    p = torch.tensor([[0.3, 0.1]])
    q = torch.tensor([[0.9, 0.8]])
    paper = 0.3 * math.log(0.3 / 0.9) + 0.1 * math.log(0.1 / 0.8)
    assert kl_term(p, q).item() == pytest.approx(paper, abs=1e-6)
    assert paper < 0
    bern = paper + 0.7 * math.log(0.7 / 0.1) + 0.9 * math.log(0.9 / 0.2)
    assert kl_term(p, q, "bernoulli").item() == pytest.approx(bern, abs=1e-5)
    assert kl_term(p, p, "bernoulli").item() == pytest.approx(0.0, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(64, 5, generator=g), torch.rand(64, 5, generator=g)
    assert (torch.stack([kl_term(a[i:i + 1], b[i:i + 1], "bernoulli") for i in range(64)])
            >= 0).all()
    # saturated probabilities stay finite in float32 (1 - 1e-8 rounds to 1)
    ones = torch.ones(1, 2, requires_grad=True)
    out = kl_term(ones * 0.5, ones, "bernoulli")
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(ones.grad).all()


def test_attr_loss_weight_scales_the_attribute_loss_only():
    b = batch()
    base = make()(**b)
    for form in ("paper", "bernoulli"):
        out = make(attr_loss_weight=0.1, kl_form=form)(**b)
        assert torch.allclose(out.loss_attr, base.loss_attr)
        assert torch.allclose(out.loss, 0.1 * out.loss_attr + out.loss_value + 0.5 * out.loss_kl)
        if form == "paper":
            assert torch.allclose(out.loss_kl, base.loss_kl)


def test_mean_attribute_pooling_is_the_sum_over_the_token_count():
    """Eq. 7 with attr_pooling="mean": W3 and W4 see means over the real tokens, W5 the [CLS]."""
    b = batch(lengths=(6, 4), T=9)
    m = make(attr_pooling="mean", use_image=False)
    out = m(**b)
    head, mask = m.attribute_head, b["mask"]
    h_prime = m.cross(b["h"], mask, None, None).h_prime
    n = mask.sum(1, keepdim=True).float()
    w = mask.unsqueeze(-1).float()
    expected = (head.w3((b["h"] * w).sum(1) / n) + head.w4((h_prime * w).sum(1) / n)
                + head.w5(b["h"][:, 0]))
    assert torch.allclose(out.attr_logits, expected, atol=1e-5)
    summed = make(use_image=False)(**b)        # same seed, same weights
    assert not torch.allclose(out.attr_logits, summed.attr_logits, atol=1e-3)


def test_mean_pooling_is_free_of_the_text_length():
    """A text whose tokens are repeated k times (the [CLS] stays first) has the same means and,
    with the softmax attention, the same h': under the mean its attribute logits do not move and
    each token gets 1/k of the attribute loss's gradient; under the paper's sum they change."""
    def run(pooling, reps):
        torch.manual_seed(3)
        base = torch.randn(1, 4, DT)
        h = base.repeat(1, reps, 1).requires_grad_()
        mask = torch.ones(1, 4 * reps, dtype=torch.bool)
        m = make(attr_pooling=pooling, use_image=False, kl_lambda=0.0)
        out = m(h=h, mask=mask, tag_mask=mask, attr_labels=torch.ones(1, L),
                tag_labels=torch.zeros(1, 4 * reps, dtype=torch.long))
        out.loss_attr.backward()
        return out.attr_logits.detach(), h.grad[0, 1:4]   # tokens 1-3 (token 0 also feeds W5)
    mean1, grad1 = run("mean", 1)
    mean3, grad3 = run("mean", 3)
    assert torch.allclose(mean1, mean3, atol=1e-5)
    assert torch.allclose(grad3 * 3, grad1, atol=1e-5)
    sum1, _ = run("sum", 1)
    sum3, _ = run("sum", 3)
    assert not torch.allclose(sum1, sum3, atol=1e-2)
