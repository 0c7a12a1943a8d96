"""The `mjave` command: argument parsing only; each subcommand calls one library function.

To add a command: write `add_<name>_command(commands)` that calls `commands.add_parser(...)` and
`set_defaults(func=...)` with a function `(args) -> int`, and call it from `build_parser`
(or, from elsewhere, on `build_parser().commands`). `main` turns a DataError into
`error: <message>` on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from mjave.config import ConfigError
from mjave.data.errors import DataError, RowIssues
from mjave.data.formats import FORMATS, iter_records, read_records, write_records
from mjave.data.stats import dataset_stats, format_stats

MAX_LISTED_ERRORS = 20


def _add_mode(p: argparse.ArgumentParser) -> None:
    """--strict (default: the first bad row is an error) or --lenient (skip and report)."""
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--strict", dest="lenient", action="store_false",
                      help="stop at the first bad row (the default)")
    mode.add_argument("--lenient", dest="lenient", action="store_true",
                      help="skip bad rows, report each with its reason")
    p.set_defaults(lenient=False)


def _report_skipped(issues: RowIssues) -> None:
    """Lenient mode is never silent: the summary and the first errors, on stderr."""
    if not issues.skipped:
        return
    print(f"warning: {issues.summary()}", file=sys.stderr)
    for e in issues.skipped[:MAX_LISTED_ERRORS]:
        print(f"  {e}", file=sys.stderr)
    if len(issues.skipped) > MAX_LISTED_ERRORS:
        print(f"  ... and {len(issues.skipped) - MAX_LISTED_ERRORS} more", file=sys.stderr)


def _read(args: argparse.Namespace):
    records, issues = read_records(args.file, args.format, strict=not args.lenient)
    _report_skipped(issues)
    if not records and issues.rows_read:
        raise DataError(f"no valid rows among {issues.rows_read}", path=args.file,
                        reason="no valid rows")
    return records, issues


def cmd_data_validate(args: argparse.Namespace) -> int:
    records, issues = _read(args)
    spans = sum(len(r.spans) for r in records)
    attrs = len({s.attr for r in records for s in r.spans})
    skipped = f" ({len(issues.skipped)} of {issues.rows_read} rows skipped)" if issues.skipped else ""
    print(f"OK {args.file}: {len(records)} records, {spans} spans, {attrs} attributes{skipped}")
    return 0


def cmd_data_stats(args: argparse.Namespace) -> int:
    records, issues = _read(args)
    stats = dataset_stats(records, issues)
    print(json.dumps(stats, ensure_ascii=False, indent=2) if args.json else format_stats(stats))
    return 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    read_issues = RowIssues()
    records = iter_records(args.input, args.from_format, strict=not args.lenient,
                           issues=read_issues)
    written = write_records(records, args.output, args.to_format, strict=not args.lenient)
    _report_skipped(read_issues)
    n = written.rows_read - len(written.skipped)
    if n == 0 and read_issues.rows_read:
        _report_skipped(written)
        Path(args.output).unlink(missing_ok=True)  # an empty file would pass for a result
        raise DataError(f"nothing written: all {written.rows_read} records were skipped",
                        path=args.output, reason="no valid rows")
    print(f"wrote {n} records to {args.output}")
    if written.skipped:
        _report_skipped(written)  # its summary also names overlaps and fields lost
    elif written.summary():
        print(f"note: {written.summary()}")
    return 0


def cmd_data_label(args: argparse.Namespace) -> int:
    from mjave.data.labeling import LabelPolicy, label_files
    policy = LabelPolicy(occurrences=args.occurrences, conflicts=args.conflicts,
                         unknown_products=args.unknown_products, case_breaks=args.case_breaks)
    run = label_files(args.products, args.catalog, args.output, args.synonyms, policy,
                      args.calibration_fraction, args.seed, products_format=args.format,
                      strict=not args.lenient, progress=_progress())
    for issues in run.issues.values():
        _report_skipped(issues)
    print(run.summary.summary())
    print(f"wrote {run.summary.records} records to {run.output}, summary {run.summary_path}")
    if run.written.summary():
        print(f"note: {run.written.summary()}")
    return 0


def add_label_command(sub: argparse._SubParsersAction) -> None:
    """`mjave data label`: spans from a catalog table (mjave.data.labeling, docs/completion.md)."""
    from mjave.data.labeling import CONFLICTS, OCCURRENCES, UNKNOWN_PRODUCTS
    from mjave.data.products import PRODUCT_FORMATS

    def fraction(s: str) -> float:
        v = float(s)
        if not 0.0 <= v < 1.0:
            raise argparse.ArgumentTypeError(f"must be in [0, 1), not {s}")
        return v
    p = sub.add_parser("label", help="label product texts from a catalog attribute table")
    p.add_argument("products", help="products: JSONL, JAVE TSV, CoNLL, CSV or Parquet "
                   "(id, text[, cid, category, image])")
    p.add_argument("--catalog", required=True, metavar="TABLE",
                   help="CSV/TSV/JSONL with product_id, attribute, value")
    p.add_argument("-o", "--output", required=True, help="labelled records (.jsonl or .conll); "
                   "the summary goes beside it as .summary.json")
    p.add_argument("--synonyms", metavar="FILE",
                   help="CSV/TSV/JSONL with attribute, canonical_value, surface_form")
    p.add_argument("--format", choices=PRODUCT_FORMATS,
                   help="products format; default: from the extension")
    p.add_argument("--occurrences", choices=OCCURRENCES, default="all",
                   help="label every occurrence of a value (default) or only the first")
    p.add_argument("--conflicts", choices=CONFLICTS, default="drop",
                   help="a surface two attributes claim: label neither (default), both, or the "
                   "attribute of the earlier table row")
    p.add_argument("--unknown-products", choices=UNKNOWN_PRODUCTS, default="report",
                   help="table rows naming no known product: count and list them (default) or "
                   "fail")
    p.add_argument("--case-breaks", action="store_true",
                   help="a change of case inside a word is a word boundary (scraped texts "
                   "whose spaces were lost: 'Hard DriveIn')")
    p.add_argument("--calibration-fraction", type=fraction, default=0.0, metavar="F",
                   help="hold out this fraction of (product, attribute) pairs for calibration")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration hold-out")
    _add_mode(p)
    p.set_defaults(func=cmd_data_label)


def add_data_commands(commands: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """`mjave data validate|stats|convert|label`; returns the data subparsers for more commands."""
    data = commands.add_parser("data", help="check, describe and convert datasets")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    fmt_help = f"file format ({', '.join(FORMATS)}); default: from the extension"

    p = sub.add_parser("validate", help="check every row; exit 1 on the first error")
    p.add_argument("file")
    p.add_argument("--format", choices=FORMATS, help=fmt_help)
    _add_mode(p)
    p.set_defaults(func=cmd_data_validate)

    p = sub.add_parser("stats", help="counts, attribute table, lengths, BIO overlap losses")
    p.add_argument("file")
    p.add_argument("--format", choices=FORMATS, help=fmt_help)
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    _add_mode(p)
    p.set_defaults(func=cmd_data_stats)

    p = sub.add_parser("convert", help="convert between jsonl, jave and conll")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--from", dest="from_format", choices=FORMATS, help=fmt_help)
    p.add_argument("--to", dest="to_format", choices=FORMATS, help=fmt_help)
    _add_mode(p)
    p.set_defaults(func=cmd_data_convert)
    add_label_command(sub)
    return sub


def _progress():
    """The progress-bar factory the library takes (tqdm on a terminal, quiet otherwise)."""
    from tqdm.auto import tqdm

    def make(iterable=None, **kwargs):
        return tqdm(iterable, dynamic_ncols=True, disable=None, **kwargs)
    return make


def _setup_logging() -> None:
    import logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


def _run_config(args: argparse.Namespace):
    from mjave.config import apply_overrides, load
    from mjave.training.config import RunConfig
    cfg = load(RunConfig, args.config) if args.config else RunConfig()
    return apply_overrides(cfg, args.set or [])


def _add_run_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="run config YAML/JSON (mjave.training.config.RunConfig)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.epochs=5 (repeatable)")


def cmd_train(args: argparse.Namespace) -> int:
    _setup_logging()
    from mjave.training.trainer import train
    cfg = _run_config(args)
    if not cfg.data.train:
        raise DataError("no training data: set data.train in the config or --set data.train=FILE")
    result = train(cfg, progress=_progress())
    from mjave.training.distributed import launch_rank
    if launch_rank() != 0:   # under torchrun only rank 0 reports
        return 0
    best = result.best_valid
    print(f"model: {result.output_dir} (best epoch {result.best_epoch} of {result.epochs_run}"
          f"{', resumed after epoch %d' % result.resumed_from if result.resumed_from else ''}, "
          f"{result.seconds:.0f} s)")
    if best:
        print(f"valid: attribute F1 {best['attribute']['f1']:.2f}  value F1 "
              f"{best['value']['f1']:.2f}  pair F1 {best['pair']['f1']:.2f}")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    _setup_logging()
    from mjave.data.formats import read_records
    from mjave.encoders.features import extract_features
    cfg = _run_config(args)
    store = cfg.features_dir or str(Path(cfg.output_dir) / "features")
    total = None
    for path in [p for p in (cfg.data.train, cfg.data.valid, cfg.data.test) if p]:
        records, issues = read_records(path, format=cfg.data.format, strict=not cfg.data.lenient)
        if issues.summary():
            print(f"{path}: {issues.summary()}")
        stats = extract_features(records, store, cfg.encoder, image_root=cfg.data.image_root,
                                 batch_size=args.batch_size, progress=_progress(),
                                 image=cfg.encoder.image_encoder != "none")
        print(f"{path}: {stats.summary()}")
        total = stats
    if total is None:
        raise DataError("no data files in the config (data.train / data.valid / data.test)")
    print(f"feature store: {store}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    _setup_logging()
    import json
    from mjave.evaluation.report import format_report
    from mjave.training.evaluate import evaluate_model
    report = evaluate_model(args.model, args.data, image_root=args.image_root,
                            device=args.device, format=args.format,
                            strict=not args.lenient, progress=_progress())
    print(format_report(report, title=f"{args.model} on {args.data}"))
    if report.get("issues"):
        print(report["issues"])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                   encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    _setup_logging()
    from mjave.experiments.demo import DemoConfig, run_demo
    cfg = DemoConfig(output_dir=args.output_dir, n_products=args.n_products, seed=args.seed,
                     epochs=args.epochs)
    result = run_demo(cfg, progress=_progress())
    print()
    print("Test split of the synthetic catalog (F1 %):")
    print(result.table)
    aw = result.awareness
    gain = result.reports["M-JAVE"]["value"]["f1"] - result.reports["JAVE"]["value"]["f1"]
    print(f"M-JAVE minus JAVE, value F1: {gain:+.2f}")
    print(f"image awareness of M-JAVE (true minus shuffled image): value "
          f"{aw['value']['awareness']:+.2f}, attribute {aw['attribute']['awareness']:+.2f}")
    print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in result.timings.items()))
    print(f"outputs: {result.output_dir}/summary.json, predictions.jsonl, gates.png")
    return 0


def add_model_commands(commands: argparse._SubParsersAction) -> None:
    """`mjave train|features|evaluate|demo`."""
    p = commands.add_parser("train", help="train a model from a run config")
    _add_run_config_args(p)
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("features", help="encode texts and images once into the feature store")
    _add_run_config_args(p)
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=cmd_features)

    p = commands.add_parser("evaluate", help="score a model folder on a data file")
    p.add_argument("model", help="model folder written by `mjave train`")
    p.add_argument("data", help="data file (JSONL, JAVE TSV or CoNLL)")
    p.add_argument("--image-root", help="folder the records' image paths are relative to")
    p.add_argument("--device", default="auto")
    p.add_argument("--format", choices=["jsonl", "jave", "conll"])
    p.add_argument("--json", help="also write the report as JSON here")
    p.add_argument("--lenient", action="store_true", help="skip bad rows (reported)")
    p.set_defaults(func=cmd_evaluate)

    p = commands.add_parser("demo", help="synthetic catalog: JAVE vs M-JAVE end to end")
    p.add_argument("--output-dir", default="demo_output")
    p.add_argument("--n-products", type=int, default=600)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    """The parser; `parser.commands` is the top-level subparsers object, `parser.data_commands`
    the one under `mjave data`, so other modules can register further subcommands."""
    parser = argparse.ArgumentParser(prog="mjave", description="Multimodal attribute value "
                                     "extraction (M-JAVE): data tools, training, prediction.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.commands = commands  # type: ignore[attr-defined]
    parser.data_commands = add_data_commands(commands)  # type: ignore[attr-defined]
    add_model_commands(commands)
    from mjave.inference.batch import add_predict_command
    from mjave.serving.cli import add_serve_command
    add_predict_command(commands)
    add_serve_command(commands)
    from mjave.completion.cli import add_complete_command
    add_complete_command(commands)
    from mjave.review.cli import add_review_command
    add_review_command(commands)
    from mjave.experiments.cli import add_experiment_command
    add_experiment_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (DataError, ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `mjave data stats x | head`: the reader left, which is no error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
