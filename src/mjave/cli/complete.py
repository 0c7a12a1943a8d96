"""`mjave complete MODEL PRODUCTS --catalog TABLE -o SUGGESTIONS.csv [--min-precision P] ...`:
suggest the values a catalog table lacks and flag the ones the text contradicts. The settings
are a `CompleteConfig`: from `--config FILE`, `--set KEY=VALUE` and the flags, as `mjave train`
reads its run config."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any

from mjave.cli.console import failing_with, progress_bar, setup_logging
from mjave.cli.format_option import add_format_option

if TYPE_CHECKING:
    from mjave.config import CompleteConfig


REFUSED = 2
"""Exit code of a run that refused: --min-precision P cannot be backed, no rows were written."""


FLAG_FIELDS = {"min_precision": "min_precision", "threshold": "threshold",
               "confidence": "confidence", "force": "force", "cv_folds": "cv_folds",
               "conflicts": "conflicts", "conflict_threshold": "conflict_threshold",
               "batch_size": "batch_size", "device": "device", "image_root": "image_root",
               "format": "input_format", "known_attribute_share": "known_attribute_share",
               "include_new_attributes": "include_new_attributes", "reviews": "reviews",
               "exclude_attribute": "exclude_attributes"}
"""Flag (argparse dest) -> `CompleteConfig` field; a flag given overrides the config."""

EITHER = {"min_precision": "threshold", "threshold": "min_precision"}
"""A flag of one way to pick the threshold clears the other's value from the config file."""


def complete_config(args: argparse.Namespace) -> CompleteConfig:
    """The `CompleteConfig` of `--config` (defaults without one), `--set` overrides, then the
    flags that were given."""
    from mjave.config import CompleteConfig, apply_overrides, load, set_values
    cfg = load(CompleteConfig, args.config) if args.config else CompleteConfig()
    cfg = apply_overrides(cfg, args.set or [])
    given = {field: getattr(args, flag) for flag, field in FLAG_FIELDS.items()
             if getattr(args, flag) is not None}
    cleared = {other: None for field, other in EITHER.items() if field in given}
    return set_values(cfg, {**cleared, **given})


def _refusal(summary: Any, output: str) -> str:
    """The verdict line of a refused run (the library's warning has the details)."""
    cal = summary.calibration
    if cal.precision is None:
        can = "it can back no precision (no held-out suggestion to judge)"
    else:
        rec = "-" if cal.recall is None else f"{cal.recall:.3f}"
        cv = ("" if cal.cv_precision is None else
              f", cross-validated over products {cal.cv_precision:.3f}")
        can = (f"it can back precision {cal.backed_precision:.3f} (estimate "
               f"{cal.precision:.3f}{cv}) at threshold {cal.threshold:.4f}, recall {rec} "
               "there")
    if summary.new_threshold is not None:   # the other kind keeps its own, backed promise
        written = (f"No fills_known_gap rows written ({output} holds only the "
                   f"{summary.suggestions} new_attribute suggestions reviews back; "
                   f"{summary.review_output} and {summary.conflicts_output} hold their header "
                   f"only)")
    else:
        written = (f"No rows written ({output}, {summary.review_output} and "
                   f"{summary.conflicts_output} hold their header only)")
    return (f"error: refused: precision {cal.requested:g} cannot be backed for "
            f"fills_known_gap; {can}. {written}: "
            f"ask for a precision it can back, or --force to write them anyway "
            f"(exit {REFUSED})")


@failing_with(OSError, ImportError, ValueError)
def cmd_complete(args: argparse.Namespace) -> int:
    """Exit 0 when the run finished (texts that could not be predicted are counted), 1 when it
    could not run (missing model or file, no held-out values for --min-precision), 2 when it
    refused: --min-precision cannot be backed, so the files hold their header and no rows
    (--force writes them anyway, exit 0)."""
    from mjave.completion.suggest import calibration_path, complete

    cfg = complete_config(args)
    if cfg.force and cfg.min_precision is None:
        raise ValueError("--force only applies to --min-precision")

    # the library's warnings (threshold not reachable, skipped rows) go to stderr
    setup_logging(logging.WARNING, "warning: %(message)s")
    summary = complete(args.model, args.products, args.catalog, args.output, cfg,
                       calibration=args.calibration, progress=progress_bar())
    print(summary.summary())
    print(f"threshold and estimates: {calibration_path(args.output)}")
    if summary.refused:
        print(_refusal(summary, args.output), file=sys.stderr)
        return REFUSED
    return 0


