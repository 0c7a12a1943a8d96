"""EncoderConfig and the switches of extract_features that need no model."""

from __future__ import annotations

import numpy as np
import pytest

from mjave.config import ConfigError, apply_overrides, from_dict, to_dict
from mjave.data.records import Record
from mjave.config import EncoderConfig
from mjave.encoders.features import extract_features, resolve_image_path
from mjave.encoders.store import FeatureStore


def test_config_defaults_round_trip_and_overrides():
    cfg = EncoderConfig()
    assert (cfg.text_encoder, cfg.image_encoder, cfg.image_size, cfg.max_length) == \
        ("minilm", "efficientnet-lite0", 224, 48)
    assert cfg.caches_text and cfg.uses_images
    assert from_dict(EncoderConfig, to_dict(cfg)) == cfg
    cfg2 = apply_overrides(cfg, ["image_encoder=resnet101", "missing_image=zeros",
                                 "fine_tune=true"])
    assert cfg2.image_encoder == "resnet101" and cfg2.missing_image == "zeros"
    assert not cfg2.caches_text  # a fine-tuned encoder runs inside the model
    with pytest.raises(ConfigError, match="image_encoder"):
        apply_overrides(cfg, ["image_encoder=vgg"])
    with pytest.raises(ValueError, match="missing_image"):
        EncoderConfig(missing_image="skip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_length"):
        EncoderConfig(max_length=2)


def test_nothing_to_cache_touches_no_model(tmp_path):
    cfg = EncoderConfig(text_kind="bilstm", image_encoder="none")
    stats = extract_features([Record(id="a", text="x")], tmp_path / "f", cfg)
    assert (stats.new_texts, stats.new_images) == (0, 0)
    with pytest.raises(ValueError, match="frozen Hugging Face encoder"):
        extract_features([Record(id="a", text="x")], tmp_path / "f", cfg, text=True)
    with pytest.raises(ValueError, match="'none'"):
        extract_features([Record(id="a", text="x")], tmp_path / "f", cfg, image=True)


def test_resnet_without_weights_fails_before_any_work(tmp_path):
    cfg = EncoderConfig(image_encoder="resnet101")
    with pytest.raises(ValueError, match="not bundled.*image_weights"):
        extract_features([Record(id="a", text="x", image="a.jpg")], tmp_path / "f", cfg,
                         text=False)
    assert not (tmp_path / "f" / "image").exists()


def test_image_paths_resolve_relative_to_root(tmp_path):
    (tmp_path / "C7.jpeg").write_bytes(b"")
    assert resolve_image_path(Record(id="s", text="", image="x/y.jpg"), tmp_path)[0] == \
        tmp_path / "x" / "y.jpg"
    absolute = tmp_path / "abs.png"
    assert resolve_image_path(Record(id="s", text="", image=str(absolute)), "/elsewhere")[0] == \
        absolute
    found, tried = resolve_image_path(Record(id="s", text="", cid="C7"), tmp_path)
    assert found == tmp_path / "C7.jpeg" and tried[0] == tmp_path / "C7.jpg"
    assert resolve_image_path(Record(id="s", text="", cid="C8"), tmp_path)[0] is None
    assert resolve_image_path(Record(id="s", text=""), None) == (None, [])


def test_progress_factory_is_called_per_phase(tmp_path):
    from PIL import Image

    from mjave.encoders.image import EfficientNetLiteEncoder

    Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / "a.png")
    bars: list[dict] = []

    class Bar:
        def __init__(self, **kw):
            self.kw, self.n, self.closed = kw, 0, False
            bars.append(self.__dict__)

        def update(self, n):
            self.n += n

        def close(self):
            self.closed = True

    enc = EfficientNetLiteEncoder("lite0")
    recs = [Record(id="s1", text="t", cid="a", image="a.png"),
            Record(id="s2", text="t", cid="a", image="a.png")]
    stats = extract_features(recs, tmp_path / "f", EncoderConfig(), image_root=tmp_path,
                             progress=Bar, text=False, image_encoder=enc)
    assert stats.new_images == 1
    assert bars == [{"kw": {"total": 1, "desc": "image features", "unit": "img"}, "n": 1,
                     "closed": True}]
    (feats,) = FeatureStore(tmp_path / "f").get("image", ["a"])
    assert feats.shape == (50, 1280) and feats.dtype == np.float16 and np.isfinite(feats).all()
