"""`mjave evaluate MODEL DATA`: score a model folder on a data file through the Extractor."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mjave.cli.console import progress_bar, setup_logging
from mjave.cli.format_option import add_format_option


def cmd_evaluate(args: argparse.Namespace) -> int:
    setup_logging()
    from mjave.evaluation.report import format_report
    from mjave.training.evaluate import evaluate_model
    report = evaluate_model(args.model, args.data, image_root=args.image_root,
                            device=args.device, format=args.format,
                            strict=not args.lenient, progress=progress_bar(),
                            train=args.train)
    print(format_report(report, title=f"{args.model} on {args.data}"))
    if report.get("issues"):
        print(report["issues"])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                   encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


def add_evaluate_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`mjave evaluate`."""
    p = commands.add_parser("evaluate", help="score a model folder on a data file")
    p.add_argument("model", help="model folder written by `mjave train`")
    p.add_argument("data", help="data file (JSONL, JAVE TSV or CoNLL)")
    p.add_argument("--image-root", help="folder the records' image paths are relative to")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    add_format_option(p, what="DATA (labelled)")
    p.add_argument("--json", help="also write the report as JSON here")
    p.add_argument("--train", metavar="FILE",
                   help="training data, to report recall on gold values seen and unseen in "
                        "training separately (default: the model config's data.train; without "
                        "either that part is omitted)")
    p.add_argument("--lenient", action="store_true", help="skip bad rows (reported)")
    p.set_defaults(func=cmd_evaluate)
    return p


__all__ = ["add_evaluate_command", "cmd_evaluate"]
