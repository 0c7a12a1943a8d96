"""`mjave export MODEL -o OUT [--int8] [--opset N]`: a model folder as ONNX graphs for CPU
inference with onnxruntime (`mjave.inference.onnx_export`). The exported folder is what
`mjave predict`, `mjave serve`, `mjave evaluate` and `Extractor.load` take in place of MODEL."""

from __future__ import annotations

import argparse

from mjave.cli.console import failing_with, setup_logging


@failing_with(OSError, ImportError, ValueError)
def cmd_export(args: argparse.Namespace) -> int:
    setup_logging()
    from mjave.inference.onnx_export import export_model
    out = export_model(args.model, args.output, int8=args.int8, opset=args.opset)
    print(f"wrote {out} ({'int8' if args.int8 else 'fp32'}, opset {args.opset}); predict with "
          f"`mjave predict {out} INPUT -o OUTPUT`")
    return 0


def add_export_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `mjave export` on the top-level subparsers."""
    from mjave.inference.onnx_export import DEFAULT_OPSET
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
                   "different scores)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.set_defaults(func=cmd_export)
    return p


__all__ = ["add_export_command", "cmd_export"]
