"""Catalog completion (`mjave complete`, `mjave experiment completion`): threshold selection by
hand, suggestions only for what the table lacks, conflicts, and both commands end to end with a
tiny model on a slice of the synthetic catalog."""

from __future__ import annotations

import csv
import json
import math

import pytest

from mjave.completion.calibrate import (fixed_threshold, precision_lower_bound,
                                        precision_recall_at, select_threshold)
from mjave.completion.suggest import (ALL_ATTRIBUTES, Mention, aggregate, evidence_window,
                                      held_out_of, judge, mentions_of, product_rows, table_index)
from mjave.data.records import Record, Span

# --------------------------------------------------------------------------------------------
# Threshold selection, by hand


def test_threshold_lowest_that_reaches_the_precision():
    # scores desc: .9 T, .8 T, .7 F, .6 T, .5 F, .4 F ; 5 held-out values
    pairs = [(0.6, True), (0.9, True), (0.5, False), (0.8, True), (0.7, False), (0.4, False)]
    # t=.9: 1/1; .8: 2/2; .7: 2/3; .6: 3/4 = .75; .5: 3/5; .4: 3/6
    cal = select_threshold(pairs, 0.75, n_gold=5)
    assert cal.reachable and cal.threshold == 0.6
    assert cal.precision == pytest.approx(0.75) and cal.recall == pytest.approx(3 / 5)
    assert (cal.kept, cal.correct, cal.suggestions, cal.n_gold) == (4, 3, 6, 5)
    assert cal.warning is None
    # precision is not monotone: 0.7 is reached at .8 (2/2) but not at .7 (2/3) or .6 (3/4)
    cal = select_threshold(pairs, 0.9, n_gold=5)
    assert cal.threshold == 0.8 and cal.precision == 1.0 and cal.recall == pytest.approx(0.4)
    # P = 0: everything is kept
    cal = select_threshold(pairs, 0.0, n_gold=5)
    assert cal.threshold == 0.4 and cal.kept == 6 and cal.precision == pytest.approx(0.5)
    # exactly 9 of 10 reaches 0.9 (no rounding trap)
    ten = [(1.0 - i / 100, i != 9) for i in range(10)]
    assert select_threshold(ten, 0.9).threshold == pytest.approx(0.91)
    assert select_threshold(ten, 0.9).recall is None      # no n_gold, no recall


def test_threshold_ties_are_kept_or_dropped_together():
    # three suggestions at 0.8 (one wrong): a threshold cannot keep only the good ones
    pairs = [(0.9, True), (0.8, True), (0.8, False), (0.8, True), (0.3, True)]
    cal = select_threshold(pairs, 0.8, n_gold=4)
    # t=.9: 1/1; t=.8: 3/4 = .75 (< .8); t=.3: 4/5 = .8 -> lowest reaching is .3
    assert cal.threshold == 0.3 and cal.precision == pytest.approx(0.8)
    cal = select_threshold(pairs, 0.85, n_gold=4)
    assert cal.threshold == 0.9 and cal.kept == 1 and cal.recall == pytest.approx(0.25)
    assert precision_recall_at(pairs, 0.8, 4) == (0.75, 0.75, 4, 3)


def test_threshold_unreachable_uses_the_max_precision_threshold():
    pairs = [(0.9, False), (0.8, True), (0.7, True), (0.6, False), (0.5, True)]
    # t=.9: 0; .8: 1/2; .7: 2/3; .6: 2/4; .5: 3/5 -> best .667 at .7
    cal = select_threshold(pairs, 0.9, n_gold=3)
    assert not cal.reachable and cal.threshold == 0.7
    assert cal.precision == pytest.approx(2 / 3) and cal.recall == pytest.approx(2 / 3)
    assert "not reachable" in cal.warning
    # a tie of the best precision: the lower threshold (more recall) wins
    pairs = [(0.9, True), (0.8, False), (0.7, True), (0.6, False)]  # .9: 1, .8: .5, .7: 2/3
    tie = [(0.9, True), (0.8, False), (0.7, False), (0.6, True), (0.5, True)]
    # .9: 1/1 ... every precision < 1 below; P=1 reached at .9
    assert select_threshold(tie, 1.0).threshold == 0.9
    half = [(0.9, False), (0.8, True), (0.7, False), (0.6, True)]  # .8: 1/2, .6: 2/4
    cal = select_threshold(half, 0.9)
    assert cal.threshold == 0.6 and cal.precision == 0.5 and not cal.reachable
    assert select_threshold(pairs, 0.7, n_gold=2).threshold == 0.9


