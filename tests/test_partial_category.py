"""Partial-label training that reads the table per category (issue 19): attributes a category
never lists are known-absent (`train.category_absent`) and the naive O target is weighed by the
table's completeness (`train.outside_weight_from_completeness`)."""

import json
import logging
import math

import numpy as np
import pytest
import torch

from mjave.config import (ConfigError, DataConfig, EncoderConfig, RunConfig, TrainConfig,
                          apply_overrides, from_dict, load, save)
from mjave.data.category_tables import (absent_attributes, category_attributes,
                                        listed_attributes, table_completeness)
from mjave.data.records import Record, Span
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import Encoded
from mjave.model import ModelConfig
from mjave.model.batches import Example, collate, known_attribute_mask, mark_category_absent
from mjave.model.losses import allowed_outside_tags, tag_loss
from mjave.training.partial_tables import category_absent_examples, outside_weight
from mjave.training.trainer import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rec(id, category=None, known=None, spans=(), cid=None, calibration=None):
    extra = {}
    if known is not None:
        extra["known_attributes"] = sorted(known)
    if calibration is not None:
        extra["calibration"] = [{"attribute": a, "value": "v", "in_text": True}
                                for a in calibration]
    return Record(id, "t", [Span(0, 1, a, "t") for a in spans], cid=cid, category=category,
                  extra=extra)


# --------------------------------------------------------------------------------------------
# Per-category attribute sets


def test_listed_attributes_are_known_calibration_and_span_attributes():
    assert listed_attributes(rec("a", known={"Color"}, spans=["Color"],
                                 calibration=["Fit"])) == {"Color", "Fit"}
    assert listed_attributes(rec("b", spans=["Brand"])) == {"Brand"}       # fully labelled
    assert listed_attributes(rec("c", known=set())) == frozenset()


def test_category_attributes_gather_every_record_of_a_category():
    records = [rec("s1", "shirts", known={"Color"}, spans=["Color"]),
               rec("s2", "shirts", known={"Fit"}, calibration=["Sleeve"]),
               rec("s3", "shirts", spans=["Material"]),                    # fully labelled
               rec("p1", "phones", known={"Screen", "Color"}),
               rec("x1", None, known={"Weight"})]                          # no category
    assert category_attributes(records) == {
        "phones": {"Color", "Screen"}, "shirts": {"Color", "Fit", "Material", "Sleeve"}}


def test_absent_attributes_per_category():
    by = {"shirts": frozenset({"Color", "Fit"}), "phones": frozenset({"Color", "Screen"})}
    attrs = ("Color", "Fit", "Screen")
    assert absent_attributes("shirts", by, attrs) == {"Screen"}
    assert absent_attributes("phones", by, attrs) == {"Fit"}
    assert absent_attributes(None, by, attrs) == frozenset()        # no category: no change
    assert absent_attributes("shoes", by, attrs) == frozenset()     # unseen category: unknown


# --------------------------------------------------------------------------------------------
# The partial-label target of an unlabelled token

SCHEMA = AttributeSchema(("Color", "Fit", "Screen"))
TABLE = [rec("s0", "shirts", known={"Color", "Fit"}),
         rec("p0", "phones", known={"Color", "Screen"})]


def _example(record):
    enc = Encoded(input_ids=[1, 5, 6, 2], offsets=[(0, 0), (0, 3), (4, 8), (0, 0)],
                  word_ids=[None, 0, 1, None], labels=[-100, 1, 0, -100])   # B-Color, then O
    return Example(record, enc, np.array([1, 0, 0], dtype=np.float32),
                   attr_known=known_attribute_mask(record, SCHEMA))


def _tags(attr):
    """The B- and I- tag ids of `attr` in SCHEMA's layout."""
    return [SCHEMA.begin_tag(attr), SCHEMA.inside_tag(attr)]


def test_category_absent_attribute_is_excluded_from_the_unlabelled_token_target():
    shirt = _example(rec("s1", "shirts", known={"Color"}, spans=["Color"]))
    by = category_attributes(TABLE + [shirt.record])

    plain = allowed_outside_tags(collate([shirt])["attr_known"])[0]
    assert plain[_tags("Fit")].tolist() == [True, True]         # unknown, the category has it
    assert plain[_tags("Screen")].tolist() == [True, True]      # unknown: allowed without option

    marked = mark_category_absent([shirt], SCHEMA, by)
    batch = collate(marked)
    assert batch["attr_known"].tolist() == [[True, False, True]]   # Screen now known (absent)
    allowed = allowed_outside_tags(batch["attr_known"])[0]
    assert allowed[0].item() is True                               # O
    assert allowed[_tags("Fit")].tolist() == [True, True]          # the category has Fit
    assert allowed[_tags("Screen")].tolist() == [False, False]     # shirts never have a Screen
    assert allowed[_tags("Color")].tolist() == [False, False]      # known all along
    assert shirt.attr_known.tolist() == [True, False, False]       # input not modified

    # The loss of an unlabelled token leaning to Screen: free without the option, paid with it.
    logits = torch.zeros(1, 4, SCHEMA.num_tags)
    logits[0, 2, SCHEMA.begin_tag("Screen")] = 5.0
    labels, mask = batch["tag_labels"], batch["tag_mask"]
    assert tag_loss(logits, labels, mask, batch["attr_known"]) > \
        tag_loss(logits, labels, mask, collate([shirt])["attr_known"]) + 1.0