def add_kind_options(p: argparse.ArgumentParser, share: float) -> None:
    """The two kinds of suggestion (`mjave.completion.kinds`): where the cut lies, and whether
    the kind no held-out value can back joins the suggestions file."""
    g = p.add_argument_group("two kinds of suggestion (docs/completion.md)")
    g.add_argument("--known-attribute-share", type=float, metavar="S", help=(
        "a suggestion fills a known gap when at least share S of its product's category carry "
        f"the attribute in the table, else it names a new attribute (default {share:g})"))
    g.add_argument("--include-new-attributes", action="store_true", default=None, help=(
        "also write the new_attribute suggestions into SUGGESTIONS (kind new_attribute, no "
        "precision claimed), not only into SUGGESTIONS.review.csv"))
    g.add_argument("--reviews", metavar="DB", help=(
        "a review database (mjave review --db): its accepted and rejected suggestions are "
        "judged pairs too; each kind gets its own --min-precision threshold, and new_attribute "
        "suggestions join SUGGESTIONS once their reviews back it"))
    g.add_argument("--exclude-attribute", action="append", metavar="NAME", help=(
        "drop this attribute's suggestions from every output and from the calibration, e.g. "
        "one the per-attribute precision shows failing (repeatable)"))


def add_complete_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `mjave complete` on the top-level subparsers; returns its parser."""
    from mjave.config import CompleteConfig
    default = CompleteConfig()
    p = commands.add_parser(
        "complete", help="suggest the attribute values a catalog table lacks, flag conflicts",
        description="Stream PRODUCTS through a trained model and, per product, suggest values "
        "only for attributes the catalog TABLE has no row for (SUGGESTIONS, sorted by score, "
        "with the evidence text); write the table values the text confidently contradicts to "
        "the conflicts file. --min-precision picks the score threshold on held-out known "
        "values (the calibration pairs `mjave data label` split off, or a --calibration file); "
        "the threshold and its estimated precision and recall are printed and saved as "
        "SUGGESTIONS.calibration.json. When P cannot be backed (no threshold's lower precision "
        "bound reaches it, or the product-grouped cross-validated bound falls short) it refuses: "
        "it says what precision it can back, writes no rows and exits 2 (--force: writes them "
        "anyway). P speaks only for suggestions that fill a known gap (an attribute at least "
        "--known-attribute-share of the product's category carry in the table): the others "
        "(new_attribute) go to SUGGESTIONS.review.csv for `mjave review`, since no held-out "
        "value can back their precision (--include-new-attributes: into SUGGESTIONS too, "
        "marked in the kind column). --reviews DB calibrates each kind on reviewed suggestions "
        "too, and the summary lists the precision per attribute and how many more reviews an "
        "unbacked kind needs. Settings may come from a file (--config, "
        "mjave.config.CompleteConfig) and "
        "--set KEY=VALUE; a flag given overrides both.")
    p.add_argument("model", help="model folder written by `mjave train`")
    p.add_argument("products", help="product texts: JSONL, JAVE TSV, CSV or Parquet with id, "
                   "text (cid, category, image optional), or the labelled JSONL of "
                   "`mjave data label`")
    p.add_argument("--catalog", required=True, help="the attribute table (CSV or JSONL with "
                   "product_id, attribute, value)")
    p.add_argument("-o", "--output", required=True, help="suggestions file (.csv or .jsonl)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--min-precision", type=float, metavar="P",
                     help="choose the threshold that reaches precision P on held-out known "
                     "values")
    how.add_argument("--threshold", type=float,
                     help="keep suggestions scoring at least this (default 0: every value the "
                     "model decodes)")
    p.add_argument("--confidence", type=float, metavar="C",
                   help="--min-precision is reached when a one-sided lower bound of the "
                   "held-out precision at confidence C reaches P (default "
                   f"{default.confidence}; 0.5: the plain estimate)")
    p.add_argument("--force", action="store_true", default=None,
                   help="with --min-precision: when P cannot be backed, write the suggestions "
                   "at the threshold of the best precision bound anyway (exit 0) instead of "
                   "refusing (no rows, exit 2)")
    p.add_argument("--cv-folds", type=int, metavar="K",
                   help="--min-precision also checks the threshold by K-fold cross-validation "
                   "over products (seeded) and refuses when its lower precision bound is below "
                   f"P (default {default.cv_folds}; 0 turns the check off)")
    add_kind_options(p, default.known_attribute_share)
    p.add_argument("--calibration", metavar="FILE",
                   help="held-out products with gold spans (labelled JSONL) to calibrate on, "
                   "instead of the calibration pairs carried by PRODUCTS")
    p.add_argument("--conflicts", metavar="PATH",
                   help="conflicts file (default: conflicts.csv beside the output)")
    p.add_argument("--conflict-threshold", type=float, metavar="T",
                   help="score a contradicting value needs to be a conflict (default: the "
                   "suggestion threshold, at least 0.5)")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help=f"texts per forward pass (default {default.batch_size}; lower it if "
                   "memory runs short)")
    p.add_argument("--device", help=f"auto, cpu, cuda or cuda:N (default {default.device})")
    p.add_argument("--image-root", help="folder image paths are relative to (image models)")
    add_format_option(p, what="PRODUCTS")
    p.add_argument("--config", metavar="FILE", help="settings YAML/JSON "
                   "(mjave.config.CompleteConfig: min_precision, threshold, batch_size, ...)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a setting, e.g. --set cv_folds=10 (repeatable)")
    p.set_defaults(func=cmd_complete)
    return p


__all__ = ["FLAG_FIELDS", "REFUSED", "add_complete_command", "add_kind_options", "cmd_complete",
           "complete_config"]
