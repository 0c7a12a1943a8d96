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


def cmd_demo(args: argparse.Namespace) -> int:
    print("mjave demo: the model is not built yet")
    return 2


def add_data_commands(commands: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """`mjave data validate|stats|convert`; returns the data subparsers for more commands."""
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
    return sub


def add_demo_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("demo", help="end-to-end demo (not built yet)")
    p.set_defaults(func=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    """The parser; `parser.commands` is the top-level subparsers object, `parser.data_commands`
    the one under `mjave data`, so other modules can register further subcommands."""
    parser = argparse.ArgumentParser(prog="mjave", description="Multimodal attribute value "
                                     "extraction (M-JAVE): data tools, training, prediction.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.commands = commands  # type: ignore[attr-defined]
    parser.data_commands = add_data_commands(commands)  # type: ignore[attr-defined]
    add_demo_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `mjave data stats x | head`: the reader left, which is no error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