def test_precision_lower_bound_by_hand():
    z = 1.2815515655446004                               # one-sided 90%
    assert precision_lower_bound(8, 8, 0.5) == 1.0 and precision_lower_bound(3, 4) == 0.75
    assert precision_lower_bound(8, 8, 0.9) == pytest.approx(8 / (8 + z * z))   # p = 1
    wilson = (0.9 + z * z / 20 - z * math.sqrt(0.09 / 10 + z * z / 400)) / (1 + z * z / 10)
    assert precision_lower_bound(9, 10, 0.9) == pytest.approx(wilson)          # 0.7616...
    assert precision_lower_bound(90, 100, 0.9) > wilson     # more evidence, tighter bound
    assert precision_lower_bound(0, 0, 0.9) == 0.0


def test_threshold_judged_on_the_lower_bound_asks_for_evidence():
    ranking = [(1 - i / 100, i < 40) for i in range(60)]  # 40 right, then 20 wrong
    plain = select_threshold(ranking, 0.9, confidence=0.5)
    assert plain.kept == 44 and plain.precision == pytest.approx(40 / 44)   # 40/45 < 0.9
    # bounds by hand: 40/41 -> 0.9219 (reaches 0.9), 40/42 -> 0.8907 (does not)
    bound = select_threshold(ranking, 0.9, n_gold=40, confidence=0.9)
    assert bound.reachable and bound.kept == 41 and bound.correct == 40
    assert bound.precision_bound == pytest.approx(0.9219, abs=1e-4)
    assert precision_lower_bound(40, 42, 0.9) == pytest.approx(0.8907, abs=1e-4)
    assert "lower bound" in bound.summary() and bound.confidence == 0.9
    # three right at the top are not evidence of 0.9: unreachable, the best bound is used
    few = [(0.9, True), (0.8, True), (0.7, True), (0.6, False)]
    cal = select_threshold(few, 0.9, confidence=0.9)
    assert not cal.reachable and cal.threshold == 0.7 and "precision bound" in cal.warning
    assert cal.precision_bound == pytest.approx(3 / (3 + 1.2815515655446004 ** 2))
    with pytest.raises(ValueError, match="confidence"):
        select_threshold(few, 0.9, confidence=1.0)


def test_threshold_empty_and_bad_input():
    cal = select_threshold([], 0.9, n_gold=4, fallback=1.0)
    assert not cal.reachable and cal.threshold == 1.0
    assert cal.precision is None and cal.recall == 0.0 and "no held-out" in cal.warning
    assert select_threshold([], 0.9).recall is None
    with pytest.raises(ValueError):
        select_threshold([(0.5, True)], 1.5)
    with pytest.raises(ValueError):
        select_threshold([(float("nan"), True)], 0.5)
    fixed = fixed_threshold([(0.9, True), (0.4, False)], 0.5, n_gold=2)
    assert fixed.requested is None and fixed.precision == 1.0 and fixed.recall == 0.5
    assert "threshold 0.5000" in fixed.summary()


# --------------------------------------------------------------------------------------------
# Rows of one product, with stubbed predictions


def _m(attr, value, score, pid="p1", rid="s1", begin=0):
    return Mention(pid, rid, attr, value, value.lower(), score, begin, begin + len(value),
                   f"... {value} ...")


