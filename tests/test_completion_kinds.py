"""Two kinds of suggestion, each with its own promise (issue #33): `fills_known_gap` (the
product's category carries the attribute in the table) and `new_attribute` (it rarely or never
does). The kind from a hand-made table and its cut, `mjave complete` applying the threshold and
the refusal to the first kind and routing the second to review, the include flag, the summary's
plain statement, and the experiment's per-kind precision and shares with whole attributes
hidden."""

from __future__ import annotations

import csv
import json
import logging
from types import SimpleNamespace

import pytest

from mjave.completion.kinds import (FILLS_KNOWN_GAP, NEW_ATTRIBUTE, UNKNOWN_CATEGORY,
                                    category_shares)

from test_completion import StubExtractor, _write_jsonl  # one stub model


def _rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------------------------
# The kind from a hand-made table


def _shirts_and_hats():
    """20 shirts and 10 hats; Color on 18 shirts, Fit on 1 shirt, Brim on 4 hats, and a table
    product `x` no products file names."""
    categories = {**{f"s{i}": "shirt" for i in range(20)}, **{f"h{i}": "hat" for i in range(10)}}
    table = [(f"s{i}", "Color") for i in range(18)] + [("s0", "Fit"), ("s0", "Color")]
    table += [(f"h{i}", "Brim") for i in range(4)] + [("x", "Color")]
    return categories, table


def test_kind_from_the_share_of_the_category_carrying_the_attribute():
    categories, table = _shirts_and_hats()
    shares = category_shares(categories, table, cut=0.1)
    assert shares.share("shirt", "Color") == pytest.approx(0.9)     # s0 counts once
    assert shares.share("shirt", "Fit") == pytest.approx(0.05)
    assert shares.share("hat", "Brim") == pytest.approx(0.4)
    assert shares.kind("shirt", "Color") == FILLS_KNOWN_GAP
    assert shares.kind("shirt", "Fit") == NEW_ATTRIBUTE             # 1 in 20: rarely carried
    assert shares.kind("hat", "Color") == NEW_ATTRIBUTE             # never carried by hats
    assert shares.kind("sock", "Color") == NEW_ATTRIBUTE            # a category the table lacks
    # a table product without a text counts under the unknown category
    assert shares.products[UNKNOWN_CATEGORY] == 1
    assert shares.kind(None, "Color") == shares.kind(UNKNOWN_CATEGORY, "Color") == FILLS_KNOWN_GAP
    assert shares.known_attributes() == 3                          # shirt Color, hat Brim, "" Color


def test_the_cut_moves_the_kinds_but_never_makes_an_uncarried_attribute_known():
    categories, table = _shirts_and_hats()
    assert category_shares(categories, table, 0.05).kind("shirt", "Fit") == FILLS_KNOWN_GAP
    assert category_shares(categories, table, 0.5).kind("hat", "Brim") == NEW_ATTRIBUTE
    everything = category_shares(categories, table, 0.0)
    assert everything.kind("shirt", "Fit") == FILLS_KNOWN_GAP
    assert everything.kind("hat", "Color") == NEW_ATTRIBUTE         # carried by none


def test_complete_config_round_trip_and_range(tmp_path):
    from mjave.config import CompleteConfig, ConfigError, load, save
    from mjave.config.complete import DEFAULT_KNOWN_SHARE
    assert CompleteConfig().known_attribute_share == DEFAULT_KNOWN_SHARE == 0.1
    assert CompleteConfig().include_new_attributes is False
    cfg = CompleteConfig(known_attribute_share=0.25, include_new_attributes=True)
    save(cfg, tmp_path / "complete.yaml")
    back = load(CompleteConfig, tmp_path / "complete.yaml")
    assert back == cfg and back.known_attribute_share == 0.25
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="known_attribute_share"):
            CompleteConfig(known_attribute_share=bad)


# --------------------------------------------------------------------------------------------
# complete(): the two kinds, routed


