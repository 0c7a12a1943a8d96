"""`mjave export MODEL -o OUT [--int8] [--opset N]`: a model folder as ONNX graphs for CPU
inference with onnxruntime (`mjave.inference.onnx_export`). The exported folder is what
`mjave predict`, `mjave serve`, `mjave evaluate` and `Extractor.load` take in place of MODEL."""

from __future__ import annotations

import argparse
import json
import sys

from mjave.cli.console import failing_with, setup_logging


@failing_with(OSError, ImportError, ValueError)
def cmd_export(args: argparse.Namespace) -> int:
    setup_logging()
    from mjave.inference.onnx_export import Int8CheckError, export_model
    from mjave.pretrained import EXPORT
    try:
        out = export_model(args.model, args.output, int8=args.int8, opset=args.opset,
                           check_texts=args.check_texts, min_agreement=args.min_agreement,
                           force=args.force, int8_weights=args.int8_weights)
    except Int8CheckError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.int8:
        check = json.loads((out / EXPORT).read_text(encoding="utf-8"))["int8_check"]
        note = "" if check["passed"] else "  <- BELOW THE FLOOR, written because of --force"
        print(f"int8 vs fp32 on {check['items']} texts ({check['source']}), CPU {check['cpu']}: "
              f"span agreement {check['agreement']:.3f}, fp32 spans kept {check['kept']:.1%}, "
              f"score drift max {check['max_score_drift']:.3f}{note}")
    print(f"wrote {out} ({'int8' if args.int8 else 'fp32'}, opset {args.opset}); predict with "
          f"`mjave predict {out} INPUT -o OUTPUT`")
    return 0


def add_export_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `mjave export` on the top-level subparsers."""
    from mjave.inference.onnx_check import MIN_AGREEMENT
    from mjave.inference.onnx_export import DEFAULT_OPSET, INT8_WEIGHTS
    p = commands.add_parser(
        "export", help="export a model folder to ONNX for fast CPU inference",
        description="Write MODEL's text encoder and head (and image encoder) as ONNX graphs "
        "into OUT, with its config, schema and tokenizer: a folder that `mjave predict`, "
        "`mjave serve` and `mjave evaluate` run with onnxruntime on CPU (pip install "
        "'mjave[onnx]'). See docs/performance.md.")
    p.add_argument("model", help="model folder written by `mjave train`")
    p.add_argument("-o", "--output", required=True, help="the exported folder to write")
    p.add_argument("--int8", action="store_true",
                   help="dynamic int8 quantisation of the linear layers (faster, slightly "
                   "different scores), checked against fp32 on this CPU before it is written")
    p.add_argument("--check-texts", metavar="FILE",
                   help="rows with a text (JSONL, CSV, Parquet, ...) to check int8 against fp32 "
                   "on (default: the model's valid split, else built-in texts)")
    p.add_argument("--min-agreement", type=float, default=None, metavar="F",
                   help=f"refuse an int8 graph whose span agreement with fp32 on the check "
                   f"texts is below F (default {MIN_AGREEMENT})")
    p.add_argument("--int8-weights", choices=INT8_WEIGHTS, default="signed7",
                   help="signed7 (default): 7-bit signed, the same answers and fast on every x86 "
                   "CPU; unsigned: 8-bit, the same answers everywhere but no faster than fp32 on "
                   "VNNI CPUs; signed: 8-bit, fastest on VNNI CPUs and wrong on AVX2 CPUs without "
                   "VNNI (docs/performance.md)")
    p.add_argument("--force", action="store_true",
                   help="write the int8 graph even when it fails its check (with a warning)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.set_defaults(func=cmd_export)
    return p


__all__ = ["add_export_command", "cmd_export"]