def test_suggestions_only_for_attributes_the_table_lacks():
    mentions = [_m("Color", "red", 0.9), _m("Color", "blue", 0.8),   # Color is in the table
                _m("Material", "cotton", 0.7), _m("Fit", "slim", 0.95),
                _m("Material", "Cotton", 0.6, rid="s2", begin=5)]     # same value, lower score
    table = table_index([("Color", "Red")])
    sugg, conf = product_rows(mentions, table)
    assert [(r["attribute"], r["normalized_value"]) for r in sugg] == [("Fit", "slim"),
                                                                         ("Material", "cotton")]
    assert [r["score"] for r in sugg] == [0.95, 0.7]                  # sorted by score
    mat = sugg[1]
    assert mat["mentions"] == 2 and mat["record_id"] == "s1" and mat["value"] == "cotton"
    assert set(sugg[0]) >= {"product_id", "attribute", "value", "normalized_value", "score",
                            "begin", "end", "evidence"}
    # the table value "red" is found: no conflict for it; "blue" contradicts it
    assert [(c["attribute"], c["table_value"], c["text_value"]) for c in conf] == \
        [("Color", "Red", "blue")]
    # thresholds
    sugg, conf = product_rows(mentions, table, threshold=0.8, conflict_threshold=0.85)
    assert [r["attribute"] for r in sugg] == ["Fit"] and conf == []
    # a product without table rows: everything is a suggestion, nothing a conflict
    sugg, conf = product_rows(mentions, {})
    assert len(sugg) == 4 and conf == []


def test_conflicts_against_several_table_values():
    table = table_index([("Color", "Red"), ("Color", "navy blue"), ("Size", "XL")])
    assert table == {"Color": {"red": "Red", "navy blue": "navy blue"}, "Size": {"xl": "XL"}}
    mentions = [_m("Color", "Navy Blue", 0.99), _m("Color", "green", 0.9),
                _m("Size", "XL", 0.7), _m("Size", "M", 0.6), _m("Size", "M", 0.65, begin=9)]
    sugg, conf = product_rows(mentions, {a: {k.lower(): v for k, v in d.items()}
                                         for a, d in table.items()})
    assert sugg == []
    assert [(c["attribute"], c["text_value"], c["score"], c["mentions"]) for c in conf] == \
        [("Color", "green", 0.9, 1), ("Size", "M", 0.65, 2)]
    assert conf[0]["table_value"] == "Red | navy blue" and conf[1]["begin"] == 9


def test_mentions_from_an_extractor_result_normalise_and_aggregate():
    text = "Slim-fit shirt in RED cotton; red buttons"
    values = [{"attribute": "Color", "value": "RED", "begin": 18, "end": 21, "score": 0.7},
              {"attribute": "Color", "value": "red", "begin": 30, "end": 33, "score": 0.9},
              {"attribute": "Fit", "value": "Slim-fit", "begin": 0, "end": 8, "score": 0.8},
              {"attribute": "Fit", "value": "--", "begin": 8, "end": 9, "score": 0.99}]
    ms = mentions_of("p", "s", text, values)
    assert [m.normalized for m in ms] == ["red", "red", "slim fit"]   # "--" normalises to ""
    agg = aggregate(ms)
    assert [(a.best.attribute, a.best.begin, a.score, a.mentions) for a in agg] == \
        [("Color", 30, 0.9, 2), ("Fit", 0, 0.8, 1)]
    assert agg[0].best.evidence == text                               # short text: all of it


def test_evidence_window_of_a_long_text():
    text = ("word " * 40) + "VALUE" + (" tail" * 40)
    b = text.index("VALUE")
    ev = evidence_window(text, b, b + 5)
    assert "VALUE" in ev and ev.startswith("…") and ev.endswith("…")
    assert 100 <= len(ev) <= 140 and " wor " not in f" {ev} "         # cut at word boundaries
    assert evidence_window("a\tb\nc", 0, 1) == "a b c"


def test_held_out_values_and_judging():
    labelled = Record("s1", "red shirt", cid="p1",
                      extra={"known_attributes": ["Fit"],
                             "calibration": [{"attribute": "Color", "value": "Red"}]})
    assert held_out_of(labelled, gold=False) == ([("Color", "Red")], {"Color"})
    gold = Record("s2", "red slim shirt", spans=[Span(0, 3, "Color", "red")])
    assert held_out_of(gold, gold=False) == ([], set())
    assert held_out_of(gold, gold=True) == ([("Color", "red")], {ALL_ATTRIBUTES})
    partial = Record("s3", "red", spans=[Span(0, 3, "Color", "red")],
                     extra={"known_attributes": ["Color"]})
    assert held_out_of(partial, gold=True)[1] == {"Color"}
    agg = aggregate([_m("Color", "red", 0.9), _m("Color", "blue", 0.5), _m("Fit", "slim", 0.8)])
    assert judge(agg, {"Color": {"red"}}, {"Color"}) == [(0.5, False), (0.9, True)]
    assert sorted(judge(agg, {"Color": {"red"}}, {ALL_ATTRIBUTES})) == \
        [(0.5, False), (0.8, False), (0.9, True)]


