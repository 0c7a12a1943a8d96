"""The photo's colour as features (issue #31): a colour histogram appended to every region.

ImageNet CNN features are trained to be partly colour-invariant: a linear probe on the frozen
EfficientNet-Lite0 vG names the rendered catalog's garment colour only 75% of the time
(docs/model.md, "Colour"), which caps Color F1. `ColourHistogramEncoder` wraps any
`ImageEncoder` and appends, to each of the base's regions, the joint RGB histogram of the
pixels under that region: N bins per channel (`encoder.image_colour_bins`), N^3 features, so
the model's image_dim becomes D + N^3 and nothing downstream changes. The global vector stays
the mean of the regions, which for the histogram is the whole image's (exactly, when the side
divides evenly into the grid).

How, in plain tensor ops that export to ONNX (no scatter, no bincount):

- the base's normalisation is undone and the 0..1 pixels rounded back to the 0..255 integers
  they came from (`preprocess` divides uint8 by 255), so the bin of a pixel, floor(v * N / 256),
  is exact arithmetic in float32, the same in torch and onnxruntime at every N;
- the joint bin r * N^2 + g * N + b is compared with a range of codes (a one-hot per pixel,
  `CODES_PER_STEP` codes at a time, so memory stays B x 16 x S x S floats even at N = 8);
- each one-hot plane is averaged onto the base's h x w grid by two constant matrices whose rows
  are `adaptive_avg_pool2d`'s cells (the same cells, row-major like the regions). The matrices
  and not the op itself because torch exports adaptive pooling to ONNX only when the side is a
  multiple of the grid (224 / 7 is, 33 / 2 is not).

Scale: the fractions of a cell (summing to 1) are multiplied by `COLOUR_SCALE` = 6, the ReLU6
ceiling of EfficientNet-Lite's features, so a one-colour cell's bin equals the largest value a
CNN feature takes. The CNN features are sparse (about 10% of a region's 1280 are non-zero, those
averaging 1.9, 99th percentile 4.6 on the rendered catalog and the product photos; region L2
norm about 25): unscaled fractions (at most 1, L2 at most 1) would start out a whisper next to
them in the model's first linear layers, while 6 keeps every histogram feature inside the CNN
features' own range and the histogram's norm (at most 6) well below theirs. ResNet bases use
the same constant (their unbounded ReLU features were not measured: no ResNet weights ship).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mjave.config.encoder import MAX_COLOUR_BINS
from mjave.encoders.image import ImageEncoder

COLOUR_SCALE = 6.0
"""A histogram fraction's multiplier (EfficientNet-Lite's ReLU6 ceiling; see the module text)."""

COLOUR_BINS = tuple(range(2, MAX_COLOUR_BINS + 1))
"""The bins per channel `encoder.image_colour_bins` may name (0 switches the histogram off)."""

CODES_PER_STEP = 16
"""Joint bins one-hot encoded at a time (bounds the memory of the N = 8 histogram)."""


def colour_feature_dim(bins: int) -> int:
    """The features the histogram adds to each region: N^3, 0 when off."""
    return bins ** 3 if bins else 0


def colour_encoder_name(base: str, bins: int) -> str:
    """The wrapped encoder's name (keys the feature store): `efficientnet-lite0+rgb4`."""
    return f"{base}+rgb{bins}" if bins else base


def pooling_matrix(size: int, cells: int, device: torch.device) -> torch.Tensor:
    """(cells, size): row i averages what `adaptive_avg_pool` puts in cell i, positions
    floor(i * size / cells) to ceil((i + 1) * size / cells) - 1."""
    m = torch.zeros(cells, size, device=device)
    for i in range(cells):
        lo, hi = (i * size) // cells, math.ceil((i + 1) * size / cells)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


class ColourHistogramEncoder(ImageEncoder):
    """`base`'s (global, regions) with each region's colour histogram appended (module text).

    Preprocessing (size, mean, std, resampling) and regions are the base's; `feature_dim` is
    `base.feature_dim + bins**3`; `describe()` adds the bins and the scale, so a feature store
    never mixes features with and without the histogram."""

    def __init__(self, base: ImageEncoder, bins: int, scale: float = COLOUR_SCALE):
        super().__init__(base.image_size)
        if bins not in COLOUR_BINS:
            raise ValueError(f"colour bins must be one of {list(COLOUR_BINS)}, not {bins!r}")
        self.base = base
        self.bins = int(bins)
        self.scale = float(scale)
        self.name = colour_encoder_name(base.name, self.bins)
        self.feature_dim = base.feature_dim + colour_feature_dim(self.bins)
        self.mean, self.std, self.resample = base.mean, base.std, base.resample
        self.weights_path = base.weights_path
        self.register_buffer("_mean", torch.tensor(base.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(base.std).view(1, 3, 1, 1), persistent=False)
        self._freeze()

    @property
    def num_regions(self) -> int:
        return self.base.num_regions

    def histogram(self, pixels: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, N^3, h, w): the scaled colour histogram of each grid cell of normalised pixels."""
        n = self.bins
        values = torch.round((pixels * self._std + self._mean) * 255.0).clamp(0.0, 255.0)
        channel = torch.floor(values * (n / 256.0))                 # (B, 3, S, S), 0..n-1
        joint = (channel[:, 0] * (n * n) + channel[:, 1] * n + channel[:, 2]).unsqueeze(1)
        rows = pooling_matrix(pixels.shape[-2], grid[0], pixels.device) * self.scale
        cols = pooling_matrix(pixels.shape[-1], grid[1], pixels.device).t()
        parts = []
        for start in range(0, n ** 3, CODES_PER_STEP):
            codes = torch.arange(start, min(start + CODES_PER_STEP, n ** 3),
                                 device=pixels.device, dtype=joint.dtype).view(1, -1, 1, 1)
            onehot = (joint == codes).to(pixels.dtype)               # (B, c, S, S)
            parts.append(torch.matmul(rows, torch.matmul(onehot, cols)))  # (B, c, h, w)
        return torch.cat(parts, dim=1)

    def feature_map(self, pixels: torch.Tensor) -> torch.Tensor:
        fmap = self.base.feature_map(pixels)                         # (B, D, h, w)
        hist = self.histogram(pixels, (fmap.shape[-2], fmap.shape[-1]))
        return torch.cat([fmap, hist.to(fmap.dtype)], dim=1)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "colour_bins": self.bins, "colour_scale": self.scale}


__all__ = ["COLOUR_BINS", "COLOUR_SCALE", "ColourHistogramEncoder", "colour_encoder_name",
           "colour_feature_dim", "pooling_matrix"]
