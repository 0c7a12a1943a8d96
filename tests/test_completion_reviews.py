"""Review decisions as calibration data (issue #33): `mjave complete --reviews DB` judges each
kind on its own (held-out values and reviews for `fills_known_gap`, reviews alone for
`new_attribute`), lets reviewed `new_attribute` suggestions into the promise once their reviews
back it, says how many more reviews an unbacked kind needs, reports precision per attribute and
drops an attribute with `--exclude-attribute`. The review database is built as a team builds it:
`mjave complete` writes the review file, `ReviewDB` loads it and reviewers decide."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest

from mjave.completion.calibrate import precision_lower_bound
from mjave.completion.kinds import FILLS_KNOWN_GAP, NEW_ATTRIBUTE
from mjave.completion.reviewed import read_reviews, reviews_needed, verdict
from mjave.completion.suggest import complete, review_path
from mjave.review.db import Filters, ReviewDB
from mjave.review.inputs import read_items, read_products

from test_completion import StubExtractor, _write_jsonl  # one stub model

Z90 = 1.2815515655446004          # one-sided 90%
RULES = [("Color", "red", 0.95), ("Fit", "slim", 0.99), ("Model_Number", "X100", 0.97)]


def _rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def catalog(tmp_path):
    """25 shirts: p0..p19 carry Color in the table and hold it out for calibration (right for
    the stub), q0..q4 lack it (a known gap); none carries Fit or Model_Number in the table
    (new attributes); the stub reads Fit in every shirt and Model_Number in q0..q4."""
    rows = [{"id": f"p{i}", "category": "shirt", "text": f"a red slim shirt {i}", "spans": [],
             "known_attributes": [], "calibration": [{"attribute": "Color", "value": "red"}]}
            for i in range(20)]
    rows += [{"id": f"q{i}", "category": "shirt", "text": f"a red slim shirt, model X100 {i}",
              "spans": []} for i in range(5)]
    products = _write_jsonl(tmp_path / "labelled.jsonl", rows)
    table = _write_jsonl(tmp_path / "table.jsonl", [
        *({"product_id": f"p{i}", "attribute": "Color", "value": "red"} for i in range(20)),
        *({"product_id": f"q{i}", "attribute": "Material", "value": "cotton"} for i in range(5))])
    return products, table, StubExtractor(RULES)


def _loaded(tmp_path, products, table, stub, db: ReviewDB) -> ReviewDB:
    """`db` holding a first run's suggestions and review file, as `mjave review` loads them."""
    first = tmp_path / "first" / "s.csv"
    complete(stub, products, table, first, min_precision=0.9, cv_folds=0)
    items = []
    for path in (first, review_path(first)):
        got, errors = read_items(path, "suggestion")
        assert not errors
        items += got
    db.load(items, read_products(products, {i.product_id for i in items}))
    return db


def _review(tmp_path, products, table, stub, decide, name="review.sqlite"):
    """A review database of a first run's suggestions and review file, decided by
    `decide(item) -> (action, edited_value) | None` (None: left undecided)."""
    db = _loaded(tmp_path, products, table, stub, ReviewDB(tmp_path / name))
    for _ in range(db.count_items()):
        item = db.claim("session", "alice")
        if item is None:
            break
        choice = decide(item)
        if choice is None:
            db.release("session")
            db.open(item["id"], f"parked-{item['id']}", "alice")  # out of the queue, undecided
            continue
        action, edited = choice
        db.decide(item["id"], action, "alice", session="session", edited_value=edited)
    return db.path


def _accept(attributes):
    return lambda item: ("accept", None) if item["attribute"] in attributes else None


def _ten_fits_wrong(model_number, colours_right=()):
    """Fit rejected for p0..p9 and accepted for the other 15; Model_Number decided with
    `model_number` (None: undecided); Color accepted for the products in `colours_right`."""
    def decide(item):
        if item["attribute"] == "Fit":
            wrong = item["product_id"] in {f"p{i}" for i in range(10)}
            return ("reject" if wrong else "accept", None)
        if item["attribute"] == "Model_Number":
            return None if model_number is None else (model_number, None)
        return ("accept", None) if item["product_id"] in colours_right else None
    return decide


# --------------------------------------------------------------------------------------------
# The pure parts, by hand


