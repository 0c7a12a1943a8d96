"""Implicit (image-only) values, issue #31 section 2: counted by hand on four small records, then
through `report_of` (the path of every reported figure) and `format_report`."""

from __future__ import annotations

import json

import pytest

from mjave.data.records import Record, Span
from mjave.evaluation import (
    format_report,
    gold_pairs_with_implicit,
    implicit_gold,
    implicit_report,
    pred_pairs_with_implicit,
    with_implicit,
)
from mjave.training.evaluate import report_of

CLOSED = ("Color", "Pattern")


def gold_records() -> list[Record]:
    return [
        # Color red, no pattern (a solid garment): both scored.
        Record("r1", "Cotton shirt", [], category="shirt",
               extra={"implicit_values": {"Color": "red", "Pattern": None}}),
        # Pattern is a gold span, so only the implicit Color is scored.
        Record("r2", "Striped shirt", [Span(0, 7, "Pattern", "Striped")], category="shirt",
               extra={"implicit_values": {"Color": "blue", "Pattern": "striped"}}),
        # Color is a gold span: its implicit Color is not scored; Pattern None is.
        Record("r3", "Red shirt", [Span(0, 3, "Color", "Red")],
               extra={"implicit_values": {"Color": "red", "Pattern": None}}),
        # Only Color known (Size is not a closed attribute): Pattern predictions are ignored.
        Record("r4", "Plain shirt", [],
               extra={"implicit_values": {"Color": "red", "Size": "L"}}),
    ]


def pred_records() -> list[Record]:
    def implicit(values: dict[str, str]) -> dict:
        return {"implicit_values": values, "implicit_scores": {a: 0.9 for a in values}}

    return [
        Record("r1", "Cotton shirt", [], extra=implicit({"Color": "Red", "Pattern": "striped"})),
        Record("r2", "Striped shirt", [Span(0, 7, "Pattern", "Striped")],
               extra=implicit({"Color": "red"})),
        Record("r3", "Red shirt", [Span(0, 3, "Color", "Red")]),
        Record("r4", "Plain shirt", [], extra=implicit({"Pattern": "plaid"})),
    ]


def test_implicit_gold_keeps_closed_attributes_without_a_gold_span():
    g = gold_records()
    assert implicit_gold(g[0], CLOSED) == {"Color": "red", "Pattern": None}
    assert implicit_gold(g[1], CLOSED) == {"Color": "blue"}
    assert implicit_gold(g[2], CLOSED) == {"Pattern": None}
    assert implicit_gold(g[3], CLOSED) == {"Color": "red"}
    assert implicit_gold(g[3], ()) == {}


def test_implicit_report_counts_by_hand():
    report = implicit_report(gold_records(), pred_records(), CLOSED)
    json.dumps(report)
    color = report["per_attribute"]["Color"]
    # r1 red/Red: TP; r2 blue/red: FP + FN; r4 red/nothing: FN. r3 (gold span) not scored.
    assert (color["tp"], color["fp"], color["fn"]) == (1, 1, 2)
    assert (color["n"], color["correct"]) == (3, 1)
    assert color["accuracy"] == 33.33
    assert (color["majority"], color["majority_value"]) == (66.67, "red")
    assert (color["p"], color["r"], color["f1"]) == (50.0, 33.33, 40.0)
    pattern = report["per_attribute"]["Pattern"]
    # r1 None/striped: FP; r3 None/nothing: correct; r4's plaid is ignored (gold unknown).
    assert (pattern["tp"], pattern["fp"], pattern["fn"]) == (0, 1, 0)
    assert (pattern["n"], pattern["correct"]) == (2, 1)
    assert pattern["accuracy"] == 50.0
    assert (pattern["majority"], pattern["majority_value"]) == (100.0, None)
    assert (pattern["p"], pattern["r"], pattern["f1"]) == (0.0, 0.0, 0.0)
    assert list(report["per_attribute"]) == ["Color", "Pattern"]
    overall = report["all"]
    assert (overall["tp"], overall["fp"], overall["fn"]) == (1, 2, 2)
    assert (overall["n"], overall["correct"]) == (5, 2)
    assert (overall["accuracy"], overall["majority"]) == (40.0, 80.0)
    assert (overall["p"], overall["r"], overall["f1"]) == (33.33, 33.33, 33.33)