# --------------------------------------------------------------------------------------------
# The streaming pipeline with a stub model (deterministic predictions)


class StubExtractor:
    """Predicts each value listed in `self.rules` (attribute, surface, score) found in a text."""

    uses_image = False
    missing_image = "error"

    def __init__(self, rules):
        self.rules = rules
        self.batches = []

    def predict_batch(self, items, errors="raise"):
        self.batches.append(len(items))
        out = []
        for item in items:
            text = item["text"]
            if "BROKEN" in text:
                out.append({"error": "cannot predict", "reason": "stub failure"})
                continue
            values = []
            for attr, surface, score in self.rules:
                i = text.find(surface)
                if i >= 0:
                    values.append({"attribute": attr, "value": surface, "begin": i,
                                   "end": i + len(surface), "score": score})
            out.append({"attributes": [], "values": values})
        return out


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _read_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_complete_streams_groups_products_and_writes_sorted_rows(tmp_path):
    from mjave.completion.suggest import CONFLICT_COLUMNS, SUGGESTION_COLUMNS, complete
    products = _write_jsonl(tmp_path / "products.jsonl", [
        {"id": "a-1", "cid": "A", "text": "red cotton shirt"},
        {"id": "b-1", "cid": "B", "text": "blue denim jacket"},
        {"id": "a-2", "cid": "A", "text": "made of Cotton, red"},     # A again, not adjacent
        {"id": "c-1", "cid": "C", "text": "BROKEN text"},
        {"id": "d-1", "text": "green wool scarf"},                    # no cid: product d-1
    ])
    table = tmp_path / "table.csv"
    table.write_text("product_id,attribute,value\nA,Color,Red\nB,Color,green\nB,Material,denim\n"
                     "d-1,Color,green\n", encoding="utf-8")
    stub = StubExtractor([("Color", "red", 0.9), ("Color", "blue", 0.8),
                          ("Material", "cotton", 0.6), ("Material", "Cotton", 0.7),
                          ("Material", "denim", 0.95), ("Material", "wool", 0.5),
                          ("Color", "green", 0.4)])
    out = tmp_path / "out" / "suggestions.csv"
    summary = complete(stub, products, table, out, batch_size=2)
    assert stub.batches == [2, 2, 1]                      # streamed batch by batch
    rows = _read_csv(out)
    assert list(rows[0]) == list(SUGGESTION_COLUMNS)
    got = [(r["product_id"], r["attribute"], r["normalized_value"], float(r["score"]),
            r["mentions"]) for r in rows]
    # A lacks Material: "cotton" twice (sentence a-1 at 0.6, a-2 at 0.7) -> one row, max score;
    # d-1 lacks Material; B and its Color/Material are in the table: no suggestions
    assert got == [("A", "Material", "cotton", 0.7, "2"), ("d-1", "Material", "wool", 0.5, "1")]
    assert rows[0]["record_id"] == "a-2" and rows[0]["value"] == "Cotton"
    assert rows[0]["evidence"] == "made of Cotton, red"
    assert (int(rows[0]["begin"]), int(rows[0]["end"])) == (8, 14)
    conflicts = _read_csv(tmp_path / "out" / "conflicts.csv")
    assert list(conflicts[0]) == list(CONFLICT_COLUMNS)
    # B: the table says green, the text blue (0.8 >= 0.5); d-1's green agrees with the table
    assert [(c["product_id"], c["attribute"], c["table_value"], c["text_value"])
            for c in conflicts] == [("B", "Color", "green", "blue")]
    assert summary.texts == 5 and summary.failed == 1 and summary.reasons["stub failure"] == 1
    assert summary.products == 4 and summary.suggestions == 2 and summary.conflicts == 1
    saved = json.loads((tmp_path / "out" / "suggestions.calibration.json").read_text())
    assert saved["threshold"] == 0.0 and saved["calibration"] is None
    assert not list((tmp_path / "out").glob(".mjave-complete-*"))    # temporary db removed
    # a threshold drops the low-scoring suggestion; conflict threshold above 0.8 drops B's
    summary = complete(stub, products, table, out, threshold=0.6, conflict_threshold=0.85,
                       conflicts=tmp_path / "c.jsonl")
    assert [r["product_id"] for r in _read_csv(out)] == ["A"]
    assert (tmp_path / "c.jsonl").read_text() == ""


