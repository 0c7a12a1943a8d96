"""Reading a file line by line as bytes, so that a bad byte is an error of its row, not a crash
of the whole read; and the readability check every reader makes first."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from mjave.data.errors import DataError
from mjave.data.formats.row_types import RecordRow
from mjave.data.paths import PathLike
from mjave.data.records import Record


def check_readable(path: PathLike) -> Path:
    """The path, if it is a file this process can open (else a fatal DataError)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("cannot read the file: no such file", path=str(path),
                        reason="unreadable file")
    try:
        open(path, "rb").close()
    except OSError as e:
        raise DataError(f"cannot read the file: {e.strerror}", path=str(path),
                        reason="unreadable file") from None
    return path


def has_bad_bytes(values: Sequence[Any]) -> bool:
    """Whether a value holds a byte that was not UTF-8 (decoded as a surrogate escape)."""
    return any(isinstance(v, str) and any("\udc80" <= c <= "\udcff" for c in v) for v in values)


def decode_line(raw: bytes) -> str:
    """One line as text; a bad byte is a row error, not a crash of the whole read."""
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not valid UTF-8 at byte {e.start} of the line",
                        reason="bad encoding") from None
    return s[:-1] if s.endswith("\r") else s


def read_lines(path: PathLike) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw bytes without the newline). Only '\\n' ends a line."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read the file: {e.strerror}", path=str(path),
                        reason="unreadable file") from None
    with f:
        for n, raw in enumerate(f, 1):
            raw = raw[:-1] if raw.endswith(b"\n") else raw
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            yield n, raw


def line_rows(path: PathLike, parse: Callable[[str], Record]) -> Iterator[RecordRow]:
    """One row per non-blank line (JSONL and TSV); a line of tabs is a row (of empty columns)."""
    for n, raw in read_lines(path):
        if raw.strip(b" \r"):
            yield n, (lambda raw=raw: parse(decode_line(raw)))


__all__ = ["check_readable", "decode_line", "has_bad_bytes", "line_rows", "read_lines"]
