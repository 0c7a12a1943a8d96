"""`mjave review`: load suggestions (and conflicts) into the review database and serve the page;
`mjave review export`: write the decisions as a catalog table and as labelled training data.

    mjave review SUGGESTIONS.csv --products PRODUCTS [--conflicts CONFLICTS.csv] --db DB
                 [--image-root DIR] [--host 127.0.0.1] [--port 8001] [--reviewer NAME]
                 [--order score|uncertainty|gain|random]
    mjave review --db DB                       # serve what the database holds already
    mjave review export --db DB -o accepted.csv [--labeled OUT.jsonl]

Every malformed row of the CSV files (and every row naming a product the products file lacks)
is printed with its line number, and the command stops before anything is written or served.
FastAPI and uvicorn (the [serve] extra) are imported only to serve; export needs neither.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Sequence

from mjave.cli.console import fail, print_listed
from mjave.cli.format_option import add_format_option
from mjave.cli.serve import (LOG_LEVELS, image_root_error, serve_app, serve_extra_missing,
                             warn_if_exposed)
from mjave.data.errors import DataError
from mjave.review.order import DEFAULT_ORDER, ORDERS

MAX_LISTED = 50
USAGE = """mjave review SUGGESTIONS.csv --products PRODUCTS [--conflicts CONFLICTS.csv] --db DB
                    [--image-root DIR] [--host HOST] [--port PORT] [--reviewer NAME]
                    [--order {score,uncertainty,gain,random}]
       mjave review --db DB [--image-root DIR] [--host HOST] [--port PORT] [--order ORDER]
       mjave review export --db DB [-o ACCEPTED.csv] [--labeled OUT.jsonl]"""


def _default_reviewer() -> str:
    try:
        return getpass.getuser() or "reviewer"
    except Exception:  # no user name in some containers
        return "reviewer"


def add_review_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suggestions", nargs="?", metavar="SUGGESTIONS.csv | export",
                   help="the suggestions file of `mjave complete` (columns product_id, "
                        "attribute, value, normalized_value, score, begin, end, evidence), or "
                        "`export` to write the decisions out")
    p.add_argument("--db", required=True, metavar="DB",
                   help="the review database (SQLite, created when missing), e.g. review.sqlite")
    g = p.add_argument_group("review")
    g.add_argument("--products", metavar="PRODUCTS",
                   help="the products file (any format mjave reads: JSONL, TSV, CoNLL, CSV, "
                        "Parquet) with the texts the suggestions are about")
    add_format_option(g, what="the products file's")
    g.add_argument("--conflicts", metavar="CONFLICTS.csv",
                   help="the conflicts file of `mjave complete` (product_id, attribute, "
                        "table_value, text_value, score, begin, end, evidence)")
    g.add_argument("--image-root", metavar="DIR",
                   help="the folder product images are read from (default: no images shown)")
    g.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; the page has no authentication)")
    g.add_argument("--port", type=int, default=8001, help="port (default 8001; 0: a free one)")
    g.add_argument("--reviewer", default=None,
                   help="the reviewer name the page suggests (default: the user name)")
    g.add_argument("--order", default=DEFAULT_ORDER, choices=ORDERS,
                   help="the queue order the page starts with (reviewers can change it): "
                        "score (best first, the default), uncertainty (score closest to 0.5 "
                        "first: what teaches the next model most), gain (uncertainty, taking "
                        "turns across attributes) or random (a fair sample: `mjave complete "
                        "--reviews` judges the unreviewed rows by it, and only by it for "
                        "new_attribute); see mjave.review.order")
    g.add_argument("--lease-seconds", type=float, default=300.0, metavar="S",
                   help="how long an item stays with a reviewer who stopped answering "
                        "(default 300)")
    g.add_argument("--load-only", action="store_true",
                   help="check and load the inputs into the database, then exit")
    g.add_argument("--log-level", default="info", choices=LOG_LEVELS,
                   help="server log level (default: info)")
    e = p.add_argument_group("export")
    e.add_argument("-o", "--output", metavar="ACCEPTED.csv",
                   help="write the accepted and edited values as a catalog table "
                        "(product_id, attribute, value)")
    e.add_argument("--labeled", metavar="OUT.jsonl",
                   help="write the texts with the accepted values as labelled spans (JSONL "
                        "for `mjave train`)")


def load_inputs(args: argparse.Namespace):
    """Check the input files and load them into the database: the ReviewDB, or None after
    printing every bad row (nothing is written then)."""
    from mjave.data.outputs import check_not_input
    from mjave.review.db import ReviewDB
    from mjave.review.inputs import check_products, read_items, read_products

    items, errors = read_items(args.suggestions, "suggestion")
    if args.conflicts:
        conflicts, conflict_errors = read_items(args.conflicts, "conflict")
        items += conflicts
        errors += conflict_errors
    if errors:
        print(f"error: {len(errors)} malformed rows; nothing was loaded:", file=sys.stderr)
        print_listed(errors, MAX_LISTED)
        return None
    products = read_products(args.products, {i.product_id for i in items},
                             {i.record_id for i in items if i.record_id}, args.format)
    errors = check_products(items, products, args.products)
    if errors:
        print(f"error: {len(errors)} rows name products that {args.products} does not have; "
              "nothing was loaded:", file=sys.stderr)
        print_listed(errors, MAX_LISTED)
        return None
    check_not_input(args.db, [args.suggestions, args.products, args.conflicts],
                    "the review database")
    db = ReviewDB(args.db, lease_seconds=args.lease_seconds)
    summary = db.load(items, products)
    print(f"{args.db}: loaded {summary}")
    return db


def cmd_review(args: argparse.Namespace) -> int:
    if args.suggestions == "export":
        return cmd_export(args)
    if args.output or args.labeled:
        return fail("-o/--labeled belong to `mjave review export`", 2)
    if args.lease_seconds <= 0:
        return fail("--lease-seconds must be positive", 2)
    bad_root = image_root_error(args.image_root)
    if bad_root:
        return fail(bad_root)
    if args.suggestions is not None:
        if not args.products:
            return fail("--products is required with a suggestions file (the texts to show)", 2)
        db = load_inputs(args)
        if db is None:
            return 1
    else:
        if args.conflicts or args.products:
            return fail("give the suggestions file to load --products / --conflicts", 2)
        if not Path(args.db).is_file():
            raise DataError("no such review database; load a suggestions file first",
                            path=args.db, reason="missing database")
        from mjave.review.db import ReviewDB
        db = ReviewDB(args.db, lease_seconds=args.lease_seconds)
        if db.count_items() == 0:
            raise DataError("the review database holds no items; load a suggestions file",
                            path=args.db, reason="empty database")
    if args.load_only:
        return 0
    hint = serve_extra_missing("mjave review")
    if hint:
        return fail(hint)
    from mjave.review.app import create_review_app
    warn_if_exposed(args.host, "the review page")
    app = create_review_app(db, image_root=args.image_root,
                            reviewer=args.reviewer or _default_reviewer(), order=args.order)
    print(f"review page: http://{args.host}:{args.port}/  (Ctrl-C to stop)", flush=True)
    serve_app(app, host=args.host, port=args.port, log_level=args.log_level)  # SIGTERM: exit 0
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mjave.review.db import ReviewDB
    from mjave.review.export import export
    if not args.output and not args.labeled:
        return fail("mjave review export needs -o ACCEPTED.csv and/or --labeled OUT.jsonl", 2)
    if args.products or args.conflicts:
        return fail("--products / --conflicts are for loading, not for export", 2)
    if not Path(args.db).is_file():
        raise DataError("no such review database", path=args.db, reason="missing database")
    summary = export(ReviewDB(args.db), args.output, args.labeled)
    for line in summary.lines():
        print(line)
    if args.output:
        print(f"wrote {args.output}")
    if args.labeled:
        print(f"wrote {args.labeled}")
    return 0


def add_review_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `mjave review` (and its `export` form) on the top-level subparsers."""
    p = commands.add_parser(
        "review", usage=USAGE, help="review completion suggestions in the browser; export them",
        description="Review the suggestions and conflicts of `mjave complete` in the browser "
        "(decisions kept in SQLite), then `mjave review export` them as a catalog table and as "
        "labelled training data. See docs/review.md.")
    add_review_arguments(p)
    p.set_defaults(func=cmd_review)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m mjave.review ...`: the same command without the `mjave` CLI."""
    from mjave.cli.entry import run
    parser = argparse.ArgumentParser(prog="python -m mjave.review", usage=USAGE)
    add_review_arguments(parser)
    parser.set_defaults(func=cmd_review)
    return run(parser.parse_args(argv))


__all__ = ["add_review_arguments", "add_review_command", "cmd_export", "cmd_review",
           "load_inputs", "main"]