def test_reviews_needed_by_hand():
    # all right: the 90% Wilson bound of n of n is n / (n + z^2) >= 0.9 from n >= 9 z^2 = 14.78
    assert 14 / (14 + Z90 ** 2) < 0.9 <= 15 / (15 + Z90 ** 2)
    assert reviews_needed(5, 5, 0.9, 0.9) == 10
    assert reviews_needed(0, 0, 0.9, 0.9) == 15          # nothing judged: at least (all right)
    assert reviews_needed(15, 15, 0.9, 0.9) == 0
    # 19 of 20 right (0.95): the bound at 0.95 first reaches 0.9 at 60 judged, so 40 more
    assert precision_lower_bound(0.95 * 59, 59, 0.9) < 0.9 <= precision_lower_bound(57, 60, 0.9)
    assert reviews_needed(19, 20, 0.9, 0.9) == 40
    # at or below the target the bound never gets there
    assert reviews_needed(8, 10, 0.9, 0.9) is None and reviews_needed(9, 10, 0.9, 0.9) is None
    # the plain estimate (confidence 0.5): reached or never
    assert reviews_needed(9, 10, 0.9, 0.5) == 0 and reviews_needed(8, 10, 0.9, 0.5) is None


def test_verdicts():
    assert verdict("accept", "red", None) is True
    assert verdict("reject", "red", None) is False
    assert verdict("edit", "red", "crimson") is False         # the suggested value was wrong
    assert verdict("edit", "non gmo", "Non-GMO") is True      # only case/punctuation changed
    assert verdict("keep_table", "red", None) is None         # a conflict's: not used


def test_read_reviews_is_read_only_keys_by_normalised_value_and_skips_undecided(tmp_path,
                                                                                catalog):
    products, table, stub = catalog

    def decide(item):
        if item["attribute"] == "Model_Number":
            return None                                        # undecided: not used
        if item["product_id"] == "p0":
            return ("edit", "regular")                         # edited: wrong as suggested
        return ("reject", None) if item["product_id"] == "p1" else ("accept", None)

    db = _review(tmp_path, products, table, stub, decide)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    reviews = read_reviews(db)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    by_key = {r.key: r for r in reviews}
    assert len(reviews) == 30                                  # 25 Fit + 5 Color, no MN
    assert by_key[("p0", "Fit", "slim")].correct is False
    assert by_key[("p0", "Fit", "slim")].action == "edit"
    assert by_key[("p1", "Fit", "slim")].correct is False
    assert by_key[("q3", "Color", "red")].correct is True
    assert not any(r.attribute == "Model_Number" for r in reviews)
    from mjave.data.errors import DataError
    with pytest.raises(DataError, match="cannot read the review database"):
        read_reviews(tmp_path / "missing.sqlite")
    (tmp_path / "junk.sqlite").write_text("not a database")
    with pytest.raises(DataError, match="cannot read the review database"):
        read_reviews(tmp_path / "junk.sqlite")


# --------------------------------------------------------------------------------------------
# complete() with reviews


def test_enough_accepted_reviews_back_new_attribute_suggestions(tmp_path, catalog):
    products, table, stub = catalog
    db = _review(tmp_path, products, table, stub, _accept({"Fit", "Model_Number"}))
    out = tmp_path / "run" / "s.csv"
    summary = complete(stub, products, table, out, min_precision=0.9, reviews=str(db))
    assert not summary.refused
    new = summary.by_kind[NEW_ATTRIBUTE]
    assert new.backed and (new.kept, new.correct) == (30, 30)
    assert summary.new_threshold == 0.97                       # Fit (0.99) and MN (0.97)
    rows = _rows(out)
    assert sum(r["kind"] == NEW_ATTRIBUTE for r in rows) == 30 == summary.new_attributes_backed
    assert sum(r["kind"] == FILLS_KNOWN_GAP for r in rows) == 5
    assert _rows(review_path(out)) == [] and summary.new_attributes == 0
    assert NEW_ATTRIBUTE not in summary.needs
    text = summary.summary()
    assert "30 of them new_attribute scoring >= 0.9700, backed by reviews" in text
    assert "reviews from" in text and "30 accept" in text
    saved = json.loads((tmp_path / "run" / "s.calibration.json").read_text())
    assert saved["kinds"]["precision_backed_for"] == "fills_known_gap, new_attribute"
    assert saved["kinds"]["new_attribute_backed_rows"] == 30
    assert saved["kinds"]["calibration_by_kind"][NEW_ATTRIBUTE]["refused"] is False
    assert saved["reviews"]["used"] == {NEW_ATTRIBUTE: 30}
    # the fills_known_gap reviews were never decided: held-out values alone, as before
    assert summary.calibration.kept == 20


