"""On-disk cache of frozen encoder features, safe to kill at any moment and to resume.

Layout under `root`:

    meta.json                          encoder settings per namespace (checked on reopen)
    text/shard-00000.safetensors       token states, one tensor per sentence id: (T_i, d)
    text/index.json                    which shard holds which key
    image/shard-00000.safetensors      per product id: (1 + K, D), row 0 global, rows 1.. regions
    image/index.json
    image_rgb4/...                     the same with a colour histogram appended (4 bins a channel)

Values are float16 (half the disk and page cache of float32; encoder outputs are O(1), far
inside float16's range, and a value that would overflow is refused). A flush writes a new shard
to a temporary file, renames it into place, and only then rewrites index.json the same way, so
the index never names a shard that is not complete. A process killed mid-flush leaves at worst an
orphan shard that no index names: it is ignored and overwritten by the next flush.

Reads go through `safetensors.safe_open(..., framework="numpy")`, which memory-maps the shard;
open handles are cached (least recently used first out) so repeated epochs do not reopen files.
One writer at a time: two processes appending to one store would overwrite each other's index.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

NAMESPACES = ("text", "image")
FORMAT = "mjave-feature-store"
VERSION = 1
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.:/\-]{1,200}$")
_SHARD = "shard-{:05d}.safetensors"


class StoreMismatchError(ValueError):
    """The store at this path was built with other encoder settings; mixing would corrupt data."""


def tensor_name(key: str) -> str:
    """The tensor name a key is stored under in its shard (deterministic, injective).

    Keys made of safe ASCII are used as they are (readable shards); anything else (spaces,
    non-ASCII, '__metadata__', very long keys) becomes '~' + hex of its UTF-8 bytes. '~' is not a
    safe character, so the two forms never collide.
    """
    if _SAFE_NAME.match(key) and key != "__metadata__":
        return key
    return "~" + key.encode("utf-8").hex()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a sibling temp file, fsync, then rename: readers see the old or the new file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable; not every filesystem allows fsync on a directory
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _json_bytes(obj: Any, indent: int | None = None) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, indent=indent, sort_keys=indent is not None)
            + "\n").encode("utf-8")


def _compared(ns_meta: Mapping[str, Any]) -> dict[str, Any]:
    """Settings that must match on reopen: everything but the free-form `info` entry."""
    return {k: v for k, v in ns_meta.items() if k != "info"}


class _Namespace:
    """Committed index of one namespace plus the items buffered since the last flush."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.shards: list[str] = []
        self.keys: dict[str, int] = {}          # key -> position in self.shards
        self.placeholders: set[str] = set()     # keys whose value is a zero fill-in
        self.buffer: dict[str, np.ndarray] = {}
        self.buffer_placeholders: dict[str, bool] = {}
        self.load()

    @property
    def index_path(self) -> Path:
        return self.folder / "index.json"

    def load(self) -> None:
        if not self.index_path.is_file():
            return
        try:
            data = json.loads(self.index_path.read_text(encoding="utf-8"))
            self.shards = list(data["shards"])
            self.keys = {str(k): int(v) for k, v in data["keys"].items()}
            self.placeholders = set(data.get("placeholders", []))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{self.index_path}: unreadable feature index ({e}); delete the "
                             "store folder to rebuild it") from None

    def next_shard_name(self) -> str:
        """One past the highest committed shard: orphans from a killed flush get overwritten."""
        nums = [int(s[len("shard-"):-len(".safetensors")]) for s in self.shards]
        return _SHARD.format(max(nums) + 1 if nums else 0)