@pytest.fixture
def catalog(tmp_path):
    """Ten labelled shirts whose held-out Color is red (right for the stub: the threshold backs
    0.9 on them), all lacking Material, which eight carry in the table; one shirt lacking
    Color; the table never has Fit for a shirt."""
    rows = [{"id": f"p{i}", "category": "shirt", "text": f"a red cotton slim shirt {i}",
             "spans": [], "known_attributes": [],
             "calibration": [{"attribute": "Color", "value": "red"}]} for i in range(10)]
    rows += [{"id": f"m{i}", "category": "shirt", "text": "a wool jumper", "spans": []}
             for i in range(8)]
    rows.append({"id": "q", "category": "shirt", "text": "a red slim shirt", "spans": []})
    products = _write_jsonl(tmp_path / "labelled.jsonl", rows)
    table = _write_jsonl(tmp_path / "table.jsonl", [
        *({"product_id": f"p{i}", "attribute": "Color", "value": "red"} for i in range(10)),
        *({"product_id": f"m{i}", "attribute": "Material", "value": "wool"} for i in range(8)),
        {"product_id": "q", "attribute": "Material", "value": "cotton"}])
    stub = StubExtractor([("Color", "red", 0.95), ("Material", "cotton", 0.9),
                          ("Fit", "slim", 0.99)])
    return products, table, stub


def test_new_attributes_go_to_review_never_into_the_min_precision_output(tmp_path, catalog,
                                                                        caplog):
    from mjave.completion.suggest import SUGGESTION_COLUMNS, complete, review_path
    products, table, stub = catalog
    out = tmp_path / "out" / "suggestions.csv"
    with caplog.at_level(logging.WARNING, logger="mjave.completion.suggest"):
        summary = complete(stub, products, table, out, min_precision=0.9, confidence=0.5,
                           cv_folds=0)
    assert not summary.refused and summary.threshold == 0.95
    written = _rows(out)
    assert list(written[0]) == list(SUGGESTION_COLUMNS)
    # q's Color fills a known gap; Fit (0.99, above the threshold) is new: not in the output
    assert [(r["product_id"], r["attribute"], r["kind"]) for r in written] == \
        [("q", "Color", FILLS_KNOWN_GAP)]
    review = _rows(review_path(out))
    assert review_path(out).name == "suggestions.review.csv"
    assert {r["kind"] for r in review} == {NEW_ATTRIBUTE}
    assert sorted(r["product_id"] for r in review) == sorted([*(f"p{i}" for i in range(10)), "q"])
    assert summary.suggestions == 1 and summary.new_attributes == 11
    # Material (0.9) is a known gap below the threshold: counted, not written
    assert summary.candidates_by_kind == {FILLS_KNOWN_GAP: 11, NEW_ATTRIBUTE: 11}
    text = summary.summary()
    assert "no held-out data can back their precision" in text
    assert f"written to {review_path(out)} for review" in text
    assert "fills_known_gap when >= 0.1 of the category's products" in text
    assert "speak for fills_known_gap only" in text
    assert "no held-out data can back their precision" in caplog.text
    saved = json.loads((tmp_path / "out" / "suggestions.calibration.json").read_text())
    kinds = saved["kinds"]
    assert kinds["known_attribute_share"] == 0.1 and kinds["new_attribute_rows"] == 11
    assert kinds["candidates"] == {FILLS_KNOWN_GAP: 11, NEW_ATTRIBUTE: 11}
    assert kinds["precision_backed_for"] == FILLS_KNOWN_GAP
    assert str(review_path(out)) in saved["files"]
    # `mjave review` reads the review file as it reads a suggestions file
    from mjave.review.inputs import read_items
    items, errors = read_items(review_path(out), "suggestion")
    assert not errors and len(items) == 11 and {i.attribute for i in items} == {"Fit"}


def test_the_cut_is_configurable(tmp_path, catalog):
    from mjave.completion.suggest import complete, review_path
    products, table, stub = catalog
    out = tmp_path / "s.csv"
    # Material is carried by 9 of 19 shirts (0.47): above 0.5 it is a new attribute too
    summary = complete(stub, products, table, out, known_attribute_share=0.5)
    assert {r["attribute"] for r in _rows(out)} == {"Color"}
    assert {r["attribute"] for r in _rows(review_path(out))} == {"Fit", "Material"}
    assert summary.known_attributes == 1