def test_reviews_in_queue_order_vouch_only_for_the_rows_they_decided(tmp_path, catalog):
    # 5 of the 30 Fit suggestions (one score) accepted: the 25 unreviewed ones have no fair
    # sample to be judged by (no held-out values judge a new attribute), so no threshold that
    # keeps them can be backed, and reviewing more in queue order would not change that
    products, table, stub = catalog
    five = {f"p{i}" for i in range(5)}
    db = _review(tmp_path, products, table, stub,
                 lambda item: ("accept", None) if item["attribute"] == "Fit"
                 and item["product_id"] in five else None)
    out = tmp_path / "s.csv"
    summary = complete(stub, products, table, out, min_precision=0.9, cv_folds=0,
                       reviews=str(db))
    assert not summary.refused and summary.new_threshold is None
    new = summary.by_kind[NEW_ATTRIBUTE]
    assert new.refused and (new.kept, new.correct) == (0, 0)
    assert summary.reviews.used[NEW_ATTRIBUTE] == 5
    assert {r["kind"] for r in _rows(out)} == {FILLS_KNOWN_GAP}
    assert len(_rows(review_path(out))) == 30 == summary.new_attributes   # as without reviews
    weighting = summary.weighting[NEW_ATTRIBUTE]
    assert "25 unreviewed candidates" in weighting and "5 judged suggestions left out" in weighting
    need = summary.needs[NEW_ATTRIBUTE]
    assert "vouch only for the rows they decided" in need and "fair sample" in need
    assert need in summary.summary() and "no held-out data can back" in summary.summary()
    saved = json.loads((tmp_path / "s.calibration.json").read_text())
    assert saved["kinds"]["reviews_needed"][NEW_ATTRIBUTE] == need
    assert saved["weighting"][NEW_ATTRIBUTE] == weighting
    assert saved["kinds"]["precision_backed_for"] == FILLS_KNOWN_GAP


def test_rejected_reviews_lower_the_precision_and_refuse_that_kind_only(tmp_path, catalog):
    products, table, stub = catalog
    db = _review(tmp_path, products, table, stub, _ten_fits_wrong("accept"))
    out = tmp_path / "s.csv"
    summary = complete(stub, products, table, out, min_precision=0.9, cv_folds=0,
                       reviews=str(db))
    new = summary.by_kind[NEW_ATTRIBUTE]
    assert new.refused and new.precision < 0.9
    # the other kind keeps its promise: rows written, the run not refused
    assert not summary.refused and summary.calibration.backed
    assert {r["kind"] for r in _rows(out)} == {FILLS_KNOWN_GAP} and len(_rows(out)) == 5
    assert len(_rows(review_path(out))) == 30
    assert "cannot be backed at the observed precision" in summary.needs[NEW_ATTRIBUTE]
    assert "new_attribute: REFUSED" in summary.summary()

    # rejecting the known gaps' suggestions: the run still writes those 5 rows and they are
    # known wrong; every candidate is reviewed, so the 20 held-out pairs judge no written row
    db2 = _review(tmp_path, products, table, stub,
                  lambda item: ("reject", None) if item["attribute"] == "Color" else None,
                  name="colour.sqlite")
    summary = complete(stub, products, table, out, min_precision=0.9, cv_folds=0,
                       reviews=str(db2))
    assert summary.refused and (summary.calibration.kept, summary.calibration.correct) == (5, 0)
    assert _rows(out) == []
    without = complete(stub, products, table, out, min_precision=0.9, cv_folds=0)
    assert not without.refused and without.calibration.kept == 20   # the reviews made it


def test_exclude_attribute_drops_it_everywhere_and_counts_it(tmp_path, catalog):
    products, table, stub = catalog
    db = _review(tmp_path, products, table, stub,
                 lambda item: ("reject", None) if item["attribute"] == "Model_Number"
                 else ("accept", None) if item["attribute"] == "Fit" else None)
    out = tmp_path / "s.csv"
    kept = complete(stub, products, table, out, min_precision=0.9, cv_folds=0,
                    reviews=str(db), include_new_attributes=True)
    assert {r["attribute"] for r in _rows(out)} == {"Color", "Fit", "Model_Number"}
    summary = complete(stub, products, table, out, min_precision=0.9, cv_folds=0,
                       reviews=str(db), include_new_attributes=True,
                       exclude_attributes=["Model_Number"])
    assert summary.excluded == {"Model_Number": 5}
    assert summary.candidates == kept.candidates - 5
    assert summary.candidates_by_kind[NEW_ATTRIBUTE] == kept.candidates_by_kind[NEW_ATTRIBUTE] - 5
    for path in (out, review_path(out)):
        assert "Model_Number" not in {r["attribute"] for r in _rows(path)}
    assert "Model_Number (5 candidate suggestions dropped)" in summary.summary()
    # its rejected reviews no longer weigh on the kind: 25 of 25 Fit
    assert (summary.by_kind[NEW_ATTRIBUTE].kept, summary.by_kind[NEW_ATTRIBUTE].correct) == \
        (25, 25)
    saved = json.loads((tmp_path / "s.calibration.json").read_text())
    assert saved["excluded_attributes"] == {"Model_Number": 5}
    mn = [a for a in saved["per_attribute"] if a["attribute"] == "Model_Number"]
    assert mn and mn[0]["excluded"] is True                  # still shown, marked