def test_complete_calibrates_on_held_out_values(tmp_path):
    from mjave.completion.suggest import complete
    # labelled records (as `mjave data label` writes them) with held-out calibration pairs
    rows = []
    for i in range(10):
        colour = "red" if i < 8 else "blue"       # the stub always says red: 8 right, 2 wrong
        rows.append({"id": f"p{i}", "text": f"a red shirt {i}", "spans": [],
                     "known_attributes": [], "unmatched": [],
                     "calibration": [{"attribute": "Color", "value": colour, "in_text": True}]})
    rows.append({"id": "q", "text": "a red hat", "spans": [], "known_attributes": []})
    products = _write_jsonl(tmp_path / "labelled.jsonl", rows)
    table = _write_jsonl(tmp_path / "table.jsonl",
                         [{"product_id": f"p{i}", "attribute": "Color", "value": "red"}
                          for i in range(10)])
    scores = iter([0.9, 0.9, 0.8, 0.8, 0.7, 0.7, 0.6, 0.6, 0.5, 0.5, 0.99])

    class Scored(StubExtractor):
        def predict_batch(self, items, errors="raise"):
            res = super().predict_batch(items, errors)
            for r in res:
                for v in r["values"]:
                    v["score"] = next(scores)
            return res

    # p8 and p9 (blue) score 0.5 -> precision 1.0 down to 0.6, 0.8 at 0.5
    out = tmp_path / "s.csv"
    summary = complete(Scored([("Color", "red", 0.0)]), products, table, out,
                       min_precision=0.9, confidence=0.5)   # judged on the plain estimate
    cal = summary.calibration
    assert cal.threshold == 0.6 and cal.precision == 1.0 and cal.recall == pytest.approx(0.8)
    assert cal.n_gold == 10 and cal.suggestions == 10 and cal.reachable
    # only q lacks Color in the table: its suggestion (0.99) passes the threshold
    assert [r["product_id"] for r in _read_csv(out)] == ["q"]
    saved = json.loads((tmp_path / "s.calibration.json").read_text())
    assert saved["calibration"]["requested"] == 0.9 and saved["threshold"] == 0.6
    assert saved["calibration"]["precision"] == 1.0
    # raw products carry no held-out values: --min-precision needs a --calibration file
    plain = _write_jsonl(tmp_path / "plain.jsonl", [{"id": "q", "text": "a red hat"}])
    from mjave.data.errors import DataError
    with pytest.raises(DataError, match="held-out"):
        complete(StubExtractor([("Color", "red", 0.9)]), plain, table, out, min_precision=0.9)
    # ... with gold spans: every predicted attribute of those products is judged
    gold = _write_jsonl(tmp_path / "gold.jsonl", [
        {"id": "g1", "text": "a red cap", "spans": [{"attr": "Color", "begin": 2, "end": 5,
                                                     "value": "red"}]},
        {"id": "g2", "text": "a red wool cap", "spans": [{"attr": "Color", "begin": 2, "end": 5,
                                                          "value": "red"}]}])
    summary = complete(StubExtractor([("Color", "red", 0.9), ("Material", "wool", 0.95)]),
                       plain, table, out, min_precision=0.9, calibration=gold)
    # wool (0.95) is wrong, red (0.9) right twice: 0/1 at 0.95, 2/3 at 0.9 -> unreachable
    cal = summary.calibration
    assert not cal.reachable and cal.threshold == 0.9 and cal.precision == pytest.approx(2 / 3)
    assert cal.warning and summary.calibration_file == str(gold)


# --------------------------------------------------------------------------------------------
# End to end with a tiny model on a slice of the synthetic catalog


@pytest.fixture(scope="module")
def gold_file(tmp_path_factory):
    """A 30-product slice of the synthetic catalog (gold spans, several texts per product)."""
    from mjave.data.formats import write_records
    from mjave.data.synthetic import generate_records
    records = [r for split in generate_records(n_products=30, seed=3).values() for r in split]
    path = tmp_path_factory.mktemp("gold") / "gold.jsonl"
    write_records(records, path)
    return path


def _tiny_base(tiny_bert, features, epochs=2):
    from mjave.testing import tiny_text_run_config
    return tiny_text_run_config(tiny_bert, features, epochs)


