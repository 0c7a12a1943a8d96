"""int8 weights, three ways: span agreement with fp32 and throughput, on this CPU.

onnxruntime's int8 kernels depend on the CPU: with VNNI (AVX-512 VNNI, AVX-VNNI) u8 x s8 sums
go to int32; on AVX2 without VNNI pairs are summed in int16 first and saturate (issue #30).
`mjave export --int8` writes 7-bit signed weights, which cannot saturate. This benchmark exports
MODEL once in fp32, quantises the graph each way `quantize_int8` offers (7-bit signed, the
default; unsigned; 8-bit signed, the graph before issue #30), and runs the four folders through
the same Extractor on the same texts, interleaved, best of `--repeats` passes:

- agreement: Jaccard of each int8 folder's spans with the fp32 folder's; kept: share of fp32
  spans it keeps; span F1 (exact attribute, begin, end) when the texts carry gold spans;
- throughput in items/s and its ratio to fp32 measured in the same run.

The CPU's vector extensions are printed with every figure (`onnx_check.cpu_isa`). To see the
AVX2-only kernels on a VNNI machine, run this script under `qemu-x86_64 -cpu Haswell` (slow:
about 20 s per title for MiniLM; use `--limit 16`).

    python benchmarks/int8_kernels.py runs/oamine --data ../shared/data/oamine/valid.jsonl

Several models (e.g. a distillation teacher and its student, issue #35) run in the same pass;
every ratio is then against the first model's fp32 graph:

    python benchmarks/int8_kernels.py runs/oamine-mpnet runs/oamine-distilled \
        --graphs signed7 --data src/mjave/datasets/oamine/valid.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def span_f1(results: list[dict], rows: list[dict]) -> float | None:
    """Micro F1 of (row, attribute, begin, end) against the rows' gold spans, or None."""
    if not any("spans" in r for r in rows):
        return None
    gold = {(i, s["attr"], s["begin"], s["end"]) for i, r in enumerate(rows)
            for s in r.get("spans", [])}
    pred = {(i, v["attribute"], v["begin"], v["end"]) for i, r in enumerate(results)
            for v in r["values"]}
    tp = len(gold & pred)
    return 200 * tp / max(1, len(gold) + len(pred))


GRAPHS = {"unsigned": "int8 unsigned", "signed": "int8 signed (before #30)",
          "signed7": "int8 signed 7-bit"}
"""`quantize_int8`'s weights -> the row name."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="+", help="torch model folders written by `mjave train` "
                    "(ratios are against the first one's fp32 graph)")
    ap.add_argument("--graphs", nargs="+", choices=list(GRAPHS), default=list(GRAPHS),
                    help="int8 graphs to build besides fp32 (default: all three)")
    ap.add_argument("--data", help="JSONL rows with text (and category, spans); default: the "
                    "model's valid split")
    ap.add_argument("--limit", type=int, default=256, help="rows to use (default 256)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per folder")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args(argv)

    from mjave.inference.extractor import Extractor
    from mjave.inference.onnx_check import compare, cpu_isa
    from mjave.inference.onnx_export import export_model, quantize_int8
    from mjave.pretrained import GRAPH, LoadedModel

    data = args.data or LoadedModel.load(args.model[0], device="cpu").config.data.valid
    rows = [json.loads(line) for line in Path(data).read_text(encoding="utf-8").splitlines()
            if line.strip()][: args.limit]
    items = [{"text": r["text"], "category": r.get("category")} for r in rows]
    figures: dict = {"cpu": cpu_isa(), "model": str(args.model), "data": str(data),
                     "items": len(items), "threads": args.threads, "folders": {}}
    several = len(args.model) > 1
    with tempfile.TemporaryDirectory() as tmp:
        folders = {}
        for m, model in enumerate(args.model):
            prefix = f"{model.rstrip('/')} " if several else ""   # as given: unique
            fp32 = export_model(model, Path(tmp) / str(m) / "fp32")
            folders[prefix + "fp32"] = fp32
            for weights in args.graphs:
                folder = Path(tmp) / str(m) / weights
                shutil.copytree(fp32, folder)
                quantize_int8(folder / GRAPH, weights)
                folders[prefix + GRAPHS[weights]] = folder
        reference = next(iter(folders))   # the first model's fp32
        extractors = {n: Extractor.load(f, device="cpu", threads=args.threads)
                      for n, f in folders.items()}
        results = {n: ex.predict_batch(items) for n, ex in extractors.items()}  # warm-up
        best = {n: float("inf") for n in extractors}
        for _ in range(args.repeats):
            for n, ex in extractors.items():
                t = time.perf_counter()
                ex.predict_batch(items)
                best[n] = min(best[n], time.perf_counter() - t)
    for n in extractors:
        # agreement is with the same model's fp32 graph ("<model> int8 ..." -> "<model> fp32")
        own_fp32 = n if n.endswith("fp32") else (
            n[:n.index("int8")] + "fp32" if several else reference)
        check = compare(results[own_fp32], results[n], cpu=figures["cpu"], source=str(data))
        figures["folders"][n] = {
            "items_per_s": len(items) / best[n], "vs_fp32": best[reference] / best[n],
            "agreement": check.agreement, "kept": check.kept,
            "max_score_drift": check.max_score_drift, "span_f1": span_f1(results[n], rows)}
    print(f"CPU: {figures['cpu']}; {len(items)} items of {data}; {args.threads} thread(s)")
    print(f"{'graph':<44} {'items/s':>8} {'vs ' + reference:>8} {'agree':>6} {'kept':>6} "
          f"{'F1':>6}   (agree/kept: against the same model's fp32)")
    for n, f in figures["folders"].items():
        f1 = "-" if f["span_f1"] is None else f"{f['span_f1']:.2f}"
        print(f"{n:<44} {f['items_per_s']:8.1f} {f['vs_fp32']:8.2f} {f['agreement']:6.3f} "
              f"{f['kept']:6.3f} {f1:>6}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
