"""The one config engine (mjave.config): sparse files, paths relative to the file, included
recipes, typed overrides, and a save that loads back to the same config wherever it is written."""

from __future__ import annotations

import os

import pytest
import yaml

from mjave.config import (ConfigError, DataConfig, RunConfig, TrainConfig, apply_overrides, load,
                          save, to_dict)


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_relative_data_paths_are_relative_to_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "conf" / "runs" / "r.yaml",
          {"data": {"train": "../../data/train.jsonl", "image_root": "imgs", "valid": "/abs/v.jsonl"},
           "output_dir": "runs/out"})
    cfg = load(RunConfig, "conf/runs/r.yaml")
    assert cfg.data.train == os.path.join("data", "train.jsonl")
    assert cfg.data.image_root == os.path.join("conf", "runs", "imgs")
    assert cfg.data.valid == "/abs/v.jsonl"          # absolute paths stay as written
    assert cfg.output_dir == "runs/out"               # outputs are relative to the working dir
    # --set values are relative to the working directory, as on any command line
    assert apply_overrides(cfg, ["data.train=mine.jsonl"]).data.train == "mine.jsonl"


def test_save_then_load_anywhere_gives_the_same_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = RunConfig(data=DataConfig(train="data/train.jsonl", image_root="data"),
                    train=TrainConfig(epochs=3))
    for where in ("a.yaml", "deep/er/b.yaml", "c.json"):
        (tmp_path / where).parent.mkdir(parents=True, exist_ok=True)
        save(cfg, where)
        assert load(RunConfig, where) == cfg, where
    written = yaml.safe_load((tmp_path / "deep/er/b.yaml").read_text())
    assert written["data"]["train"] == "../../data/train.jsonl"


def test_sparse_save_writes_only_what_differs(tmp_path):
    cfg = RunConfig(train=TrainConfig(epochs=3))
    save(cfg, tmp_path / "s.yaml", sparse=True)
    assert yaml.safe_load((tmp_path / "s.yaml").read_text()) == {"train": {"epochs": 3}}
    assert load(RunConfig, tmp_path / "s.yaml") == cfg
    save(RunConfig(), tmp_path / "empty.yaml", sparse=True)
    assert load(RunConfig, tmp_path / "empty.yaml") == RunConfig()


def test_a_config_field_may_name_a_file_of_that_config(tmp_path, monkeypatch):
    from mjave.experiments.table import TableConfig
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "configs" / "runs" / "r.yaml",
          {"data": {"train": "../../d/train.jsonl"}, "train": {"epochs": 7}})
    write(tmp_path / "configs" / "experiments" / "t.yaml",
          {"base": "../runs/r.yaml", "eval_data": "../../d/valid.jsonl"})
    cfg = load(TableConfig, "configs/experiments/t.yaml")
    assert cfg.base == load(RunConfig, "configs/runs/r.yaml")
    assert cfg.base.train.epochs == 7 and cfg.base.data.train == os.path.join("d", "train.jsonl")
    assert cfg.eval_data == os.path.join("d", "valid.jsonl")
    assert cfg.seed == 7 - 7  # left out: the base's train.seed


def test_an_included_file_that_includes_itself_is_refused(tmp_path):
    from mjave.experiments.table import TableConfig
    write(tmp_path / "loop.yaml", {"base": "loop.yaml"})
    with pytest.raises(ConfigError):
        load(TableConfig, tmp_path / "loop.yaml")


def test_a_file_may_start_from_another_and_override_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "lib" / "recipe.yaml",
          {"encoder": {"fine_tune": True, "max_length": 64}, "train": {"epochs": 10, "lr": 0.001},
           "data": {"valid": "valid.jsonl"}})
    write(tmp_path / "configs" / "run.yaml",
          {"include": "../lib/recipe.yaml", "data": {"train": "../d/train.jsonl"},
           "train": {"epochs": 3}})
    cfg = load(RunConfig, "configs/run.yaml")
    assert cfg.encoder.fine_tune is True and cfg.encoder.max_length == 64   # from the include
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.001                  # merged key by key
    assert cfg.data.train == os.path.join("d", "train.jsonl")               # relative to its file
    assert cfg.data.valid == os.path.join("lib", "valid.jsonl")             # relative to its file
    write(tmp_path / "bad.yaml", {"include": 5})
    with pytest.raises(ConfigError, match="include"):
        load(RunConfig, "bad.yaml")
    write(tmp_path / "self.yaml", {"include": "self.yaml"})
    with pytest.raises(ConfigError, match="includes itself"):
        load(RunConfig, "self.yaml")


def test_experiment_seed_and_base_seed_must_agree(tmp_path):
    from mjave.experiments.table import TableConfig
    write(tmp_path / "r.yaml", {"train": {"seed": 3}})
    write(tmp_path / "t.yaml", {"base": "r.yaml"})
    assert load(TableConfig, tmp_path / "t.yaml").seed == 3
    write(tmp_path / "u.yaml", {"base": "r.yaml", "seed": 5})
    with pytest.raises(ConfigError, match="disagree"):
        load(TableConfig, tmp_path / "u.yaml")


