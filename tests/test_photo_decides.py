"""Issue #31: the photo-decides subset splitter and scorer, and the `token_image_fusion` switch
(it builds and trains, it carries the image on its own, and off it is the paper's model)."""

from __future__ import annotations

import pytest
import torch

from mjave.config import ModelConfig
from mjave.data.records import Record, Span
from mjave.experiments.common import Predictions
from mjave.experiments.photo_decides import photo_decides_split, subset_scores
from mjave.model.mjave import MJAVE


def rec(rid: str, text: str, *spans: tuple[str, str]) -> Record:
    out = []
    for attr, value in spans:
        begin = text.index(value)
        out.append(Span(begin, begin + len(value), attr, value))
    return Record(id=rid, text=text, spans=out, cid=rid.split("-")[0])


OUTFIT = "red shirt with black shoes"
GOLD = "a golden finish"


def tiny_set() -> list[Record]:
    return [
        rec("p1-0", OUTFIT, ("Color", "red")),            # photo: the twin labels "black"
        rec("p2-0", OUTFIT, ("Color", "black")),          # photo
        rec("p3-0", "blue top", ("Color", "blue")),       # same text, same spans: text decides
        rec("p4-0", "blue top", ("Color", "blue")),       # text decides
        rec("p5-0", GOLD, ("Color", "golden")),           # photo (3 records, 2 span sets)
        rec("p6-0", GOLD, ("Material", "golden")),        # photo
        rec("p7-0", GOLD, ("Color", "golden")),           # photo
        rec("p8-0", "cotton casual", ("Material", "cotton"), ("Style", "casual")),  # text
    ]


def test_splitter_counts_on_a_hand_made_set():
    photo, rest = photo_decides_split(tiny_set())
    assert photo == [0, 1, 4, 5, 6]
    assert rest == [2, 3, 7]


def test_subset_scores_count_per_attribute_on_the_subset_only():
    gold = tiny_set()
    # The predictions read "red" in both outfit texts (right once), golden as Color three times
    # (right twice, Material missed once) and get the text-decided records right.
    pred = [rec("p1-0", OUTFIT, ("Color", "red")), rec("p2-0", OUTFIT, ("Color", "red")),
            gold[2], gold[3],
            rec("p5-0", GOLD, ("Color", "golden")), rec("p6-0", GOLD, ("Color", "golden")),
            rec("p7-0", GOLD, ("Color", "golden")), gold[7]]
    preds = Predictions(gold, pred)
    photo, rest = photo_decides_split(gold)
    sc = subset_scores(preds, photo, ["Color", "Material", "Pattern"])
    assert sc["n_instances"] == 5
    # Color: tp 3 (p1 red, p5, p7), fp 2 (p2 red, p6 golden), fn 1 (p2 black) -> P 3/5, R 3/4
    assert (sc["Color"]["tp"], sc["Color"]["fp"], sc["Color"]["fn"]) == (3, 2, 1)
    assert sc["Color"]["f1"] == pytest.approx(100 * 2 * 0.6 * 0.75 / 1.35, abs=0.01)  # 66.67
    assert sc["Material"]["f1"] == 0.0 and sc["Material"]["fn"] == 1
    assert sc["Pattern"]["f1"] == 0.0            # absent: reported as zero, not an error
    assert sc["value"]["tp"] == 3 and sc["value"]["fn"] == 2
    rest_sc = subset_scores(preds, rest, ["Color", "Material"])
    assert rest_sc["value"]["f1"] == pytest.approx(100.0)
    assert rest_sc["Color"]["tp"] == 2 and rest_sc["Material"]["tp"] == 1


# --------------------------------------------------------------------------------------------
# The model switch


def small_cfg(**kw) -> ModelConfig:
    return ModelConfig(text_dim=8, image_dim=6, num_attributes=3, attention_size=4, dropout=0.0,
                       **kw)


def inputs():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(2, 5, 8, generator=g)
    v_global, v = torch.randn(2, 6, generator=g), torch.randn(2, 4, 6, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).bool()
    tag_mask = mask.clone()
    tag_mask[:, 0] = False
    attrs = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    tags = torch.tensor([[-100, 1, 2, 0, 5], [-100, 3, 0, -100, -100]])
    return dict(h=h, mask=mask, tag_mask=tag_mask, v_global=v_global, v=v, attr_labels=attrs,
                tag_labels=tags)


def test_default_is_the_papers_model():
    """Off (the default) the switch adds no parameter and changes no output: the same seed gives
    the figures the model gave before the switch existed (recorded from that code)."""
    assert ModelConfig().token_image_fusion == "none"
    torch.manual_seed(0)
    default = MJAVE(small_cfg()).eval()
    torch.manual_seed(0)
    off = MJAVE(small_cfg(token_image_fusion="none")).eval()
    assert not any("fuse" in k for k in default.state_dict())
    with torch.no_grad():
        a, b = default(**inputs()), off(**inputs())
    assert torch.equal(a.tag_logits, b.tag_logits) and torch.equal(a.loss, b.loss)
    assert float(a.tag_logits.sum()) == pytest.approx(0.11591637134552002, rel=1e-5)
    assert float(a.attr_logits.sum()) == pytest.approx(3.243734836578369, rel=1e-5)
    assert float(a.loss) == pytest.approx(6.041004180908203, rel=1e-5)


def test_bilinear_fusion_builds_and_trains_a_step():
    torch.manual_seed(0)
    model = MJAVE(small_cfg(token_image_fusion="bilinear"))
    fuse = [n for n, _ in model.named_parameters() if "fuse" in n]
    assert sorted(fuse) == ["cross.fuse_image.bias", "cross.fuse_image.weight",
                            "cross.fuse_text.bias", "cross.fuse_text.weight"]
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    before = model(**inputs()).loss
    before.backward()
    for name, p in model.named_parameters():
        if "fuse" in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    opt.step()
    assert float(model(**inputs()).loss.detach()) < float(before.detach())


def test_bilinear_fusion_alone_carries_the_image():
    """With both of the paper's image paths off the outputs ignore the image, except through the
    fusion term: it is an image path of its own, and one that depends on the token."""
    x, other = inputs(), inputs()
    other["v_global"] = torch.randn(2, 6)
    off = dict(global_cross_attention=False, regional_cross_attention=False)
    torch.manual_seed(0)
    paper = MJAVE(small_cfg(**off)).eval()
    assert torch.equal(paper(**x).tag_logits, paper(**other).tag_logits)
    torch.manual_seed(0)
    fused = MJAVE(small_cfg(token_image_fusion="bilinear", **off)).eval()
    assert not torch.allclose(fused(**x).tag_logits, fused(**other).tag_logits)


def test_the_switch_round_trips_and_is_checked():
    from mjave.config import RunConfig, apply_overrides
    cfg = apply_overrides(RunConfig(), ["model.token_image_fusion=bilinear"])
    assert cfg.model.token_image_fusion == "bilinear"
    with pytest.raises(Exception):
        apply_overrides(RunConfig(), ["model.token_image_fusion=trilinear"])
