"""`Extractor`: a trained model folder as a Python object that predicts on raw texts and images.

It holds everything in memory (model, tokenizer, the frozen text encoder when the model reads
cached token states, the image encoder when it uses the image), so no feature store is written.
Features are rounded to float16 exactly as the store rounds them, so a prediction here equals
what `mjave evaluate` computes for the same text and image. Spans come from the one decoder,
`mjave.inference.decode.decode_example`; texts longer than the model's `max_length` are
windowed (`mjave.inference.windows`), never truncated.

Thread-safe: `predict_batch` holds a lock, so a server may call it from several workers.

`explain=True` (per item: `{"text", "image", "explain": True}`) adds the model's visual gates to
a result (`explain_dict`): the tokenizer pieces with their character offsets, the global visual
gate g^G per piece and the regional gate g^R / image attention over the image regions as a grid
(the paper's Figure 5). They come from one more forward pass over that item's windows.
"""

from __future__ import annotations

import io
import logging
import math
import os
import threading
from collections import abc
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from mjave import __version__
from mjave.data.errors import DataError
from mjave.data.records import Record
from mjave.data.rows import (MAX_IMAGE_PIXELS, MAX_TEXT_CHARS, check_category,  # the row
                             check_image_pixels, check_text, open_image_file)  # checks all share
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import Encoded, TextAligner, batch_pad
from mjave.encoders.image import decode_image
from mjave.inference.decode import Decoded, SpanBatch, merge_implicit
from mjave.inference.predict import autocast, decode_options, predict_batches
from mjave.inference.windows import (Window, chunk_bounds, merge_attribute_probs, merge_spans,
                                     text_windows)
from mjave.model.batches import Example, collate
from mjave.model_folder import ModelFolder
from mjave.pretrained import LoadedModel, frozen_text_encoder, versions
from mjave.config import RunConfig

if TYPE_CHECKING:  # an optional extra: `predict_frame` imports it when called
    import pandas

log = logging.getLogger(__name__)

ImageInput = str | os.PathLike | bytes | bytearray | Image.Image | None
Item = Mapping[str, Any] | tuple | list | str
Errors = Literal["raise", "return"]

CPU_IMAGE_BATCH = 4
"""Images per image-encoder forward on CPU. EfficientNet-Lite0 encodes 35-50% more images per
second in batches of 1-4 than of 32 on CPU (its activations at 32 images overflow the caches;
benchmarks/image_features.py), and each image's features do not depend on the batch. On GPU the
extractor's `batch_size` is used."""


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def open_image(image: ImageInput, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """A path, encoded bytes or a PIL image as a decoded RGB image (DataError if unreadable).

    A path must be a regular file (`open_image_file`: a FIFO is refused, not waited on); an
    image over `max_pixels` is refused from its header, before decoding."""
    if isinstance(image, Image.Image):
        check_image_pixels(image.size, max_pixels)
        try:
            return image.convert("RGB")
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read image ({type(e).__name__}: {e})", field="image",
                            reason="bad image") from None
    if isinstance(image, (bytes, bytearray)):
        return decode_image(io.BytesIO(bytes(image)), max_pixels, "cannot read image bytes")
    if isinstance(image, (str, os.PathLike)):
        try:
            with open_image_file(image) as f:
                return decode_image(f, max_pixels)
        except DataError as e:
            raise DataError(e.message, path=str(image), field="image",
                            reason=e.reason) from None
    raise DataError(f"the image must be a path, bytes or a PIL image, found "
                    f"{type(image).__name__}", field="image", reason="bad image type")


def parse_item(item: Item) -> tuple[Any, ImageInput, Any]:
    """(text, image, category) of `{"text", "image"?, "category"?}`, `(text, image)`,
    `(text, image, category)`, `(text,)` or a bare text."""
    if isinstance(item, str):
        return item, None, None
    if isinstance(item, abc.Mapping):  # not typing.Mapping: its isinstance is 5x slower
        return item.get("text"), item.get("image"), item.get("category")
    if isinstance(item, (tuple, list)) and 1 <= len(item) <= 3:
        padded = [*item, None, None]
        return padded[0], padded[1], padded[2]
    raise DataError(f"an item must be a dict with 'text' (and 'image', 'category'), a "
                    f"(text, image) tuple or a string, found {type(item).__name__}",
                    reason="bad item")


