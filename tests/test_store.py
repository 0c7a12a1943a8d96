"""Feature store and incremental extraction: round trips, crash safety, resume, settings checks."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mjave.data.errors import DataError
from mjave.data.records import Record
from mjave.data.tagging import TextAligner
from mjave.config import EncoderConfig
from mjave.encoders.features import extract_features
from mjave.encoders.image import ImageEncoder
from mjave.encoders.store import FeatureStore, StoreMismatchError, tensor_name
from mjave.encoders.text import HFTextEncoder, default_english_encoder_path, load_tokenizer


# --------------------------------------------------------------------------------------------
# FeatureStore alone
# --------------------------------------------------------------------------------------------


def _rand(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.normal(size=shape).astype(np.float32)


def test_put_get_round_trip_float16(tmp_path):
    rng = np.random.default_rng(0)
    values = {f"s{i}": _rand(rng, 3 + i, 8) for i in range(5)}  # variable T_i
    images = {"p1": _rand(rng, 50, 4), "p2": _rand(rng, 50, 4)}
    with FeatureStore(tmp_path) as store:
        store.put("text", values)
        store.put("image", images)
        assert store.has("text", "s3") and not store.has("text", "s9")
        # Readable before the flush, from the buffer.
        np.testing.assert_array_equal(store.get("text", ["s1"])[0], values["s1"].astype(np.float16))
    store = FeatureStore(tmp_path)
    got = store.get("text", ["s4", "s0", "s2"])
    for key, arr in zip(["s4", "s0", "s2"], got):
        assert arr.dtype == np.float16 and arr.shape == (7 if key == "s4" else 3 if key == "s0" else 5, 8)
        np.testing.assert_array_equal(arr, values[key].astype(np.float16))
    np.testing.assert_array_equal(store.get("image", ["p2"])[0], images["p2"].astype(np.float16))
    assert len(store) == 7 and sorted(store.keys("text")) == sorted(values)
    assert store.missing("text", ["s0", "x", "s1", "x"]) == ["x"]
    assert ("image", "p1") in store
    with pytest.raises(KeyError, match="'nope'"):
        store.get("text", ["s0", "nope"])


def test_odd_keys_are_mapped_to_safe_tensor_names(tmp_path):
    keys = ["a b", "ü/商品", "__metadata__", "x" * 300, "plain-ID_1.2:3"]
    with FeatureStore(tmp_path) as store:
        store.put("text", {k: np.full((2, 3), i, dtype=np.float32) for i, k in enumerate(keys)})
    store = FeatureStore(tmp_path)
    for i, k in enumerate(keys):
        assert store.get("text", [k])[0][0, 0] == i
    assert tensor_name("plain-ID_1.2:3") == "plain-ID_1.2:3"
    assert tensor_name("a b") != "a b" and tensor_name("__metadata__").startswith("~")


def test_put_flushes_every_n_items_and_reopen_sees_only_flushed(tmp_path):
    store = FeatureStore(tmp_path, flush_every=3)
    for i in range(7):
        store.put("text", {f"k{i}": np.ones((1, 2))})
    shards = sorted(p.name for p in (tmp_path / "text").glob("shard-*.safetensors"))
    assert shards == ["shard-00000.safetensors", "shard-00001.safetensors"]
    assert len(FeatureStore(tmp_path).keys("text")) == 6  # k6 is still only in the buffer
    store.flush()
    assert len(FeatureStore(tmp_path).keys("text")) == 7


def test_orphan_shards_and_temp_files_are_ignored_then_overwritten(tmp_path):
    with FeatureStore(tmp_path) as store:
        store.put("image", {"p1": np.ones((3, 2))})
    # What a kill during the next flush can leave: a complete shard no index names, and a
    # half-written temp file.
    (tmp_path / "image" / "shard-00001.safetensors").write_bytes(b"garbage from a killed run")
    (tmp_path / "image" / "index.json.tmp").write_text("{half")
    store = FeatureStore(tmp_path)
    assert store.keys("image") == ["p1"]
    store.put("image", {"p2": np.full((3, 2), 2.0)})
    store.flush()
    index = json.loads((tmp_path / "image" / "index.json").read_text())
    assert index["shards"] == ["shard-00000.safetensors", "shard-00001.safetensors"]
    fresh = FeatureStore(tmp_path)
    np.testing.assert_array_equal(fresh.get("image", ["p2"])[0], np.full((3, 2), 2.0))
    np.testing.assert_array_equal(fresh.get("image", ["p1"])[0], np.ones((3, 2)))


@pytest.mark.parametrize("dies_at", ["index.json", ".safetensors"])
def test_a_kill_during_flush_leaves_a_consistent_store(tmp_path, monkeypatch, dies_at):
    with FeatureStore(tmp_path) as store:
        store.put("text", {"a": np.ones((2, 2))})
    store = FeatureStore(tmp_path)
    store.put("text", {"b": np.ones((2, 2))})
    real_replace = os.replace

    def dying_replace(src, dst):
        if str(dst).endswith(dies_at):
            raise KeyboardInterrupt  # killed before this file landed
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        store.flush()
    monkeypatch.setattr(os, "replace", real_replace)
    reopened = FeatureStore(tmp_path)
    assert reopened.keys("text") == ["a"] and reopened.missing("text", ["a", "b"]) == ["b"]
    assert reopened.get("text", ["a"])[0].shape == (2, 2)
    reopened.put("text", {"b": np.full((2, 2), 3.0)})
    reopened.flush()
    assert FeatureStore(tmp_path).get("text", ["b"])[0][0, 0] == 3.0


def test_meta_mismatch_is_an_error_but_paths_may_change(tmp_path):
    meta = {"text": {"encoder": "bert-a", "max_length": 48, "dim": 4, "info": {"path": "/x"}}}
    FeatureStore(tmp_path, meta=meta).close()
    FeatureStore(tmp_path, meta=meta).close()  # same settings: fine
    moved = {"text": {**meta["text"], "info": {"path": "/elsewhere"}}}
    FeatureStore(tmp_path, meta=moved).close()  # only informational fields differ: fine
    with pytest.raises(StoreMismatchError, match=r"max_length: stored 48, now 32"):
        FeatureStore(tmp_path, meta={"text": {**meta["text"], "max_length": 32}})
    # A namespace not described yet is added, the other is kept.
    store = FeatureStore(tmp_path, meta={"image": {"encoder": "lite0", "dim": 2, "rows": 3}})
    assert store.namespace_meta("text")["encoder"] == "bert-a"
    assert FeatureStore(tmp_path).namespace_meta("image")["rows"] == 3
    with pytest.raises(ValueError, match="width 2"):
        store.put("image", {"p": np.zeros((3, 5))})
    with pytest.raises(ValueError, match="3 rows"):
        store.put("image", {"p": np.zeros((4, 2))})
    with pytest.raises(ValueError, match="not finite"):
        store.put("image", {"p": np.full((3, 2), 1e6)})  # beyond float16


def test_second_reader_sees_later_writes(tmp_path):
    reader = FeatureStore(tmp_path)
    with FeatureStore(tmp_path) as writer:
        writer.put("text", {"late": np.ones((1, 1))})
    assert reader.get("text", ["late"])[0].shape == (1, 1)


# --------------------------------------------------------------------------------------------
# extract_features: tiny encoders, counting what they encode
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-d random BERT with MiniLM's real uncased tokenizer files."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64)).save_pretrained(folder)
    src = default_english_encoder_path()
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(src / name, folder / name)
    return folder


class CountingText(HFTextEncoder):
    """The tiny BERT, counting the texts it encodes and able to fail on a given call."""

    def __init__(self, folder: Path, fail_on_call: int | None = None,
                 on_disk: Path | None = None):
        super().__init__(HFTextEncoder.from_pretrained(folder).model)
        self.texts = 0
        self.calls = 0
        self.fail_on_call = fail_on_call
        self.on_disk = on_disk
        self.keys_on_disk_at_crash = -1

    def forward(self, input_ids, attention_mask=None):
        self.calls += 1
        if self.calls == self.fail_on_call:
            # What a SIGKILL here would leave: only what is already on disk.
            self.keys_on_disk_at_crash = len(FeatureStore(self.on_disk).keys("text"))
            raise RuntimeError("injected crash")
        self.texts += input_ids.shape[0]
        return super().forward(input_ids, attention_mask)


class TinyImages(ImageEncoder):
    """64 px -> 2 x 2 regions of 8 features; counts images; can fail on a given call."""

    name = "tiny-cnn"
    feature_dim = 8

    def __init__(self, fail_on_call: int | None = None, on_disk: Path | None = None):
        super().__init__(image_size=64)
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, kernel_size=32, stride=32)
        self._freeze()
        self.images = 0
        self.calls = 0
        self.fail_on_call = fail_on_call
        self.on_disk = on_disk
        self.keys_on_disk_at_crash = -1

    def feature_map(self, pixels):
        self.calls += 1
        if self.calls == self.fail_on_call:
            self.keys_on_disk_at_crash = len(FeatureStore(self.on_disk).keys("image"))
            raise RuntimeError("injected crash")
        self.images += pixels.shape[0]
        return self.conv(pixels)


@pytest.fixture()
def catalog(tmp_path) -> tuple[list[Record], Path]:
    """10 sentences of 5 products (two sentences each), one photo per product."""
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(1)
    records = []
    for p in range(5):
        arr = rng.integers(0, 255, (48 + 8 * p, 64, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / f"P{p}.png")
        for s in range(2):
            records.append(Record(id=f"P{p}-s{s}", cid=f"P{p}", image=f"P{p}.png",
                                  text=f"product {p} sentence {s} red cotton " + "shirt " * p))
    return records, root


def _config(folder: Path, **kw) -> EncoderConfig:
    return EncoderConfig(text_encoder=str(folder), **kw)


def test_extract_stores_aligned_text_states_and_shared_product_images(tiny_bert_dir, catalog,
                                                                     tmp_path):
    records, root = catalog
    text, images = CountingText(tiny_bert_dir), TinyImages()
    stats = extract_features(records, tmp_path / "f", _config(tiny_bert_dir), image_root=root,
                             batch_size=4, text_encoder=text, image_encoder=images)
    assert (stats.new_texts, stats.new_images, stats.missing_images) == (10, 5, 0)
    assert images.images == 5  # sentences of one product share one image encoding
    assert stats.images_per_second > 0
    store = FeatureStore(tmp_path / "f")
    assert store.namespace_meta("text")["dim"] == 32
    assert store.namespace_meta("image")["rows"] == 5
    aligner = TextAligner(load_tokenizer(tiny_bert_dir), max_length=48)
    enc = aligner.encode_text(records[9].text)
    (stored,) = store.get("text", [records[9].id])
    assert stored.shape == (len(enc), 32)  # one row per token of encode_text, [CLS]..[SEP]
    direct = text(torch.tensor([enc.input_ids]), torch.ones(1, len(enc), dtype=torch.long))[0]
    np.testing.assert_allclose(stored.astype(np.float32), direct.numpy(), atol=2e-3, rtol=2e-3)
    (img,) = store.get("image", ["P3"])
    assert img.shape == (5, 8)
    np.testing.assert_allclose(img[0], img[1:].astype(np.float32).mean(0), atol=2e-3)
    pil = Image.open(root / "P3.png")
    g, r = TinyImages().encode_images([pil])
    np.testing.assert_allclose(img.astype(np.float32), torch.cat([g, r[0]]).numpy(),
                               atol=2e-3, rtol=2e-3)


def test_second_extract_on_a_superset_encodes_only_new_ids(tiny_bert_dir, catalog, tmp_path):
    records, root = catalog
    cfg = _config(tiny_bert_dir)
    extract_features(records[:6], tmp_path / "f", cfg, image_root=root, batch_size=4,
                     text_encoder=CountingText(tiny_bert_dir), image_encoder=TinyImages())
    text, images = CountingText(tiny_bert_dir), TinyImages()
    stats = extract_features(records, tmp_path / "f", cfg, image_root=root, batch_size=4,
                             text_encoder=text, image_encoder=images)
    assert (text.texts, images.images) == (4, 2)
    assert (stats.new_texts, stats.skipped_texts, stats.new_images, stats.skipped_images) == \
        (4, 6, 2, 3)
    text, images = CountingText(tiny_bert_dir), TinyImages()
    stats = extract_features(records, tmp_path / "f", cfg, image_root=root, text_encoder=text,
                             image_encoder=images)
    assert (text.calls, images.calls, stats.new_texts, stats.new_images) == (0, 0, 0, 0)
    assert len(FeatureStore(tmp_path / "f")) == 15


def test_crash_mid_run_then_rerun_resumes_and_equals_a_clean_run(tiny_bert_dir, catalog,
                                                               tmp_path):
    records, root = catalog
    cfg = _config(tiny_bert_dir)
    extract_features(records, tmp_path / "clean", cfg, image_root=root, batch_size=2,
                     text_encoder=CountingText(tiny_bert_dir), image_encoder=TinyImages())

    run = tmp_path / "run"
    text = CountingText(tiny_bert_dir, fail_on_call=2, on_disk=run)
    with pytest.raises(RuntimeError, match="injected"):  # dies in the text phase, batch 2
        extract_features(records, run, cfg, image_root=root, batch_size=2, text_encoder=text,
                         image_encoder=TinyImages())
    assert text.keys_on_disk_at_crash == 2  # the finished batch was already on disk
    assert len(FeatureStore(run).keys("text")) == 2
    images = TinyImages(fail_on_call=2, on_disk=run)
    with pytest.raises(RuntimeError, match="injected"):  # text done, dies at image batch 2
        extract_features(records, run, cfg, image_root=root, batch_size=2,
                         text_encoder=CountingText(tiny_bert_dir), image_encoder=images)
    assert images.keys_on_disk_at_crash == 2
    assert len(FeatureStore(run).keys("image")) == 2
    # A kill during the next shard write would leave an orphan: the rerun must not trip on it.
    (run / "image" / "shard-00001.safetensors").write_bytes(b"\x00" * 100)

    text, images = CountingText(tiny_bert_dir), TinyImages()
    stats = extract_features(records, run, cfg, image_root=root, batch_size=2,
                             text_encoder=text, image_encoder=images)
    assert (text.texts, images.images) == (0, 3)
    assert (stats.skipped_texts, stats.new_images, stats.skipped_images) == (10, 3, 2)
    clean, resumed = FeatureStore(tmp_path / "clean"), FeatureStore(run)
    for ns, keys in (("text", [r.id for r in records]),
                     ("image", sorted({r.product_id for r in records}))):
        assert sorted(resumed.keys(ns)) == sorted(keys)
        for a, b in zip(clean.get(ns, keys), resumed.get(ns, keys)):
            assert a.shape == b.shape
            np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32),
                                       atol=2e-3, rtol=2e-3)


def test_reopening_with_other_encoder_settings_is_an_error(tiny_bert_dir, catalog, tmp_path):
    records, root = catalog
    extract_features(records[:2], tmp_path / "f", _config(tiny_bert_dir), image_root=root,
                     image=False)
    with pytest.raises(StoreMismatchError, match="max_length"):
        extract_features(records[:2], tmp_path / "f", _config(tiny_bert_dir, max_length=16),
                         image=False)
    with pytest.raises(StoreMismatchError, match="tokenizer"):
        extract_features(records[:2], tmp_path / "f",
                         _config(tiny_bert_dir, char_level=True), image=False)
    extract_features(records[:2], tmp_path / "f", _config(tiny_bert_dir), image_root=root,
                     image_encoder=TinyImages())
    with pytest.raises(StoreMismatchError, match="image_size"):
        extract_features(records[:2], tmp_path / "f", _config(tiny_bert_dir), image_root=root,
                         text=False)  # the default EfficientNet at 224 px, not the tiny 64 px


def test_missing_images_error_or_zero_fill_then_retry(tiny_bert_dir, catalog, tmp_path):
    records, root = catalog
    records = records + [Record(id="Q-s0", cid="Q", image="Q.png", text="no photo yet")]
    images = TinyImages()
    with pytest.raises(DataError, match=r"images/Q\.png: field 'image': record 'Q-s0'"):
        extract_features(records, tmp_path / "f", _config(tiny_bert_dir), image_root=root,
                         batch_size=2, text=False, image_encoder=images)
    assert images.calls == 0  # absent files are found before any encoding starts
    (root / "P4.png").write_bytes(b"not a png")  # present but unreadable
    with pytest.raises(DataError, match=r"P4\.png: field 'image': record 'P4-s0'.*cannot read"):
        extract_features(records[:-1], tmp_path / "f", _config(tiny_bert_dir), image_root=root,
                         text=False, image_encoder=TinyImages())
    cfg = _config(tiny_bert_dir, missing_image="zeros")
    stats = extract_features(records, tmp_path / "z", cfg, image_root=root, text=False,
                             image_encoder=TinyImages())
    assert (stats.new_images, stats.missing_images) == (4, 2)  # Q absent, P4 unreadable
    store = FeatureStore(tmp_path / "z")
    assert not store.get("image", ["P4"])[0].any()
    (zeros,) = store.get("image", ["Q"])
    assert zeros.shape == (5, 8) and not zeros.any() and store.is_placeholder("image", "Q")
    # The photo arrives: the next run encodes it, and only it.
    Image.new("RGB", (64, 64), (200, 10, 10)).save(root / "Q.png")
    images = TinyImages()
    stats = extract_features(records, tmp_path / "z", cfg, image_root=root, text=False,
                             image_encoder=images)
    assert (images.images, stats.new_images, stats.missing_images) == (1, 1, 1)
    store = FeatureStore(tmp_path / "z")
    assert store.get("image", ["Q"])[0].any() and not store.is_placeholder("image", "Q")


def test_record_without_image_field_uses_product_id_file_or_names_paths(tiny_bert_dir, catalog,
                                                                        tmp_path):
    records, root = catalog
    no_field = [Record(id="r1", cid="P2", text="x"), Record(id="r2", cid="NOPE", text="y")]
    with pytest.raises(DataError, match=r"record 'r2'.*NOPE\.jpg"):
        extract_features(no_field, tmp_path / "f", _config(tiny_bert_dir), image_root=root,
                         text=False, image_encoder=TinyImages())
    images = TinyImages()
    stats = extract_features(no_field[:1], tmp_path / "f", _config(tiny_bert_dir),
                             image_root=root, text=False, image_encoder=images)
    assert stats.new_images == 1 and images.images == 1  # found images/P2.png
