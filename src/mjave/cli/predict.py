"""`mjave predict MODEL INPUT -o OUTPUT`: batch prediction over files, here (`--engine local`)
or on Ray Data (`--engine ray`)."""

from __future__ import annotations

import argparse

from mjave.cli.console import (add_threads_option, apply_threads, fail, failing_with,
                                progress_bar)
from mjave.cli.format_option import add_format_option

RUN_ERRORS = (OSError, ImportError, ValueError)
"""What stops a sweep before it can run (missing model, unreadable input, unwritable output,
a missing extra); DataError and ConfigError are ValueErrors."""


@failing_with(*RUN_ERRORS)
def cmd_predict(args: argparse.Namespace) -> int:
    """`mjave predict`: exit 0 when the sweep finished (error rows included), 1 when it could
    not run (missing model, unreadable input, unwritable output)."""
    if args.engine == "ray":
        return cmd_predict_ray(args)
    if args.ray_address is not None or args.num_workers is not None:
        return fail("--ray-address and --num-workers need --engine ray")
    from mjave.inference.batch import predict_file
    apply_threads(args.threads)
    summary = predict_file(args.model, args.input, args.output, batch_size=args.batch_size,
                           device=args.device, resume=args.resume,
                           image_root=args.image_root, progress=progress_bar(),
                           input_format=args.format, include_text=not args.no_text,
                           max_text_chars=args.max_text_chars,
                           max_image_pixels=args.max_image_pixels, layout=args.layout)
    print(summary.summary())
    return 0


def cmd_predict_ray(args: argparse.Namespace) -> int:
    """`mjave predict --engine ray`: exit 0 when the job finished (error rows included), 1 when
    it could not run."""
    if args.resume:
        return fail("--resume is not supported with --engine ray (a run replaces its output "
                    "folder)")
    if args.layout != "nested":
        return fail(f"--layout {args.layout} is not supported with --engine ray (it writes "
                    "nested Parquet parts); use --engine local")
    # imports ray only when the job runs
    from mjave.inference.ray_engine import DEFAULT_WORKERS, RayEngineError, predict_with_ray
    try:
        summary = predict_with_ray(
            args.model, args.input, args.output, address=args.ray_address,
            num_workers=DEFAULT_WORKERS if args.num_workers is None else args.num_workers,
            batch_size=args.batch_size, device=args.device, image_root=args.image_root,
            input_format=args.format, include_text=not args.no_text,
            max_text_chars=args.max_text_chars, max_image_pixels=args.max_image_pixels)
    except RayEngineError as e:
        return fail(str(e))
    print(summary.summary())
    return 0


def add_predict_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `mjave predict MODEL INPUT -o OUTPUT ...` on the top-level subparsers."""
    from mjave.inference.tables import LAYOUTS
    p = commands.add_parser(
        "predict", help="predict attributes and values for every row of a file",
        description="Stream INPUT (JSONL, JAVE TSV, CSV with an id,text[,image] header, or "
        "Parquet) through a trained model into OUTPUT (.jsonl, .csv or .parquet). Rows that "
        "cannot be predicted become error rows; the summary counts them by reason.")
    p.add_argument("model", help="model folder written by `mjave train`")
    p.add_argument("input", help="input file (--engine ray: also a folder or a glob of shards)")
    p.add_argument("-o", "--output", required=True, help="output file (.jsonl, .csv, .parquet)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N",
                   help="texts per forward pass (default 32; lower it if memory runs short)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_threads_option(p)
    p.add_argument("--resume", action="store_true",
                   help="skip ids already in the output and append the rest")
    p.add_argument("--image-root", help="folder image paths are relative to (and where "
                   "<cid>.jpg etc. are looked for); it confines them as the server's does: a "
                   "path with '..' or outside it (symlinks included) is an error row")
    p.add_argument("--max-text-chars", type=int, default=None, metavar="N",
                   help="longest text predicted (longer: an error row; default 100000)")
    p.add_argument("--max-image-pixels", type=int, default=None, metavar="N",
                   help="largest image, width x height, read from its header before decoding "
                   "(larger: unreadable; default 40000000, as mjave serve)")
    add_format_option(p)
    p.add_argument("--no-text", action="store_true", help="leave the text out of the output")
    p.add_argument("--layout", choices=LAYOUTS, default="nested",
                   help="output rows for .csv, .parquet and .jsonl: nested = one row per input "
                   "row, attributes and values as JSON/lists (default); long = one row per "
                   "predicted value (id, attribute, value, begin, end, score; a row without a "
                   "value appears once, empty); wide = one row per input row, one column per "
                   "attribute holding its best-scoring value (see docs/inference.md)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process (default); ray: Ray Data over the shards of INPUT "
                   "(a file, a folder or a quoted glob) into a folder of Parquet parts "
                   "(pip install 'mjave[ray]'; see docs/inference.md)")
    p.add_argument("--ray-address", help="with --engine ray: a running Ray cluster (auto, "
                   "ray://host:10001); default: start a local Ray")
    p.add_argument("--num-workers", type=int,
                   help="with --engine ray: model actors, each loading the model once (default 2)")
    p.set_defaults(func=cmd_predict)
    return p


__all__ = ["add_predict_command", "cmd_predict", "cmd_predict_ray"]
