"""Bar and line charts drawn with PIL alone (no matplotlib dependency), for the results PNGs.

Charts are plain: a title, a 0-100 (or data-driven) y axis with grid lines, grouped bars or
lines with optional +-std whiskers, a legend. Good enough to see an ordering at a glance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]

Series = Mapping[str, Sequence[float | None]]


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _text_width(draw: ImageDraw.ImageDraw, text: str, font) -> int:
    box = draw.textbbox((0, 0), text, font=font)
    return box[2] - box[0]


def _y_range(values: Sequence[float], y_max: float | None) -> tuple[float, float]:
    if y_max is not None:
        return 0.0, y_max
    top = max([v for v in values if v is not None] or [1.0])
    return 0.0, max(1.0, top * 1.1)


def _axes(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], lo: float, hi: float,
          font, ticks: int = 5) -> None:
    x0, y0, x1, y1 = box
    for i in range(ticks + 1):
        v = lo + (hi - lo) * i / ticks
        y = y1 - (y1 - y0) * i / ticks
        draw.line([(x0, y), (x1, y)], fill=(225, 225, 225))
        label = f"{v:.0f}" if hi - lo >= 5 else f"{v:.2f}"
        draw.text((x0 - 6 - _text_width(draw, label, font), y - 5), label, fill="black", font=font)
    draw.line([(x0, y0), (x0, y1), (x1, y1)], fill="black")


def _legend(draw: ImageDraw.ImageDraw, names: Sequence[str], x: int, y: int, font) -> None:
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        draw.rectangle([x, y + 14 * i + 2, x + 10, y + 14 * i + 12], fill=colour)
        draw.text((x + 15, y + 14 * i), name, fill="black", font=font)


def _wrap_label(label: str, width: int) -> list[str]:
    words, lines, line = label.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return (lines + [line])[:3] if line else lines[:3]


def bar_chart(groups: Sequence[str], series: Series, title: str, y_label: str = "F1 (%)",
              errors: Series | None = None, y_max: float | None = 100.0,
              horizontal_space: int = 0) -> Image.Image:
    """Grouped bars: one group per x label, one bar per series (legend), optional +-std whiskers.

    `series[name][i]` is the height in group i (None: no bar, e.g. a model that was not run).
    """
    font = _font()
    names = list(series)
    n_groups, n_series = len(groups), max(1, len(names))
    slot = max(14, min(40, 360 // max(1, n_series)))
    group_w = slot * n_series + 18
    legend_w = max([len(n) for n in names] + [4]) * 6 + 40
    width = max(420, 70 + n_groups * group_w + legend_w + 20 + horizontal_space)
    height = 380
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 8), title, fill="black", font=font)
    draw.text((10, 24), y_label, fill="black", font=font)
    box = (60, 44, 60 + n_groups * group_w, height - 80)
    values = [v for s in series.values() for v in s if v is not None]
    if errors:
        values += [v + (e or 0) for n in names for v, e in zip(series[n], errors.get(n, []))
                   if v is not None]
    lo, hi = _y_range(values, y_max)
    if values and max(values) > hi:
        hi = max(values) * 1.05
    _axes(draw, box, lo, hi, font)
    x0, y0, _, y1 = box

    def ypos(v: float) -> float:
        return y1 - (y1 - y0) * (min(max(v, lo), hi) - lo) / (hi - lo)

    for g, label in enumerate(groups):
        gx = x0 + 9 + g * group_w
        for s, name in enumerate(names):
            v = series[name][g] if g < len(series[name]) else None
            if v is None:
                continue
            colour = PALETTE[s % len(PALETTE)]
            bx = gx + s * slot
            draw.rectangle([bx + 1, min(ypos(v), y1 - 1), bx + slot - 2, y1 - 1], fill=colour)
            err = errors.get(name, [None] * n_groups)[g] if errors else None
            if err:
                cx = bx + slot / 2
                draw.line([(cx, ypos(v - err)), (cx, ypos(v + err))], fill="black", width=1)
                for yy in (ypos(v - err), ypos(v + err)):
                    draw.line([(cx - 3, yy), (cx + 3, yy)], fill="black")
            if slot >= 24:
                txt = f"{v:.1f}"
                draw.text((bx + (slot - _text_width(draw, txt, font)) / 2, ypos(v) - 12), txt,
                          fill="black", font=font)
        for k, line in enumerate(_wrap_label(label, max(6, group_w // 6))):
            draw.text((gx + (group_w - 18 - _text_width(draw, line, font)) / 2,
                       y1 + 6 + 12 * k), line, fill="black", font=font)
    _legend(draw, names, box[2] + 20, 50, font)
    return img


def line_chart(xs: Sequence[float], series: Series, title: str, x_label: str,
               y_label: str = "F1 (%)", errors: Series | None = None,
               y_max: float | None = None, x_format: str = "{:.0%}") -> Image.Image:
    """One line per series over the x values (e.g. training fractions), with +-std whiskers."""
    font = _font()
    names = list(series)
    legend_w = max([len(n) for n in names] + [4]) * 6 + 40
    width, height = 560 + legend_w, 380
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 8), title, fill="black", font=font)
    draw.text((10, 24), y_label, fill="black", font=font)
    box = (60, 44, 540, height - 60)
    values = [v for s in series.values() for v in s if v is not None]
    if errors:
        values += [v + (e or 0) for n in names for v, e in zip(series[n], errors.get(n, []))
                   if v is not None]
    lo_v = min(values) if values else 0.0
    lo = max(0.0, (int(lo_v) // 10) * 10 - 10) if y_max is None else 0.0
    hi = y_max if y_max is not None else min(100.0, max(values or [1.0]) + 5)
    if hi <= lo:
        hi = lo + 1.0
    _axes(draw, box, lo, hi, font)
    x0, y0, x1, y1 = box
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    x_lo, x_hi = min(xs), max(xs)
    span = (x_hi - x_lo) or 1.0

    def pos(x: float, y: float) -> tuple[float, float]:
        px = x0 + 20 + (x1 - x0 - 40) * (x - x_lo) / span
        return px, y1 - (y1 - y0) * (min(max(y, lo), hi) - lo) / (hi - lo)

    for i in order:
        px, _ = pos(xs[i], lo)
        label = x_format.format(xs[i])
        draw.line([(px, y1), (px, y1 + 4)], fill="black")
        draw.text((px - _text_width(draw, label, font) / 2, y1 + 6), label, fill="black",
                  font=font)
    draw.text(((x0 + x1) / 2 - _text_width(draw, x_label, font) / 2, y1 + 22), x_label,
              fill="black", font=font)
    for s, name in enumerate(names):
        colour = PALETTE[s % len(PALETTE)]
        pts = [(pos(xs[i], series[name][i]), i) for i in order if series[name][i] is not None]
        if len(pts) > 1:
            draw.line([p for p, _ in pts], fill=colour, width=2)
        for (px, py), i in pts:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
            err = errors.get(name, [None] * len(xs))[i] if errors else None
            if err:
                _, top = pos(xs[i], series[name][i] + err)
                _, bottom = pos(xs[i], series[name][i] - err)
                draw.line([(px, top), (px, bottom)], fill=colour)
                draw.line([(px - 3, top), (px + 3, top)], fill=colour)
                draw.line([(px - 3, bottom), (px + 3, bottom)], fill=colour)
    _legend(draw, names, x1 + 20, 50, font)
    return img


def save(img: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