def test_marking_leaves_full_uncategorised_and_unseen_examples_alone():
    by = category_attributes(TABLE)
    full = _example(rec("f", "shirts", spans=["Color"]))                   # fully labelled
    loose = _example(rec("n", None, known={"Color"}, spans=["Color"]))     # no category
    unseen = _example(rec("u", "shoes", known={"Color"}, spans=["Color"]))
    phone = _example(rec("p1", "phones", known={"Screen"}))
    out = mark_category_absent([full, loose, unseen, phone], SCHEMA, by)
    assert out[0] is full and out[1] is loose and out[2] is unseen
    assert out[3].attr_known.tolist() == [False, True, True]   # Fit absent, Color still unknown


def test_trainer_helper_applies_the_rule_only_when_asked_and_partial(caplog):
    shirt = _example(rec("s1", "shirts", known={"Color"}, spans=["Color"]))
    records = TABLE + [shirt.record]
    on = TrainConfig(category_absent=True)
    with caplog.at_level(logging.INFO, logger="mjave.training.partial_tables"):
        marked = category_absent_examples([shirt], records, SCHEMA, on, partial=True)
        assert marked[0].attr_known.tolist() == [True, False, True]
        assert "1 of 1 training examples gain known-absent attributes" in caplog.text
        same = category_absent_examples([shirt], records, SCHEMA, on, partial=False)
        assert "no effect, partial-label training is off" in caplog.text
    assert same[0] is shirt
    off = category_absent_examples([shirt], records, SCHEMA, TrainConfig(), partial=True)
    assert off[0] is shirt and off[0].attr_known.tolist() == [True, False, False]


# --------------------------------------------------------------------------------------------
# Table completeness


def test_table_completeness_on_a_hand_computed_table():
    records = [
        # category A lists a, b, c, d (d only from a fully labelled record)
        rec("t1", "A", known={"a", "b", "c"}, cid="p1"),      # p1: 3 of 4, two texts, once
        rec("t2", "A", known={"a", "b", "c"}, cid="p1"),
        rec("t3", "A", known={"c"}, cid="p2", calibration=["b"]),   # p2: b, c -> 2 of 4
        rec("t4", "A", known=set(), cid="p3"),                # p3: 0 of 4
        rec("f1", "A", spans=["d"]),                          # fully labelled: not averaged
        # category B lists x, y
        rec("t5", "B", known={"x"}, cid="p4"),                # p4: 1 of 2
        rec("t6", "B", known={"x", "y"}, cid="p5"),           # p5: 2 of 2
        rec("n1", None, known={"a"}),                         # no category: not averaged
    ]
    assert category_attributes(records) == {"A": {"a", "b", "c", "d"}, "B": {"x", "y"}}
    expected = (3 / 4 + 2 / 4 + 0 / 4 + 1 / 2 + 2 / 2) / 5
    assert table_completeness(records) == pytest.approx(expected)     # 0.55
    assert table_completeness([rec("f", "A", spans=["a"]), rec("n", None, known={"a"})]) is None
    # a complete table: every product lists all its category has
    assert table_completeness([rec("a", "A", known={"a", "b"}),
                               rec("b", "A", known={"a", "b"})]) == 1.0


def test_outside_weight_from_completeness_resolution(caplog):
    table = [rec("a", "A", known={"x"}), rec("b", "A", known={"x", "y"})]      # 0.75
    tc = TrainConfig(partial_outside_weight=0.1, outside_weight_from_completeness=True)
    with caplog.at_level(logging.INFO, logger="mjave.training.partial_tables"):
        assert outside_weight(tc, table, partial=True) == pytest.approx(0.75)
        assert "partial_outside_weight 0.1 -> 0.750" in caplog.text
        assert outside_weight(tc, table, partial=False) == 0.1
        assert outside_weight(tc, [rec("c", None, known={"x"})], partial=True) == 0.1
        assert "keeping train.partial_outside_weight=0.1" in caplog.text
    assert outside_weight(TrainConfig(partial_outside_weight=0.2), table, partial=True) == 0.2


# --------------------------------------------------------------------------------------------
# The options


