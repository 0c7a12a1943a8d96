"""Seeing long work from Python: `mjave.enable_logging()` shows mjave's log records and turns on
progress bars wherever a library function was given no `progress=`.

Library code never prints (ARCHITECTURE.md): it logs to the `mjave` logger and draws a bar only
through the `progress=` factory it is handed. The command line hands one in; from Python nothing
was, so feature extraction, training and batch prediction ran silent. `enable_logging` sets the
factory those functions fall back to (`default_progress`) and a stderr handler on `mjave`;
`disable_logging` undoes both. Applications that configure `logging` themselves need only the
progress part: `enable_logging(handler=False)`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Iterable

LOGGER = "mjave"
LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"

Progress = Callable[..., Any]
"""A tqdm-like factory: `make(iterable=None, total=, desc=, unit=)` returns a bar (or the wrapped
iterable) with `update(n)` and `close()`."""

_state: dict[str, Any] = {"progress": None, "handler": None}


def tqdm_progress() -> Progress:
    """The tqdm factory mjave uses: a bar on a terminal or notebook, silent when stderr is not one
    (tqdm's `disable=None`), so logs of batch jobs do not fill with bar updates."""
    from tqdm.auto import tqdm

    def make(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
        return tqdm(iterable, dynamic_ncols=True, disable=None, **kwargs)
    return make


def enable_logging(level: int | str = logging.INFO, *, progress: bool | Progress = True,
                   handler: bool = True) -> logging.Logger:
    """Show mjave's log records at `level` on stderr (once, however often it is called) and,
    with `progress`, draw progress bars (tqdm, or the factory given) in every call that was given
    no `progress=` of its own. Returns the `mjave` logger."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(level)
    if handler and _state["handler"] is None:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
        logger.addHandler(h)
        _state["handler"] = h
    if progress is True:
        _state["progress"] = tqdm_progress()
    elif callable(progress):
        _state["progress"] = progress
    else:
        _state["progress"] = None
    return logger


def disable_logging() -> None:
    """Undo `enable_logging`: remove its handler, reset the level, silence the default bars."""
    logger = logging.getLogger(LOGGER)
    if _state["handler"] is not None:
        logger.removeHandler(_state["handler"])
        _state["handler"] = None
    logger.setLevel(logging.NOTSET)
    _state["progress"] = None


def default_progress(progress: Any = None) -> Any:
    """`progress` as given, or, when None, the factory `enable_logging` set (None if it was not
    called). False stays False: a caller that asked for silence gets it."""
    return _state["progress"] if progress is None else progress


__all__ = ["LOGGER", "LOG_FORMAT", "Progress", "default_progress", "disable_logging",
           "enable_logging", "tqdm_progress"]