def _text_of(item: Any) -> Any:
    """The text of an item, for sizing chunks (anything malformed: None, checked later)."""
    try:
        return parse_item(item)[0]
    except DataError:
        return None


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def result_dict(text: str, decoded: Decoded, attr_probs: np.ndarray, schema: AttributeSchema,
                threshold: float, warning: str | None = None,
                source: str = "image") -> dict[str, Any]:
    """The public result: predicted attributes (score order) and values (text order), then the
    values named without a span (`implicit_value`)."""
    attr_probs = np.asarray(attr_probs)
    hit = np.flatnonzero(attr_probs >= threshold)
    names = schema.attributes
    attrs = [{"name": names[j], "score": p}
             for j, p in zip(hit.tolist(), attr_probs[hit].tolist())]
    attrs.sort(key=lambda a: (-a["score"], a["name"]))
    values = [{"attribute": s.attr, "value": text[s.begin:s.end], "begin": s.begin,
               "end": s.end, "score": float(sc)}
              for s, sc in sorted(zip(decoded.spans, decoded.span_scores),
                                  key=lambda t: (t[0].begin, t[0].end))]
    values += [implicit_value(a, v, sc, source) for a, v, sc in decoded.implicit]
    out: dict[str, Any] = {"attributes": attrs, "values": values}
    if warning:
        out["warning"] = warning
    return out


def implicit_value(attribute: str, value: str, score: float, source: str) -> dict[str, Any]:
    """A value named without a span (issue #31): `begin` and `end` are null, `source` says what
    it was read from ("image" for a model that sees the photo, else "text")."""
    return {"attribute": attribute, "value": value, "begin": None, "end": None,
            "score": float(score), "source": source}


def result_dicts(spans: SpanBatch, source: str = "image") -> list[dict[str, Any]]:
    """`result_dict` of every row of a decoded batch (no warning), from its arrays at once:
    the same dicts, key order and list order, without a `Span` or `Decoded` per item."""
    names, texts = spans.schema.attributes, spans.texts
    values: list[list[dict[str, Any]]] = [[] for _ in texts]
    order = np.lexsort((spans.ends, spans.begins, spans.rows))   # stable, as `sorted` is
    for r, a, b, j, sc in zip(spans.rows[order].tolist(), spans.begins[order].tolist(),
                              spans.ends[order].tolist(), spans.attrs[order].tolist(),
                              spans.scores[order].tolist()):
        values[r].append({"attribute": names[j], "value": texts[r][a:b], "begin": a, "end": b,
                          "score": sc})
    if spans.implicit is not None:
        for r, row in enumerate(spans.implicit):
            values[r] += [implicit_value(a, v, sc, source) for a, v, sc in row]
    attrs: list[list[dict[str, Any]]] = [[] for _ in texts]
    rows, cols, probs = spans.attribute_hits()
    scores = probs.astype(np.float64)                  # float(p), as `result_dict` has it
    order = np.lexsort((_name_ranks(names)[cols], -scores, rows))
    for r, j, p in zip(rows[order].tolist(), cols[order].tolist(), scores[order].tolist()):
        attrs[r].append({"name": names[j], "score": p})
    return [{"attributes": a, "values": v} for a, v in zip(attrs, values)]