def test_options_default_off_round_trip_and_are_checked(tmp_path):
    assert TrainConfig().category_absent is False
    assert TrainConfig().outside_weight_from_completeness is False
    for a, b in ((True, False), (False, True), (True, True)):
        cfg = RunConfig(train=TrainConfig(category_absent=a, outside_weight_from_completeness=b))
        for suffix in ("yaml", "json"):
            save(cfg, tmp_path / f"c.{suffix}")
            assert load(RunConfig, tmp_path / f"c.{suffix}") == cfg
    cfg = apply_overrides(RunConfig(), ["train.category_absent=true",
                                        "train.outside_weight_from_completeness=true"])
    assert cfg.train.category_absent is True and cfg.train.outside_weight_from_completeness
    with pytest.raises(ConfigError):
        apply_overrides(RunConfig(), ["train.category_absent=maybe"])
    with pytest.raises(ConfigError):
        from_dict(TrainConfig, {"outside_weight_from_completeness": "auto"})
    with pytest.raises(ConfigError, match="partial_outside_weight"):
        from_dict(TrainConfig, {"outside_weight_from_completeness": True,
                                "partial_outside_weight": 1.5})


# --------------------------------------------------------------------------------------------
# Tiny training (character BiLSTM, text only, one epoch of one batch)


@pytest.fixture(scope="module")
def char_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("partial-category")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + list("abcdefghijklmnopqrstuvwxyz,")
    (root / "enc").mkdir()
    (root / "enc" / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    items = [("shirts", "red shirt, slim fit", {"Color": "red", "Fit": "slim"}, ["Color", "Fit"]),
             ("shirts", "blue shirt, loose fit", {"Color": "blue", "Fit": "loose"}, ["Color"]),
             ("shirts", "green shirt, slim fit", {"Color": "green", "Fit": "slim"}, ["Fit"]),
             ("phones", "black phone, large screen", {"Color": "black", "Screen": "large"},
              ["Color", "Screen"]),
             ("phones", "white phone, small screen", {"Color": "white", "Screen": "small"},
              ["Screen"]),
             ("phones", "black phone, large screen", {"Color": "black", "Screen": "large"},
              ["Color"])]
    rows = []
    for i, (category, text, values, known) in enumerate(items):
        spans = [{"attr": a, "begin": text.index(values[a]),
                  "end": text.index(values[a]) + len(values[a]), "value": values[a]}
                 for a in known]
        rows.append({"id": f"s{i}", "text": text, "category": category,
                     "known_attributes": known, "spans": spans})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows),
                                      encoding="utf-8")
    return root


def _config(out, root, **train_kw):
    return RunConfig(
        output_dir=str(out), data=DataConfig(train=str(root / "train.jsonl")),
        encoder=EncoderConfig(text_encoder=str(root / "enc"), text_kind="bilstm",
                              char_level=True, image_encoder="none"),
        model=ModelConfig(use_image=False, attention_size=8),
        # one batch, one epoch: the logged loss is the first forward from the same weights
        train=TrainConfig(epochs=1, batch_size=64, lr=1e-3, device="cpu", partial_labels=True,
                          **train_kw))


def test_tiny_training_with_category_absent(tmp_path, char_data, caplog):
    base = train(_config(tmp_path / "base", char_data))
    with caplog.at_level(logging.INFO, logger="mjave.training.partial_tables"):
        on = train(_config(tmp_path / "on", char_data, category_absent=True))
    # shirts never list Screen, phones never Fit: every record but none of the fully known
    # ones gains a known-absent attribute (all six are partial, each category lacks one).
    assert "6 of 6 training examples gain known-absent attributes" in caplog.text
    assert math.isfinite(on.history[0]["loss"])
    # The same first forward: the absent attributes' tags leave the unlabelled tokens' marginal
    # and their negatives now count, so the loss is strictly larger.
    assert on.history[0]["loss"] > base.history[0]["loss"] + 1e-4
    saved = json.loads((on.output_dir / "config.json").read_text())["train"]
    assert saved["category_absent"] is True and saved["partial_outside_weight"] == 0.1


def test_tiny_training_with_outside_weight_from_completeness(tmp_path, char_data):
    base = train(_config(tmp_path / "base", char_data))
    on = train(_config(tmp_path / "on", char_data, outside_weight_from_completeness=True))
    saved = json.loads((on.output_dir / "config.json").read_text())["train"]
    # per product: shirts 2/2, 1/2, 1/2; phones 2/2, 1/2, 1/2 -> 4/6
    assert saved["partial_outside_weight"] == pytest.approx(4 / 6)
    assert saved["outside_weight_from_completeness"] is True
    # More of the naive O target (2/3 against 0.1) on the same first forward: a larger loss.
    assert on.history[0]["loss"] > base.history[0]["loss"] + 1e-4