def test_the_threshold_and_refusal_are_judged_on_known_gaps_only(tmp_path, catalog):
    from mjave.completion.suggest import complete, review_path
    products, table, _ = catalog
    # Fit is wrong nowhere it can be judged (no held-out Fit): a perfect Color keeps the
    # promise, whatever the new attributes score
    stub = StubExtractor([("Color", "red", 0.6), ("Fit", "slim", 0.99),
                          ("Fit", "cotton", 0.98)])
    out = tmp_path / "s.csv"
    summary = complete(stub, products, table, out, min_precision=0.9, confidence=0.5,
                       cv_folds=0)
    cal = summary.calibration
    assert cal.precision == 1.0 and cal.kept == 10 and not summary.refused
    # a precision the held-out Color values cannot back: refused, every file header only
    stub = StubExtractor([("Color", "blue", 0.6), ("Fit", "slim", 0.99)])
    summary = complete(stub, products, table, out, min_precision=0.9)
    assert summary.refused and summary.new_attributes == 0
    assert _rows(out) == [] and _rows(review_path(out)) == []
    assert "new_attribute suggestions (refused)" in summary.summary()


def test_include_new_attributes_marks_them_and_claims_nothing(tmp_path, catalog):
    from mjave.completion.suggest import complete, review_path
    products, table, stub = catalog
    out = tmp_path / "s.csv"
    summary = complete(stub, products, table, out, min_precision=0.9, confidence=0.5,
                       cv_folds=0, include_new_attributes=True)
    rows = _rows(out)
    assert {(r["attribute"], r["kind"]) for r in rows} == {("Color", FILLS_KNOWN_GAP),
                                                           ("Fit", NEW_ATTRIBUTE)}
    assert len(rows) == 12 and len(_rows(review_path(out))) == 11   # still queued for review
    text = summary.summary()
    assert "12 suggestions (both kinds" in text
    assert f"included in {out} (kind new_attribute)" in text
    assert "no held-out data can back their precision" in text


