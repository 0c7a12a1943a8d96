"""Recall on gold values seen / unseen in training (`mjave.evaluation.novelty`): counted by hand
on small records, then end to end through `mjave evaluate` with and without `--train`."""

from __future__ import annotations

import json
import shutil

import pytest

from mjave.config import DataConfig, RunConfig
from mjave.data.records import Record, Span
from mjave.evaluation import format_report, casefold_strip, pair_prf, recall_by_novelty, seen_pairs
from mjave.experiments.common import novelty_summary
from mjave.training.evaluate import report_of, training_values

TEXT = "Red cotton shirt, blue collar, size M"
DRESS = "Green linen dress"


def span(text: str, value: str, attr: str, score: float | None = None) -> Span:
    begin = text.index(value)
    return Span(begin, begin + len(value), attr, value, score=score)


def rec(rid: str, text: str, spans: list[Span]) -> Record:
    return Record(rid, text, spans)


def training() -> list[Record]:
    """Seen pairs: (Color, red), (Material, cotton), (Size, m)."""
    t = "Red shirt, cotton, size M"
    return [rec("t1", t, [span(t, "Red", "Color"), span(t, "cotton", "Material")]),
            rec("t2", t, [span(t, "M", "Size")])]


def gold() -> list[Record]:
    """3 seen gold values (Red, cotton, M) and 2 unseen (blue, linen)."""
    return [rec("g1", TEXT, [span(TEXT, "Red", "Color"), span(TEXT, "cotton", "Material"),
                             span(TEXT, "M", "Size"), span(TEXT, "blue", "Color")]),
            rec("g2", DRESS, [span(DRESS, "linen", "Material")])]


def test_hand_counted_recall_on_seen_and_unseen_values():
    # hits Red and cotton (seen) and linen (unseen); misses M (seen) and blue (unseen); "shirt"
    # is a wrong value, which no recall counts
    pred = [rec("g1", TEXT, [span(TEXT, "Red", "Color", 0.9), span(TEXT, "cotton", "Material", 0.8),
                             span(TEXT, "shirt", "Material", 0.3)]),
            rec("g2", DRESS, [span(DRESS, "linen", "Material", 0.7)])]
    out = recall_by_novelty(gold(), pred, seen_pairs(training()))
    assert out["seen"] == {"gold": 3, "found": 2, "recall": 66.67}
    assert out["unseen"] == {"gold": 2, "found": 1, "recall": 50.0}
    assert out["unseen_share"] == 40.0
    # one value per attribute: the kept values are the same ones here
    assert out["slot"] == {"seen": out["seen"], "unseen": out["unseen"]}
    # the split is of pair F1's true positives and gold values
    pair = pair_prf([r.spans for r in gold()], [r.spans for r in pred])
    assert (pair.tp, pair.support) == (3, 5)


def test_slot_level_counts_only_the_kept_value():
    # blue outscores Red: pairs find both colours, the slot protocol keeps blue alone
    pred = [rec("g1", TEXT, [span(TEXT, "Red", "Color", 0.9), span(TEXT, "blue", "Color", 0.95),
                             span(TEXT, "cotton", "Material", 0.8)]),
            rec("g2", DRESS, [span(DRESS, "linen", "Material", 0.7)])]
    out = recall_by_novelty(gold(), pred, seen_pairs(training()))
    assert (out["seen"]["found"], out["unseen"]["found"]) == (2, 2)
    assert out["slot"]["seen"] == {"gold": 3, "found": 1, "recall": 33.33}
    assert out["slot"]["unseen"] == {"gold": 2, "found": 2, "recall": 100.0}


def test_seen_uses_the_pair_rule_case_whitespace_and_end_punctuation():
    t = "  RED ,  Cotton.  50  "
    train = [rec("t", t, [Span(0, 6, "Color", "  RED "), Span(9, 16, "Material", "Cotton."),
                          Span(18, 20, "Size", "50")])]
    seen = seen_pairs(train)
    assert ("Color", casefold_strip("Red")) in seen and ("Color", "red") in seen
    text = "red cotton 50%"
    g = [rec("e", text, [span(text, "red", "Color"), span(text, "cotton", "Material"),
                         span(text, "50%", "Size"), Span(0, 3, "Material", "red")])]
    out = recall_by_novelty(g, [rec("e", text, [])], seen)
    # red and cotton are seen (case, spaces, end punctuation do not count); "50%" is not "50",
    # and a value seen under another attribute is unseen under this one
    assert (out["seen"]["gold"], out["unseen"]["gold"]) == (2, 2)
    assert out["seen"]["recall"] == 0.0 and out["unseen"]["recall"] == 0.0