def test_precision_per_attribute_by_hand(tmp_path, catalog):
    products, table, stub = catalog
    db = _review(tmp_path, products, table, stub, _ten_fits_wrong("reject", {"q0", "q1"}))
    out = tmp_path / "s.csv"
    summary = complete(stub, products, table, out, min_precision=0.9, cv_folds=0,
                       reviews=str(db))
    got = {a.attribute: a for a in summary.attributes}
    assert set(got) == {"Color", "Fit", "Model_Number"}
    colour, fit, mn = got["Color"], got["Fit"], got["Model_Number"]
    # Color: 20 held-out right + 2 reviewed right; Fit: 15 of 25 right; MN: 0 of 5
    assert (colour.judged, colour.held_out, colour.reviews, colour.correct) == (22, 20, 2, 22)
    assert colour.precision == 1.0
    assert colour.precision_bound == pytest.approx(22 / (22 + Z90 ** 2))
    assert (fit.judged, fit.held_out, fit.reviews, fit.correct) == (25, 0, 25, 15)
    assert fit.precision == pytest.approx(0.6)
    z2 = Z90 ** 2                                            # Wilson by hand at p = 0.6
    wilson = (0.6 + z2 / 50 - Z90 * (0.24 / 25 + z2 / 2500) ** 0.5) / (1 + z2 / 25)
    assert fit.precision_bound == pytest.approx(wilson)
    assert (mn.judged, mn.correct, mn.precision, mn.precision_bound) == (5, 0, 0.0, 0.0)
    # the worst first; Color is delivered at its threshold (0.95), new_attribute is not
    assert [a.attribute for a in summary.attributes] == ["Model_Number", "Fit", "Color"]
    assert (colour.kept, colour.kept_correct) == (22, 22) and fit.kept == 0
    line = next(x for x in summary.summary().splitlines() if x.startswith("precision per"))
    assert line.index("Model_Number 0.000") < line.index("Fit 0.600") < line.index("Color 1.000")
    saved = json.loads((tmp_path / "s.calibration.json").read_text())
    assert [a["attribute"] for a in saved["per_attribute"]] == ["Model_Number", "Fit", "Color"]
    assert saved["per_attribute"][1]["judged"] == 25


def test_reviews_the_run_no_longer_predicts_are_not_used(tmp_path, catalog):
    products, table, stub = catalog
    db = _review(tmp_path, products, table, stub, _accept({"Fit", "Model_Number"}))
    no_mn = StubExtractor(RULES[:2])
    summary = complete(no_mn, products, table, tmp_path / "s.csv", min_precision=0.9,
                       cv_folds=0, reviews=str(db))
    assert summary.reviews.not_predicted == 5
    assert summary.reviews.used == {NEW_ATTRIBUTE: 25}
    assert summary.new_threshold == 0.99
    # a reviewed value held-out values judge already counts once (as held-out)
    from mjave.review.inputs import ItemIn
    review_db = ReviewDB(db)
    review_db.load([ItemIn("suggestion", "p0", "Color", "Red", 0.9)],
                   read_products(products, {"p0"}))
    item = review_db.claim("s", "bob", filters=Filters(max_score=0.9))
    assert (item["product_id"], item["attribute"]) == ("p0", "Color")
    review_db.decide(item["id"], "accept", "bob", session="s")
    summary = complete(stub, products, table, tmp_path / "s.csv", min_precision=0.9,
                       cv_folds=0, reviews=str(db))
    assert summary.reviews.held_out == 1 and summary.reviews.used == {NEW_ATTRIBUTE: 30}
    assert summary.calibration.kept == 20
    assert "1 already judged by held-out values" in summary.summary()