def _name_ranks(names: Sequence[str]) -> np.ndarray:
    """Position of each name in sorted order (the tie-break of equal attribute scores)."""
    ranks = np.empty(len(names), dtype=np.int64)
    ranks[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    return ranks


def _grid(values: np.ndarray) -> list[list[float]]:
    """K region values as rows of a square grid (7x7 for K = 49), else one row of K."""
    k = len(values)
    side = int(round(math.sqrt(k)))
    cols = side if side * side == k else k
    return [[float(x) for x in values[r:r + cols]] for r in range(0, k, cols)]


def _tensor_or_none(out: Any, name: str) -> torch.Tensor | None:
    value = getattr(out, name, None)
    return value if isinstance(value, torch.Tensor) else None


def explain_dict(text: str, windows: Sequence[Window], encodings: Sequence[Encoded], out: Any,
                 has_image: bool, attr_probs: np.ndarray, schema: AttributeSchema
                 ) -> dict[str, Any]:
    """The visual gates of one text from the model output `out` over its windows (one row each).

    - `tokens`: the tokenizer pieces of the text (no [CLS]/[SEP]) with `begin`/`end` character
      offsets and `global_gate`, the mean over the attention size of the global visual gate g^G
      (Eq. 6) at that piece, or None when the model has no global gate (text-only models,
      ablations). A piece seen by several windows takes the window where it lies farthest from
      a cut edge.
    - `regional_gate`: g^R (Eq. 10) averaged over the attention size, one value per image region
      as a grid (rows of columns, 7x7 for EfficientNet's 49 regions), averaged over the windows;
      `image_attention`: the attention of the pieces over the regions (alpha^v, Eq. 3-4), averaged
      over the pieces. Both None without an image or for models that do not read one.
    - `attribute_probs`: the probability of every attribute of the schema (after any category
      restriction), not only those over the threshold.
    """
    gg = _tensor_or_none(out, "global_gate")      # (W, T, A)
    rg = _tensor_or_none(out, "regional_gate")    # (W, K, A)
    ia = _tensor_or_none(out, "image_attention")  # (W, T, K)
    gates = gg.float().mean(-1).cpu().numpy() if gg is not None else None
    attention = ia.float().cpu().numpy() if ia is not None and has_image else None
    chosen: dict[int, tuple[float, int, int]] = {}  # global piece -> (margin, window, position)
    for w, (win, enc) in enumerate(zip(windows, encodings)):
        for pos in range(1, len(enc) - 1):
            g = win.start + pos - 1
            margin = min(g - win.start if win.cut_left else math.inf,
                         win.end - 1 - g if win.cut_right else math.inf)
            if g not in chosen or margin > chosen[g][0]:
                chosen[g] = (margin, w, pos)
    tokens, rows = [], []
    for g in sorted(chosen):
        _, w, pos = chosen[g]
        a, b = encodings[w].offsets[pos]
        if b <= a:
            continue
        tokens.append({"text": text[a:b], "begin": int(a), "end": int(b),
                       "global_gate": None if gates is None else float(gates[w, pos])})
        rows.append((w, pos))
    regional = None
    if rg is not None and has_image:
        regional = _grid(rg.float().mean(-1).mean(0).cpu().numpy())
    image_attention = None
    if attention is not None and rows:
        image_attention = _grid(np.mean([attention[w, pos] for w, pos in rows], axis=0))
    grid = None
    for value in (regional, image_attention):
        if value is not None:
            grid = [len(value), len(value[0]) if value else 0]
    return {"tokens": tokens, "regional_gate": regional, "image_attention": image_attention,
            "grid": grid,
            "attribute_probs": {schema.attributes[j]: float(p) for j, p in enumerate(attr_probs)}}


def error_dict(error: DataError) -> dict[str, Any]:
    """What `predict_batch(errors="return")` gives for an item that cannot be predicted."""
    return {"error": str(error), "reason": error.reason}


@dataclass
class _Prepared:
    """One item on its way through the model."""

    index: int
    text: str
    category: str | None
    windows: list[Window] = field(default_factory=list)
    encodings: list[Encoded] = field(default_factory=list)
    image: Image.Image | None = None
    warning: str | None = None
    example_rows: list[int] = field(default_factory=list)
    explain: bool = False


# --------------------------------------------------------------------------------------------
# Extractor
# --------------------------------------------------------------------------------------------


class Extractor:
    """Predict attributes and values of products from their text (and image).

    >>> ex = Extractor.load("runs/model")                      # doctest: +SKIP
    >>> ex.predict("red shirt, slim fit", image="shirt.jpg")  # doctest: +SKIP
    {'attributes': [{'name': 'Color', 'score': 0.98}, ...],
     'values': [{'attribute': 'Color', 'value': 'red', 'begin': 0, 'end': 3, 'score': 0.97}, ...]}
    """

    supports_explain = True
    """Items may ask for `explain` (the service checks this before passing it on)."""

    def __init__(self, model: LoadedModel, text_encoder: torch.nn.Module | None = None,
                 image_encoder: Any | None = None, *, batch_size: int = 32,
                 threshold: float | None = None, stride: int | None = None,
                 trained_versions: dict[str, str] | None = None, bf16: bool | None = None,
                 max_text_chars: int | None = MAX_TEXT_CHARS,
                 max_image_pixels: int = MAX_IMAGE_PIXELS):
        if model.uses_text_features and text_encoder is None:
            raise ValueError("this model reads cached text features: pass the frozen text encoder")
        if model.uses_image and image_encoder is None:
            raise ValueError("this model uses the image: pass the image encoder")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, not {batch_size}")
        self.model = model
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.batch_size = batch_size
        self.threshold = model.config.train.threshold if threshold is None else float(threshold)
        self.max_length = model.config.encoder.max_length
        budget = self.max_length - 2
        self.stride = max(1, budget // 2) if stride is None else stride
        if not 1 <= self.stride <= budget:
            raise ValueError(f"stride must be between 1 and {budget} pieces, got {self.stride}")
        self.trained_versions = dict(trained_versions or {})
        # Input limits (mjave.data.rows): longer texts and bigger images are refused per item.
        self.max_text_chars = max_text_chars
        self.max_image_pixels = max_image_pixels
        # bfloat16 autocast of the network forward: on for CUDA unless bf16=False, never on CPU.
        self.bf16 = self.device.type == "cuda" and bf16 is not False
        # Whole texts: windows are cut from this encoding, so nothing is truncated.
        self._aligner = TextAligner(model.aligner.tokenizer, model.schema, max_length=None)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    @property
    def implicit_source(self) -> str:
        """What a value named without a span was read from: the photo, or the text alone."""
        return "image" if self.model.uses_image else "text"

    @classmethod
    def load(cls, model_dir: str | os.PathLike, device: str = "auto", *, batch_size: int = 32,
             threshold: float | None = None, stride: int | None = None,
             bf16: bool | None = None, threads: int | None = None) -> "Extractor":
        """Load a model folder written by `mjave train`, with the encoders it needs.

        `bf16`: run the network forward under bfloat16 autocast; None = on for CUDA. Never on
        CPU, where predictions stay exactly as they are. The frozen text encoder (cached-feature
        models) always runs in float32, so its states equal the feature store's.

        A folder written by `mjave export` runs its ONNX graph with onnxruntime on CPU
        (`threads` intra-op threads, default torch's) in place of the torch forward; tokenizer,
        windows and decoder are the same (`mjave.inference.onnx_runtime`). Either kind is read
        once, along the one path (`mjave.model_folder.ModelFolder`)."""
        folder = ModelFolder.read(model_dir)
        if folder.kind == "onnx":
            from mjave.inference.onnx_runtime import load_exported
            exported, image = load_exported(folder, device=device, threads=threads)
            return cls(exported, None, image, batch_size=batch_size, threshold=threshold,
                       stride=stride, trained_versions=folder.versions)
        model = LoadedModel.from_folder(folder, device=device)
        enc = model.config.encoder
        text_encoder = frozen_text_encoder(folder)
        if text_encoder is not None:
            text_encoder = text_encoder.to(model.device)
        image_encoder = None
        if model.uses_image:
            from mjave.encoders.image import configured_image_encoder
            image_encoder = configured_image_encoder(enc).to(model.device)
        return cls(model, text_encoder, image_encoder, batch_size=batch_size,
                   threshold=threshold, stride=stride, trained_versions=folder.versions,
                   bf16=bf16)

    # ---- properties --------------------------------------------------------------------------

    @property
    def config(self) -> RunConfig:
        return self.model.config

    @property
    def schema(self) -> AttributeSchema:
        return self.model.schema

    @property
    def attributes(self) -> list[str]:
        return list(self.model.schema.attributes)

    @property
    def uses_image(self) -> bool:
        return self.model.uses_image

    @property
    def missing_image(self) -> str:
        return self.model.config.encoder.missing_image

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def restrict_to_category(self) -> bool:
        """Whether an item's category limits the attributes decoded (model config)."""
        return bool(getattr(self.model.config.model, "restrict_to_category", False))

    @property
    def version(self) -> dict[str, str | None]:
        """`trained_with`: the mjave version that trained the model (versions.json); `current`."""
        return {"trained_with": self.trained_versions.get("mjave"), "current": __version__}

    @property
    def info(self) -> dict[str, Any]:
        """A JSON-serialisable description of the model (what a /v1/model endpoint returns).

        Encoder names are the configured names; a local folder is reported by its base name only,
        so no server path leaks.
        """
        enc = self.model.config.encoder

        def name(value: str | None) -> str | None:
            return None if value is None else Path(value).name or value

        return {
            "model": self.model.folder.name,
            "architecture": self.model.config.model.architecture,
            "attributes": self.attributes,
            "tags": self.schema.tags,
            "encoders": {
                "text": name(enc.text_encoder), "text_kind": enc.text_kind,
                "fine_tuned": enc.trains_text_encoder, "train_layers": enc.layers_trained,
                "char_level": enc.char_level,
                "image": enc.image_encoder if self.uses_image else None,
                "image_size": enc.image_size if self.uses_image else None,
                "image_colour_bins": enc.image_colour_bins if self.uses_image else None,
            },
            "uses_image": self.uses_image,
            "missing_image": self.missing_image,
            "restrict_to_category": self.restrict_to_category,
            "decoding": self.model.config.model.decoding,
            "min_span_score": self.model.config.model.min_span_score,
            "max_values_per_attribute": self.model.config.model.max_values_per_attribute,
            "categories": sorted(getattr(self.schema, "categories", {}) or {}),
            "max_length": self.max_length,
            "window_stride": self.stride,
            "threshold": self.threshold,
            "versions": {"trained_with": dict(self.trained_versions),
                         "current": versions()},
        }

    def __repr__(self) -> str:
        return (f"Extractor({str(self.model.folder)!r}, attributes={len(self.attributes)}, "
                f"uses_image={self.uses_image}, device={str(self.device)!r})")

    # ---- prediction --------------------------------------------------------------------------

    def predict(self, text: str, image: ImageInput = None, category: str | None = None, *,
                explain: bool = False) -> dict[str, Any]:
        """Attributes and values of one text (and its product image, for image models).

        `category` matters only for a model trained with `model.restrict_to_category`: then
        only attributes seen with that category in training are decoded (an unknown category
        restricts nothing). Raises DataError (a ValueError) for an empty or non-string text, an
        unreadable image, or a missing image when the model's `missing_image` policy is "error".
        `explain=True` adds an `explain` entry (`explain_dict`: pieces, offsets, visual gates).
        """
        item = {"text": text, "image": image, "category": category, "explain": explain}
        return self._run([item], "raise", prefix=False)[0]

    def predict_batch(self, items: Iterable[Item], errors: Errors = "raise"
                      ) -> list[dict[str, Any]]:
        """Results in the order of `items`: dicts `{"text", "image"?, "category"?}`, `(text,
        image)` or `(text, image, category)` tuples, or bare texts.

        Texts and images are encoded `batch_size` at a time. `errors="raise"` stops at the
        first bad item (DataError naming its index); `errors="return"` gives that item
        `{"error": message, "reason": short category}` and predicts the others. A dict item
        with `"explain": True` gets an `explain` entry (see `explain_dict`).
        """
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', not {errors!r}")
        return self._run(list(items), errors, prefix=True)

    def predict_frame(self, frame: "pandas.DataFrame", text: str = "text",
                      image: str | None = None, *, id: str | None = None,
                      category: str | None = None,
                      layout: str = "long", image_root: str | os.PathLike | None = None,
                      include_text: bool = True) -> "pandas.DataFrame":
        """Predictions for the rows of a pandas DataFrame, as a DataFrame in a table layout.

        `text`, `image`, `id`, `category`: the columns to read (ids: the `id` column, else each
        row's position). `layout="long"`: one row per value (id, cid, category, text, image,
        attribute, value, begin, end, score, warning, error, extra); `"wide"`: one row per input
        row, one column per attribute with its best value (`mjave.inference.tables`). The rows
        go through the sweep of `mjave predict` (`predict_rows`) and are built by the same
        function as its CSV, Parquet and JSONL rows, so they equal what `mjave predict --layout`
        writes for the same rows; a bad row is an error row, not an exception. The result's
        index holds the input row's index label (repeated in the long layout), so it joins back
        onto `frame`. Needs pandas (`pip install 'mjave[pandas]'`).
        """
        from mjave.inference.batch import predict_rows
        from mjave.inference.tables import TableLayout, frame_input_rows, require_pandas
        require_pandas()
        table = TableLayout.of(layout, self.attributes)
        inputs = frame_input_rows(frame, text, image, id, category)
        rows, _ = predict_rows(self, inputs, self.batch_size, image_root, include_text)
        per_item = [table.rows(row) for row in rows]
        out = table.frame([t for item in per_item for t in item])
        out.index = frame.index.repeat([len(item) for item in per_item])
        return out

    def _run(self, items: Sequence[Item], errors: Errors, prefix: bool) -> list[dict[str, Any]]:
        # Chunks of at most batch_size items and CHUNK_CHARS characters: a long text is a chunk
        # of its own, so it never holds the short texts of its batch (`chunk_bounds`).
        sizes = [len(t) if isinstance(t, str) else 0
                 for t in (_text_of(item) for item in items)]
        # More than a batch: the items go through by length, so each batch holds texts of like
        # length and little padding (about 1.4x the throughput on product titles,
        # docs/performance.md); results come back in the items' order, and a bad item is raised
        # once all are done, the first in the items' order, as it would be in order.
        by_length = len(items) > self.batch_size
        order = sorted(range(len(items)), key=sizes.__getitem__) if by_length \
            else list(range(len(items)))
        results: list[dict[str, Any] | None] = [None] * len(items)
        with self._lock, torch.no_grad():
            for s, e in chunk_bounds([sizes[i] for i in order], self.batch_size):
                chunk = order[s:e]
                done = self._predict_chunk([items[i] for i in chunk], chunk[0],
                                           "return" if by_length else errors, prefix)
                for i, res in zip(chunk, done):
                    results[i] = res
        if by_length and errors == "raise":
            for i, res in enumerate(results):
                if res is not None and "error" in res:
                    raise DataError(f"item {i}: {res['error']}", reason=res["reason"])
        return results  # type: ignore[return-value]

    def _prepare(self, index: int, item: Item) -> _Prepared:
        """The checked text and category of an item (windows come later, for all at once)."""
        text, image, category = parse_item(item)
        text = check_text(text, self.max_text_chars)
        category = check_category(category) if self.restrict_to_category else None
        prepared = _Prepared(index, text, category,
                             explain=isinstance(item, abc.Mapping) and bool(item.get("explain")))
        prepared.image = image  # type: ignore[assignment]  (opened later, in parallel)
        return prepared

    def _window_all(self, prepared: Sequence[_Prepared]) -> None:
        """Tokenize the texts in one call and cut each into windows (`text_windows`)."""
        todo = [p for p in prepared if not p.encodings]
        texts = [p.text for p in todo]
        try:
            fulls = self._aligner.encode_texts(texts)
        except Exception:  # let the failing item's own call raise, as one at a time would
            fulls = [self._aligner.encode_text(t) for t in texts]
        for p, full in zip(todo, fulls):
            p.windows, p.encodings = text_windows(full, self.max_length, self.stride)

    def _open_image(self, prepared: _Prepared) -> None:
        """Replace the raw image input by a decoded image, or apply the missing-image policy."""
        raw = prepared.image
        prepared.image = None
        if not self.uses_image:
            return  # text-only models never open an image
        zeros = self.missing_image == "zeros"
        if raw is None:
            if not zeros:
                raise DataError("this model uses the product image and its missing_image policy "
                                "is 'error': pass an image (a path, bytes or a PIL image)",
                                field="image", reason="missing image")
            prepared.warning = ("no image: predicted with zero image features "
                                "(missing_image='zeros')")
            return
        try:
            prepared.image = open_image(raw, self.max_image_pixels)
        except DataError as e:
            if not zeros or e.reason == "bad image type":
                raise
            prepared.warning = (f"image unreadable ({e.message}): predicted with zero image "
                                "features (missing_image='zeros')")

    def _predict_chunk(self, items: Sequence[Item], offset: int, errors: Errors,
                       prefix: bool) -> list[dict[str, Any]]:
        results: list[dict[str, Any] | None] = [None] * len(items)

        def fail(i: int, e: DataError) -> None:
            if errors == "raise":
                self._window_all(prepared)  # an earlier item's tokenizer error comes first
                if not prefix:
                    raise e
                raise DataError(f"item {offset + i}: {e}", reason=e.reason) from None
            results[i] = error_dict(e)

        prepared: list[_Prepared] = []
        for i, item in enumerate(items):
            try:
                prepared.append(self._prepare(i, item))
            except DataError as e:
                fail(i, e)
        self._window_all(prepared)
        if self.uses_image and prepared:
            outcomes = self._map(self._try_open_image, prepared)
            good = []
            for p, err in zip(prepared, outcomes):
                if err is None:
                    good.append(p)
                else:
                    fail(p.index, err)
            prepared = good
        else:
            for p in prepared:
                p.image = None
        if prepared:
            for p, res in zip(prepared, self._predict_prepared(prepared)):
                results[p.index] = res
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _try_open_image(self, prepared: _Prepared) -> DataError | None:
        try:
            self._open_image(prepared)
        except DataError as e:
            return e
        return None

    def _map(self, fn: Any, items: Sequence[Any]) -> list[Any]:
        """`fn` over `items`, decoding images in threads (PIL releases the GIL)."""
        if len(items) < 2:
            return [fn(x) for x in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)),
                                            thread_name_prefix="mjave-image")
        return list(self._pool.map(fn, items))

    def _predict_prepared(self, prepared: Sequence[_Prepared]) -> list[dict[str, Any]]:
        encodings = [e for p in prepared for e in p.encodings]
        text_feats = (self._text_features(encodings) if self.model.uses_text_features
                      else [None] * len(encodings))
        image_feats: list[np.ndarray | None] = [None] * len(prepared)
        if self.uses_image:
            image_feats = self._image_features([p.image for p in prepared])
        examples = []
        no_labels = np.zeros(self.schema.num_attributes, dtype=np.float32)
        no_labels.flags.writeable = False  # shared by every example: prediction has no labels
        for k, p in enumerate(prepared):
            record = Record(id=str(p.index), text=p.text, category=p.category)
            for enc in p.encodings:
                p.example_rows.append(len(examples))
                knowledge = (None if self.model.lexicon is None else
                             self.model.lexicon.features(p.text, enc, self.schema))
                examples.append(Example(record, enc, no_labels, text_feats[len(examples)],
                                        image_feats[k], knowledge=knowledge))
        rows_of: list[tuple[SpanBatch, int]] = []    # per example: its batch and row
        singles: list[dict[str, Any]] = []            # per example: its result, if alone
        for _, spans in predict_batches(self.model.net, examples, self.schema,
                                        batch_size=self.model.config.train.eval_batch_size,
                                        device=self.device, threshold=self.threshold,
                                        pad_id=self.model.aligner.pad_id,
                                        bf16=self.bf16,
                                        **decode_options(self.model.config.model)):
            rows_of.extend((spans, r) for r in range(len(spans)))
            singles.extend(result_dicts(spans, self.implicit_source))
        out = []
        for p in prepared:
            rows = p.example_rows
            if len(rows) == 1:
                result = singles[rows[0]]
                if p.warning:
                    result["warning"] = p.warning
                if p.explain:
                    batch, r = rows_of[rows[0]]
                    attr_probs = batch.attr_probs[r]
            else:
                decoded = [b.decoded_row(r) for b, r in (rows_of[x] for x in rows)]
                spans, scores = merge_spans(
                    p.windows, [d.spans for d in decoded], [d.span_scores for d in decoded],
                    self.model.config.model.max_values_per_attribute)
                attr_probs = merge_attribute_probs([d.attr_probs for d in decoded])
                implicit = merge_implicit([d.implicit for d in decoded], {s.attr for s in spans})
                result = result_dict(p.text, Decoded(spans, scores, [], implicit=implicit),
                                     attr_probs, self.schema, self.threshold, p.warning,
                                     self.implicit_source)
            if p.explain:
                result["explain"] = self._explain(p, [examples[r] for r in rows], attr_probs)
            out.append(result)
        return out

    def _explain(self, p: _Prepared, examples: Sequence[Example], attr_probs: np.ndarray
                 ) -> dict[str, Any]:
        """One more forward pass over the windows of `p`, for its gates (`explain_dict`)."""
        batch = collate(examples, pad_id=self.model.aligner.pad_id, device=self.device)
        self.model.net.eval()
        with autocast(self.bf16):
            out = self.model.net(batch, with_labels=False)
        return explain_dict(p.text, p.windows, p.encodings, out, p.image is not None,
                            attr_probs, self.schema)

    def _text_features(self, encodings: Sequence[Encoded]) -> list[np.ndarray]:
        """Frozen token states per encoding, float16 like the feature store keeps them."""
        assert self.text_encoder is not None
        out: list[np.ndarray | None] = [None] * len(encodings)
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i]))
        dev = next(self.text_encoder.parameters()).device
        pad_id = self.model.aligner.pad_id
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            batch = batch_pad([encodings[i] for i in idx], pad_id)
            h = self.text_encoder(torch.from_numpy(batch["input_ids"]).to(dev),
                                  torch.from_numpy(batch["attention_mask"]).to(dev))
            h = h.float().cpu().numpy().astype(np.float16)
            for row, (i, n) in enumerate(zip(idx, batch["lengths"])):
                out[i] = h[row, :int(n)]
        return out  # type: ignore[return-value]

    def _image_features(self, images: Sequence[Image.Image | None]) -> list[np.ndarray]:
        """(1 + K, D) per image, row 0 global; zeros where the policy allowed no image."""
        enc = self.image_encoder
        assert enc is not None
        present = [i for i, im in enumerate(images) if im is not None]
        zeros = np.zeros((1 + enc.num_regions, enc.feature_dim), dtype=np.float16)
        out: list[np.ndarray] = [zeros] * len(images)
        step = (min(self.batch_size, CPU_IMAGE_BATCH) if enc.device.type == "cpu"
                else self.batch_size)
        for s in range(0, len(present), step):
            idx = present[s:s + step]
            g, r = enc.encode_images([images[i] for i in idx])
            feats = torch.cat([g.unsqueeze(1), r], dim=1).float().cpu().numpy().astype(np.float16)
            for row, i in enumerate(idx):
                out[i] = feats[row]
        return out


__all__ = ["Extractor", "check_category", "check_text", "explain_dict", "open_image",
           "parse_item", "result_dict", "result_dicts"]