def test_no_unseen_values_gives_no_recall_not_zero_and_text_line():
    out = recall_by_novelty(gold()[:1], gold()[:1], seen_pairs(gold()))
    assert out["unseen"] == {"gold": 0, "found": 0, "recall": None}
    assert out["seen"]["recall"] == 100.0 and out["unseen_share"] == 0.0
    report = report_of(gold(), gold(), None, None, 0.5, seen_pairs(training()))
    assert report["recall_by_novelty"]["unseen"] == {"gold": 2, "found": 2, "recall": 100.0}
    text = format_report(report)
    assert ("recall on values seen / unseen in training (pair): seen 100.00 (3/3), unseen "
            "100.00 (2/2); unseen share 40.00% of 5 gold values") in text
    assert "recall_by_novelty" not in report_of(gold(), gold(), None, None, 0.5)


def test_training_values_say_why_they_are_missing(tmp_path):
    seen, why = training_values(RunConfig())
    assert seen is None and "names no training data" in why
    missing = RunConfig(data=DataConfig(train=str(tmp_path / "gone.jsonl")))
    seen, why = training_values(missing)
    assert seen is None and "gone.jsonl cannot be read" in why and "--train" in why


def test_novelty_summary_over_seeds():
    runs = [{"seen": {"gold": 3, "found": 2, "recall": 66.67},
             "unseen": {"gold": 2, "found": k, "recall": 50.0 * k}, "unseen_share": 40.0}
            for k in (1, 2)]
    out = novelty_summary(runs)
    assert out["unseen"]["recall"] == 75.0 and out["unseen"]["recall_per_run"] == [50.0, 100.0]
    assert out["seen"]["recall_std"] == 0.0 and out["unseen_share"] == 40.0
    none = [{**runs[0], "unseen": {"gold": 0, "found": 0, "recall": None}}]
    assert novelty_summary(none)["unseen"]["recall"] is None


# --------------------------------------------------------------------------------------------
# `mjave evaluate`: --train, the model's data.train, and neither


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from test_extractor import build_tiny_models
    return build_tiny_models(tmp_path_factory)


def valid_pairs(tiny_models) -> list[set[tuple[str, str]]]:
    from mjave.data.formats import read_records
    from mjave.evaluation import pair_set
    records, _ = read_records(tiny_models.data / "valid.jsonl")
    return [pair_set(r.spans) for r in records]


def test_cli_evaluate_with_train_flag(tiny_models, tmp_path, capsys):
    from mjave.cli import main
    # one training text: only "red" (in other case) and "slim fit" are seen
    train = tmp_path / "train.jsonl"
    text = "RED shirt, slim fit"
    train.write_text(json.dumps({"id": "t", "text": text, "spans": [
        {"attr": "Color", "begin": 0, "end": 3, "value": "RED"},
        {"attr": "Fit", "begin": 11, "end": 19, "value": "slim fit"}]}) + "\n", encoding="utf-8")
    out_json = tmp_path / "report.json"
    assert main(["evaluate", str(tiny_models.text_model), str(tiny_models.data / "valid.jsonl"),
                 "--train", str(train), "--json", str(out_json), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out_json.read_text(encoding="utf-8"))
    novelty = report["recall_by_novelty"]
    pairs = [p for text_pairs in valid_pairs(tiny_models) for p in text_pairs]
    unseen = [p for p in pairs if p not in {("Color", "red"), ("Fit", "slim fit")}]
    assert novelty["unseen"]["gold"] == len(unseen) > 0
    assert novelty["seen"]["gold"] == len(pairs) - len(unseen)
    assert novelty["seen"]["found"] + novelty["unseen"]["found"] == report["pair"]["tp"]
    assert novelty["slot"]["seen"]["found"] + novelty["slot"]["unseen"]["found"] == \
        report["slot"]["vc"]
    assert "recall on values seen / unseen in training (pair): seen" in printed


def test_cli_evaluate_without_readable_training_data(tiny_models, tmp_path, capsys):
    from mjave.cli import main
    model = tmp_path / "moved-model"
    shutil.copytree(tiny_models.text_model, model)
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    config["data"]["train"] = str(tmp_path / "elsewhere" / "train.jsonl")
    (model / "config.json").write_text(json.dumps(config), encoding="utf-8")
    out_json = tmp_path / "report.json"
    valid = str(tiny_models.data / "valid.jsonl")
    assert main(["evaluate", str(model), valid, "--json", str(out_json), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    lines = [s for s in captured.out.splitlines() if "unseen in training" in s]
    assert len(lines) == 1 and "omitted" in lines[0] and "elsewhere" in lines[0], lines
    report = json.loads(out_json.read_text(encoding="utf-8"))
    assert "recall_by_novelty" not in report and "--train" in report["recall_by_novelty_omitted"]
    # an explicit --train that is missing is the user's error: one line, exit 1
    assert main(["evaluate", str(model), valid, "--train", str(tmp_path / "nope.jsonl"),
                 "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