def test_overrides_are_typed_and_name_the_key():
    cfg = apply_overrides(RunConfig(), ["train.epochs=5", "train.lr=1", "model.use_image=false",
                                        "output_dir=123"])
    assert cfg.train.epochs == 5 and cfg.train.lr == 1.0 and cfg.model.use_image is False
    assert cfg.output_dir == "123"
    with pytest.raises(ConfigError, match="train.epochs"):
        apply_overrides(RunConfig(), ["train.epochs=many"])
    with pytest.raises(ConfigError, match="unknown key model.colour"):
        apply_overrides(RunConfig(), ["model.colour=1"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(RunConfig(), ["train.epochs"])
    assert to_dict(cfg)["train"]["epochs"] == 5


@pytest.mark.parametrize("override, key", [
    ("train.batch_size=0", "train.batch_size"), ("train.epochs=0", "train.epochs"),
    ("train.epochs=-5", "train.epochs"), ("train.lr=0", "train.lr"),
    ("train.warmup_ratio=1", "train.warmup_ratio"), ("train.threshold=1.5", "train.threshold"),
    ("train.eval_batch_size=0", "train.eval_batch_size"), ("model.dropout=1", "model.dropout"),
    ("model.min_span_score=-1", "model.min_span_score"), ("model.kl_lambda=-1", "model.kl_lambda"),
    ("encoder.max_length=2", "encoder.max_length")])
def test_a_config_that_cannot_run_is_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        apply_overrides(RunConfig(), [override])


def test_a_file_with_a_value_out_of_range_names_the_file_and_key(tmp_path):
    write(tmp_path / "r.yaml", {"train": {"batch_size": 0}})
    with pytest.raises(ConfigError, match=r"r\.yaml.*train\.batch_size"):
        load(RunConfig, tmp_path / "r.yaml")


def test_exponent_notation_is_a_number_in_files_and_overrides(tmp_path):
    """`5e-5` is a string to PyYAML (YAML 1.1 wants `5.0e-5`); float fields take it anyway."""
    write(tmp_path / "r.yaml", {"train": {"encoder_lr": "5e-5", "lr": "1E-3"}})
    cfg = load(RunConfig, tmp_path / "r.yaml")
    assert cfg.train.encoder_lr == 5e-5 and cfg.train.lr == 1e-3
    assert apply_overrides(RunConfig(), ["train.encoder_lr=2e-5"]).train.encoder_lr == 2e-5
    with pytest.raises(ConfigError, match="train.lr: expected a number"):
        apply_overrides(RunConfig(), ["train.lr=fast"])


def test_complete_config_round_trips_and_takes_typed_overrides(tmp_path, monkeypatch):
    """`mjave complete`'s settings are a config like the others: saved and loaded back, `--set`
    typed and range-checked naming the key, relative input paths relative to the file."""
    from mjave.config import CompleteConfig
    monkeypatch.chdir(tmp_path)
    cfg = CompleteConfig(min_precision=0.9, cv_folds=10, image_root="images", device="cpu")
    (tmp_path / "sub").mkdir()
    save(cfg, tmp_path / "sub" / "complete.yaml")
    assert load(CompleteConfig, tmp_path / "sub" / "complete.yaml") == cfg
    assert yaml.safe_load((tmp_path / "sub" / "complete.yaml").read_text())["image_root"] \
        == "../images"
    cfg = apply_overrides(cfg, ["confidence=0.5", "force=true", "batch_size=8",
                                "conflicts=c.csv"])
    assert (cfg.confidence, cfg.force, cfg.batch_size, cfg.conflicts) == (0.5, True, 8, "c.csv")
    for override, key in [("batch_size=0", "complete.batch_size"),
                          ("confidence=1", "complete.confidence"),
                          ("min_precision=1.5", "complete.min_precision"),
                          ("cv_folds=many", "cv_folds")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            apply_overrides(cfg, [override])
    with pytest.raises(ConfigError, match="not both"):
        apply_overrides(cfg, ["threshold=0.5"])


def test_complete_flags_override_its_config_file(tmp_path):
    from mjave.cli.complete import complete_config
    from mjave.cli.entry import build_parser
    write(tmp_path / "c.yaml", {"threshold": 0.4, "batch_size": 16, "cv_folds": 3})
    base = ["complete", "M", "P", "--catalog", "T", "-o", "o.csv", "--config",
            str(tmp_path / "c.yaml")]
    cfg = complete_config(build_parser().parse_args([*base, "--set", "device=cpu"]))
    assert (cfg.threshold, cfg.batch_size, cfg.cv_folds, cfg.device) == (0.4, 16, 3, "cpu")
    # a flag wins over the file, and picking the threshold by precision clears the fixed one
    cfg = complete_config(build_parser().parse_args([*base, "--min-precision", "0.8",
                                                     "--batch-size", "4", "--format", "jsonl"]))
    assert (cfg.min_precision, cfg.threshold, cfg.batch_size) == (0.8, None, 4)
    assert cfg.input_format == "jsonl" and cfg.cv_folds == 3