def test_without_reviews_nothing_changes_but_the_added_report(tmp_path, catalog):
    products, table, stub = catalog
    out = tmp_path / "s.csv"
    summary = complete(stub, products, table, out, min_precision=0.9, cv_folds=0)
    assert summary.reviews is None and summary.by_kind == {} and summary.new_threshold is None
    assert {r["kind"] for r in _rows(out)} == {FILLS_KNOWN_GAP}
    assert "speak for fills_known_gap only" in summary.summary()
    # the new attributes were never reviewed: the least number that could back them
    assert "at least 15 judged suggestions" in summary.needs[NEW_ATTRIBUTE]


# --------------------------------------------------------------------------------------------
# Config and CLI


def test_config_round_trip(tmp_path):
    from mjave.config import CompleteConfig, ConfigError, apply_overrides, load, save
    assert CompleteConfig().reviews is None and CompleteConfig().exclude_attributes == []
    cfg = CompleteConfig(reviews=str(tmp_path / "r.sqlite"), exclude_attributes=["A", "B"])
    save(cfg, tmp_path / "c.yaml")
    assert load(CompleteConfig, tmp_path / "c.yaml") == cfg
    assert apply_overrides(CompleteConfig(), ["exclude_attributes=[Model_Number]"]) \
        .exclude_attributes == ["Model_Number"]
    with pytest.raises(ConfigError, match="exclude_attributes"):
        CompleteConfig(exclude_attributes=[" "])


def test_cli_reviews_end_to_end(tmp_path, catalog, monkeypatch, capsys):
    from mjave.cli import main
    from mjave.inference.extractor import Extractor
    products, table, stub = catalog
    db = _review(tmp_path, products, table, stub, _accept({"Fit", "Model_Number"}))
    monkeypatch.setattr(Extractor, "load", classmethod(lambda cls, *a, **k: stub))
    out = tmp_path / "cli" / "s.csv"
    args = ["complete", "MODEL", str(products), "--catalog", str(table), "-o", str(out),
            "--min-precision", "0.9", "--cv-folds", "0"]
    assert main([*args, "--reviews", str(db), "--exclude-attribute", "Model_Number"]) == 0
    printed = capsys.readouterr().out
    assert "25 of them new_attribute scoring >= 0.9900, backed by reviews" in printed
    assert "Model_Number (5 candidate suggestions dropped)" in printed
    assert "precision per attribute" in printed
    rows = _rows(out)
    assert {(r["attribute"], r["kind"]) for r in rows} == {("Color", FILLS_KNOWN_GAP),
                                                           ("Fit", NEW_ATTRIBUTE)}
    saved = json.loads((tmp_path / "cli" / "s.calibration.json").read_text())
    assert saved["reviews"]["path"] == str(db)
    # without --reviews the same command keeps new attributes out of the promise
    assert main(args) == 0
    assert {r["kind"] for r in _rows(out)} == {FILLS_KNOWN_GAP}
    # a missing review database: exit 1 before any work
    assert main([*args, "--reviews", str(tmp_path / "nope.sqlite")]) == 1
    assert "cannot read the review database" in capsys.readouterr().err


def test_a_refused_known_gap_kind_leaves_the_backed_new_attribute_rows_written(
        tmp_path, catalog, monkeypatch, capsys):
    # Color's suggestions rejected (fills_known_gap refuses), Fit and Model_Number accepted
    # (new_attribute backed): each kind keeps its own promise, so the new_attribute rows that
    # reviews back are written and no fills_known_gap row is
    products, table, stub = catalog
    db = _review(tmp_path, products, table, stub,
                 lambda item: ("reject", None) if item["attribute"] == "Color"
                 else ("accept", None))
    out = tmp_path / "s.csv"
    summary = complete(stub, products, table, out, min_precision=0.9, cv_folds=0,
                       reviews=str(db))
    assert summary.refused and not summary.calibration.backed
    assert summary.by_kind[NEW_ATTRIBUTE].backed and summary.new_threshold == 0.97
    rows = _rows(out)
    assert len(rows) == 30 == summary.suggestions == summary.new_attributes_backed
    assert {r["kind"] for r in rows} == {NEW_ATTRIBUTE}
    assert {r["attribute"] for r in rows} == {"Fit", "Model_Number"}
    assert _rows(review_path(out)) == [] and _rows(summary.conflicts_output) == []
    assert ("30 new_attribute suggestions scoring >= 0.9700, backed by reviews, and 0 "
            "fills_known_gap (refused" in summary.summary())
    # the command still exits "refused" and says which kind it refused and what it wrote
    from mjave.cli import main
    from mjave.cli.complete import REFUSED
    from mjave.inference.extractor import Extractor
    monkeypatch.setattr(Extractor, "load", classmethod(lambda cls, *a, **k: stub))
    cli = tmp_path / "cli.csv"
    assert main(["complete", "MODEL", str(products), "--catalog", str(table), "-o", str(cli),
                 "--min-precision", "0.9", "--cv-folds", "0", "--reviews", str(db)]) == REFUSED
    err = capsys.readouterr().err
    assert "cannot be backed for fills_known_gap" in err
    assert "holds only the 30 new_attribute suggestions reviews back" in err
    assert len(_rows(cli)) == 30


