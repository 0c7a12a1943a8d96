"""`mjave data validate|stats|convert|label|list`: check, describe, convert and label datasets,
and list the ones shipped with mjave."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mjave.cli.console import progress_bar, report_skipped
from mjave.cli.format_option import add_format_option
from mjave.data.errors import DataError, RowIssues
from mjave.data.formats import iter_records, read_records, write_records
from mjave.data.outputs import atomic_write, check_not_input
from mjave.data.stats import dataset_stats, format_stats


def add_mode(p: argparse.ArgumentParser) -> None:
    """--strict (default: the first bad row is an error) or --lenient (skip and report)."""
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--strict", dest="lenient", action="store_false",
                      help="stop at the first bad row (the default)")
    mode.add_argument("--lenient", dest="lenient", action="store_true",
                      help="skip bad rows, report each with its reason")
    p.set_defaults(lenient=False)


def read_checked(args: argparse.Namespace):
    """The labelled records of `args.file` (a format without spans is refused), the skipped
    rows reported; an error when none is valid."""
    records, issues = read_records(args.file, args.format, strict=not args.lenient,
                                   labelled=True)
    report_skipped(issues)
    if not records and issues.rows_read:
        raise DataError(f"no valid rows among {issues.rows_read}", path=args.file,
                        reason="no valid rows")
    return records, issues


def cmd_data_validate(args: argparse.Namespace) -> int:
    records, issues = read_checked(args)
    spans = sum(len(r.spans) for r in records)
    attrs = len({s.attr for r in records for s in r.spans})
    skipped = (f" ({len(issues.skipped)} of {issues.rows_read} rows skipped)"
               if issues.skipped else "")
    print(f"OK {args.file}: {len(records)} records, {spans} spans, {attrs} attributes{skipped}")
    return 0


def cmd_data_stats(args: argparse.Namespace) -> int:
    records, issues = read_checked(args)
    stats = dataset_stats(records, issues)
    print(json.dumps(stats, ensure_ascii=False, indent=2) if args.json else format_stats(stats))
    return 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    check_not_input(args.output, [args.input])
    read_issues = RowIssues()
    records = iter_records(args.input, args.from_format, strict=not args.lenient,
                           issues=read_issues, labelled=True)
    written = write_records(records, args.output, args.to_format, strict=not args.lenient)
    report_skipped(read_issues)
    n = written.rows_read - len(written.skipped)
    if n == 0 and read_issues.rows_read:
        report_skipped(written)
        Path(args.output).unlink(missing_ok=True)  # an empty file would pass for a result
        raise DataError(f"nothing written: all {written.rows_read} records were skipped",
                        path=args.output, reason="no valid rows")
    print(f"wrote {n} records to {args.output}")
    if written.skipped:
        report_skipped(written)  # its summary also names overlaps and fields lost
    elif written.summary():
        print(f"note: {written.summary()}")
    return 0


def cmd_data_labelstudio_config(args: argparse.Namespace) -> int:
    """The config XML whose label names and tags match the tasks `--to labelstudio` writes."""
    from mjave.data.formats.labelstudio import labeling_config, record_attributes
    source = Path(args.source)
    if source.is_dir():
        from mjave.config import RunConfig, load
        from mjave.data.schema import AttributeSchema
        attributes = list(AttributeSchema.load(source / "schema.json").attributes)
        image = load(RunConfig, source / "config.json").model.use_image
    else:
        records, _ = read_records(source, args.format, labelled=True)
        attributes, image = record_attributes(records)
    if not attributes:
        raise DataError("no attribute to label: the data has no spans", path=str(source),
                        reason="no attributes")
    xml = labeling_config(attributes, image if args.image is None else args.image)
    if args.output is None:
        print(xml, end="")
        return 0
    check_not_input(args.output, [args.source])
    with atomic_write(args.output) as f:
        f.write(xml)
    print(f"wrote the labelling config for {len(attributes)} attributes to {args.output}")
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    """The datasets shipped in the package, with license, attribution and the path of each split."""
    from mjave.datasets import DATASETS
    rows = [{"name": d.name, "license": d.license, "description": d.description,
             "attribution": d.attribution, "splits": {s: str(f) for s, f in d.paths().items()},
             "license_files": [str(d.folder / f) for f in d.license_files]}
            for d in DATASETS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']}  ({row['license']})  {row['description']}")
        print(f"  attribution: {row['attribution']}")
        for split, path in row["splits"].items():
            print(f"  {split + ':':<8}{path}")
        print(f"  license: {', '.join(row['license_files'])}")
    return 0


def cmd_data_label(args: argparse.Namespace) -> int:
    from mjave.data.labeling import LabelPolicy, label_files
    policy = LabelPolicy(occurrences=args.occurrences, conflicts=args.conflicts,
                         unknown_products=args.unknown_products, case_breaks=args.case_breaks)
    run = label_files(args.products, args.catalog, args.output, args.synonyms, policy,
                      args.calibration_fraction, args.seed, products_format=args.format,
                      strict=not args.lenient, progress=progress_bar())
    for issues in run.issues.values():
        report_skipped(issues)
    print(run.summary.summary())
    print(f"wrote {run.summary.records} records to {run.output}, summary {run.summary_path}")
    if run.written.summary():
        print(f"note: {run.written.summary()}")
    return 0


def add_label_command(sub: argparse._SubParsersAction) -> None:
    """`mjave data label`: spans from a catalog table (mjave.data.labeling, docs/completion.md)."""
    from mjave.data.labeling import CONFLICTS, OCCURRENCES, UNKNOWN_PRODUCTS

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
    add_format_option(p, what="products")
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
    add_mode(p)
    p.set_defaults(func=cmd_data_label)


def add_data_commands(commands: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """`mjave data validate|stats|convert|label|list`; returns the data subparsers for more
    commands."""
    data = commands.add_parser("data", help="check, describe and convert datasets")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("validate", help="check every row; exit 1 on the first error")
    p.add_argument("file", help="labelled data file (JSONL, JAVE TSV or CoNLL)")
    add_format_option(p, what="data")
    add_mode(p)
    p.set_defaults(func=cmd_data_validate)

    p = sub.add_parser("stats", help="counts, attribute table, lengths, BIO overlap losses")
    p.add_argument("file", help="labelled data file (JSONL, JAVE TSV or CoNLL)")
    add_format_option(p, what="data")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    add_mode(p)
    p.set_defaults(func=cmd_data_stats)

    p = sub.add_parser("convert", help="convert labelled data (and predictions) between formats: "
                       "JSONL, JAVE TSV, CoNLL, Label Studio, spaCy DocBin")
    p.add_argument("input", help="labelled file to read (JSONL, JAVE TSV, CoNLL, a Label Studio "
                   "export with --from labelstudio, a .spacy DocBin, or `mjave predict` output "
                   "with --from predictions)")
    p.add_argument("output", help="file to write (never the input)")
    add_format_option(p, "--from", dest="from_format", what="input")
    add_format_option(p, "--to", dest="to_format", what="output")
    add_mode(p)
    p.set_defaults(func=cmd_data_convert)
    add_label_command(sub)

    p = sub.add_parser("labelstudio-config", help="the Label Studio labelling config (XML) for "
                       "the attributes of a labelled file or a model folder")
    p.add_argument("source", help="labelled data file, or a model folder written by `mjave "
                   "train` (its attribute schema)")
    add_format_option(p, what="data")
    p.add_argument("-o", "--output", help="XML file to write (default: print it)")
    p.add_argument("--image", action=argparse.BooleanOptionalAction, default=None,
                   help="show the product image above the text (default: when the data has "
                   "images, or the model uses them)")
    p.set_defaults(func=cmd_data_labelstudio_config)

    p = sub.add_parser("list", help="the datasets shipped with mjave: license, attribution, "
                       "the path of each split (for data.train / data.valid)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=cmd_data_list)
    return sub


__all__ = ["add_data_commands", "add_label_command", "add_mode"]
