"""Hand-computed cases for the evaluation metrics, and a property test against seqeval."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mjave.data.records import Record, Span
from mjave.data.spans import bio_to_spans
from mjave.evaluation import (
    NO_CATEGORY,
    PRF,
    attribute_prf,
    attributes_from_probs,
    evaluate_records,
    format_comparison,
    format_report,
    casefold_strip,
    pair_prf,
    per_attribute,
    per_attribute_prediction,
    per_category,
    span_prf,
)


def sp(attr: str, begin: int, end: int, text: str | None = None) -> Span:
    """A span; the value defaults to a placeholder (span metrics never read it)."""
    return Span(begin, end, attr, text if text is not None else f"v{begin}")


def assert_counts(prf: PRF, tp: int, fp: int, fn: int) -> None:
    assert (prf.tp, prf.fp, prf.fn) == (tp, fp, fn)


# ---------------------------------------------------------------------------------------------
# PRF


def test_prf_basic_and_undefined() -> None:
    prf = PRF(3, 1, 2)
    assert prf.precision == pytest.approx(0.75)
    assert prf.recall == pytest.approx(0.6)
    assert prf.f1 == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert prf.support == 5 and prf.n_pred == 4
    assert prf.to_dict() == {"p": 75.0, "r": 60.0, "f1": 66.67, "tp": 3, "fp": 1, "fn": 2}
    empty = PRF()
    assert (empty.precision, empty.recall, empty.f1) == (0.0, 0.0, 0.0)
    only_fp = PRF(0, 2, 0)
    assert (only_fp.precision, only_fp.recall, only_fp.f1) == (0.0, 0.0, 0.0)


def test_prf_add_sum_and_roundtrip() -> None:
    total = PRF(1, 2, 3) + PRF(4, 5, 6)
    assert total == PRF(5, 7, 9)
    assert sum([PRF(1, 0, 0), PRF(0, 1, 0), PRF(0, 0, 1)]) == PRF(1, 1, 1)
    assert PRF.from_dict(total.to_dict()) == total
    assert isinstance(PRF(np.int64(2), 0, 0).tp, int)
    with pytest.raises(ValueError):
        PRF(-1, 0, 0)


# ---------------------------------------------------------------------------------------------
# Span level


def test_span_perfect() -> None:
    gold = [[sp("color", 0, 2), sp("material", 5, 7)], [sp("style", 1, 3)]]
    prf = span_prf(gold, [list(g) for g in gold])
    assert_counts(prf, 3, 0, 0)
    assert prf.to_dict()["f1"] == 100.0


def test_span_empty_predictions() -> None:
    prf = span_prf([[sp("color", 0, 2)], [sp("style", 1, 3)]], [[], []])
    assert_counts(prf, 0, 0, 2)
    assert prf.precision == 0.0 and prf.recall == 0.0 and prf.f1 == 0.0


def test_span_nothing_to_find_and_nothing_predicted() -> None:
    assert_counts(span_prf([[], []], [[], []]), 0, 0, 0)
    assert span_prf([[]], [[]]).f1 == 0.0


def test_span_all_wrong() -> None:
    prf = span_prf([[sp("color", 0, 2)]], [[sp("style", 4, 6), sp("material", 8, 9)]])
    assert_counts(prf, 0, 2, 1)
    assert prf.to_dict() == {"p": 0.0, "r": 0.0, "f1": 0.0, "tp": 0, "fp": 2, "fn": 1}


@pytest.mark.parametrize("pred", [sp("color", 0, 3), sp("color", 1, 2), sp("color", 0, 1)])
def test_span_partial_overlap_is_wrong(pred: Span) -> None:
    # Gold [0, 2); a longer, shorter or shifted prediction is one fp plus one fn.
    assert_counts(span_prf([[sp("color", 0, 2)]], [[pred]]), 0, 1, 1)


def test_span_same_boundaries_wrong_attribute_is_wrong() -> None:
    assert_counts(span_prf([[sp("color", 0, 2)]], [[sp("style", 0, 2)]]), 0, 1, 1)


def test_span_value_string_is_not_compared() -> None:
    assert_counts(span_prf([[sp("color", 0, 2, "红色")]], [[sp("color", 0, 2, "other")]]), 1, 0, 0)


def test_span_duplicates_count_once() -> None:
    gold = [[sp("color", 0, 2), sp("color", 0, 2)]]
    pred = [[sp("color", 0, 2)] * 3 + [sp("style", 4, 5)] * 2]
    assert_counts(span_prf(gold, pred), 1, 1, 0)


def test_span_micro_average_over_instances() -> None:
    gold = [
        [sp("color", 0, 2), sp("style", 3, 5)],  # 1 tp, 1 fn
        [sp("material", 0, 4)],  # partial: 1 fp, 1 fn
        [],  # 1 fp
        [sp("color", 1, 2), sp("style", 4, 6), sp("material", 7, 9)],  # 3 tp
    ]
    pred = [
        [sp("color", 0, 2)],
        [sp("material", 0, 3)],
        [sp("color", 0, 1)],
        [sp("color", 1, 2), sp("style", 4, 6), sp("material", 7, 9)],
    ]
    prf = span_prf(gold, pred)
    assert_counts(prf, 4, 2, 2)
    assert prf.precision == pytest.approx(4 / 6)
    assert prf.recall == pytest.approx(4 / 6)
    assert prf.to_dict()["f1"] == 66.67
    # Micro, not macro: the mean of per-instance F1s would be (2/3 + 0 + 0 + 1) / 4 = 41.67.


def test_span_length_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        span_prf([[]], [[], []])


# ---------------------------------------------------------------------------------------------
# Attribute prediction


def test_attribute_prf_micro() -> None:
    gold = [{"color", "style"}, {"material"}, set(), {"color"}]
    pred = [{"color"}, {"material", "style"}, {"color"}, {"color"}]
    # tp: 1 + 1 + 0 + 1 = 3; fp: 0 + 1 + 1 + 0 = 2; fn: 1 + 0 + 0 + 0 = 1
    prf = attribute_prf(gold, pred)
    assert_counts(prf, 3, 2, 1)
    assert prf.f1 == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))


def test_attributes_from_probs_threshold_boundary() -> None:
    probs = np.array([[0.5, 0.49999, 0.9], [0.0, 1.0, 0.5000001], [np.nan, 0.2, 0.1]])
    names = ["color", "style", "material"]
    expected = [{"color", "material"}, {"style", "material"}, set()]
    assert attributes_from_probs(probs, names) == expected
    # >= threshold: exactly the threshold counts as predicted, for any threshold.
    assert attributes_from_probs(probs, names, threshold=0.9) == [{"material"}, {"style"}, set()]
    assert attributes_from_probs(probs, names, threshold=0.0)[0] == set(names)


def test_attributes_from_probs_shape_errors() -> None:
    with pytest.raises(ValueError):
        attributes_from_probs(np.zeros(3), ["a", "b", "c"])
    with pytest.raises(ValueError):
        attributes_from_probs(np.zeros((2, 3)), ["a", "b"])


def test_per_attribute_prediction() -> None:
    gold = [{"color", "style"}, {"material"}, set()]
    pred = [{"color"}, {"material", "style"}, {"color"}]
    out = per_attribute_prediction(gold, pred)
    assert list(out) == ["color", "material", "style"]
    assert out["color"] == PRF(1, 1, 0)
    assert out["material"] == PRF(1, 0, 0)
    assert out["style"] == PRF(0, 1, 1)
    assert sum(out.values()) == attribute_prf(gold, pred)


# ---------------------------------------------------------------------------------------------
# Position-free pairs


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Red ", "red"),
        ("  Dark   Blue\t", "dark blue"),
        ('"Cotton."', "cotton"),
        ("ＲＥＤ", "red"),  # full-width -> ASCII (NFKC)
        ("Straße", "strasse"),  # casefold, not lower
        ("（纯棉）", "纯棉"),  # full-width brackets are punctuation
        ("t-shirt", "t-shirt"),  # inner punctuation kept
        ("50%", "50%"),
        ("５０％", "50%"),
        ("(50%)", "50%"),
        ("...", ""),
    ],
)
def test_casefold_strip(raw: str, expected: str) -> None:
    assert casefold_strip(raw) == expected


def test_pair_normalisation_and_position_free() -> None:
    gold = [[Span(0, 3, "color", "Red"), Span(10, 16, "material", "cotton")]]
    # "Red " at a different position matches; the duplicate "red" counts once.
    pred = [
        [Span(20, 24, "color", "Red "), Span(30, 33, "color", "red"), Span(0, 6, "style", "cotton")]
    ]
    assert_counts(pair_prf(gold, pred), 1, 1, 1)
    # Span-level, the same predictions are all wrong.
    assert_counts(span_prf(gold, pred), 0, 3, 2)


def test_pair_accepts_tuples() -> None:
    gold = [[("color", "Red")], [("size", "XL"), ("color", "blue")]]
    pred = [[("color", " red.")], [("size", "xl")]]
    assert_counts(pair_prf(gold, pred), 2, 0, 1)


# ---------------------------------------------------------------------------------------------
# Breakdowns


def test_per_attribute_span_and_pair() -> None:
    gold = [[sp("color", 0, 2, "红色"), sp("style", 3, 5, "修身")], [sp("color", 0, 2, "蓝色")]]
    pred = [[sp("style", 0, 2, "红色"), sp("style", 3, 5, "修身")], [sp("color", 4, 6, "蓝色")]]
    spans = per_attribute(gold, pred, kind="span")
    # Wrong attribute: fp of the predicted attribute, fn of the gold one.
    assert spans == {"color": PRF(0, 1, 2), "style": PRF(1, 1, 0)}
    assert sum(spans.values()) == span_prf(gold, pred)
    pairs = per_attribute(gold, pred, kind="pair")
    assert pairs == {"color": PRF(1, 0, 1), "style": PRF(1, 1, 0)}
    assert sum(pairs.values()) == pair_prf(gold, pred)
    with pytest.raises(ValueError):
        per_attribute(gold, pred, kind="token")  # type: ignore[arg-type]


def test_per_category() -> None:
    gold = [[sp("color", 0, 2)], [sp("color", 0, 2), sp("style", 3, 4)], [sp("style", 1, 2)]]
    pred = [[sp("color", 0, 2)], [sp("color", 0, 2)], [sp("style", 1, 3)]]
    out = per_category(gold, pred, ["dress", "dress", None])
    assert out == {NO_CATEGORY: PRF(0, 1, 1), "dress": PRF(2, 0, 1)}
    assert sum(out.values()) == span_prf(gold, pred)
    with pytest.raises(ValueError):
        per_category(gold, pred, ["dress"])


# ---------------------------------------------------------------------------------------------
# Whole-report evaluation


def _records() -> tuple[list[Record], list[Record]]:
    text0 = "红色修身连衣裙"
    text1 = "纯棉T恤"
    text2 = "Red cotton shirt"
    gold = [
        Record("s0", text0, [Span(0, 2, "颜色", "红色"), Span(2, 4, "版型", "修身")], category="dress"),
        Record("s1", text1, [Span(0, 2, "材质", "纯棉")], category="tee"),
        Record("s2", text2, [Span(0, 3, "颜色", "Red"), Span(4, 10, "材质", "cotton")]),
    ]
    pred = [
        Record("s0", text0, [Span(0, 2, "颜色", "红色"), Span(2, 5, "版型", "修身连")], category="dress"),
        Record("s1", text1, [], category="tee"),
        Record("s2", text2, [Span(0, 3, "颜色", "Red"), Span(4, 10, "版型", "cotton")]),
    ]
    return gold, pred


def test_evaluate_records_from_spans() -> None:
    gold, pred = _records()
    report = evaluate_records(gold, pred)
    json.dumps(report)  # serialisable
    keys = {"attribute", "value", "pair", "per_attribute", "per_category", "n_instances"}
    assert set(report) == keys
    assert report["n_instances"] == 3
    # Attribute sets: gold {颜色,版型} {材质} {颜色,材质}; pred {颜色,版型} {} {颜色,版型}
    assert PRF.from_dict(report["attribute"]) == PRF(3, 1, 2)
    assert report["attribute"]["source"] == "spans" and report["attribute"]["threshold"] is None
    # Spans: s0 1 tp + (partial) 1 fp 1 fn; s1 1 fn; s2 1 tp + (wrong attr) 1 fp 1 fn.
    assert PRF.from_dict(report["value"]) == PRF(2, 2, 3)
    assert report["value"] == {"p": 50.0, "r": 40.0, "f1": 44.44, "tp": 2, "fp": 2, "fn": 3}
    assert PRF.from_dict(report["pair"]) == PRF(2, 2, 3)
    # Sorted by gold value-span support: 颜色 2, 材质 2 (then by attribute support, then name), 版型 1.
    assert list(report["per_attribute"]) == ["材质", "颜色", "版型"]
    assert PRF.from_dict(report["per_attribute"]["版型"]["value"]) == PRF(0, 2, 1)
    assert PRF.from_dict(report["per_attribute"]["版型"]["attribute"]) == PRF(1, 1, 0)
    assert PRF.from_dict(report["per_attribute"]["颜色"]["value"]) == PRF(2, 0, 0)
    assert PRF.from_dict(report["per_attribute"]["材质"]["pair"]) == PRF(0, 0, 2)
    assert list(report["per_category"]) == [NO_CATEGORY, "dress", "tee"]
    assert report["per_category"]["dress"]["n_instances"] == 1
    assert PRF.from_dict(report["per_category"]["dress"]["value"]) == PRF(1, 1, 1)
    assert PRF.from_dict(report["per_category"]["tee"]["value"]) == PRF(0, 0, 1)
    assert PRF.from_dict(report["per_category"][NO_CATEGORY]["attribute"]) == PRF(1, 1, 1)


def test_evaluate_records_from_probs() -> None:
    gold, pred = _records()
    names = ["颜色", "版型", "材质"]
    probs = np.array([[0.9, 0.5, 0.1], [0.2, 0.1, 0.7], [0.8, 0.3, 0.4999]])
    report = evaluate_records(gold, pred, attribute_probs=probs, attributes=names)
    # pred sets {颜色,版型} {材质} {颜色} vs gold {颜色,版型} {材质} {颜色,材质}
    assert PRF.from_dict(report["attribute"]) == PRF(4, 0, 1)
    assert report["attribute"]["source"] == "probs" and report["attribute"]["threshold"] == 0.5
    assert PRF.from_dict(report["value"]) == PRF(2, 2, 3)  # spans unaffected
    json.dumps(report)
    with pytest.raises(ValueError):
        evaluate_records(gold, pred, attribute_probs=probs)  # names missing
    with pytest.raises(ValueError):
        evaluate_records(gold, pred, attribute_probs=probs[:2], attributes=names)


def test_evaluate_records_id_mismatch() -> None:
    gold, pred = _records()
    with pytest.raises(ValueError, match="'s1'"):
        evaluate_records(gold, [pred[0], pred[2], pred[1]])
    with pytest.raises(ValueError, match="'s2'"):
        evaluate_records(gold, pred[:2])


def test_format_report_and_comparison() -> None:
    gold, pred = _records()
    report = evaluate_records(gold, pred)
    text = format_report(report, title="dev")
    assert text.startswith("dev\n===")
    assert "44.44" in text and "材质" in text and "per category" in text and NO_CATEGORY in text
    lines = text.splitlines()
    # Attribute rows appear in support order.
    assert lines.index(next(l for l in lines if l.startswith("材质"))) < lines.index(
        next(l for l in lines if l.startswith("版型"))
    )
    perfect = evaluate_records(gold, gold)
    table = format_comparison({"JAVE": report, "oracle": perfect, "llm": {"pair": report["pair"]}})
    rows = table.splitlines()
    assert rows[0].split() == ["model", "attribute", "F1", "value", "F1", "pair", "F1"]
    assert rows[2].split() == ["JAVE", "66.67", "44.44", "44.44"]
    assert rows[3].split() == ["oracle", "100.00", "100.00", "100.00"]
    assert rows[4].split() == ["llm", "-", "-", "44.44"]


# ---------------------------------------------------------------------------------------------
# Cross-check against seqeval (conlleval semantics)

# Attributes include a hyphenated name and "_" (seqeval's internal type of "O") to exercise tag
# parsing. Tags are restricted to O / B-X / I-X with a non-empty X, i.e. every BIO sequence,
# well-formed or not (I-X after O, after B-Y/I-Y, at the start). Outside that alphabet the two
# decoders legitimately differ and mjave never produces such tags: IOBES E-/S- prefixes,
# type-less "B"/"I" (seqeval names the type "_"), "O-X", lower-case prefixes, seqeval's
# special "." tag, and "" (which makes seqeval raise IndexError).
ATTRS = ["color", "style", "size-cm", "_"]
TAGS = ["O"] + [f"{p}-{a}" for a in ATTRS for p in ("B", "I")]


@st.composite
def gold_and_pred(draw: st.DrawFn) -> tuple[list[list[str]], list[list[str]]]:
    lengths = draw(st.lists(st.integers(0, 12), min_size=1, max_size=6))
    tag = st.sampled_from(TAGS)
    gold = [draw(st.lists(tag, min_size=n, max_size=n)) for n in lengths]
    pred = [draw(st.lists(tag, min_size=n, max_size=n)) for n in lengths]
    return gold, pred


def _spans(tags: list[str]) -> list[Span]:
    n = len(tags)
    return bio_to_spans(tags, [(i, i + 1) for i in range(n)], "x" * n)


@settings(max_examples=400, deadline=None)
@given(gold_and_pred())
def test_span_prf_matches_seqeval(data: tuple[list[list[str]], list[list[str]]]) -> None:
    from seqeval.metrics import f1_score, precision_score, recall_score

    gold_tags, pred_tags = data
    prf = span_prf([_spans(t) for t in gold_tags], [_spans(t) for t in pred_tags])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UndefinedMetricWarning when nothing is predicted/gold
        expected = (
            precision_score(gold_tags, pred_tags),
            recall_score(gold_tags, pred_tags),
            f1_score(gold_tags, pred_tags),
        )
    for ours, theirs in zip((prf.precision, prf.recall, prf.f1), expected):
        assert math.isclose(ours, float(theirs), rel_tol=0.0, abs_tol=1e-9)


@pytest.mark.parametrize(
    ("gold_tags", "pred_tags"),
    [
        (["B-color", "I-color", "O"], ["I-color", "I-color", "O"]),  # I- after O starts a chunk
        (["B-color", "I-color"], ["B-color", "I-style"]),  # I-Y after X starts a Y chunk
        (["B-color", "B-color"], ["B-color", "I-color"]),  # B- always starts a chunk
        (["O", "I-style", "I-color"], ["O", "B-style", "B-color"]),
    ],
)
def test_ill_formed_repairs_match_seqeval(gold_tags: list[str], pred_tags: list[str]) -> None:
    from seqeval.metrics.sequence_labeling import get_entities

    for tags in (gold_tags, pred_tags):
        ours = sorted(s.key() for s in _spans(tags))
        theirs = sorted((t, b, e + 1) for t, b, e in get_entities(tags))
        assert ours == theirs
