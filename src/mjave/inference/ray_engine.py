"""Batch prediction on Ray Data: the rows, checks and Parquet columns of `predict_file`, spread
over a Ray cluster (or a local Ray instance) for inputs too big for one process.

One streamed Ray Data pipeline per run:

1. read: one task per input shard runs the reader registry's `read_input` (`mjave.data.formats`), as
   the local engine does, so row numbers, unreadable rows (bad JSON, bad CSV) and the fatal
   checks are those of `mjave predict`. Every row is checked (id, duplicate id, text) by the
   local engine's checks (`mjave.data.rows`) and leaves the stage with fixed
   column types, as a row to predict or as an error row. Ray's own `read_json` is not used: one
   bad line fails its whole file, and it knows no line numbers.
2. images (image models only): a CPU `map_batches` function resolves image paths as training
   does, decodes the images and resizes them to the encoder's input size exactly as
   `ImageEncoder.preprocess` would, so the model stage gets small RGB arrays and spends its time
   in the network. (Ray fuses stages 1-2 into the actors when those need the same resources,
   i.e. CPU actors of one CPU; GPU actors never decode.)
3. model: a fixed pool of actors (`ActorPoolStrategy`), each loading the `Extractor` once in
   `__init__`; a batch that raises is retried in halves down to the row that raises, which
   becomes an error row instead of failing the job.
4. write: `Dataset.write_parquet` into an output folder (one part file per block), with the local
   engine's Parquet columns plus `reason` (the failure category of an error row, which the
   summary is counted from).

Duplicate ids need the whole input: a first pass reads the ids only and counts them with a Ray
Data group-by, so only the repeated ids and their first rows reach the driver (its memory grows
with the duplicates, not the catalog); the main pass marks the later rows `duplicate id`. `check_duplicates=False` skips that pass when the ids are known unique.
Rows come out in no particular order. Resume is not supported: a run replaces its output folder.
"""

from __future__ import annotations

import glob
import math
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from mjave.data.errors import DataError
from mjave.data.formats import EXTENSIONS, InputRow, read_input
from mjave.data.outputs import check_not_input
from mjave.data.rows import (MAX_IMAGE_PIXELS, MAX_TEXT_CHARS, bad_category, bad_image_field,
                             check_id, check_text, duplicate_id, find_image, id_key, to_item)
from mjave.inference.batch import (CSV_COLUMNS, PathLike, PredictSummary, json_text,
                                   parquet_schema, text_or_none, writable_row)

INSTALL_HINT = "the Ray engine needs Ray Data: pip install 'mjave[ray]'"
DEFAULT_WORKERS = 2
READ_BLOCK_ROWS = 1024
"""Rows per block the read stage yields (the model stage re-batches them to `batch_size`)."""
ROW_BITS = 40
"""A row's input position `_ord` is `shard index << ROW_BITS | row number`."""


class RayEngineError(RuntimeError):
    """The Ray job itself failed (a worker died, a stage raised): not a bad row."""


def _import_ray() -> Any:
    """Ray, imported only when the engine runs, with the install hint when it is missing."""
    try:
        import ray
        import ray.data  # noqa: F401  (the [data] extra: pyarrow, pandas, fsspec)
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return ray


# --------------------------------------------------------------------------------------------
# The model, as far as the driver and the CPU stages need it
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFacts:
    """What the read and image stages need about the model, from `config.json` alone: the
    driver never loads the weights (the actors check that the loaded model agrees)."""

    uses_image: bool
    missing_image: str
    image_size: int
    image_encoder: str

    @classmethod
    def read(cls, model_dir: PathLike) -> "ModelFacts":
        from mjave import pretrained

        config = pretrained.read_config(model_dir)
        enc = config.encoder
        return cls(pretrained.uses_image(config), enc.missing_image, int(enc.image_size),
                   enc.image_encoder)


def encoder_resample(image_encoder: str) -> int | None:
    """The resize filter `ImageEncoder.preprocess` uses for this encoder; None when unknown
    (the image stage then decodes without resizing: the same features, larger arrays)."""
    from mjave.encoders.image import EfficientNetLiteEncoder, ResNetEncoder
    if image_encoder.startswith("efficientnet-"):
        return int(EfficientNetLiteEncoder.resample)
    if image_encoder.startswith("resnet"):
        return int(ResNetEncoder.resample)
    return None


