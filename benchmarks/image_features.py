"""CPU image feature extraction speed: JPEG decode + resize + EfficientNet-Lite0, images/s.

For each batch size of the sweep, on the same images and in the same process:

* `forward`: the encoder forward alone (`EfficientNetLiteEncoder(pixels)`) on tensors decoded,
  resized and normalised beforehand: the reference, what the network itself costs;
* `preprocess+forward`: `encode_images` on already decoded PIL images (resize to 224 px,
  bicubic, + normalise + forward);
* `full`: from the file paths, what `mjave features` / `Extractor` do per image: `load_image`
  (JPEG decode, RGB) in the library's thread pool (as `extract_features` and `Extractor` decode,
  8 threads at most, the next batch decoded while the network runs on this one) + `encode_images`;
* `full-serial`: the same with decoding in the calling thread (what a pool would save).

Also reported once: decode alone (one thread, and the library's pool), resize + normalise alone
(one thread), and `extract_features` end to end into a temporary feature store (batch 32: decode
pool, encoder, float16 store writes; `--no-store` skips it), the path of `mjave features`. The ratio full / forward shows the decode + resize
overhead; a ratio near 1 means the network dominates.

Images: the 8 product photos in /work/shared/data/product_images (250-500 px JPEGs) repeated to
`--n-images`, or `--generate SIDE` JPEGs of SIDE x SIDE pixels (e.g. 1000, a typical catalog
photo) drawn with PIL when the folder is absent or to see larger decodes.

The batch sweep is why `Extractor` encodes images in sub-batches of
`mjave.inference.extractor.CPU_IMAGE_BATCH` (4) on CPU: per-image throughput falls with the batch
on CPU (EfficientNet's activations outgrow the caches); whole-pipeline effect in
benchmarks/inference_cpu.py (`--variants mjave-image`).

Target: none fixed by the issue; decode + resize should cost well under the forward pass
(full / forward >= 0.8 on CPU), else decoding needs more parallelism.

    python benchmarks/image_features.py                          # batches 1 8 32, 64 images
    python benchmarks/image_features.py --generate 1000 --batch-sizes 8 32 --json out.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

IMAGES = Path("/work/shared/data/product_images")


def generate_jpegs(folder: Path, n: int, side: int, seed: int = 0) -> list[Path]:
    """`n` distinct JPEGs (quality 90) of side x side px: shapes on a noisy background."""
    import numpy as np
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        base = nrng.integers(0, 255, (side // 8, side // 8, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((side, side), Image.Resampling.BILINEAR)
        draw = ImageDraw.Draw(img)
        for _ in range(12):
            x, y = rng.randrange(side), rng.randrange(side)
            r = rng.randrange(side // 20, side // 4)
            draw.ellipse((x - r, y - r, x + r, y + r),
                         fill=tuple(rng.randrange(256) for _ in range(3)))
        p = folder / f"g{i:04d}.jpg"
        img.save(p, quality=90)
        paths.append(p)
    return paths


def rate(fn, n: int, repeats: int) -> tuple[float, list[float]]:
    """Best and all images/s of `repeats` runs of `fn` (which processes `n` images)."""
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - t))
    return max(rates), rates


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--n-images", type=int, default=64, help="images per pass")
    ap.add_argument("--repeats", type=int, default=3,
                    help="passes per figure; the best is reported (least disturbed by load)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--generate", type=int, metavar="SIDE",
                    help="use generated SIDE x SIDE JPEGs instead of the product photos")
    ap.add_argument("--no-store", action="store_true",
                    help="skip the extract_features end-to-end figure")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)

    import torch
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    logging.getLogger("mjave").setLevel(logging.WARNING)
    from mjave.encoders.image import EfficientNetLiteEncoder, load_image

    tmp = tempfile.TemporaryDirectory(prefix="mjave-image-bench-")
    photos = sorted(IMAGES.glob("*.jpg")) if a.generate is None else []
    if photos:
        source = f"{IMAGES} ({len(photos)} photos, repeated)"
    else:
        side = a.generate or 500
        photos = generate_jpegs(Path(tmp.name) / "jpg", min(a.n_images, 32), side)
        source = f"{len(photos)} generated {side}x{side} JPEGs (quality 90), repeated"
    paths = [photos[i % len(photos)] for i in range(a.n_images)]
    n = len(paths)
    enc = EfficientNetLiteEncoder("lite0", image_size=a.image_size)
    print(f"{n} images from {source}; EfficientNet-Lite0 at {a.image_size} px; "
          f"{a.threads} torch threads; {os.cpu_count()} CPUs", flush=True)

    decoded = [load_image(p) for p in paths]
    pixels = enc.preprocess(decoded)
    with torch.no_grad():
        enc(pixels[:8])                                                   # warm-up
    workers = max(1, min(8, os.cpu_count() or 1))                        # as the library
    pool = ThreadPoolExecutor(max_workers=workers)

    decode_rate, _ = rate(lambda: [load_image(p) for p in paths], n, a.repeats)
    resize_rate, _ = rate(lambda: enc.preprocess(decoded), n, a.repeats)
    decode_pool_rate, _ = rate(lambda: list(pool.map(load_image, paths)), n, a.repeats)
    print(f"decode alone {decode_rate:.0f} img/s (1 thread), {decode_pool_rate:.0f} img/s "
          f"({workers}-thread pool); resize + normalise alone {resize_rate:.0f} img/s", flush=True)

    def chunks(seq, b):
        return [seq[i:i + b] for i in range(0, len(seq), b)]

    def forward(b):
        with torch.no_grad():
            for x in chunks(pixels, b):
                enc(x)

    def pre_forward(b):
        for ims in chunks(decoded, b):
            enc.encode_images(ims)

    def full_serial(b):
        for ps in chunks(paths, b):
            enc.encode_images([load_image(p) for p in ps])

    def full_pool(b):
        # as mjave.encoders.features._extract_images: decode batch i+1 while encoding batch i
        cs = chunks(paths, b)
        future = pool.map(load_image, cs[0])
        for i in range(len(cs)):
            images = list(future)
            if i + 1 < len(cs):
                future = pool.map(load_image, cs[i + 1])
            enc.encode_images(images)

    rows = []
    for b in a.batch_sizes:
        row: dict = {"batch_size": b}
        for name, fn in (("forward", forward), ("preprocess+forward", pre_forward),
                         ("full", full_pool), ("full-serial", full_serial)):
            best, all_ = rate(lambda: fn(b), n, a.repeats)
            row[name] = round(best, 1)
            row[name + "_passes"] = [round(x, 1) for x in all_]
        row["full_over_forward"] = round(row["full"] / row["forward"], 3)
        row["full_serial_over_forward"] = round(row["full-serial"] / row["forward"], 3)
        rows.append(row)
        print(f"batch {b:>3}: forward {row['forward']:6.1f} img/s | preprocess+forward "
              f"{row['preprocess+forward']:6.1f} | full (pool decode) {row['full']:6.1f} "
              f"({row['full_over_forward']:.2f}x forward) | full, serial decode "
              f"{row['full-serial']:6.1f} ({row['full_serial_over_forward']:.2f}x)", flush=True)

    store_rate = None
    if not a.no_store:
        from mjave.data.records import Record
        from mjave.config import EncoderConfig
        from mjave.encoders.features import extract_features
        records = [Record(id=f"r{i}", text="x", cid=f"p{i}", image=str(p))
                   for i, p in enumerate(paths)]
        cfg = EncoderConfig(text_encoder="minilm", image_encoder="efficientnet-lite0",
                            image_size=a.image_size)
        best = 0.0
        for k in range(a.repeats):
            stats = extract_features(records, Path(tmp.name) / f"store{k}", cfg, batch_size=32,
                                     text=False, image=True, device="cpu", image_encoder=enc)
            best = max(best, stats.images_per_second)
        store_rate = round(best, 1)
        print(f"extract_features end to end (batch 32, float16 store): {store_rate:.1f} img/s",
              flush=True)

    report = {"date": dt.date.today().isoformat(), "machine": platform.platform(),
              "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "threads": a.threads, "torch": torch.__version__, "images": source,
              "n_images": n, "image_size": a.image_size, "decode_workers": workers,
              "decode_per_s": round(decode_rate, 1),
              "decode_pool_per_s": round(decode_pool_rate, 1),
              "resize_normalise_per_s": round(resize_rate, 1), "runs": rows,
              "extract_features_per_s": store_rate, "load_average": os.getloadavg()}
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    pool.shutdown()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