class FeatureStore:
    """Float16 features on disk, keyed by sentence id ("text") or product id ("image").

    `meta` maps a namespace to the settings its features were computed with (encoder, weights,
    dims, tokenizer fingerprint, ...); an `info` entry inside is recorded but never compared
    (paths, which may move). On reopen, a namespace whose stored settings differ raises
    `StoreMismatchError`; a namespace not yet described is added. `dim` / `rows` entries, when
    present, are enforced on `put` (last / first axis of every value).

    `put` buffers; every `flush_every` buffered items (and on `flush`, `close`, or leaving a
    `with` block) the buffer becomes one new shard per namespace.

    `invalidate` names namespaces that are a disposable cache of something else (the lower
    layers' output of top-layer fine-tuning): when their stored settings differ, their
    features are deleted and the new settings recorded, instead of the error. Deleting comes
    first, so a kill in between leaves the old settings over no features, never new settings
    over old features.
    """

    def __init__(self, root: str | os.PathLike[str],
                 meta: Mapping[str, Mapping[str, Any]] | None = None,
                 flush_every: int = 256, max_open_shards: int = 64,
                 invalidate: Iterable[str] = ()):
        self.root = Path(root)
        self.flush_every = max(1, int(flush_every))
        self.max_open_shards = max(1, int(max_open_shards))
        self.root.mkdir(parents=True, exist_ok=True)
        self.meta: dict[str, Any] = self._open_meta(meta, frozenset(invalidate))
        self._ns: dict[str, _Namespace] = {}
        self._handles: OrderedDict[Path, Any] = OrderedDict()

    # ----------------------------------------------------------------------------- meta

    @property
    def meta_path(self) -> Path:
        return self.root / "meta.json"

    def _open_meta(self, given: Mapping[str, Mapping[str, Any]] | None,
                   invalidate: frozenset[str] = frozenset()) -> dict[str, Any]:
        stored: dict[str, Any] = {"format": FORMAT, "version": VERSION, "dtype": "float16",
                                  "namespaces": {}}
        if self.meta_path.is_file():
            try:
                stored = json.loads(self.meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise ValueError(f"{self.meta_path}: unreadable store metadata ({e})") from None
            if stored.get("format") != FORMAT or stored.get("version") != VERSION:
                raise StoreMismatchError(
                    f"{self.root} is not a version-{VERSION} mjave feature store "
                    f"(meta.json says format {stored.get('format')!r}, "
                    f"version {stored.get('version')!r}); use another folder")
        spaces: dict[str, Any] = stored.setdefault("namespaces", {})
        changed = not self.meta_path.is_file()
        for ns, settings in (given or {}).items():
            self._check_namespace_name(ns)
            settings = json.loads(json.dumps(dict(settings)))  # normalise (tuples -> lists)
            if ns not in spaces or spaces[ns] is None:
                spaces[ns] = settings
                changed = True
                continue
            old, new = _compared(spaces[ns]), _compared(settings)
            if old != new:
                diffs = [f"{k}: stored {old.get(k)!r}, now {new.get(k)!r}"
                         for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
                if ns in invalidate:
                    log.info("feature store %s: %s features are out of date (%s); deleting "
                             "them to recompute", self.root, ns, "; ".join(diffs))
                    if (self.root / ns).exists():
                        shutil.rmtree(self.root / ns)
                    spaces[ns] = settings
                    changed = True
                    continue
                raise StoreMismatchError(
                    f"feature store {self.root} holds {ns} features computed with other "
                    f"settings ({'; '.join(diffs)}); mixing them would give the model features "
                    "from two encoders. Use another features directory, or delete this one to "
                    "recompute")
            if spaces[ns].get("info") != settings.get("info"):
                spaces[ns] = settings  # same features, new paths: keep the latest for the record
                changed = True
        if changed:
            _write_atomic(self.meta_path, _json_bytes(stored, indent=2))
        return stored

    def namespace_meta(self, ns: str) -> dict[str, Any] | None:
        """The settings `ns` was computed with (None if never described)."""
        return self.meta.get("namespaces", {}).get(ns)

    # ----------------------------------------------------------------------------- index

    @staticmethod
    def _check_namespace_name(ns: str) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", ns):
            raise ValueError(f"namespace must be a lower-case identifier such as "
                             f"{' or '.join(map(repr, NAMESPACES))}, not {ns!r}")

    def _space(self, ns: str) -> _Namespace:
        space = self._ns.get(ns)
        if space is None:
            self._check_namespace_name(ns)
            space = self._ns[ns] = _Namespace(self.root / ns)
        return space

    def refresh(self) -> None:
        """Re-read the indexes (another process may have added features since we opened)."""
        for space in self._ns.values():
            space.load()

    def has(self, ns: str, key: str) -> bool:
        space = self._space(ns)
        return key in space.buffer or key in space.keys

    def missing(self, ns: str, keys: Iterable[str], include_placeholders: bool = False
                ) -> list[str]:
        """`keys` without stored features, in order, each once. With `include_placeholders`,
        keys holding only a zero fill-in (missing image) count as missing too, to retry them."""
        out: list[str] = []
        seen: set[str] = set()
        for key in keys:
            if key in seen:
                continue
            seen.add(key)
            if not self.has(ns, key) or (include_placeholders and self.is_placeholder(ns, key)):
                out.append(key)
        return out

    def is_placeholder(self, ns: str, key: str) -> bool:
        """True when `key`'s stored value is a zero fill-in (e.g. its image could not be read)."""
        space = self._space(ns)
        if key in space.buffer:
            return space.buffer_placeholders[key]
        return key in space.placeholders

    def keys(self, ns: str) -> list[str]:
        space = self._space(ns)
        return list(space.keys) + [k for k in space.buffer if k not in space.keys]

    def __len__(self) -> int:
        """Number of stored keys over both namespaces (and any other present on disk)."""
        names = set(NAMESPACES) | {p.name for p in self.root.iterdir()
                                   if p.is_dir() and (p / "index.json").is_file()}
        return sum(len(self.keys(ns)) for ns in sorted(names))

    def __contains__(self, item: tuple[str, str]) -> bool:
        ns, key = item
        return self.has(ns, key)

    # ----------------------------------------------------------------------------- write

    def put(self, ns: str, items: Mapping[str, np.ndarray], placeholder: bool = False) -> None:
        """Buffer features (converted to float16); a key put again replaces its old value.

        `placeholder=True` marks the values as zero fill-ins (see `missing`). Refuses values
        that are not finite in float16, or whose shape contradicts the namespace's `dim`/`rows`.
        """
        space = self._space(ns)
        settings = self.namespace_meta(ns) or {}
        dim, rows = settings.get("dim"), settings.get("rows")
        for key, value in items.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"{ns}: feature keys must be non-empty strings, got {key!r}")
            with np.errstate(over="ignore"):  # overflow is reported below, naming the key
                arr = np.ascontiguousarray(np.asarray(value), dtype=np.float16)
            if arr.ndim == 0:
                raise ValueError(f"{ns} features of {key!r} must be an array, got a scalar")
            if dim is not None and arr.shape[-1] != dim:
                raise ValueError(f"{ns} features of {key!r} have shape {arr.shape}; this store "
                                 f"holds width {dim}")
            if rows is not None and arr.shape[0] != rows:
                raise ValueError(f"{ns} features of {key!r} have shape {arr.shape}; this store "
                                 f"holds {rows} rows per key")
            if not np.isfinite(arr).all():
                raise ValueError(f"{ns} features of {key!r} are not finite in float16 "
                                 "(NaN, or beyond +-65504)")
            space.buffer[key] = arr
            space.buffer_placeholders[key] = placeholder
        if sum(len(s.buffer) for s in self._ns.values()) >= self.flush_every:
            self.flush()

    def flush(self) -> int:
        """Write buffered items as one new shard per namespace; returns how many were written.

        The shard is complete on disk before the index that names it is replaced, so a kill at
        any instant leaves either the old index or the new one, both consistent.
        """
        from safetensors.numpy import save

        written = 0
        for ns, space in self._ns.items():
            if not space.buffer:
                continue
            space.folder.mkdir(parents=True, exist_ok=True)
            shard = space.next_shard_name()
            tensors = {tensor_name(k): v for k, v in space.buffer.items()}
            _write_atomic(space.folder / shard, save(tensors, metadata={"namespace": ns}))
            self._handles.pop(space.folder / shard, None)  # never serve a stale orphan handle
            shards = space.shards + [shard]
            pos = len(shards) - 1
            keys = dict(space.keys)
            placeholders = set(space.placeholders)
            for key in space.buffer:
                keys[key] = pos
                if space.buffer_placeholders[key]:
                    placeholders.add(key)
                else:
                    placeholders.discard(key)
            index = {"version": VERSION, "shards": shards, "keys": keys,
                     "placeholders": sorted(placeholders)}
            _write_atomic(space.index_path, _json_bytes(index))
            space.shards, space.keys, space.placeholders = shards, keys, placeholders
            written += len(space.buffer)
            log.debug("flushed %d %s features to %s", len(space.buffer), ns, space.folder / shard)
            space.buffer.clear()
            space.buffer_placeholders.clear()
        return written

    # ----------------------------------------------------------------------------- read

    def _handle(self, path: Path) -> Any:
        handle = self._handles.get(path)
        if handle is None:
            from safetensors import safe_open

            handle = safe_open(str(path), framework="numpy")
            self._handles[path] = handle
            while len(self._handles) > self.max_open_shards:
                self._handles.popitem(last=False)
        else:
            self._handles.move_to_end(path)
        return handle

    def get(self, ns: str, keys: Sequence[str]) -> list[np.ndarray]:
        """float16 arrays for `keys`, in order; KeyError naming the first key not stored."""
        space = self._space(ns)
        if any(k not in space.keys and k not in space.buffer for k in keys):
            space.load()  # another process may have written since we opened
        out: list[np.ndarray] = []
        for key in keys:
            if key in space.buffer:
                out.append(space.buffer[key].copy())
                continue
            pos = space.keys.get(key)
            if pos is None:
                raise KeyError(f"no {ns} features for {key!r} in the feature store {self.root} "
                               "(run feature extraction for these records first)")
            out.append(self._handle(space.folder / space.shards[pos]).get_tensor(tensor_name(key)))
        return out

    # ----------------------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Flush what is buffered and drop the open shard handles."""
        self.flush()
        self._handles.clear()

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: object) -> None:
        # Buffered items are whole (put is all-or-nothing per value), so they are worth keeping
        # even when the block failed.
        self.close()

    def __repr__(self) -> str:
        counts = ", ".join(f"{ns}={len(self.keys(ns))}" for ns in NAMESPACES)
        return f"FeatureStore({str(self.root)!r}, {counts})"


__all__ = ["FeatureStore", "NAMESPACES", "StoreMismatchError", "tensor_name"]