# --------------------------------------------------------------------------------------------
# Inputs: files, folders, globs
# --------------------------------------------------------------------------------------------


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def _folder_files(folder: Path, input_format: str | None) -> list[Path]:
    """Input files under a folder (recursively); `_SUCCESS`, `.crc` and the like are skipped."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not _is_hidden(p, folder)
                  and (input_format is not None or p.suffix.lower() in EXTENSIONS))


def find_shards(inputs: PathLike | Sequence[PathLike], input_format: str | None = None
                ) -> list[Path]:
    """The input files, absolute: each input is a file, a folder of shards or a glob."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    shards: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if Path(text).is_dir():
            found = _folder_files(Path(text), input_format)
        elif any(c in text for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        else:
            found = [Path(text)]
        if not found:
            raise DataError("no input files there (a folder is searched for .jsonl, .parquet, "
                            "... files; a glob must match files)", path=text,
                            reason="unreadable file")
        shards += found
    return [p.absolute() for p in dict.fromkeys(shards)]


def shard_names(shards: Sequence[Path]) -> list[str]:
    """Short names for error messages: the paths relative to the shards' common folder."""
    if len(shards) == 1:
        return [shards[0].name]
    common = os.path.commonpath([str(p.parent) for p in shards])
    return [os.path.relpath(p, common) for p in shards]


def check_shards(shards: Sequence[Path], input_format: str | None) -> None:
    """Raise now, before Ray starts, what would make a shard unreadable (as `predict_file`
    does): a missing file, an unknown extension, a CSV or Parquet file without id/text."""
    for path in shards:
        rows = read_input(path, input_format)
        try:
            next(rows, None)  # the first row: also opens a lazily opened file
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()


# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------


def output_schema() -> Any:
    """The local engine's Parquet columns plus `reason` (an error row's failure category)."""
    import pyarrow as pa
    return parquet_schema().append(pa.field("reason", pa.string()))


def staged_schema() -> Any:
    """Rows between the stages: the output columns and the fields the later stages need."""
    import pyarrow as pa
    internal = [("_where", pa.string()), ("_ord", pa.int64()), ("_key", pa.string()),
                ("_cid", pa.string()), ("_category", pa.string()),
                ("_category_type", pa.string()), ("_image_path", pa.string()),
                ("_image_bytes", pa.large_binary()), ("_image_type", pa.string()),
                ("_pixels", pa.large_binary()), ("_width", pa.int32()), ("_height", pa.int32())]
    schema = output_schema()
    for name, kind in internal:
        schema = schema.append(pa.field(name, kind))
    return schema


def _keys_schema() -> Any:
    import pyarrow as pa
    return pa.schema([("_key", pa.string()), ("_ord", pa.int64())])


def _table(rows: list[dict[str, Any]], schema: Any) -> Any:
    import pyarrow as pa
    return pa.Table.from_pylist(rows, schema=schema)


def _fail(row: dict[str, Any], error: DataError) -> None:
    """Make `row` an error row: `"<shard> row N: what is wrong"`, and its reason."""
    row["error"] = f"{row['_where']}: {error}"
    row["reason"] = error.reason


# --------------------------------------------------------------------------------------------
# Stage 1: read and check
# --------------------------------------------------------------------------------------------


def _where(name: str, number: int) -> str:
    return f"{name} row {number}" if number else name


def _first_at(first: int, ord_: int, names: Sequence[str]) -> str:
    shard, row = first >> ROW_BITS, first & ((1 << ROW_BITS) - 1)
    return f"row {row}" if shard == ord_ >> ROW_BITS else f"{names[shard]} row {row}"


def _image_fields(image: Any) -> dict[str, Any]:
    """The output `image` column and what the image stage gets: a path, bytes, or a bad type."""
    if isinstance(image, (bytes, bytearray)):
        return {"image": None, "_image_bytes": bytes(image)}  # no blobs in the output
    out: dict[str, Any] = {"image": text_or_none(image)}
    if isinstance(image, str):
        out["_image_path"] = text_or_none(image)  # Arrow strings: lone surrogates escaped
    elif image is not None:
        out["_image_type"] = type(image).__name__
    return out


def stage_row(row: InputRow, name: str, shard_index: int, dups: dict[str, int],
              names: Sequence[str], max_text_chars: int | None = MAX_TEXT_CHARS
              ) -> dict[str, Any]:
    """One input row as a typed staged row: checked by the checks the local engine runs
    (`mjave.data.rows`), in the same order. Strings are stored with any lone surrogate escaped
    (Arrow holds only valid UTF-8); the checks see the row as read. A field that cannot be
    written as JSON makes an error row (`writable_row`), as in the local engine."""
    row = writable_row(row)
    cid, category = row.extra.get("cid"), row.extra.get("category")
    extra = {k: v for k, v in row.extra.items() if k not in CSV_COLUMNS}
    ord_ = shard_index << ROW_BITS | row.number
    out: dict[str, Any] = {
        "id": text_or_none(row.id), "cid": text_or_none(cid),
        "category": text_or_none(category),
        "text": text_or_none(row.text) if isinstance(row.text, str) else None,
        "extra": json_text(extra) if extra else None, "_where": _where(name, row.number),
        "_ord": ord_, "_cid": None if cid is None else text_or_none(str(cid)),
        "_category": text_or_none(category) if isinstance(category, str) else None,
        "_category_type": None if category is None or isinstance(category, str)
        else type(category).__name__,
        **_image_fields(row.image)}
    if row.error is not None:
        _fail(out, row.error)
        return out
    try:
        key = check_id(row.id)
        out["_key"] = key = text_or_none(key)
        if key in dups and dups[key] != ord_:
            raise duplicate_id(key, _first_at(dups[key], ord_, names))
        check_text(row.text, max_text_chars)
    except DataError as e:
        _fail(out, e)
    return out


def read_shards(batch: Any, *, input_format: str | None, names: Sequence[str],
                dups: dict[str, int], keys_only: bool = False,
                max_text_chars: int | None = MAX_TEXT_CHARS) -> Iterator[Any]:
    """Ray stage: the rows of the shards named in `batch`, `READ_BLOCK_ROWS` at a time.

    `keys_only`: only `(_key, _ord)` of the rows with a usable id (the duplicate pass)."""
    schema = _keys_schema() if keys_only else staged_schema()
    for shard in batch.to_pylist():
        chunk: list[dict[str, Any]] = []
        for row in read_input(shard["path"], input_format, READ_BLOCK_ROWS):
            if keys_only:
                key = None if row.error is not None else id_key(row.id)
                if key:
                    chunk.append({"_key": text_or_none(key),
                                  "_ord": shard["index"] << ROW_BITS | row.number})
            else:
                chunk.append(stage_row(row, names[shard["index"]], shard["index"], dups, names,
                                       max_text_chars))
            if len(chunk) >= READ_BLOCK_ROWS:
                yield _table(chunk, schema)
                chunk = []
        if chunk:
            yield _table(chunk, schema)


# --------------------------------------------------------------------------------------------
# Stage 2: images (CPU)
# --------------------------------------------------------------------------------------------


def _resolve_image(row: dict[str, Any], facts: ModelFacts, image_root: str | None,
                   base_dir: str) -> Path | None:
    """The image file of a row as training resolves it (relative paths from the driver's
    folder), or None; DataError when the model needs one and its policy is 'error', or when
    the path leaves the image root (`confine`, as the local engine and the server)."""
    path = find_image({"id": row["_key"], "cid": row["_cid"], "image": row["_image_path"]},
                      image_root, facts.missing_image, confine=True)
    return None if path is None else Path(base_dir) / path


def _pixels(row: dict[str, Any], image: Any, size: int, resample: int | None) -> None:
    """Store the decoded image, resized as `ImageEncoder.preprocess` will (a no-op there)."""
    if resample is not None:
        image = image.resize((size, size), resample)
    row["_pixels"] = image.tobytes()
    row["_width"], row["_height"] = image.size


def _decode_row(row: dict[str, Any], facts: ModelFacts, image_root: str | None,
                base_dir: str, resample: int | None, max_pixels: int = MAX_IMAGE_PIXELS
                ) -> None:
    """Decode the image of one row to RGB pixels. An unreadable image (a FIFO, too many
    pixels) stays a path (or bytes), so the model stage gives it exactly the local engine's
    error or zero-image warning."""
    from mjave.inference.extractor import open_image

    if row["_image_type"] is not None:
        raise bad_image_field(row["_image_type"])
    if row["_image_bytes"] is not None:
        try:
            _pixels(row, open_image(row["_image_bytes"], max_pixels), facts.image_size,
                    resample)
            row["_image_bytes"] = None
        except DataError:
            pass
        return
    path = _resolve_image(row, facts, image_root, base_dir)
    row["_image_path"] = None if path is None else str(path)
    if path is not None:
        try:
            image = open_image(path, max_pixels)
        except DataError:
            return
        _pixels(row, image, facts.image_size, resample)


def decode_images(batch: Any, *, facts: ModelFacts, image_root: str | None, base_dir: str,
                  max_image_pixels: int = MAX_IMAGE_PIXELS) -> Any:
    """Ray stage: open, decode and resize the images of a batch (rows to predict only)."""
    resample = encoder_resample(facts.image_encoder)
    rows = batch.to_pylist()
    for row in rows:
        if row["error"] is None:
            try:
                _decode_row(row, facts, image_root, base_dir, resample, max_image_pixels)
            except DataError as e:
                _fail(row, e)
    return _table(rows, staged_schema())


# --------------------------------------------------------------------------------------------
# Stage 3: the model (actors)
# --------------------------------------------------------------------------------------------


def _image_input(row: dict[str, Any]) -> Any:
    """What the Extractor gets: decoded pixels, else the path or bytes, else None."""
    if row["_pixels"] is not None:
        from PIL import Image
        return Image.frombytes("RGB", (row["_width"], row["_height"]), row["_pixels"])
    return row["_image_bytes"] if row["_image_bytes"] is not None else row["_image_path"]


def _apply_result(row: dict[str, Any], result: dict[str, Any]) -> None:
    if "error" in result:
        row["error"] = f"{row['_where']}: {result['error']}"
        row["reason"] = result.get("reason", "error")
        return
    row["attributes"], row["values"] = result["attributes"], result["values"]
    row["warning"] = result.get("warning") or None


class Predictor:
    """Ray actor of the model stage: loads the Extractor once, then predicts batch after batch.
    Rows that arrive as error rows pass through unchanged."""

    def __init__(self, model_dir: str, device: str, batch_size: int, include_text: bool,
                 facts: ModelFacts, max_text_chars: int | None = MAX_TEXT_CHARS,
                 max_image_pixels: int = MAX_IMAGE_PIXELS):
        from mjave.inference.extractor import Extractor
        self.extractor = Extractor.load(model_dir, device=device, batch_size=batch_size)
        self.extractor.max_text_chars = max_text_chars
        self.extractor.max_image_pixels = max_image_pixels
        if (self.extractor.uses_image, self.extractor.missing_image) != (facts.uses_image,
                                                                         facts.missing_image):
            raise RuntimeError(f"{model_dir}: the loaded model disagrees with its config.json "
                               "about images; the Ray engine cannot route them")
        self.include_text = include_text

    def __call__(self, batch: Any) -> Any:
        rows = batch.to_pylist()
        todo = []
        for row in rows:
            if row["error"] is None and self._category_ok(row):
                todo.append(row)
        uses = self.extractor.uses_image
        items = [to_item({"text": r["text"], "category": r["_category"],
                          "image": _image_input(r) if uses else None}, uses_image=uses)
                 for r in todo]  # images already resolved (stage 2): only passed through
        for row, result in zip(todo, self._predict(items)):
            _apply_result(row, result)
        if not self.include_text:
            for row in rows:
                row["text"] = None
        return _table(rows, output_schema())

    def _category_ok(self, row: dict[str, Any]) -> bool:
        """A non-string category fails here, as `check_category` does for models that use it."""
        if row["_category_type"] is None or not self.extractor.restrict_to_category:
            return True
        _fail(row, bad_category(row["_category_type"]))
        return False

    def _predict(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`predict_batch`; a batch that raises (not a DataError: a bug, an out-of-memory) is
        split until the row that raises is an error row, so the job goes on."""
        if not items:
            return []
        try:
            return self.extractor.predict_batch(items, errors="return")
        except Exception as e:
            if len(items) == 1:
                return [{"error": f"prediction failed ({type(e).__name__}: {e})",
                         "reason": "prediction failed"}]
            half = len(items) // 2
            return self._predict(items[:half]) + self._predict(items[half:])


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


@contextmanager
def ray_session(address: str | None, num_cpus: int) -> Iterator[Any]:
    """Ray connected to `address`, or a local instance of `num_cpus` CPUs; a Ray that was
    already initialised is used as is. Only what this call started is shut down."""
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _prepare_output(output: Path, shards: Sequence[Path]) -> None:
    """An empty output folder: a previous run's part files are replaced, anything else is not
    touched (and refused), and the input is never inside it."""
    if output.suffix.lower() in (".jsonl", ".ndjson", ".csv"):
        raise DataError("the Ray engine writes a folder of Parquet part files: name it like "
                        "OUT.parquet", path=str(output), reason="unknown format")
    if output.is_file():
        raise DataError("this is a file; the Ray engine writes a folder of Parquet part files",
                        path=str(output), reason="bad output")
    check_not_input(output, shards)
    if any(output.resolve() in p.resolve().parents for p in shards):
        raise DataError("the output would overwrite the input (it lies in the output folder)",
                        path=str(output), reason="same file")
    if output.is_dir():
        others = [p.name for p in output.iterdir() if p.suffix != ".parquet" or not p.is_file()]
        if others:
            raise DataError(f"the output folder holds more than Parquet parts ({others[0]}); "
                            "not replacing it", path=str(output), reason="bad output")
        for old in output.glob("*.parquet"):
            old.unlink()  # a fresh run replaces the previous run's output
    output.mkdir(parents=True, exist_ok=True)


def _shards_dataset(ray: Any, shards: Sequence[Path]) -> Any:
    items = [{"path": str(p), "index": i} for i, p in enumerate(shards)]
    return ray.data.from_items(items, override_num_blocks=len(items))


def _repeated_only(batch: Any) -> Any:
    """Ray stage: the (key, count, first) rows of keys seen more than once."""
    import pyarrow.compute as pc
    return batch.filter(pc.greater(batch["n"], 1))


def find_duplicates(ray: Any, shards: Sequence[Path], input_format: str | None
                    ) -> dict[str, int]:
    """Ids that occur more than once -> the `_ord` of their first row (the duplicate pass).

    Counted by a Ray Data group-by, so only the repeated ids reach the driver: the driver's
    memory grows with the duplicates, not with the catalog (a dict of every id of 100 million
    products would not fit it)."""
    from ray.data.aggregate import Count, Min
    keys = _shards_dataset(ray, shards).map_batches(
        read_shards, batch_size=1, batch_format="pyarrow",
        fn_kwargs={"input_format": input_format, "names": [], "dups": {}, "keys_only": True})
    counted = keys.groupby("_key", num_partitions=min(len(shards), 200)).aggregate(
        Count(alias_name="n"), Min("_ord", alias_name="first"))
    repeated = counted.map_batches(_repeated_only, batch_format="pyarrow")
    out: dict[str, int] = {}
    for batch in repeated.iter_batches(batch_format="pyarrow", batch_size=None):
        out.update(zip(batch.column("_key").to_pylist(), batch.column("first").to_pylist()))
    return out


@dataclass
class _Run:
    """One run's settings, as the pipeline stages need them."""

    model_dir: str
    shards: list[Path]
    input_format: str | None
    facts: ModelFacts
    image_root: str | None
    num_workers: int
    batch_size: int
    include_text: bool
    cpus_per_worker: float
    gpus_per_worker: float
    device: str
    max_text_chars: int | None = MAX_TEXT_CHARS
    max_image_pixels: int = MAX_IMAGE_PIXELS


def build_pipeline(ray: Any, run: _Run, dups: dict[str, int]) -> Any:
    """read -> (decode images) -> model actors: the lazy dataset `write_parquet` runs."""
    ds = _shards_dataset(ray, run.shards).map_batches(
        read_shards, batch_size=1, batch_format="pyarrow",
        fn_kwargs={"input_format": run.input_format, "names": shard_names(run.shards),
                   "dups": dups, "max_text_chars": run.max_text_chars})
    if run.facts.uses_image:
        ds = ds.map_batches(decode_images, batch_size=run.batch_size, batch_format="pyarrow",
                            fn_kwargs={"facts": run.facts, "image_root": run.image_root,
                                       "base_dir": os.getcwd(),
                                       "max_image_pixels": run.max_image_pixels})
    gpu = {"num_gpus": run.gpus_per_worker} if run.gpus_per_worker else {}
    return ds.map_batches(
        Predictor, batch_size=run.batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=run.num_workers),
        fn_constructor_kwargs={"model_dir": run.model_dir, "device": run.device,
                               "batch_size": run.batch_size, "include_text": run.include_text,
                               "facts": run.facts, "max_text_chars": run.max_text_chars,
                               "max_image_pixels": run.max_image_pixels},
        num_cpus=run.cpus_per_worker, **gpu)


def _gpus_per_worker(ray: Any, device: str) -> tuple[float, str]:
    """(GPUs per model actor, the actor's device): a GPU each for `cuda`, and for `auto` when
    the cluster has GPUs. Ray shows each actor its own GPU as cuda:0."""
    if device.startswith("cuda") or (device == "auto"
                                     and ray.cluster_resources().get("GPU", 0) >= 1):
        return 1.0, "cuda"
    return 0.0, "cpu"


def count_output(output: Path, summary: PredictSummary) -> None:
    """Fill the summary's counts from the written files (`reason`, `warning` columns only)."""
    import pyarrow.dataset as pads

    files = sorted(output.glob("*.parquet"))
    if not files:
        return
    scanner = pads.dataset([str(f) for f in files], format="parquet").scanner(
        columns=["reason", "warning"])
    for batch in scanner.to_batches():
        summary.rows += batch.num_rows
        for item in batch.column(0).value_counts().to_pylist():
            if item["values"] is not None:
                summary.failed += item["counts"]
                summary.reasons[item["values"]] += item["counts"]
        for item in batch.column(1).value_counts().to_pylist():
            if item["values"] is not None:
                summary.warned += item["counts"]
                summary.warnings[re.split(r"[:(]", item["values"])[0].strip()] += item["counts"]
    summary.ok = summary.rows - summary.failed


def _run_job(ray: Any, run: _Run, output: Path, check_duplicates: bool, progress: bool
             ) -> None:
    from ray.exceptions import RayError

    ctx = ray.data.DataContext.get_current()
    bars = ctx.enable_progress_bars
    ctx.enable_progress_bars = progress
    try:
        dups = find_duplicates(ray, run.shards, run.input_format) if check_duplicates else {}
        build_pipeline(ray, run, dups).write_parquet(str(output))
    except RayError as e:
        raise RayEngineError(f"the Ray job failed: {e}") from e
    finally:
        ctx.enable_progress_bars = bars


def predict_with_ray(model_dir: PathLike, inputs: PathLike | Sequence[PathLike],
                     output_dir: PathLike, *, address: str | None = None,
                     num_workers: int = DEFAULT_WORKERS, batch_size: int = 32,
                     device: str = "auto", image_root: PathLike | None = None,
                     input_format: str | None = None, include_text: bool = True,
                     check_duplicates: bool = True, cpus_per_worker: float = 1.0,
                     progress: bool = True, max_text_chars: int | None = None,
                     max_image_pixels: int | None = None) -> PredictSummary:
    """Predict every row of `inputs` (a file, a folder of shards, a glob, or a list of them)
    into the Parquet folder `output_dir` on Ray: `num_workers` model actors of `batch_size`.

    `address`: a running cluster (`"auto"`, `"ray://host:10001"`); without it a local Ray of
    `num_workers * cpus_per_worker + 1` CPUs is started and shut down. The model folder, the
    inputs, `image_root` and `output_dir` must be readable (writable) by every worker: on a
    cluster, a shared filesystem. `image_root` confines image paths and the limits
    (`max_text_chars`, `max_image_pixels`; None: `mjave.data.rows`' defaults) apply as in
    `predict_file`. Raises what `predict_file` raises for fatal problems, and
    RayEngineError when the job itself fails; bad rows are error rows, counted in the summary.
    """
    start = time.perf_counter()
    if batch_size < 1 or num_workers < 1:
        raise ValueError(f"batch_size and num_workers must be positive, not {batch_size} and "
                         f"{num_workers}")
    _import_ray()  # before anything is checked or replaced
    facts = ModelFacts.read(model_dir)
    shards = find_shards(inputs, input_format)
    check_shards(shards, input_format)
    output = Path(output_dir).absolute()
    _prepare_output(output, shards)
    named = [inputs] if isinstance(inputs, (str, os.PathLike)) else inputs
    summary = PredictSummary(", ".join(map(os.fspath, named)), str(output), files=[str(output)])
    run = _Run(str(Path(model_dir).absolute()), shards, input_format, facts,
               None if image_root is None else str(Path(image_root).absolute()), num_workers,
               batch_size, include_text, cpus_per_worker, 0.0, "cpu",
               MAX_TEXT_CHARS if max_text_chars is None else max_text_chars,
               MAX_IMAGE_PIXELS if max_image_pixels is None else max_image_pixels)
    with ray_session(address, math.ceil(num_workers * cpus_per_worker) + 1) as ray:
        run.gpus_per_worker, run.device = _gpus_per_worker(ray, device)
        _run_job(ray, run, output, check_duplicates, progress)
    count_output(output, summary)
    summary.seconds = time.perf_counter() - start
    return summary


__all__ = ["ModelFacts", "Predictor", "RayEngineError", "build_pipeline",
           "count_output", "decode_images", "find_duplicates", "find_shards",
           "output_schema", "predict_with_ray", "ray_session", "read_shards", "stage_row",
           "staged_schema"]
