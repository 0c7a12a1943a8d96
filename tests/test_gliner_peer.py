"""The GLiNER peer's mjave side (benchmarks/gliner_peer.py) without GLiNER: records become GLiNER
word rows with their offsets intact, each text is asked its category's attributes, one value per
attribute is kept, and a prediction file is scored by the same functions as mjave's models."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from mjave.data.records import Record, Span
from mjave.data.schema import AttributeSchema
from mjave.evaluation import seen_pairs
from mjave.training.evaluate import report_of

PEER = Path(__file__).resolve().parents[1] / "benchmarks" / "gliner_peer.py"


@pytest.fixture(scope="module")
def peer():
    """benchmarks/gliner_peer.py as a module (benchmarks is not a package)."""
    spec = importlib.util.spec_from_file_location("gliner_peer", PEER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def span(text: str, value: str, attr: str, start: int = 0) -> Span:
    begin = text.index(value, start)
    return Span(begin, begin + len(value), attr, value)


TITLE = "Acme Super-Crunch Granola, 11oz (Pack of 6) - Honey"
ALIGNED = [span(TITLE, "Acme", "Brand"), span(TITLE, "Super-Crunch Granola", "Sub_brand"),
           span(TITLE, "11oz", "Net_content"), span(TITLE, "Pack of 6", "Pack_size"),
           span(TITLE, "Honey", "Flavor")]
MISALIGNED = [span(TITLE, "Crunch", "Flavor"), span(TITLE, "11", "Net_content")]


def test_word_rows_keep_character_offsets(peer) -> None:
    record = Record("t1", TITLE, [*ALIGNED, *MISALIGNED], category="Cereal")
    converted = peer.to_gliner([record], max_width=12)
    (row,) = converted.rows
    words = peer.words_of(TITLE)
    assert row["tokenized_text"] == [TITLE[b:e] for b, e in words]
    assert "Super-Crunch" in row["tokenized_text"]          # GLiNER keeps hyphenated words whole
    back = [Span(*peer.word_span_to_chars(words, first, last), attr,
                 TITLE[slice(*peer.word_span_to_chars(words, first, last))])
            for first, last, attr in row["ner"]]
    assert back == ALIGNED
    assert converted.spans == 7
    assert [(rid, attr) for rid, attr, _ in converted.misaligned] == [("t1", "Flavor"),
                                                                      ("t1", "Net_content")]
    assert "2 not on word boundaries" in converted.summary("train")


def test_spans_wider_than_max_width_are_counted(peer) -> None:
    record = Record("t2", TITLE, ALIGNED)
    converted = peer.to_gliner([record], max_width=2)
    assert [attr for _, attr, _ in converted.too_wide] == ["Pack_size"]   # "Pack of 6": 3 words
    assert len(converted.rows[0]["ner"]) == 4


def test_label_lists_follow_the_category(peer) -> None:
    train = [Record("a", "x y", [Span(0, 1, "Brand", "x")], category="Cereal"),
             Record("b", "x y", [Span(2, 3, "Flavor", "y")], category="Cereal"),
             Record("c", "x y", [Span(0, 1, "Color", "x")], category="Shirt")]
    schema = AttributeSchema.from_records(train)
    asked = [Record("v1", "z", category="Cereal"), Record("v2", "z", category="Shirt"),
             Record("v3", "z", category="Unseen"), Record("v4", "z")]
    assert peer.text_labels(schema, asked) == {
        "v1": ["Brand", "Flavor"], "v2": ["Color"],
        "v3": ["Brand", "Color", "Flavor"], "v4": ["Brand", "Color", "Flavor"]}
    rows = peer.to_gliner(train, 12, peer.text_labels(schema, train)).rows
    assert [r["ner_labels"] for r in rows] == [["Brand", "Flavor"], ["Brand", "Flavor"], ["Color"]]


def entity(text: str, value: str, label: str, score: float) -> dict:
    begin = text.index(value)
    return {"start": begin, "end": begin + len(value), "label": label, "score": score}


def test_one_value_per_attribute_the_best_scoring(peer) -> None:
    gold = [Record("t1", TITLE, ALIGNED, category="Cereal")]
    found = {"t1": [entity(TITLE, "Acme", "Brand", 0.6), entity(TITLE, "Honey", "Brand", 0.9),
                    entity(TITLE, "11oz", "Net_content", 0.7)]}
    (kept,) = peer.predicted_records(gold, found)
    assert [(s.attr, s.value, s.score) for s in kept.spans] == [("Net_content", "11oz", 0.7),
                                                                ("Brand", "Honey", 0.9)]
    (every,) = peer.predicted_records(gold, found, max_values_per_attribute=0)
    assert len(every.spans) == 3
    with pytest.raises(ValueError, match="no prediction"):
        peer.predicted_records([*gold, Record("t9", "x")], found)


def test_prediction_file_is_scored_as_mjave_models_are(peer, tmp_path) -> None:
    other = "Blue Shirt, cotton"
    gold = [Record("t1", TITLE, ALIGNED, category="Cereal"),
            Record("t2", other, [span(other, "Blue", "Color"), span(other, "cotton", "Material")],
                   category="Shirt")]
    train = [Record("s1", "Acme Oats", [Span(0, 4, "Brand", "Acme")], category="Cereal")]
    lines = [{"id": "t1", "entities": [entity(TITLE, "Acme", "Brand", 0.9),
                                       entity(TITLE, "Granola", "Sub_brand", 0.8),
                                       entity(TITLE, "Honey", "Flavor", 0.7)]},
             {"id": "t2", "entities": [entity(other, "Blue", "Color", 0.95)]}]
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")

    pred = peer.predicted_records(gold, peer.read_predictions(path))
    report = peer.score(gold, pred, train)
    assert report == report_of(gold, pred, None, None, 0.5, seen_pairs(train))
    assert (report["value"]["tp"], report["value"]["fp"], report["value"]["fn"]) == (3, 1, 4)
    assert report["slot"]["vc"] == 3 and report["slot"]["vw"] == 1
    novelty = report["recall_by_novelty"]
    assert novelty["seen"] == {"gold": 1, "found": 1, "recall": 100.0}       # Brand=acme
    assert novelty["unseen"]["gold"] == 6 and novelty["unseen"]["found"] == 2
    assert "GLiNER 0.2.29" in peer.table({peer.MODEL_NAME: report})


def test_realdata_puts_the_peer_row_in_its_table(peer, tmp_path, monkeypatch) -> None:
    """`benchmarks/realdata.py --peer gliner` runs gliner_peer.main on the same dataset and
    reads its report as a table row; a failed peer run is a row marked unavailable."""
    spec = importlib.util.spec_from_file_location("realdata", PEER.parent / "realdata.py")
    realdata = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(realdata)
    calls = []

    def fake_main(argv):
        calls.append(argv)
        out = Path(argv[argv.index("--output") + 1])
        if "mpnet" in argv:
            return 3
        out.mkdir(parents=True)
        report = {t: {"p": 1.0, "r": 1.0, "f1": f} for t, f in
                  (("attribute", 80.0), ("value", 69.25), ("pair", 69.87), ("slot", 71.05))}
        report["recall_by_novelty"] = {"unseen": {"recall": 39.34, "gold": 427}}
        (out / "results.json").write_text(json.dumps({"model": "GLiNER 0.2.29",
                                                      "report": report}))
        return 0

    monkeypatch.setattr(peer, "main", fake_main)
    a = realdata.parse_args(["--dataset", "oamine", "--peer", "gliner"])
    rows = realdata.peer_rows(a, tmp_path)
    assert calls[0][:4] == ["--dataset", "oamine", "--encoder", "minilm"]
    row = rows["GLiNER 0.2.29 (minilm, 1 seed)"]
    assert row["value"] == {"f1": 69.25, "f1_std": 0.0} and row["slot"]["f1"] == 71.05
    assert realdata.unseen_cell(row).startswith("39.34 ± 0.00")
    a = realdata.parse_args(["--dataset", "oamine", "--peer", "gliner", "--peer-encoder", "mpnet"])
    assert realdata.peer_rows(a, tmp_path) == {
        "gliner": {"available": False, "reason": f"the peer run failed, see "
                                                 f"{tmp_path / 'peers' / 'gliner-mpnet'}"}}
