"""Gate heat-maps in the style of the paper's Figure 5, drawn with PIL alone.

Left: the product image with its 7x7 regional visual gate g^R (mean over the attention size)
laid over it; right: each token with its global visual gate g^G (mean over the attention size)
as a bar, and the predicted tag under it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _heat(value: float) -> tuple[int, int, int]:
    """Blue (0) -> yellow -> red (1)."""
    v = float(min(max(value, 0.0), 1.0))
    if v < 0.5:
        t = v / 0.5
        return (int(40 + 215 * t), int(60 + 195 * t), int(200 * (1 - t)))
    t = (v - 0.5) / 0.5
    return (255, int(255 * (1 - t)), 0)


def gate_figure(image: Image.Image, regional_gate: np.ndarray, tokens: Sequence[str],
                global_gate: np.ndarray, tags: Sequence[str], title: str = "") -> Image.Image:
    """`regional_gate` (K,) over a square grid; `global_gate` (T,) one value per token."""
    size = 280
    k = int(round(math.sqrt(len(regional_gate))))
    base = image.convert("RGB").resize((size, size))
    overlay = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(overlay)
    cell = size / k
    lo, hi = float(np.min(regional_gate)), float(np.max(regional_gate))
    norm = (regional_gate - lo) / (hi - lo + 1e-9)
    for idx, value in enumerate(norm):
        r, c = divmod(idx, k)
        draw.rectangle([c * cell, r * cell, (c + 1) * cell, (r + 1) * cell], fill=_heat(value))
    blended = Image.blend(base, overlay, 0.45)

    font = ImageFont.load_default()
    row_h = 16
    width = size + 40 + 420
    height = max(size + 40, 40 + row_h * len(tokens) + 20)
    canvas = Image.new("RGB", (width, height), "white")
    canvas.paste(blended, (10, 30))
    d = ImageDraw.Draw(canvas)
    d.text((10, 8), title or "regional gate g^R (left), global gate g^G per token (right)",
           fill="black", font=font)
    d.text((10, size + 32), f"g^R range {lo:.3f} .. {hi:.3f}", fill="black", font=font)
    x0 = size + 30
    g_lo, g_hi = float(np.min(global_gate)), float(np.max(global_gate))
    for i, (tok, g, tag) in enumerate(zip(tokens, global_gate, tags)):
        y = 30 + i * row_h
        frac = (float(g) - g_lo) / (g_hi - g_lo + 1e-9)
        d.text((x0, y), tok[:14], fill="black", font=font)
        d.rectangle([x0 + 110, y + 2, x0 + 110 + int(150 * frac), y + row_h - 4], fill=_heat(frac))
        d.text((x0 + 270, y), f"{float(g):.3f}  {tag}", fill="black", font=font)
    return canvas


def save_gate_figure(path: str | Path, *args, **kwargs) -> Path:
    path = Path(path)
    gate_figure(*args, **kwargs).save(path)
    return path
