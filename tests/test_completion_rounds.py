"""Simulated review rounds in `mjave experiment completion` (issue #33): per queue order, a
reviewer who knows the answer key decides `review_per_round` suggestions a round in a review
database (`ReviewDB`, loaded and claimed as `mjave review` does), the accepted values join the
table, the model is retrained (warm start) and the catalog completed again. A stub model makes
every decision checkable by hand; one tiny real model runs the loop end to end."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from mjave.completion.kinds import FILLS_KNOWN_GAP, NEW_ATTRIBUTE
from mjave.completion.simulate import Reviewed, catalog_counts
from mjave.review.db import ReviewDB

from test_completion import StubExtractor, _write_jsonl  # one stub model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Scores: Color right at 0.9, Material right at 0.8, Size (no product has one) wrong at 0.55:
# the most certain first (score) reviews Color, the least certain first (uncertainty) Size.
RULES = [("Color", "red", 0.9), ("Color", "blue", 0.9), ("Material", "cotton", 0.8),
         ("Material", "wool", 0.8), ("Size", "shirt", 0.55), ("Size", "hat", 0.55)]


def _catalog(tmp_path: Path) -> Path:
    """10 shirts (red, cotton) and 10 hats (blue, wool); every product's Color and Material
    is gold, no product has a Size."""
    def row(pid, category, colour, material):
        text = f"a {colour} {material} {category} {pid}"
        at = text.index(material)
        return {"id": pid, "category": category, "text": text, "spans": [
            {"begin": 2, "end": 2 + len(colour), "attr": "Color", "value": colour},
            {"begin": at, "end": at + len(material), "attr": "Material", "value": material}]}
    return _write_jsonl(tmp_path / "gold.jsonl",
                        [row(f"shirt{i}", "shirt", "red", "cotton") for i in range(10)] +
                        [row(f"hat{i}", "hat", "blue", "wool") for i in range(10)])


@pytest.fixture
def stubbed(tmp_path, monkeypatch):
    """The experiment with the stub model and a recorded `train_variant` (no training): the
    list of (variant name, overrides, training file) of every call."""
    import mjave.experiments.completion as experiment
    from mjave.inference.extractor import Extractor
    stub = StubExtractor(RULES)
    monkeypatch.setattr(Extractor, "load", classmethod(lambda cls, *a, **k: stub))
    calls = []

    def train(base, variant, out, seed, progress=None, tag=""):
        calls.append((variant.name, dict(variant.overrides), base.data.train))
        return SimpleNamespace(folder=Path(out) / "models" / variant.name / tag)
    monkeypatch.setattr(experiment, "train_variant", train)
    return experiment, _catalog(tmp_path), calls


def _config(experiment, gold, out, **fields):
    return experiment.CompletionConfig(
        data=str(gold), seeds=1, runs=["partial"], hide=0.5, hide_whole_attributes=1,
        calibration_fraction=0.3, output_dir=str(out), **fields)


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())["results"]


def _decisions(db_path: Path) -> list[dict]:
    return ReviewDB(db_path).history()


def test_each_round_decides_n_new_items_against_the_answer_key(tmp_path, stubbed):
    experiment, gold, calls = stubbed
    out = tmp_path / "exp"
    experiment.run(_config(experiment, gold, out, review_rounds=2, review_per_round=3,
                           review_orders=["score", "uncertainty"], review_epochs=4))
    for order in ("score", "uncertainty"):
        history = _decisions(out / "rounds" / order / "seed-0" / "review.sqlite")
        # 3 a round, 2 rounds, never an item twice: round 2 claims nothing round 1 decided
        assert len(history) == 6 and len({d["item_id"] for d in history}) == 6
        for d in history:   # by hand: Color and Material values are hidden pairs, Size is not
            assert d["action"] == ("reject" if d["attribute"] == "Size" else "accept")
    score = _decisions(out / "rounds" / "score" / "seed-0" / "review.sqlite")
    unsure = _decisions(out / "rounds" / "uncertainty" / "seed-0" / "review.sqlite")
    # the orders choose differently: best score (Color, 0.9) against nearest 0.5 (Size, 0.55)
    assert {d["attribute"] for d in score} == {"Color"}
    assert {d["attribute"] for d in unsure} == {"Size"}

    # every round retrains: the partial settings, review_epochs, from the previous model
    rounds = [c for c in calls if c[0] != "partial"]
    assert [c[0] for c in rounds] == ["partial-score-round-1", "partial-score-round-2",
                                      "partial-uncertainty-round-1",
                                      "partial-uncertainty-round-2"]
    partial_model = (out / "models" / "partial" / "seed-0").resolve()
    assert rounds[0][1] == {"train.partial_labels": True, "train.init_from": str(partial_model),
                            "train.epochs": 4}
    assert rounds[1][1]["train.init_from"] == str(
        (out / "models" / "partial-score-round-1" / "seed-0").resolve())
    # the accepted values became labels (a span, or a held-out calibration value)
    labelled = [json.loads(line) for line in
                Path(rounds[0][2]).read_text().splitlines()]
    for d in score[:3]:
        rec = next(r for r in labelled if r["id"] == d["product_id"])
        spans = {(s["attr"], s["value"]) for s in rec.get("spans", [])} | {
            (c["attribute"], c["value"]) for c in rec.get("calibration", [])}
        assert (d["attribute"], d["value"]) in spans


def test_a_fair_share_of_each_round_is_drawn_at_random_first(tmp_path, stubbed):
    experiment, gold, _ = stubbed
    out = tmp_path / "exp"
    experiment.run(_config(experiment, gold, out, review_rounds=2, review_per_round=3,
                           review_fair_share=1 / 3, review_orders=["score"], review_epochs=4))
    history = _decisions(out / "rounds" / "score" / "seed-0" / "review.sqlite")
    # round k: 1 drawn at random (fair), then 2 in score order; never an item twice
    assert [(d["queue"], d["fair"]) for d in history] == [("random", 1), ("score", 0),
                                                           ("score", 0)] * 2
    assert len({d["item_id"] for d in history}) == 6
    # a rerun draws the same sample (the database's random order is seeded by the seed's tag)
    again = tmp_path / "again"
    experiment.run(_config(experiment, gold, again, review_rounds=2, review_per_round=3,
                           review_fair_share=1 / 3, review_orders=["score"], review_epochs=4))
    assert [d["item_id"] for d in history] == [
        d["item_id"] for d in _decisions(again / "rounds" / "score" / "seed-0" / "review.sqlite")]
    assert "(1 of them drawn at random first)" in (out / "results.md").read_text()


def test_results_hold_the_per_round_table(tmp_path, stubbed):
    experiment, gold, _ = stubbed
    out = tmp_path / "exp"
    experiment.run(_config(experiment, gold, out, review_rounds=2, review_per_round=3,
                           review_orders=["score", "uncertainty", "gain"]))
    data = _results(out)
    rounds = data["review_rounds"]
    assert rounds["rounds"] == 2 and rounds["per_round"] == 3 and rounds["reference"] == "score"
    assert set(rounds["orders"]) == {"score", "uncertainty", "gain"}
    for order, entries in rounds["orders"].items():
        assert [e["round"] for e in entries] == [0, 1, 2]
        assert [e["reviews"] for e in entries] == [0, 3, 6]
        # round 0 is the partial run itself
        assert entries[0]["f1"] == data["partial"]["f1"]
        for e in entries:
            assert set(e["kinds"]) == {FILLS_KNOWN_GAP, NEW_ATTRIBUTE}
            for k in e["kinds"].values():
                assert {"backed", "backed_precision", "delivered", "written"} <= set(k)
    # score ordering accepts 3 right values a round: they stay found, so F1 cannot fall with a
    # stub that predicts the same; uncertainty rejects 3 wrong Sizes a round: fewer false
    # positives, so F1 rises over no review
    score, unsure = rounds["orders"]["score"], rounds["orders"]["uncertainty"]
    assert [e["accepted"] for e in score] == [0, 3, 6]
    assert [e["accepted"] for e in unsure] == [0, 0, 0]
    assert unsure[2]["f1"] > unsure[0]["f1"]
    assert rounds["f1_gain"]["uncertainty"]["f1_gain"] == pytest.approx(
        unsure[2]["f1"] - unsure[0]["f1"])
    assert rounds["f1_minus_score"]["uncertainty"]["f1_minus_score"] == pytest.approx(
        unsure[2]["f1"] - score[2]["f1"])
    assert "score" not in rounds["f1_minus_score"]
    md = (out / "results.md").read_text()
    assert "Review rounds:" in md and "| uncertainty | 2 |" in md and "round F1" in md


def test_review_rounds_off_leave_the_results_as_they_were(tmp_path, stubbed):
    experiment, gold, calls = stubbed
    experiment.run(_config(experiment, gold, tmp_path / "off"))
    experiment.run(_config(experiment, gold, tmp_path / "on", review_rounds=1,
                           review_per_round=2))
    off, on = _results(tmp_path / "off"), _results(tmp_path / "on")
    assert "review_rounds" not in off and "review_rounds" in on
    on.pop("review_rounds")
    for catalog in on["settings"].values():   # each catalog's own results
        catalog.pop("review_rounds")
    assert on == off
    assert "Review rounds" not in (tmp_path / "off" / "results.md").read_text()
    assert not (tmp_path / "off" / "rounds").exists()


def test_catalog_counts_by_hand():
    key = {("p", "Color", "red"), ("p", "Fit", "slim"), ("q", "Color", "blue")}
    done = Reviewed(accepted={("p", "Color", "red"): "Red"}, rejected={("q", "Size", "s")})
    suggested = [(("p", "Fit", "slim"), 0.9), (("q", "Size", "s"), 0.8),
                 (("q", "Color", "green"), 0.4)]
    # found: the accepted Color and the suggested Fit; wrong: green (the rejected Size is gone)
    assert catalog_counts(suggested, key, done) == (2, 1, 1)
    assert catalog_counts(suggested, key, Reviewed()) == (1, 2, 2)   # no review
    assert done.table_rows(10)[0].value == "Red" and done.table_rows(10)[0].line == 10


@pytest.mark.parametrize("fields, message", [
    ({"review_orders": ["score", "newest"]}, "review_orders"),
    ({"review_orders": ["score", "score"]}, "review_orders"),
    ({"review_rounds": -1}, "review_rounds"),
    ({"review_per_round": 0}, "review_per_round"),
    ({"review_epochs": 0}, "review_epochs"),
    ({"review_fair_share": 1.5}, "review_fair_share"),
    ({"review_rounds": 1, "runs": ["naive"]}, "partial"),
])
def test_bad_round_settings_are_refused(tmp_path, fields, message):
    from mjave.experiments.common import ExperimentError
    from mjave.experiments.completion import CompletionConfig, run
    cfg = CompletionConfig(data=str(tmp_path / "none.jsonl"), output_dir=str(tmp_path / "x"),
                           **fields)
    with pytest.raises(ExperimentError, match=message):
        run(cfg)


def test_round_fields_round_trip_and_set(tmp_path):
    from mjave.config import apply_overrides, load, save
    from mjave.experiments.completion import CompletionConfig
    cfg = CompletionConfig(review_rounds=2, review_orders=["gain"], review_epochs=10)
    save(cfg, tmp_path / "c.yaml")
    back = load(CompletionConfig, tmp_path / "c.yaml")
    assert back.review_rounds == 2 and back.review_orders == ["gain"]
    assert back.review_epochs == 10 and back.review_warm_start is True
    changed = apply_overrides(back, ["review_per_round=50", "review_warm_start=false",
                                     "review_epochs=null"])
    assert changed.review_per_round == 50 and changed.review_warm_start is False
    assert changed.review_epochs is None


def test_shipped_config_loads():
    from mjave.config import load
    from mjave.experiments.completion import CompletionConfig
    path = Path(__file__).resolve().parents[1] / "configs/experiments/completion-review-rounds.yaml"
    cfg = load(CompletionConfig, path)
    assert cfg.review_rounds == 2 and cfg.review_per_round == 200 and cfg.review_epochs == 10
    assert cfg.review_fair_share == 0.5
    assert cfg.review_orders == ["score", "uncertainty", "gain"] and cfg.runs == ["partial"]
    assert cfg.base.encoder.text_encoder == "minilm" and cfg.base.train.epochs == 30
    assert Path(cfg.data).is_file()


def test_a_tiny_model_goes_through_a_round(tmp_path, tiny_bert):
    """The real loop: train, review in the database, warm-start, complete with the reviews."""
    from mjave.completion.scoring import read_suggestions
    from mjave.experiments.completion import CompletionConfig, run
    from mjave.testing import tiny_text_run_config
    gold = _catalog(tmp_path)
    out = tmp_path / "exp"
    cfg = CompletionConfig(data=str(gold), seeds=1, runs=["partial"], hide=0.5,
                           calibration_fraction=0.3, output_dir=str(out),
                           base=tiny_text_run_config(tiny_bert, tmp_path / "features", 2),
                           review_rounds=1, review_per_round=4, review_orders=["uncertainty"],
                           review_epochs=1)
    run(cfg)
    model = out / "models" / "partial-uncertainty-round-1" / "seed-0"
    config = json.loads((model / "config.json").read_text())
    assert config["train"]["epochs"] == 1
    assert Path(config["train"]["init_from"]) == (out / "models" / "partial" / "seed-0").resolve()
    history = _decisions(out / "rounds" / "uncertainty" / "seed-0" / "review.sqlite")
    offered = {p for p, _ in read_suggestions(out / "runs" / "partial" / "seed-0" /
                                              "suggestions.csv")}
    assert len(history) == min(4, len(offered))
    entry = _results(out)["review_rounds"]["orders"]["uncertainty"]
    assert [e["reviews"] for e in entry] == [0, len(history)]
    assert (out / "rounds" / "uncertainty" / "seed-0" / "round-1" / "promise" /
            "suggestions.csv").is_file()
