"""Memory of `mjave complete`: peak RSS at 10,000 vs 100,000 synthetic products (flat = streams).

Trains a tiny text-only model (1-layer, 32-wide random BERT with the real MiniLM tokenizer, a few
epochs on the synthetic catalog) once, writes N synthetic products (1-2 texts each, JSONL, written
line by line) and a catalog table (2-3 rows per product, CSV) for every size, then runs
`mjave.completion.suggest.complete` on each size in a fresh subprocess and reads that child's
peak resident set size from `os.wait4` (ru_maxrss). Also reports the wall time, the rows written
and the on-disk size of the inputs, and saves everything as JSON.

    python benchmarks/completion_memory.py                         # sizes 1,000 10,000 100,000
    python benchmarks/completion_memory.py --sizes 1000 10000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLOURS = ["red", "blue", "green", "black", "white", "pink", "grey", "navy"]
MATERIALS = ["cotton", "wool", "leather", "denim", "silk", "linen"]
ITEMS = ["shirt", "dress", "jacket", "boots", "scarf", "skirt"]
FITS = ["slim fit", "loose fit", "regular fit"]


def write_inputs(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """N products (JSONL) and their partial table (CSV), written row by row."""
    rng = random.Random(seed)
    products, table = folder / f"products-{n}.jsonl", folder / f"table-{n}.csv"
    with open(products, "w", encoding="utf-8") as p, open(table, "w", encoding="utf-8") as t:
        t.write("product_id,attribute,value\n")
        for i in range(n):
            pid = f"p{i:07d}"
            c, m, it, fit = (rng.choice(COLOURS), rng.choice(MATERIALS), rng.choice(ITEMS),
                             rng.choice(FITS))
            texts = [f"{c} {m} {it}, {fit}"]
            if rng.random() < 0.5:
                texts.append(f"this {it} is made of soft {m} in {c}")
            for j, text in enumerate(texts):
                p.write(json.dumps({"id": f"{pid}-{j}", "cid": pid, "text": text}) + "\n")
            t.write(f"{pid},Color,{c}\n")          # Material and Fit are what is missing
            if rng.random() < 0.5:
                t.write(f"{pid},Item,{it}\n")
            if rng.random() < 0.2:
                t.write(f"{pid},Color,{rng.choice(COLOURS)}\n")   # a second colour (conflicts)
    return products, table


def train_tiny_model(folder: Path) -> Path:
    from mjave.data.formats import write_records
    from mjave.data.records import Record, Span
    from mjave.config import EncoderConfig
    from mjave.config import ModelConfig
    from mjave.testing import save_tiny_bert
    from mjave.config import DataConfig, RunConfig, TrainConfig
    from mjave.training.trainer import train

    rng = random.Random(1)
    records = []
    for i in range(200):
        c, m, it, fit = (rng.choice(COLOURS), rng.choice(MATERIALS), rng.choice(ITEMS),
                         rng.choice(FITS))
        text = f"{c} {m} {it}, {fit}"
        spans = [Span(0, len(c), "Color", c), Span(len(c) + 1, len(c) + 1 + len(m), "Material", m)]
        b = text.index(fit)
        spans.append(Span(b, b + len(fit), "Fit", fit))
        records.append(Record(f"t{i}", text, spans))
    write_records(records, folder / "train.jsonl")
    bert = save_tiny_bert(folder / "bert")
    cfg = RunConfig(output_dir=str(folder / "model"), features_dir=str(folder / "features"),
                    data=DataConfig(train=str(folder / "train.jsonl")),
                    encoder=EncoderConfig(text_encoder=str(bert), image_encoder="none"),
                    model=ModelConfig(use_image=False, attention_size=16),
                    train=TrainConfig(epochs=3, batch_size=32, lr=3e-3, patience=100,
                                      device="cpu"))
    return Path(train(cfg).output_dir)


CHILD = """
import json, sys, time
from mjave.completion.suggest import complete
model, products, table, out, batch = sys.argv[1:6]
t = time.perf_counter()
s = complete(model, products, table, out, batch_size=int(batch), device="cpu")
print(json.dumps({"seconds": time.perf_counter() - t, "texts": s.texts, "products": s.products,
                  "table_rows": s.table_rows, "mentions": s.mentions,
                  "suggestions": s.suggestions, "conflicts": s.conflicts}))
"""


def measure(model: Path, products: Path, table: Path, out: Path, batch: int) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="2")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(model), str(products), str(table),
                             str(out), str(batch)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"complete failed (exit {proc.returncode})")
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    # ru_maxrss is in KiB on Linux, bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    result["peak_rss_mib"] = round(usage.ru_maxrss * scale / 2**20, 1)
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    result["products_mib"] = round(products.stat().st_size / 2**20, 1)
    result["table_mib"] = round(table.stat().st_size / 2**20, 1)
    result["suggestions_mib"] = round(out.stat().st_size / 2**20, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workdir", help="keep the files here (default: a temporary folder)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mjave-completion-bench-") as tmp:
        folder = Path(a.workdir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        print("training a tiny model ...", flush=True)
        model = train_tiny_model(folder)
        rows = []
        for n in a.sizes:
            products, table = write_inputs(folder, n)
            r = measure(model, products, table, folder / f"suggestions-{n}.csv", a.batch_size)
            r["n_products"] = n
            rows.append(r)
            print(f"{n:>8} products ({r['texts']} texts, {r['table_rows']} table rows): peak RSS "
                  f"{r['peak_rss_mib']:.1f} MiB, {r['wall_seconds']:.0f} s, "
                  f"{r['suggestions']} suggestions, {r['conflicts']} conflicts", flush=True)
        report = {"machine": platform.platform(), "python": platform.python_version(),
                  "cpus": os.cpu_count(), "batch_size": a.batch_size, "runs": rows}
        if len(rows) > 1:
            report["rss_ratio_largest_to_smallest"] = round(
                rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"], 3)
            print(f"peak RSS, {rows[-1]['n_products']} vs {rows[0]['n_products']} products: "
                  f"x{report['rss_ratio_largest_to_smallest']}")
        if a.json:
            Path(a.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