def _drawn_reviews(tmp_path, products, table, stub, n_fit, fair):
    """A first run's suggestions and review file in a review database; items handed out in
    `random` order until `n_fit` Fit suggestions are decided: Fit and Color accepted,
    Model_Number rejected. `fair=False`: the same items decided, opened by hand instead."""
    db = _loaded(tmp_path, products, table, stub,
                 ReviewDB(tmp_path / f"review-{fair}.sqlite", random_seed="fixed"))
    fits = 0
    while fits < n_fit:
        item = db.claim("drawing", "alice", order="random")
        action = "reject" if item["attribute"] == "Model_Number" else "accept"
        fits += item["attribute"] == "Fit"
        if fair:
            db.decide(item["id"], action, "alice", session="drawing")
        else:
            db.release("drawing")
            db.open(item["id"], "by-hand", "alice")
            db.decide(item["id"], action, "alice", session="by-hand")
    return db.path


def test_reviews_drawn_at_random_back_the_new_attribute_rows_nobody_reviewed(tmp_path, catalog):
    # 20 of the 25 Fit suggestions drawn at random and accepted: a fair sample, so they judge
    # the 5 unreviewed ones too (weight 25/20 each: Kish's n = 20, Wilson bound
    # 20 / (20 + z^2) > 0.9) and every Fit row joins the promise. The same 20 decisions taken
    # by hand vouch for themselves only and cannot back the 5 others.
    products, table, stub = catalog
    out = tmp_path / "s.csv"
    fair_db = _drawn_reviews(tmp_path, products, table, stub, 20, True)
    summary = complete(stub, products, table, out, min_precision=0.9, cv_folds=0,
                       reviews=str(fair_db))
    new = summary.by_kind[NEW_ATTRIBUTE]
    assert new.backed and summary.new_threshold is not None
    assert summary.reviews.fair[NEW_ATTRIBUTE] == summary.reviews.used[NEW_ATTRIBUTE] >= 20
    assert "drawn at random" in summary.reviews.line()
    assert new.precision_bound == pytest.approx(20 / (20 + Z90 ** 2), abs=0.02)
    fit = [r for r in _rows(out) if r["attribute"] == "Fit"]
    assert len(fit) == 25 and {r["kind"] for r in fit} == {NEW_ATTRIBUTE}   # reviewed or not
    assert not any(r["attribute"] == "Model_Number" for r in _rows(out))    # rejected: below
    assert NEW_ATTRIBUTE not in summary.needs

    # a Fit suggestion drawn at random and skipped is missing from the sample: said, counted
    assert summary.reviews.fair_skipped == 0 and "skipped" not in summary.summary()
    db = ReviewDB(fair_db)
    drawn = db.claim("skipper", "bob", order="random")
    db.claim("skipper", "bob", order="random", after=drawn["id"])
    summary = complete(stub, products, table, out, min_precision=0.9, cv_folds=0,
                       reviews=str(db.path))
    assert summary.reviews.fair_skipped == 1
    assert "1 suggestions drawn at random were skipped" in summary.summary()
    saved = json.loads((tmp_path / "s.calibration.json").read_text())
    assert saved["reviews"]["fair_skipped"] == 1

    by_hand = tmp_path / "h.csv"
    summary = complete(stub, products, table, by_hand, min_precision=0.9, cv_folds=0,
                       reviews=str(_drawn_reviews(tmp_path, products, table, stub, 20, False)))
    assert summary.reviews.fair[NEW_ATTRIBUTE] == 0
    assert not summary.by_kind[NEW_ATTRIBUTE].backed and summary.new_threshold is None
    assert not any(r["attribute"] == "Fit" for r in _rows(by_hand))
    assert "fair sample" in summary.needs[NEW_ATTRIBUTE]
