"""The one entry point of `mjave`: build the parser from the command-group modules, run the
chosen command, and turn the expected failures into one `error: ...` line and exit code 1.

To add a command: write `add_<name>_command(commands)` in a module of this package that calls
`commands.add_parser(...)` and `set_defaults(func=...)` with a function `(args) -> int`, and
call it from `build_parser` (or, from elsewhere, on `build_parser().commands`).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from mjave.config import ConfigError
from mjave.data.errors import DataError

EXPECTED_ERRORS = (DataError, ConfigError, FileNotFoundError)
"""Failures of the input, not of mjave: a one-line message, never a traceback."""


def build_parser() -> argparse.ArgumentParser:
    """The parser; `parser.commands` is the top-level subparsers object, `parser.data_commands`
    the one under `mjave data`, so other modules can register further subcommands."""
    from mjave.cli import (complete, data, demo, encoders, evaluate, experiment, export, predict,
                           review, serve, train)
    parser = argparse.ArgumentParser(prog="mjave", description="Multimodal attribute value "
                                     "extraction (M-JAVE): data tools, training, prediction.")
    from mjave import __version__
    parser.add_argument("--version", action="version", version=f"mjave {__version__}",
                        help="print the version of mjave and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.commands = commands  # type: ignore[attr-defined]
    parser.data_commands = data.add_data_commands(commands)  # type: ignore[attr-defined]
    train.add_train_commands(commands)
    evaluate.add_evaluate_command(commands)
    demo.add_demo_command(commands)
    predict.add_predict_command(commands)
    serve.add_serve_command(commands)
    complete.add_complete_command(commands)
    review.add_review_command(commands)
    experiment.add_experiment_command(commands)
    export.add_export_command(commands)
    encoders.add_encoders_command(commands)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the parsed command: its exit code, 1 with `error: ...` for an expected failure."""
    try:
        return int(args.func(args))
    except EXPECTED_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `mjave data stats x | head`: the reader left, which is no error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`mjave ...` and `python -m mjave ...`."""
    return run(build_parser().parse_args(argv))


__all__ = ["EXPECTED_ERRORS", "build_parser", "main", "run"]