def test_experiment_completion_end_to_end(tmp_path, tiny_bert, gold_file, capsys):
    from mjave.config import save
    from mjave.experiments.completion import CompletionConfig
    cfg = CompletionConfig(base=_tiny_base(tiny_bert, tmp_path / "features"),
                           calibration_fraction=0.3)
    config = tmp_path / "completion.yaml"
    save(cfg, config)
    out_json = tmp_path / "OUT.json"
    from mjave.cli import main
    code = main(["experiment", "completion", "--config", str(config), "--data", str(gold_file),
                 "--hide", "0.5", "--seeds", "2", "--json", str(out_json),
                 "--output", str(tmp_path / "exp")])
    printed = capsys.readouterr().out
    assert code == 0
    assert "| partial |" in printed and "| naive |" in printed and "| full_labels |" in printed
    data = json.loads(out_json.read_text())
    assert {"partial", "naive", "full_labels", "calibration"} <= set(data)
    for run in ("partial", "naive", "full_labels"):
        entry = data[run]
        for m in ("precision", "recall", "f1"):
            assert 0.0 <= entry[m] <= 1.0 and entry[f"{m}_std"] >= 0.0
            assert len(entry[f"{m}_per_seed"]) == 2
        for seed_run in entry["per_seed"]:
            # every hidden pair is found or missed: tp + fn is the same for partial and naive
            assert seed_run["tp"] + seed_run["fn"] > 0
    hidden = [s["hidden_pairs"] for s in data["setup"]["per_seed"]]
    for run in ("partial", "naive", "full_labels"):
        assert [s["tp"] + s["fn"] for s in data[run]["per_seed"]] == hidden
    cal = data["calibration"]
    assert cal["requested"] == 0.9 and set(cal["runs"]) == {"partial", "naive", "full_labels"}
    assert cal["reached"] is None or 0.0 <= cal["reached"] <= 1.0
    saved = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert saved["results"]["partial"]["f1"] == data["partial"]["f1"]
    assert saved["config"]["hide"] == 0.5 and saved["config"]["seeds"] == 2
    # the partial model was trained with partial labels, the naive one without
    models = tmp_path / "exp" / "models"
    for name, flag in (("partial", True), ("naive", False)):
        run_cfg = json.loads((models / name / "seed-0" / "config.json").read_text())
        assert run_cfg["train"]["partial_labels"] is flag


