"""Cost of the colour histogram (`encoder.image_colour_bins`, issue #31) on the image forward.

In one process, on the same pixels: EfficientNet-Lite0 alone (the reference, N = 0) and wrapped
in `ColourHistogramEncoder` at each N of `--bins`; prints images/s and the ratio of each to the
reference (the histogram runs once per image, into the feature store).

    python benchmarks/colour_features.py                       # N = 2 4 8, 32 images, 1 thread
    python benchmarks/colour_features.py --threads 2 --bins 4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from PIL import Image

from mjave.encoders.colour import ColourHistogramEncoder
from mjave.encoders.image import build_image_encoder


def images_per_second(encoder: torch.nn.Module, pixels: torch.Tensor, batch: int,
                      repeats: int) -> float:
    """The best of `repeats` passes over `pixels` in batches of `batch`."""
    best = float("inf")
    with torch.no_grad():
        encoder(pixels[:batch])                                   # warm up
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(0, len(pixels), batch):
                encoder(pixels[i:i + batch])
            best = min(best, time.perf_counter() - start)
    return len(pixels) / best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bins", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--n-images", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    base = build_image_encoder("efficientnet-lite0")
    pixels = base.preprocess([Image.fromarray(
        (torch.rand(224, 224, 3) * 255).to(torch.uint8).numpy()) for _ in range(a.n_images)])
    reference = images_per_second(base, pixels, a.batch, a.repeats)
    rows = [{"bins": 0, "images_per_s": reference, "ratio": 1.0}]
    for n in a.bins:
        speed = images_per_second(ColourHistogramEncoder(base, n), pixels, a.batch, a.repeats)
        rows.append({"bins": n, "images_per_s": speed, "ratio": speed / reference})
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.machine()) \
        if platform.system() == "Linux" else platform.machine()
    print(f"EfficientNet-Lite0 at 224 px, batch {a.batch}, {a.threads} thread(s), {cpu}")
    for r in rows:
        what = "reference" if r["bins"] == 0 else f"+ histogram N={r['bins']}"
        print(f"  {what:22s} {r['images_per_s']:7.1f} images/s   {r['ratio']:.2f} x reference")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"threads": a.threads, "batch": a.batch, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
