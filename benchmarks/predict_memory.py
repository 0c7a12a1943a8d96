"""Memory of a `mjave predict` sweep: peak RSS at 10k, 100k and 1M rows (flat = it streams).

Trains a tiny text-only model once (1-layer, 32-wide random BERT with the real MiniLM tokenizer,
`mjave.testing.save_tiny_bert`, 3 epochs on 200 synthetic products, seconds), writes an N-row
JSONL of short product texts line by line for every size, then runs the real command line,
`python -m mjave predict MODEL IN.jsonl -o OUT.jsonl --device cpu`, on each size in a fresh
subprocess and reads that child's peak resident set size from `os.wait4` (ru_maxrss), as
benchmarks/completion_memory.py does. Also reports the wall time, the sweep's rows/s (from the
command's summary line, model loading excluded) and the file sizes, and saves them as JSON.

Target (performance issue): peak RSS flat in the number of rows, i.e. the ratio
RSS(1M) / RSS(10k) close to 1. What is allowed to grow: `predict_file` keeps the set of ids it
has seen (duplicate detection, `--resume`), so a few hundred bytes per row remain.

    python benchmarks/predict_memory.py                          # 10,000 100,000 1,000,000 rows
    python benchmarks/predict_memory.py --rows 10000 100000 --json out.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# a sibling script: the same vocabulary and tiny model as the completion memory benchmark
from completion_memory import COLOURS, FITS, ITEMS, MATERIALS, train_tiny_model


def write_rows(path: Path, n: int, seed: int = 0) -> Path:
    """N rows `{"id", "text"}` of short product texts, written line by line."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            c, m, it, fit = (rng.choice(COLOURS), rng.choice(MATERIALS), rng.choice(ITEMS),
                             rng.choice(FITS))
            text = (f"{c} {m} {it}, {fit}" if rng.random() < 0.6
                    else f"this {it} is made of soft {m} in {c}, {fit}")
            f.write(json.dumps({"id": f"r{i:07d}", "text": text}) + "\n")
    return path


SUMMARY = re.compile(r"^(\d+) rows from .*: (\d+) predicted, (\d+) failed.* in ([\d.]+) s$")


def measure(model: Path, rows: Path, out: Path, batch: int, threads: int) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "mjave", "predict", str(model), str(rows), "-o", str(out),
           "--batch-size", str(batch), "--device", "cpu"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    stdout = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"mjave predict failed (exit {code}):\n{stdout}")
    wall = time.perf_counter() - start
    m = next((SUMMARY.match(line) for line in stdout.splitlines() if SUMMARY.match(line)), None)
    if m is None:
        raise SystemExit(f"no summary line in the output of mjave predict:\n{stdout}")
    n, ok, failed, seconds = int(m[1]), int(m[2]), int(m[3]), float(m[4])
    scale = 1 if sys.platform == "darwin" else 1024   # ru_maxrss: KiB on Linux, bytes on macOS
    return {"rows": n, "ok": ok, "failed": failed,
            "peak_rss_mib": round(usage.ru_maxrss * scale / 2**20, 1),
            "wall_seconds": round(wall, 1), "sweep_seconds": round(seconds, 1),
            "rows_per_s": round(n / seconds, 1) if seconds > 0 else None,
            "input_mib": round(rows.stat().st_size / 2**20, 1),
            "output_mib": round(out.stat().st_size / 2**20, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1,
                    help="OMP_NUM_THREADS of the child (1: a tiny model gains nothing from more, "
                    "and on a shared machine 2 threads ran 5-10x slower)")
    ap.add_argument("--workdir", help="keep the files here (default: a temporary folder)")
    ap.add_argument("--keep-files", action="store_true",
                    help="keep each size's input and output (default: deleted after the run)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mjave-predict-bench-") as tmp:
        folder = Path(a.workdir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        print("training a tiny model ...", flush=True)
        model = train_tiny_model(folder)
        runs = []
        for n in a.rows:
            rows = write_rows(folder / f"rows-{n}.jsonl", n)
            out = folder / f"predictions-{n}.jsonl"
            out.unlink(missing_ok=True)
            r = measure(model, rows, out, a.batch_size, a.threads)
            r["n_rows"] = n
            runs.append(r)
            print(f"{n:>9} rows: peak RSS {r['peak_rss_mib']:.1f} MiB, {r['rows_per_s']:.0f} "
                  f"rows/s ({r['sweep_seconds']:.0f} s sweep, {r['wall_seconds']:.0f} s wall), "
                  f"{r['ok']} predicted, {r['failed']} failed; input {r['input_mib']} MiB, "
                  f"output {r['output_mib']} MiB", flush=True)
            if not a.keep_files:
                rows.unlink()
                out.unlink()
        report = {"date": dt.date.today().isoformat(), "machine": platform.platform(),
                  "python": platform.python_version(), "cpus": os.cpu_count(),
                  "threads": a.threads, "batch_size": a.batch_size, "runs": runs,
                  "load_average": os.getloadavg()}
        if len(runs) > 1:
            first, last = runs[0], runs[-1]
            report["rss_ratio_largest_to_smallest"] = round(
                last["peak_rss_mib"] / first["peak_rss_mib"], 3)
            report["rss_growth_bytes_per_row"] = round(
                (last["peak_rss_mib"] - first["peak_rss_mib"]) * 2**20
                / max(1, last["n_rows"] - first["n_rows"]), 1)
            print(f"peak RSS, {last['n_rows']} vs {first['n_rows']} rows: "
                  f"x{report['rss_ratio_largest_to_smallest']} "
                  f"({report['rss_growth_bytes_per_row']} bytes per extra row)")
        if a.json:
            Path(a.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
