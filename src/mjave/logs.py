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
import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator

LOGGER = "mjave"
LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"

Progress = Callable[..., Any]
"""A tqdm-like factory: `make(iterable=None, total=, desc=, unit=)` returns a bar (or the wrapped
iterable) with `update(n)` and `close()`."""

_state: dict[str, Any] = {"progress": None, "handler": None}


PROGRESS_SECONDS = 30.0
"""How often a plain progress line is logged when stderr is not a terminal
(`MJAVE_PROGRESS_SECONDS` overrides it)."""


class LineProgress:
    """A tqdm-like bar for output that is not a terminal (CI, nohup, a notebook cell's log): one
    plain `mjave.progress` log line at the start, one every `interval` seconds and one at the
    end, instead of carriage-return redraws that turn a log file into one endless line."""

    def __init__(self, iterable: Iterable[Any] | None = None, total: int | None = None,
                 desc: str = "", unit: str = "it", interval: float | None = None,
                 **_: Any) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.interval = interval if interval is not None else _progress_seconds()
        self.n = 0
        self.start = self.last = time.monotonic()
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None, "LineProgress was made without an iterable"
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._log(self._rate(now))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._log(f"done in {time.monotonic() - self.start:.0f} s")

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        """tqdm's API; a plain line has no room for it."""

    def _rate(self, now: float) -> str:
        elapsed = now - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        left = (f", about {(self.total - self.n) / rate:.0f} s left"
                if self.total and rate > 0 else "")
        return f"{rate:.1f} {self.unit}/s{left}"

    def _log(self, what: str) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        logging.getLogger(f"{LOGGER}.progress").info("%s: %d%s %s, %s", self.desc or "working",
                                                      self.n, of, self.unit, what)


def _progress_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("MJAVE_PROGRESS_SECONDS", PROGRESS_SECONDS)))
    except ValueError:
        return PROGRESS_SECONDS


def tqdm_progress() -> Progress:
    """The progress factory mjave uses: a tqdm bar when stderr is a terminal, periodic plain log
    lines (`LineProgress`) when it is not, so batch jobs' logs show progress without filling
    with bar redraws."""
    def make(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
        if not sys.stderr.isatty():
            return LineProgress(iterable, **kwargs)
        from tqdm.auto import tqdm
        return tqdm(iterable, dynamic_ncols=True, **kwargs)
    return make


def make_bar(progress: bool | Progress | None, total: int | None, desc: str, unit: str
             ) -> Any:
    """The one place a library function turns its `progress=` argument into a bar: None falls
    back to `enable_logging`'s factory, False (or nothing to do) means no bar, True means
    mjave's default (`tqdm_progress`), and a factory is called as `progress(total=, desc=,
    unit=)`. Returns None when there is no bar; callers then skip update/close."""
    progress = default_progress(progress)
    if progress is None or progress is False or total == 0:
        return None
    factory = tqdm_progress() if progress is True else progress
    return factory(total=total, desc=desc, unit=unit)


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


__all__ = ["LOGGER", "LOG_FORMAT", "PROGRESS_SECONDS", "LineProgress", "Progress",
           "default_progress", "disable_logging", "enable_logging", "make_bar", "tqdm_progress"]
