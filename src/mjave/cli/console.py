"""What every command shares on the terminal: the one progress-bar factory the library receives,
logging setup and the `error: ...` lines. Library code never prints; only `mjave.cli` does."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any, Callable, Sequence

from mjave.data.errors import RowIssues

MAX_LISTED_ERRORS = 20
LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"

Command = Callable[[Any], int]


def progress_bar() -> Callable[..., Any]:
    """The progress-bar factory library functions take as `progress=`: called as
    `make(iterable=None, total=, desc=, unit=)`, a tqdm bar on a terminal, silent otherwise
    (the same one `mjave.enable_logging()` gives Python callers)."""
    from mjave.logs import tqdm_progress
    return tqdm_progress()


def setup_logging(level: str | int = logging.INFO, fmt: str = LOG_FORMAT) -> None:
    """The library logs; a command shows those records on stderr."""
    logging.basicConfig(level=level, format=fmt, datefmt="%H:%M:%S")


def fail(message: str, code: int = 1) -> int:
    """Print `error: message` on stderr and return the exit code, for `return fail(...)`."""
    print(f"error: {message}", file=sys.stderr)
    return code


def print_listed(errors: Sequence[Any], limit: int = MAX_LISTED_ERRORS) -> None:
    """One indented line per error on stderr, at most `limit` of them, then how many more."""
    for e in errors[:limit]:
        print(f"  {e}", file=sys.stderr)
    if len(errors) > limit:
        print(f"  ... and {len(errors) - limit} more", file=sys.stderr)


def report_skipped(issues: RowIssues) -> None:
    """Lenient mode is never silent: the summary and the first errors, on stderr."""
    if not issues.skipped:
        return
    print(f"warning: {issues.summary()}", file=sys.stderr)
    print_listed(issues.skipped)


def add_threads_option(parser: Any) -> None:
    """`--threads N`: CPU threads of the forward pass (torch's intra-op threads, and onnxruntime's
    for an exported folder); default: torch's own count (OMP_NUM_THREADS)."""
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for the model (torch, or onnxruntime for an exported "
                        "folder; default: OMP_NUM_THREADS or all cores)")


def apply_threads(threads: int | None) -> None:
    """Set torch's intra-op threads when `--threads` was given (onnxruntime sessions take the
    same count); a count below 1 is refused."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    import torch
    torch.set_num_threads(threads)


def failing_with(*errors: type[BaseException]) -> Callable[[Command], Command]:
    """A command that turns `errors` into `error: ...` and exit code 1 itself, so it answers the
    same when called without `main` (as the tests and the standalone entry points do)."""
    def wrap(func: Command) -> Command:
        @functools.wraps(func)
        def run(args: Any) -> int:
            try:
                return func(args)
            except errors as e:
                return fail(str(e))
        return run
    return wrap


__all__ = ["MAX_LISTED_ERRORS", "add_threads_option", "apply_threads", "fail", "failing_with", "print_listed", "progress_bar",
           "report_skipped", "setup_logging"]
