"""Where outputs go: the one guard against writing over an input, and the one atomic writer.

Every command that writes (predict, convert, label, complete, review export, export, train)
calls `check_not_input` before it writes anything: an output that is the same file as one of
its inputs is refused. "The same file" is decided by the file system (device and inode), not by
the name, so a hard link, a symlink or `./x` for `x` is caught too; a path that does not exist
yet is compared by its resolved name. Files are written through `atomic_write`: a temporary
file beside the target, renamed over it once complete, so a crash leaves the old file or the
whole new one, never half of one (and a rename never truncates another link to the old file).
Files written by other libraries through a temporary name (safetensors writes 0600) get the mode
`open()` would have given them (`publish`), so a model folder is readable like any other file.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from mjave.data.errors import DataError
from mjave.data.paths import PathLike



def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether `a` and `b` name one file: the same device and inode when both exist (hard
    links and symlinks included), else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        pass
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError):  # a symlink loop: not a file of ours
        return False


def check_not_input(output: PathLike, inputs: Iterable[Any], what: str = "the output") -> None:
    """Refuse (DataError, reason `same file`) an `output` that is the same file as one of
    `inputs`; entries that are not paths (None, "", records in memory) are ignored. Called
    before anything is written, so a mistyped `-o` never destroys the data it was to read."""
    for source in inputs:
        if isinstance(source, (str, os.PathLike)) and os.fspath(source) \
                and same_file(output, source):
            how = "" if os.fspath(source) == os.fspath(output) else f" ({os.fspath(source)})"
            raise DataError(f"{what} would overwrite the input{how}: they are the same file; "
                            "choose another output", path=str(output), reason="same file")


def temporary_path(path: PathLike) -> Path:
    """The temporary name `atomic_write` writes `path` under (`NAME.tmp` beside it)."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


def default_file_mode() -> int:
    """0o666 less the process umask: the mode a plain `open(path, "w")` creates files with.
    (The umask can only be read by setting it; it is put back at once.)"""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def publish(tmp: PathLike, path: PathLike) -> None:
    """Give the finished temporary file `tmp` the ordinary file mode and rename it over `path`:
    for writers (safetensors) that create their file 0600, which would make a model folder
    unreadable to the other users of a shared machine."""
    os.chmod(tmp, default_file_mode())
    os.replace(tmp, path)


@contextmanager
def atomic_write(path: PathLike, mode: str = "w", *, encoding: str | None = "utf-8",
                 newline: str | None = None) -> Iterator[IO[Any]]:
    """A file open for writing whose content replaces `path` only when the block ends without
    an error (a temporary file renamed over it); on an error the temporary file is removed and
    `path` is left as it was. `mode`: "w" (text) or "wb"."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    binary = "b" in mode
    try:
        with open(tmp, mode, encoding=None if binary else encoding,
                  newline=None if binary else newline) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


__all__ = ["atomic_write", "check_not_input", "default_file_mode", "publish", "same_file",
           "temporary_path"]