def test_cli_flags(tmp_path, catalog, monkeypatch, capsys, caplog):
    from mjave.cli import main
    from mjave.inference.extractor import Extractor
    products, table, stub = catalog
    monkeypatch.setattr(Extractor, "load", classmethod(lambda cls, *a, **k: stub))
    out = tmp_path / "s.csv"
    args = ["complete", "MODEL", str(products), "--catalog", str(table), "-o", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "no held-out data can back their precision" in printed.out
    assert "no held-out data can back their precision" in caplog.text     # the log line
    assert {r["kind"] for r in _rows(out)} == {FILLS_KNOWN_GAP}
    assert main([*args, "--include-new-attributes", "--known-attribute-share", "0.5"]) == 0
    assert {(r["attribute"], r["kind"]) for r in _rows(out)} >= {("Fit", NEW_ATTRIBUTE),
                                                                ("Material", NEW_ATTRIBUTE)}
    assert "fills_known_gap when >= 0.5" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# The experiment: whole attributes hidden, precision and share per kind


def test_hiding_whole_attributes_per_category():
    from mjave.completion.simulate import hide_whole_attributes, merge_hidden
    table = {**{f"s{i}": [("Color", "red"), ("Fit", "slim")] for i in range(5)},
             **{f"h{i}": [("Color", "blue"), ("Brim", "wide")] for i in range(5)}}
    cats = {**{f"s{i}": "shirt" for i in range(5)}, **{f"h{i}": "hat" for i in range(5)}}
    hidden = hide_whole_attributes(table, cats, 1, seed=0)
    assert hidden == hide_whole_attributes(table, cats, 1, seed=0)
    assert len({frozenset(hidden[f"s{i}"]) for i in range(5)}) == 1     # the same for all
    assert len(hidden["s0"]) == 1 and hidden["s0"] <= {"Color", "Fit"}
    assert hidden["h0"] <= {"Color", "Brim"}
    assert hide_whole_attributes(table, cats, 0, seed=0) == {p: set() for p in table}
    assert merge_hidden({"a": {"X"}}, {"a": {"Y"}, "b": set()}) == {"a": {"X", "Y"}, "b": set()}


def test_experiment_reports_precision_and_share_per_kind(tmp_path, monkeypatch):
    """A stub model (right on every gold value, wrong on a Size it invents) on two categories,
    one attribute of each hidden for all its products: those suggestions are new_attribute and
    right, the invented Size is new_attribute and wrong, the rest fill known gaps."""
    import mjave.experiments.completion as experiment
    from mjave.data.formats import write_records
    from mjave.data.records import Record, Span
    from mjave.inference.extractor import Extractor

    records = []
    for cat, colour, material in (("shirt", "red", "cotton"), ("hat", "blue", "wool")):
        for i in range(10):
            text = f"a {colour} {material} {cat} {i}"
            b = text.index(material)
            records.append(Record(f"{cat}{i}", text, [
                Span(2, 2 + len(colour), "Color", colour),
                Span(b, b + len(material), "Material", material)], category=cat))
    gold = tmp_path / "gold.jsonl"
    write_records(records, gold)
    stub = StubExtractor([("Color", "red", 0.9), ("Color", "blue", 0.9),
                          ("Material", "cotton", 0.8), ("Material", "wool", 0.8),
                          ("Size", "shirt", 0.7), ("Size", "hat", 0.7)])
    monkeypatch.setattr(Extractor, "load", classmethod(lambda cls, *a, **k: stub))
    monkeypatch.setattr(experiment, "train_variant",
                        lambda *a, **k: SimpleNamespace(folder=tmp_path / "model"))
    cfg = experiment.CompletionConfig(data=str(gold), seeds=2, runs=["partial"], hide=0.5,
                                      hide_whole_attributes=1, calibration_fraction=0.3,
                                      output_dir=str(tmp_path / "exp"))
    experiment.run(cfg)
    data = json.loads((tmp_path / "exp" / "results.json").read_text())["results"]
    kinds = data["partial"]["kinds"]
    # new: 20 right (the whole-hidden attribute of every product) and 20 wrong (Size)
    assert kinds[NEW_ATTRIBUTE]["precision_per_seed"] == [0.5, 0.5]
    assert kinds[FILLS_KNOWN_GAP]["precision_per_seed"] == [1.0, 1.0]
    for seed_run in data["partial"]["per_seed"]:
        k = seed_run["kinds"]
        assert k[NEW_ATTRIBUTE]["tp"] == 20 and k[NEW_ATTRIBUTE]["fp"] == 20
        assert k[FILLS_KNOWN_GAP]["fp"] == 0 and k[FILLS_KNOWN_GAP]["tp"] > 0
        total = seed_run["suggestions"]
        assert k[NEW_ATTRIBUTE]["share"] == pytest.approx(40 / total)
        assert k[NEW_ATTRIBUTE]["share"] + k[FILLS_KNOWN_GAP]["share"] == pytest.approx(1.0)
        cal = seed_run["calibration"]
        # the threshold's precision is measured on the known gaps; both kinds kept apart
        if cal["reached"] is not None:
            assert cal["reached"] == 1.0
        assert cal["reached_all"] is None or cal["reached_all"] <= 1.0
    assert data["setup"]["hide_whole_attributes"] == 1
    assert data["setup"]["known_attribute_share"] == 0.1
    md = (tmp_path / "exp" / "results.md").read_text()
    assert "new_attribute" in md and "1 attributes of each category hidden" in md

    # off by default: no whole attribute hidden, so nothing is new but the invented Size
    cfg = experiment.CompletionConfig(data=str(gold), seeds=1, runs=["partial"], hide=0.5,
                                      calibration_fraction=0.3,
                                      output_dir=str(tmp_path / "exp-off"))
    experiment.run(cfg)
    off = json.loads((tmp_path / "exp-off" / "results.json").read_text())["results"]
    assert off["partial"]["per_seed"][0]["kinds"][NEW_ATTRIBUTE]["tp"] == 0
    assert off["setup"]["hide_whole_attributes"] == 0