def test_complete_cli_with_a_tiny_model(tmp_path, tiny_bert, gold_file, capsys):
    from dataclasses import replace

    from mjave.cli import main
    from mjave.completion.suggest import SUGGESTION_COLUMNS
    from mjave.data.formats import read_records, write_records
    from mjave.data.labeling import label_records
    from mjave.data.normalize import collapse_punctuation
    from mjave.completion.simulate import gold_table, hide_attributes, split_table
    from mjave.training.trainer import train

    gold, _ = read_records(gold_file)
    table = gold_table(gold)
    rows, hidden = split_table(table, hide_attributes(table, 0.5, seed=1))
    table_file = tmp_path / "table.csv"
    with open(table_file, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["product_id", "attribute", "value"])
        w.writerows((r.product_id, r.attribute, r.value) for r in rows)
    labelled, _ = label_records([replace(r, spans=[]) for r in gold], rows,
                                calibration_fraction=0.3, seed=1)
    labelled_file = tmp_path / "labelled.jsonl"
    write_records(labelled, labelled_file)
    cfg = replace(_tiny_base(tiny_bert, tmp_path / "features", epochs=3),
                  output_dir=str(tmp_path / "model"))
    model = train(replace(cfg, data=replace(cfg.data, train=str(labelled_file)))).output_dir

    known: dict[str, dict[str, set[str]]] = {}
    for r in rows:
        known.setdefault(r.product_id, {}).setdefault(r.attribute, set()).add(
            collapse_punctuation(r.value))
    out = tmp_path / "out" / "suggestions.csv"
    # the tiny model cannot back precision 0.5 on its few held-out values: `--force` writes at
    # the best threshold (without it the command refuses: tests/test_completion_refusal.py)
    code = main(["complete", str(model), str(labelled_file), "--catalog", str(table_file),
                 "-o", str(out), "--min-precision", "0.5", "--batch-size", "8", "--force"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "threshold" in printed.out and "suggestions" in printed.out
    saved = json.loads((tmp_path / "out" / "suggestions.calibration.json").read_text())
    cal = saved["calibration"]
    assert cal["requested"] == 0.5 and cal["n_gold"] > 0 and saved["texts"] == len(gold)
    threshold = saved["threshold"]
    assert threshold == cal["threshold"]
    suggestions = _read_csv(out)
    assert suggestions and list(suggestions[0]) == list(SUGGESTION_COLUMNS)
    scores = [float(r["score"]) for r in suggestions]
    assert scores == sorted(scores, reverse=True) and min(scores) >= threshold - 1e-6
    by_text = {r.id: r.text for r in gold}
    for r in suggestions:                       # only attributes the table lacks, real offsets
        assert r["attribute"] not in known.get(r["product_id"], {})
        assert by_text[r["record_id"]][int(r["begin"]):int(r["end"])] == r["value"]
        assert collapse_punctuation(r["value"]) == r["normalized_value"]
    for c in _read_csv(tmp_path / "out" / "conflicts.csv"):
        values = known[c["product_id"]][c["attribute"]]
        assert collapse_punctuation(c["text_value"]) not in values
        assert float(c["score"]) >= max(threshold, 0.5) - 1e-6

    # raw products (CSV, no held-out values): every decoded value with --threshold 0 ...
    products = tmp_path / "products.csv"
    with open(products, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "cid", "text"])
        w.writerows((r.id, r.product_id, r.text) for r in gold)
    everything = tmp_path / "all.csv"
    assert main(["complete", str(model), str(products), "--catalog", str(table_file),
                 "-o", str(everything), "--threshold", "0"]) == 0
    all_rows = _read_csv(everything)
    assert len(all_rows) >= len(suggestions)
    assert {(r["product_id"], r["attribute"], r["normalized_value"]) for r in suggestions} <= \
        {(r["product_id"], r["attribute"], r["normalized_value"]) for r in all_rows}
    # ... but --min-precision needs held-out values
    capsys.readouterr()
    assert main(["complete", str(model), str(products), "--catalog", str(table_file),
                 "-o", str(everything), "--min-precision", "0.9"]) == 1
    assert "held-out" in capsys.readouterr().err


def test_experiment_field_flags_only_where_the_config_has_them(capsys):
    from mjave.cli import main
    assert main(["experiment", "completion", "--data", "gold.jsonl", "--hide", "0.25",
                 "--seeds", "2", "--min-precision", "0.8", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "data: gold.jsonl" in printed and "hide: 0.25" in printed
    assert "seeds: 2" in printed and "min_precision: 0.8" in printed
    assert main(["experiment", "table", "--hide", "0.5", "--print-config"]) == 1
    assert "--hide is not an option of experiment 'table'" in capsys.readouterr().err


def test_hiding_is_per_attribute_seeded_and_near_the_fraction():
    from mjave.completion.simulate import halves, hide_attributes, split_table
    table = {f"p{i}": [("Color", "red"), ("Color", "blue"), ("Size", "M"), ("Fit", "slim")]
             for i in range(400)}
    hidden = hide_attributes(table, 0.5, seed=0)
    assert hidden == hide_attributes(table, 0.5, seed=0) != hide_attributes(table, 0.5, seed=1)
    counts = [len(h) for h in hidden.values()]
    assert set(counts) == {1, 2}                       # 1.5 attributes: stochastic rounding
    assert abs(sum(counts) / (3 * len(table)) - 0.5) < 0.05
    rows, key = split_table(table, hidden)
    for pid, attrs in hidden.items():                  # a hidden attribute is fully hidden
        visible = {r.attribute for r in rows if r.product_id == pid}
        assert not visible & attrs and visible | attrs == {"Color", "Size", "Fit"}
        if "Color" in attrs:
            assert {(pid, "Color", "red"), (pid, "Color", "blue")} <= key
    assert len(rows) + len(key) == 4 * len(table)
    assert hide_attributes(table, 0.0, 0) == {p: set() for p in table}
    assert all(len(h) == 3 for h in hide_attributes(table, 1.0, 0).values())
    a, b = halves(table, 0)
    assert not a & b and len(a) == len(b) == 200 and a | b == set(table)
