"""Encode records once into the feature store: incremental, resumable, and checked for mixing.

Text features are keyed by record id (one sentence), image features by `record.product_id`, so
the sentences of one product share one image encoding. Only keys not in the store are encoded;
the store is flushed after every batch, so a killed run loses at most one batch and a rerun
continues where it stopped. The store's meta.json remembers the encoder settings, and reopening
it with other settings is an error instead of a silent mix of two encoders' features.

Top-layer fine-tuning (`encoder.train_layers: K`) stores the output of the frozen layers below
the K trained ones in the namespace "lower" instead, keyed by a hash of the text (identical
titles share one entry). Its settings (a hash of the encoder's weight files, the layer,
max_length, the tokenizer) are a cache key, not a commitment: when one changes, the namespace is
deleted and recomputed (`FeatureStore(invalidate=...)`), so the store never holds more than one
version of it. Stored as float16 like the rest, because the equality test holds: the top layers
on float16-rounded inputs differ from the full float32 forward by at most 1.2e-3 at the last
hidden states (MiniLM-L6 on 1,000 titles, states up to |6|, benchmarks/lower_cache.py), about
the float16 rounding of those states themselves, which the frozen path stores anyway;
tests/test_train_layers.py holds it to 5e-3. float32 would double the disk for nothing
measurable (bf16 autocast on CUDA rounds far more coarsely).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from mjave.data.errors import DataError
from mjave.data.records import Record
from mjave.data.rows import resolve_image_path  # noqa: F401  (re-exported)
from mjave.data.tagging import CharTokenizer, TextAligner, Tokenizer, batch_pad
from mjave.encoders.image import (
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageEncoder,
    configured_image_encoder,
    file_fingerprint,
    load_image,
    packaged_efficientnet_weights,
    resnet_weights_required,
)
from mjave.config.encoder import EncoderConfig
from mjave.encoders import layers
from mjave.encoders.colour import COLOUR_SCALE, colour_encoder_name, colour_feature_dim
from mjave.encoders.store import FeatureStore
from mjave.encoders.text import HFTextEncoder, load_tokenizer, resolve_text_encoder_path
from mjave.logs import make_bar

log = logging.getLogger(__name__)

@dataclass
class FeatureStats:
    """What one `extract_features` call did."""

    new_texts: int = 0
    new_images: int = 0           # images encoded (zero-filled ones not included)
    skipped_texts: int = 0        # ids already in the store
    skipped_images: int = 0       # product ids already in the store
    missing_images: int = 0       # zero-filled under missing_image="zeros"
    text_seconds: float = 0.0     # encoding wall time, model loading excluded
    image_seconds: float = 0.0    # decoding + preprocessing + encoding, model loading excluded
    load_seconds: float = 0.0     # loading encoder weights

    @property
    def images_per_second(self) -> float:
        return self.new_images / self.image_seconds if self.image_seconds > 0 else 0.0

    @property
    def texts_per_second(self) -> float:
        return self.new_texts / self.text_seconds if self.text_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_second": self.images_per_second,
                "texts_per_second": self.texts_per_second}

    def summary(self) -> str:
        return (f"text: {self.new_texts} encoded, {self.skipped_texts} already stored; "
                f"images: {self.new_images} encoded ({self.images_per_second:.1f}/s), "
                f"{self.skipped_images} already stored, {self.missing_images} missing "
                "(zero features)")


# --------------------------------------------------------------------------------------------
# Identities recorded in the store's meta.json
# --------------------------------------------------------------------------------------------


def _hash_files(folder: Path, names: Iterable[str]) -> str:
    h = hashlib.sha256()
    for name in names:
        p = folder / name
        if p.is_file():
            h.update(name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def model_fingerprint(folder: Path) -> str:
    """config.json plus the names and sizes of the weight files: cheap, and a different model
    (or the same one re-saved with other weights) gives a different value."""
    h = hashlib.sha256((folder / "config.json").read_bytes())
    for p in sorted(folder.iterdir()):
        if p.suffix in (".safetensors", ".bin", ".pt", ".pth") and p.is_file():
            h.update(f"{p.name}:{p.stat().st_size}".encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=16)
def _content_hash(folder: Path, stamp: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for name, _, _ in stamp:
        h.update(name.encode() + b"\0")
        with open(folder / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def model_content_hash(folder: Path) -> str:
    """sha256 of config.json and every weight file's bytes: unlike `model_fingerprint`, weights
    re-saved at the same size count as another model (MiniLM: 0.1 s, all-mpnet-base-v2: about
    1 s, once per process and file version)."""
    names = ["config.json"] + sorted(
        p.name for p in folder.iterdir()
        if p.suffix in (".safetensors", ".bin", ".pt", ".pth") and p.is_file())
    stamp = tuple((n, (folder / n).stat().st_size, (folder / n).stat().st_mtime_ns)
                  for n in names)
    return _content_hash(folder.resolve(), stamp)


def text_key(text: str) -> str:
    """The "lower" namespace's key of a text: its tokens depend on the text alone once the
    tokenizer and max_length (recorded in the namespace's settings) are fixed."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


LOWER_NAMESPACE = "lower"
"""Where the frozen lower layers' output of top-layer fine-tuning is stored."""


def text_feature_keys(config: EncoderConfig, records: Sequence[Record]) -> tuple[str, list[str]]:
    """The namespace and keys of `records`' stored text features: record ids under "text" for
    a frozen encoder, text hashes under "lower" for top-layer fine-tuning."""
    if config.caches_lower_layers:
        return LOWER_NAMESPACE, [text_key(r.text) for r in records]
    return "text", [r.id for r in records]


def image_namespace(config: EncoderConfig) -> str:
    """Where the image features are stored: "image", or "image_rgb<N>" with the colour
    histogram (`encoder.image_colour_bins`), so runs with and without it (an experiment's
    variants) share one store and its text features without mixing their image features."""
    bins = config.image_colour_bins
    return f"image_rgb{bins}" if bins else "image"


def image_feature_keys(config: EncoderConfig, records: Sequence[Record]
                       ) -> tuple[str, list[str]]:
    """The namespace and keys (product ids) of `records`' stored image features."""
    return image_namespace(config), [r.product_id for r in records]


def lower_split(config: EncoderConfig, folder: Path) -> int:
    """The number of layers below the `train_layers` trained ones, from config.json alone;
    ValueError for an encoder that cannot be split or has too few layers."""
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        layers.check_splittable(str(cfg.get("model_type")), str(folder))
        n = int(cfg["num_hidden_layers"])
    except (OSError, KeyError, TypeError) as e:
        raise ValueError(f"{folder}/config.json: cannot read the model type and layer count "
                         f"({e})") from None
    return layers.split_index(int(config.layers_trained), n, str(folder))


def tokenizer_fingerprint(folder: Path, char_level: bool) -> str:
    """Which tokenizer files, and whether characters are the tokens."""
    kind = "char" if char_level else "hf"
    names = (["vocab.txt"] if char_level else
             ["tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
              "merges.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model"])
    return f"{kind}:{_hash_files(folder, names)}"


def tokenizer_kind(tokenizer: Tokenizer) -> str:
    """'char' for the one-token-per-character tokenizer, else 'hf'."""
    return "char" if isinstance(tokenizer, CharTokenizer) else "hf"


def _text_meta(config: EncoderConfig, tokenizer: Tokenizer, hidden_size: int,
               folder: Path) -> dict[str, Any]:
    char = tokenizer_kind(tokenizer) == "char"
    return {
        "encoder": model_fingerprint(folder),
        "tokenizer": f"{type(tokenizer).__name__}/{tokenizer_fingerprint(folder, char)}",
        "max_length": config.max_length,
        "dim": hidden_size,
        "info": {"text_encoder": config.text_encoder, "path": str(folder)},
    }


def _lower_meta(config: EncoderConfig, tokenizer: Tokenizer, hidden_size: int, folder: Path,
                split: int) -> dict[str, Any]:
    char = tokenizer_kind(tokenizer) == "char"
    return {
        "encoder": model_content_hash(folder),
        "layer": split,
        "tokenizer": f"{type(tokenizer).__name__}/{tokenizer_fingerprint(folder, char)}",
        "max_length": config.max_length,
        "dim": hidden_size,
        "info": {"text_encoder": config.text_encoder, "path": str(folder),
                 "train_layers": config.layers_trained},
    }


def hidden_size_from_config(folder: Path) -> int:
    """The hidden size in a Hugging Face model folder's config.json."""
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return int(cfg.get("hidden_size") or cfg.get("d_model") or cfg["dim"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{folder}/config.json: cannot read the hidden size ({e})") from None


IMAGE_FEATURE_DIMS = {"efficientnet-lite0": 1280, "efficientnet-lite2": 1280,
                      "resnet101": 2048, "resnet50": 2048}


def image_feature_dim(name: str, colour_bins: int = 0) -> int:
    """The feature size of the named image encoder, with `colour_bins`^3 histogram features
    when the colour histogram is on (`encoder.image_colour_bins`)."""
    return IMAGE_FEATURE_DIMS[name] + colour_feature_dim(colour_bins)


def _image_meta(config: EncoderConfig, encoder: ImageEncoder | None) -> dict[str, Any]:
    """What the image features depend on, computed without building the network when possible
    (a rerun with nothing new to encode then loads no weights at all)."""
    if encoder is not None:
        d = encoder.describe()
        weights_path = encoder.weights_path
    else:
        name = config.image_encoder
        weights_path = config.image_weights
        if weights_path is None and name.startswith("efficientnet"):
            weights_path = str(packaged_efficientnet_weights(name[len("efficientnet-"):]))
        if weights_path is None:
            raise resnet_weights_required(name)
        side = math.ceil(config.image_size / 32)
        lite = name.startswith("efficientnet")
        bins = config.image_colour_bins
        d = {"name": colour_encoder_name(name, bins), "weights": file_fingerprint(weights_path),
             "image_size": config.image_size, "feature_dim": image_feature_dim(name, bins),
             "num_regions": side * side,
             "mean": list(EFFICIENTNET_LITE_MEAN if lite else IMAGENET_MEAN),
             "std": list(EFFICIENTNET_LITE_STD if lite else IMAGENET_STD),
             **({"colour_bins": bins, "colour_scale": COLOUR_SCALE} if bins else {})}
    # the colour keys only when the histogram is on: stores written before it keep their meta
    colour = {k: d[k] for k in ("colour_bins", "colour_scale") if k in d}
    return {"encoder": d["name"], "weights": d["weights"], "image_size": d["image_size"],
            "mean": d["mean"], "std": d["std"], "dim": d["feature_dim"],
            "rows": 1 + d["num_regions"], **colour, "info": {"weights_path": weights_path}}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------




def _default_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


def extract_features(records: Sequence[Record], store_dir: str | os.PathLike[str],
                     config: EncoderConfig, image_root: str | os.PathLike[str] | None = None,
                     batch_size: int = 32, progress: bool | Callable[..., Any] | None = None,
                     *, text: bool | None = None, image: bool | None = None,
                     device: str | torch.device | None = None,
                     text_encoder: HFTextEncoder | None = None,
                     tokenizer: Tokenizer | None = None,
                     image_encoder: ImageEncoder | None = None) -> FeatureStats:
    """Encode into `store_dir` the texts and images of `records` that it does not hold yet.

    `text` / `image`: None = as the config says (text when the HF encoder is frozen, or the
    lower layers' output under top-layer fine-tuning; images unless image_encoder is "none");
    True where the config cannot cache them is an error.
    `progress`: True for a tqdm bar, or a factory called as `progress(total=, desc=, unit=)`
    returning a tqdm-like object. `text_encoder`, `tokenizer`, `image_encoder` reuse already
    loaded models (they must match `config`). Models are only loaded when something is missing.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, not {batch_size}")
    cacheable = config.caches_text or config.caches_lower_layers
    do_text = cacheable if text is None else text
    do_image = config.uses_images if image is None else image
    if do_text and not cacheable:
        raise ValueError(f"text features are cached only for a frozen Hugging Face encoder or "
                         f"its frozen lower layers; this config has "
                         f"text_kind={config.text_kind!r}, train_layers="
                         f"{config.layers_trained!r} (its text encoder runs inside the model)")
    if do_image and not config.uses_images:
        raise ValueError("image features were asked for but encoder.image_encoder is 'none'")
    stats = FeatureStats()
    if not (do_text or do_image):
        return stats
    dev = _default_device(device)

    meta: dict[str, dict[str, Any]] = {}
    folder: Path | None = None
    split: int | None = None
    if do_text:
        folder = resolve_text_encoder_path(config.text_encoder)
        if tokenizer is None:
            tokenizer = load_tokenizer(folder, char_level=config.char_level)
        hidden = (text_encoder.hidden_size if text_encoder is not None
                  else hidden_size_from_config(folder))
        if config.caches_lower_layers:
            split = lower_split(config, folder)
            meta[LOWER_NAMESPACE] = _lower_meta(config, tokenizer, hidden, folder, split)
        else:
            meta["text"] = _text_meta(config, tokenizer, hidden, folder)
    if do_image:
        meta[image_namespace(config)] = _image_meta(config, image_encoder)

    store = FeatureStore(store_dir, meta=meta, flush_every=max(batch_size, 1) * 2,
                         invalidate=(LOWER_NAMESPACE,))
    try:
        if do_text and split is not None:
            assert tokenizer is not None and folder is not None
            _extract_lower(records, store, config, tokenizer, folder, text_encoder, split,
                           batch_size, progress, dev, stats)
        elif do_text:
            assert tokenizer is not None and folder is not None
            _extract_text(records, store, config, tokenizer, folder, text_encoder, batch_size,
                          progress, dev, stats)
        if do_image:
            _extract_images(records, store, config, image_root, image_encoder, batch_size,
                            progress, dev, stats)
    finally:
        store.close()
    log.info("features in %s: %s", store_dir, stats.summary())
    return stats


def _extract_text(records: Sequence[Record], store: FeatureStore, config: EncoderConfig,
                  tokenizer: Tokenizer, folder: Path, encoder: HFTextEncoder | None,
                  batch_size: int, progress: Any, device: torch.device,
                  stats: FeatureStats) -> None:
    """The frozen encoder's last hidden states, keyed by record id."""
    first: dict[str, Record] = {}
    conflicting = 0
    for r in records:
        if r.id in first:
            conflicting += first[r.id].text != r.text
        else:
            first[r.id] = r
    if conflicting:
        log.warning("%d records reuse an id with a different text; the first text's features "
                    "are stored for that id", conflicting)

    def load() -> HFTextEncoder:
        return HFTextEncoder.from_pretrained(folder, fine_tune=False)

    _encode_texts(store, "text", {k: r.text for k, r in first.items()}, load,
                  lambda enc, ids, mask: enc(ids, mask), config, tokenizer, folder, encoder,
                  batch_size, progress, device, stats)


def _extract_lower(records: Sequence[Record], store: FeatureStore, config: EncoderConfig,
                   tokenizer: Tokenizer, folder: Path, encoder: HFTextEncoder | None,
                   split: int, batch_size: int, progress: Any, device: torch.device,
                   stats: FeatureStats) -> None:
    """The frozen lower layers' output under top-layer fine-tuning, keyed by `text_key`. A
    given `encoder` (the network's own, already loaded) must split where the config does."""
    if encoder is not None and getattr(encoder, "split", None) != split:
        raise ValueError(f"the given text encoder splits at layer "
                         f"{getattr(encoder, 'split', None)}, the config at {split}")

    def load() -> HFTextEncoder:
        return HFTextEncoder.from_pretrained(folder, fine_tune=True,
                                             train_layers=config.layers_trained)

    _encode_texts(store, LOWER_NAMESPACE, {text_key(r.text): r.text for r in records}, load,
                  lambda enc, ids, mask: enc.lower(ids, mask), config, tokenizer, folder,
                  encoder, batch_size, progress, device, stats)


def _encode_texts(store: FeatureStore, ns: str, texts: dict[str, str],
                  load: Callable[[], HFTextEncoder],
                  run: Callable[[HFTextEncoder, torch.Tensor, torch.Tensor], torch.Tensor],
                  config: EncoderConfig, tokenizer: Tokenizer, folder: Path,
                  encoder: HFTextEncoder | None, batch_size: int, progress: Any,
                  device: torch.device, stats: FeatureStats) -> None:
    """Put `run(encoder, ids, mask)` of the texts (by key) that `ns` lacks, a batch per flush."""
    pending = store.missing(ns, texts)
    stats.skipped_texts = len(texts) - len(pending)
    if not pending:
        return
    if encoder is None:
        t0 = time.perf_counter()
        encoder = load().to(device)
        stats.load_seconds += time.perf_counter() - t0
    device = next(encoder.parameters()).device
    start = time.perf_counter()
    aligner = TextAligner(tokenizer, max_length=config.max_length)
    encodeds = {k: aligner.encode_text(texts[k]) for k in pending}
    # Similar lengths together: less padding per batch. (Outputs at real tokens do not depend on
    # the padding, up to float rounding far below float16 resolution.)
    order = sorted(pending, key=lambda k: len(encodeds[k]))
    bar = make_bar(progress, len(order), "text features", "text")
    try:
        for keys in _chunks(order, batch_size):
            batch = batch_pad([encodeds[k] for k in keys], tokenizer.pad_id)
            ids = torch.from_numpy(batch["input_ids"])
            if int(ids.max()) >= encoder.vocab_size:
                raise ValueError(f"tokenizer ids reach {int(ids.max())} but the text encoder in "
                                 f"{folder} has only {encoder.vocab_size} embeddings: the "
                                 "tokenizer does not belong to this model")
            h = run(encoder, ids.to(device), torch.from_numpy(batch["attention_mask"]).to(device))
            h = h.float().cpu().numpy()
            store.put(ns, {k: h[i, :int(n)] for i, (k, n)
                           in enumerate(zip(keys, batch["lengths"]))})
            store.flush()
            stats.new_texts += len(keys)
            if bar is not None:
                bar.update(len(keys))
    finally:
        if bar is not None:
            bar.close()
        stats.text_seconds = time.perf_counter() - start


def _extract_images(records: Sequence[Record], store: FeatureStore, config: EncoderConfig,
                    image_root: str | os.PathLike[str] | None, encoder: ImageEncoder | None,
                    batch_size: int, progress: Any, device: torch.device,
                    stats: FeatureStats) -> None:
    # One image per product: the first record of the product whose image file exists decides
    # (else the first record, for the error message or the zero fill-in).
    by_product: dict[str, tuple[Record, Path | None, list[Path]]] = {}
    found: set[str] = set()
    for r in records:
        pid = r.product_id
        if pid in found:
            continue
        path, tried = resolve_image_path(r, image_root)
        exists = path is not None and path.is_file()
        if pid not in by_product or exists:
            by_product[pid] = (r, path, tried)
        if exists:
            found.add(pid)
    # Zero-filled products are retried: their image may have been added since.
    ns = image_namespace(config)
    pending = store.missing(ns, by_product, include_placeholders=True)
    stats.skipped_images = len(by_product) - len(pending)
    if not pending:
        return
    policy = config.missing_image

    def missing_error(pid: str) -> DataError:
        record, path, tried = by_product[pid]
        if path is not None:
            return DataError(f"record {record.id!r} (product {pid!r}): image file not found "
                             "(use missing_image='zeros' to fill zero features instead)",
                             path=str(path), field="image", reason="missing image")
        where = (f"; looked for {', '.join(map(str, tried))}" if tried
                 else "; give image_root or an image path in the record")
        return DataError(f"record {record.id!r} (product {pid!r}) has no image{where}",
                         field="image", reason="missing image")

    if policy == "error":  # fail before hours of encoding, not at the first absent file
        absent = [pid for pid in pending if pid not in found]
        if absent:
            if len(absent) > 1:
                log.error("%d products have no image file, e.g. %s", len(absent), absent[:5])
            raise missing_error(absent[0])
    start = time.perf_counter()
    load_time = 0.0

    def load(pid: str) -> Any:
        record, path, _ = by_product[pid]
        if pid not in found or path is None:
            return None  # policy "zeros" (under "error" the check above has raised)
        try:
            return load_image(path, policy)
        except DataError as e:  # unreadable file
            raise DataError(f"record {record.id!r} (product {pid!r}): {e.message}",
                            path=e.path, field="image", reason=e.reason) from None

    bar = make_bar(progress, len(pending), "image features", "img")
    chunks = _chunks(pending, batch_size)
    workers = max(1, min(8, os.cpu_count() or 1))
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # Decode the next batch while the network runs on this one (PIL releases the GIL).
            future = pool.map(load, chunks[0]) if chunks else None
            for i, keys in enumerate(chunks):
                images = list(future) if future is not None else []
                future = pool.map(load, chunks[i + 1]) if i + 1 < len(chunks) else None
                present = [(k, im) for k, im in zip(keys, images) if im is not None]
                absent = [k for k, im in zip(keys, images) if im is None]
                if present:
                    if encoder is None:
                        t0 = time.perf_counter()
                        encoder = configured_image_encoder(config).to(device)
                        load_time = time.perf_counter() - t0
                        stats.load_seconds += load_time
                    g, r = encoder.encode_images([im for _, im in present])
                    feats = torch.cat([g.unsqueeze(1), r], dim=1).float().cpu().numpy()
                    store.put(ns, {k: feats[j] for j, (k, _) in enumerate(present)})
                    stats.new_images += len(present)
                if absent:
                    stats.missing_images += len(absent)
                    fresh = [k for k in absent if not store.has(ns, k)]
                    if fresh:
                        settings = store.namespace_meta(ns) or {}
                        zeros = np.zeros((settings["rows"], settings["dim"]), dtype=np.float16)
                        store.put(ns, {k: zeros for k in fresh}, placeholder=True)
                store.flush()
                if bar is not None:
                    bar.update(len(keys))
    finally:
        if bar is not None:
            bar.close()
        stats.image_seconds = time.perf_counter() - start - load_time
    if stats.missing_images:
        log.warning("%d products have no readable image; their image features are zeros "
                    "(retried on the next run)", stats.missing_images)


__all__ = ["EncoderConfig", "FeatureStats", "LOWER_NAMESPACE", "extract_features",
           "image_feature_dim", "image_feature_keys", "image_namespace", "lower_split",
           "model_content_hash", "model_fingerprint", "resolve_image_path", "text_feature_keys",
           "text_key", "tokenizer_fingerprint"]
