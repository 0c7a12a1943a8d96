"""Issue #19's transfer protocol in `mjave experiment completion`: several catalogs in one table,
a category left out of every training and completed alone, false positives split by kind, and
the targets checked per catalog."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from mjave.experiments.common import ExperimentError


def test_false_positives_split_into_absent_attributes_and_wrong_values():
    from mjave.completion.scoring import false_positive_kinds
    key = {("p1", "Color", "red")}
    gold_attrs = {"p1": {"Color", "Size"}, "p2": {"Size"}}
    suggested = [(("p1", "Color", "red"), 0.9),      # a hidden pair: not a false positive
                 (("p1", "Color", "blue"), 0.8),     # wrong value of a gold attribute
                 (("p1", "Brand", "acme"), 0.7),     # p1 has no Brand at all
                 (("p2", "Color", "red"), 0.6),      # p2 has no Color
                 (("p2", "Color", "red"), 0.5)]      # the same pair again counts once
    assert false_positive_kinds(suggested, key, gold_attrs) == (2, 1)
    assert false_positive_kinds(suggested, key, gold_attrs, threshold=0.75) == (0, 1)


def test_hidden_values_seen_in_training_by_hand():
    from mjave.data.records import Record, Span
    from mjave.completion.scoring import seen_in_training
    train = [Record(id="a", text="Red shirt", spans=[Span(begin=0, end=3, attr="Color", value="Red")])]
    key = {("p9", "Color", "red"), ("p9", "Size", "red"), ("p8", "Color", "blue")}
    assert seen_in_training(train, key) == 1     # attribute and normalised value both count


def test_targets_by_hand():
    from mjave.experiments.completion import _targets
    cal = {"partial": {"refused_per_seed": [False, True, False],
                       "delivered_per_seed": [0.88, None, 0.95]}}
    got = _targets({"margin_f1": 0.12, "gap_f1": 0.06}, cal, 0.9)
    assert got == {"margin": True, "gap": False, "precision": True}
    cal["partial"]["delivered_per_seed"][0] = 0.86          # 0.04 under the promise
    got = _targets({"margin_f1": 0.05, "gap_f1": -0.2}, cal, 0.9)
    assert got == {"margin": False, "gap": True, "precision": False}


@pytest.fixture(scope="module")
def two_category_gold(tmp_path_factory):
    """A 30-product slice of the synthetic catalog whose products fall into two categories."""
    from mjave.data.formats import write_records
    from mjave.data.synthetic import generate_records
    records = [r for split in generate_records(n_products=30, seed=3).values() for r in split]
    products = sorted({r.product_id for r in records})
    shoes = set(products[::3])
    records = [replace(r, category="shoes" if r.product_id in shoes else "apparel")
               for r in records]
    path = tmp_path_factory.mktemp("gold") / "gold.jsonl"
    write_records(records, path)
    return path, shoes


def _tiny_base(tiny_bert, features, epochs=2):
    from mjave.testing import tiny_text_run_config
    return tiny_text_run_config(tiny_bert, features, epochs)


def test_whole_catalog_and_left_out_category_in_one_table(tmp_path, tiny_bert,
                                                           two_category_gold, capsys):
    from mjave.config import save
    from mjave.data.formats import read_records
    from mjave.experiments.completion import CompletionConfig, CompletionSetting
    gold, shoes = two_category_gold
    cfg = CompletionConfig(base=_tiny_base(tiny_bert, tmp_path / "features"), seeds=1,
                           calibration_fraction=0.3, settings=[
                               CompletionSetting(name="whole", data=str(gold)),
                               CompletionSetting(data=str(gold), leave_out_category="shoes")])
    config = tmp_path / "transfer.yaml"
    save(cfg, config)
    from mjave.cli import main
    code = main(["experiment", "completion", "--config", str(config), "--json",
                 str(tmp_path / "OUT.json"), "--output", str(tmp_path / "exp")])
    printed = capsys.readouterr().out
    assert code == 0
    loco = CompletionSetting(data=str(gold), leave_out_category="shoes").label()
    assert loco.endswith(" / shoes left out")    # named after the data's folder
    for catalog in ("whole", loco):
        for run in ("partial", "naive", "full_labels"):
            assert f"| {catalog} | {run} |" in printed
    data = json.loads((tmp_path / "OUT.json").read_text())
    assert set(data["settings"]) == {"whole", loco}
    whole, left = data["settings"]["whole"], data["settings"][loco]
    assert left["setup"]["completed_products"] == len(shoes)
    assert whole["setup"]["completed_products"] == 30
    for entry in (whole, left):
        hidden = [s["hidden_pairs"] for s in entry["setup"]["per_seed"]]
        assert set(entry["targets"]) == {"margin", "gap", "precision"}
        for run in ("partial", "naive", "full_labels"):
            seed_run = entry[run]["per_seed"][0]
            assert [seed_run["tp"] + seed_run["fn"]] == hidden
            assert seed_run["fp_absent_attribute"] + seed_run["fp_wrong_value"] == seed_run["fp"]
            assert 0.0 <= seed_run["hidden_values_seen"] <= 1.0
    # no model of the left-out setting ever saw a text of the category it completes
    from mjave.experiments.common import slug
    folder = tmp_path / "exp" / slug(loco)
    for name in ("partial", "naive", "full_labels"):
        trained = sorted(p for p in (folder / "models" / name).rglob("config.json")
                         if p.parent.name != "tokenizer")   # the model's, not its tokenizer's
        assert trained
        for cfg_file in trained:
            train_file = json.loads(cfg_file.read_text())["data"]["train"]
            records, _ = read_records(train_file)
            assert records and not {r.product_id for r in records} & shoes
    # each catalog's results are written as soon as it is done
    own = json.loads((folder / "results.json").read_text())
    assert own["results"]["partial"]["f1"] == left["partial"]["f1"]
    # the whole-catalog partial model trained on every product (a team fills its own catalog)
    records, _ = read_records(tmp_path / "exp" / "whole" / "data" / "seed-0" / "labelled.jsonl")
    assert {r.product_id for r in records} >= shoes


def test_leave_out_from_the_command_line(tmp_path, tiny_bert, two_category_gold, capsys):
    from mjave.config import save
    from mjave.experiments.completion import CompletionConfig
    gold, shoes = two_category_gold
    cfg = CompletionConfig(base=_tiny_base(tiny_bert, tmp_path / "features"), seeds=1,
                           runs=["partial"], calibration_fraction=0.3)
    save(cfg, tmp_path / "c.yaml")
    from mjave.cli import main
    code = main(["experiment", "completion", "--config", str(tmp_path / "c.yaml"), "--data",
                 str(gold), "--leave-out-category", "shoes", "--json", str(tmp_path / "o.json"),
                 "--output", str(tmp_path / "exp")])
    assert code == 0
    data = json.loads((tmp_path / "o.json").read_text())
    assert data["setup"]["leave_out_category"] == "shoes"       # one catalog: flat results too
    assert data["setup"]["completed_products"] == len(shoes)
    assert "partial" in data and "naive" not in data


def test_bad_protocols_are_refused_naming_the_problem(tmp_path, two_category_gold):
    from mjave.experiments.completion import CompletionConfig, CompletionSetting, run
    gold, _ = two_category_gold
    with pytest.raises(ExperimentError, match="categories: apparel, shoes"):
        run(CompletionConfig(data=str(gold), leave_out_category="hats",
                             output_dir=str(tmp_path / "a")))
    with pytest.raises(ExperimentError, match="not both"):
        run(CompletionConfig(data=str(gold), settings=[CompletionSetting(data=str(gold))],
                             output_dir=str(tmp_path / "b")))
    with pytest.raises(ExperimentError, match="distinct names"):
        run(CompletionConfig(settings=[CompletionSetting(data=str(gold)),
                                       CompletionSetting(data=str(gold))],
                             output_dir=str(tmp_path / "c")))
    with pytest.raises(ExperimentError, match="no data"):
        run(CompletionConfig(output_dir=str(tmp_path / "d")))


def test_the_experiment_judges_thresholds_as_the_command_does():
    """`mjave experiment completion` measures what `mjave complete` does by default: the same
    lower bound confidence and the same cross-validation over products."""
    from mjave.completion.calibrate import DEFAULT_FOLDS
    from mjave.completion.suggest import DEFAULT_CONFIDENCE
    from mjave.experiments.completion import CompletionConfig
    cfg = CompletionConfig()
    assert cfg.calibration_confidence == DEFAULT_CONFIDENCE
    assert cfg.calibration_folds == DEFAULT_FOLDS