def test_implicit_report_checks_ids():
    g, p = gold_records(), pred_records()
    with pytest.raises(ValueError):
        implicit_report(g, p[::-1], CLOSED)


def test_pairs_with_implicit():
    g, p = gold_records(), pred_records()
    assert gold_pairs_with_implicit(g[0], CLOSED) == {("Color", "red")}   # None adds no pair
    assert gold_pairs_with_implicit(g[1], CLOSED) == {("Pattern", "striped"), ("Color", "blue")}
    assert gold_pairs_with_implicit(g[3], CLOSED) == {("Color", "red")}   # Size is not closed
    assert pred_pairs_with_implicit(p[0], g[0], CLOSED) == {("Color", "red"),
                                                            ("Pattern", "striped")}
    assert pred_pairs_with_implicit(p[3], g[3], CLOSED) == set()   # Pattern unknown: ignored


def test_pair_score_counts_implicit_values_only_with_closed():
    g, p = gold_records(), pred_records()
    plain = report_of(g, p, None, None, 0.5)
    assert report_of(g, p, None, None, 0.5, closed=()) == plain
    assert report_of(g, p, None, None, 0.5, closed=["Material"]) == plain   # no implicit gold
    assert "implicit" not in plain and "pair_includes_implicit" not in plain
    assert (plain["pair"]["tp"], plain["pair"]["fp"], plain["pair"]["fn"]) == (2, 0, 0)

    report = report_of(g, p, None, None, 0.5, closed=CLOSED)
    json.dumps(report)
    assert report["pair_includes_implicit"] is True
    assert report["implicit"] == implicit_report(g, p, CLOSED)
    # TP: r1 Color red, r2 Pattern striped, r3 Color red; FP: r1 Pattern striped, r2 Color red;
    # FN: r2 Color blue, r4 Color red.
    assert report["pair"] == {"p": 60.0, "r": 60.0, "f1": 60.0, "tp": 3, "fp": 2, "fn": 2}
    per_attr = report["per_attribute"]
    color, pattern = per_attr["Color"]["pair"], per_attr["Pattern"]["pair"]
    assert (color["tp"], color["fp"], color["fn"]) == (2, 1, 2)
    assert (pattern["tp"], pattern["fp"], pattern["fn"]) == (1, 1, 0)
    shirt, none = report["per_category"]["shirt"]["pair"], report["per_category"]["(none)"]["pair"]
    assert (shirt["tp"], shirt["fp"], shirt["fn"]) == (2, 2, 1)
    assert (none["tp"], none["fp"], none["fn"]) == (1, 0, 1)
    # Span, attribute and slot scores stay span-only.
    for key in ("value", "attribute", "slot", "n_instances"):
        assert report[key] == plain[key]


def test_attribute_named_only_implicitly_gets_a_zero_row():
    g = [Record("a", "Cotton shirt", [Span(0, 6, "Material", "Cotton")],
                extra={"implicit_values": {"Color": "red"}})]
    p = [Record("a", "Cotton shirt", [Span(0, 6, "Material", "Cotton")],
                extra={"implicit_values": {"Color": "red"}})]
    report = report_of(g, p, None, None, 0.5, closed=["Color"])
    color = report["per_attribute"]["Color"]
    assert color["pair"]["tp"] == 1 and color["value"]["tp"] == 0
    assert color["attribute"]["tp"] == 0 and color["slot"]["vc"] == 0
    assert with_implicit(report, g, p, None) == report


def test_format_report_prints_the_implicit_table():
    g, p = gold_records(), pred_records()
    text = format_report(report_of(g, p, None, None, 0.5, closed=CLOSED))
    assert "pair (+implicit)" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("attribute  n"))
    assert lines[header].split() == ["attribute", "n", "accuracy", "majority", "P", "R", "F1"]
    rows = [line.split() for line in lines[header + 2:header + 5]]
    assert rows == [["Color", "3", "33.33", "66.67", "50.00", "33.33", "40.00"],
                    ["Pattern", "2", "50.00", "100.00", "0.00", "0.00", "0.00"],
                    ["all", "5", "40.00", "80.00", "33.33", "33.33", "33.33"]]
    plain = format_report(report_of(g, p, None, None, 0.5))
    assert "implicit" not in plain and "pair (+implicit)" not in plain
