"""Score a trained model on labelled records, optionally with shuffled (incongruent) images.

Every figure mjave reports (`mjave evaluate`, the experiments, the demo, the trainer's final
valid figure) comes from `score_records`: the records become Extractor items
(`mjave.data.rows.to_item`) and are predicted by `Extractor.predict_batch`, so long texts are
windowed, decoding is restricted to the category when the model says so and the decoding
options are the model's, exactly as `mjave predict` and `mjave serve` answer. Cached-feature
scoring (`featurize` + `score`) stays for per-epoch validation (early stopping), where speed
matters, and for what only cached features can express (gold-attribute oracles).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Sequence

import numpy as np

from mjave.config import RunConfig
from mjave.data.errors import DataError, RowIssues
from mjave.data.formats import detect_labelled_format, read_records
from mjave.data.formats.predictions import split_values
from mjave.data.records import Record
from mjave.data.rows import to_item
from mjave.evaluation.implicit import with_implicit
from mjave.evaluation.metrics import evaluate_records
from mjave.evaluation.novelty import Pair, recall_by_novelty, seen_pairs
from mjave.evaluation.slot import with_slot
from mjave.inference.examples import build_examples
from mjave.inference.predict import as_records, decode_options, predict_examples
from mjave.model.batches import Example
from mjave.pretrained import METRICS, LoadedModel, read_json, write_json

if TYPE_CHECKING:
    from mjave.inference.extractor import Extractor


def featurize(model: LoadedModel, records: Sequence[Record], image_root: str | None,
              features_dir: str | None, issues: RowIssues | None = None,
              progress: Callable | None = None) -> list[Example]:
    """Examples for `records` under `model`'s encoders (cached in `features_dir` if given)."""
    def run(store_dir: str) -> list[Example]:
        return build_examples(records, model.aligner, model.schema, model.config.encoder, store_dir,
                              image_root, text_features=model.uses_text_features,
                              image_features=model.uses_image, issues=issues, progress=progress,
                              lexicon=model.lexicon)
    if features_dir:
        return run(features_dir)
    with tempfile.TemporaryDirectory(prefix="mjave-features-") as tmp:
        return run(tmp)


def known_attributes_only(gold: Sequence[Record], pred: Sequence[Record],
                          probs: np.ndarray | None, attributes: Sequence[str]
                          ) -> tuple[list[Record], list[Record], np.ndarray | None]:
    """Views of (gold, predicted records, attribute probabilities) that score each partially
    labelled gold record only on the attributes its labels are complete for: its
    `known_attributes` plus those of its gold spans. Predicted spans of other attributes are
    dropped and their probabilities zeroed, so an unlabelled value the model rightly finds is not
    counted as a false positive. Fully labelled records are left as they are. Without
    probabilities (a model that predicts spans only) only the spans are filtered."""
    pred_out = list(pred)
    probs = None if probs is None else probs.copy()
    for i, g in enumerate(gold):
        known = g.known_attributes()
        if known is None:
            continue
        scored = known | {s.attr for s in g.spans}
        p = pred_out[i]
        pred_out[i] = replace(p, spans=[s for s in p.spans if s.attr in scored])
        if probs is None:
            continue
        for j, a in enumerate(attributes):
            if a not in scored:
                probs[i, j] = 0.0
    return list(gold), pred_out, probs


def report_of(gold: Sequence[Record], pred: Sequence[Record], probs: np.ndarray | None,
              attributes: Sequence[str] | None, threshold: float,
              seen: frozenset[Pair] | None = None, closed: Collection[str] | None = None
              ) -> dict:
    """The metrics report of predictions against gold records, partially labelled records
    scored on their known attributes only: every scoring path reports through this. It adds
    the slot protocol (`with_slot`: the highest-scoring value of each attribute asked, ranked
    by `Span.score`) to `evaluate_records`' report, and "recall_by_novelty" when the training
    pairs (`seen`, `seen_pairs` of the training records) are given. With `closed` (the
    attributes the model names without a span, `schema.closed_values`) and implicit gold in
    some record, `with_implicit` adds "implicit" and counts implicit values in the pair scores
    ("pair_includes_implicit"); without, the report is as it was."""
    if any(r.known_attributes() is not None for r in gold):
        gold, pred, probs = known_attributes_only(gold, pred, probs, attributes or [])
    gold, pred = list(gold), list(pred)
    report = with_slot(evaluate_records(gold, pred, probs, attributes, threshold), gold, pred)
    if closed:
        report = with_implicit(report, gold, pred, closed)
    if seen is not None:
        report["recall_by_novelty"] = recall_by_novelty(gold, pred, seen)
    return report


def seen_values(train_path: str | os.PathLike, format: str | None = None,
                strict: bool = True) -> frozenset[Pair]:
    """The (attribute, normalised value) pairs of a training file's gold spans."""
    records, _ = read_records(train_path, format=format, strict=strict, labelled=True)
    return seen_pairs(records)


def training_values(config: RunConfig, explicit: str | os.PathLike | None = None
                    ) -> tuple[frozenset[Pair] | None, str | None]:
    """(pairs seen in training, None), or (None, why not) when they cannot be had.

    `explicit` (`mjave evaluate --train`) wins and must be readable (its errors propagate: the
    user named it); otherwise the model's `data.train`, whose absence or unreadability (a folder
    trained elsewhere) only omits the split."""
    if explicit:
        return seen_values(explicit), None
    path = config.data.train
    if not path:
        return None, "the model's config names no training data (give --train FILE)"
    try:
        return seen_values(path, config.data.format, not config.data.lenient), None
    except (OSError, DataError) as e:
        return None, (f"the model's training data {path} cannot be read "
                      f"({type(e).__name__}: {e}; give --train FILE)")


def score(model: LoadedModel, records: Sequence[Record], examples: Sequence[Example],
          threshold: float | None = None) -> dict:
    """The report of cached-feature examples (per-epoch validation's path; the figures a run
    reports come from the Extractor, `score_records`)."""
    threshold = model.config.train.threshold if threshold is None else threshold
    decoded, probs = predict_examples(model.net, examples, model.schema,
                                      model.config.train.eval_batch_size, model.device, threshold,
                                      model.aligner.pad_id, **decode_options(model.config.model))
    return report_of(records, as_records(examples, decoded), probs, model.schema.attributes,
                     threshold, closed=model.schema.closed_values)


# ---- scoring through the Extractor: the one path of every reported figure -------------------

EVAL_BATCH_SIZE = 64
"""Items per Extractor call when scoring (`mjave evaluate`'s default): experiments, the demo and
the trainer's final figure use it too, so they batch (and round features) exactly alike."""


def extractor_items(extractor: Extractor, records: Sequence[Record],
                    image_root: str | os.PathLike | None) -> list[dict[str, Any]]:
    """The Extractor's items of labelled records (text, image, category: `to_item`)."""
    return [to_item(r, image_root, uses_image=extractor.uses_image,
                    missing_image=extractor.missing_image) for r in records]


def extractor_predictions(extractor: Extractor, records: Sequence[Record],
                          image_root: str | os.PathLike | None = None,
                          batch_size: int = EVAL_BATCH_SIZE, progress: Callable | None = None,
                          items: Sequence[dict[str, Any]] | None = None
                          ) -> tuple[list[Record], np.ndarray]:
    """Predicted records (ids, products and categories of `records`) and their (N, L)
    attribute probabilities (0 below the threshold) through `Extractor.predict_batch`: long
    texts windowed, decoding restricted to the category when the model says so, the model's
    decoding options, exactly as `mjave predict` and `mjave serve` answer. Predicted spans keep
    the value's score (`Span.score`, for the slot protocol). `items`: the Extractor items of
    `records` when the caller changed them (shuffled images)."""
    index = {a: j for j, a in enumerate(extractor.attributes)}
    if items is None:
        items = extractor_items(extractor, records, image_root)
    preds: list[Record] = []
    probs = np.zeros((len(records), len(index)), dtype=np.float32)
    starts = range(0, len(records), batch_size)
    for s in (progress(starts, total=len(starts), desc="evaluate") if progress else starts):
        chunk = records[s:s + batch_size]
        for r, result in zip(chunk, extractor.predict_batch(items[s:s + batch_size])):
            for a in result["attributes"]:
                probs[len(preds), index[a["name"]]] = a["score"]
            spans, implicit = split_values(result["values"])
            preds.append(Record(id=r.id, text=r.text, cid=r.cid, category=r.category,
                                spans=spans, extra=implicit))
    return preds, probs


def score_records(extractor: Extractor, records: Sequence[Record],
                  image_root: str | os.PathLike | None = None,
                  batch_size: int = EVAL_BATCH_SIZE, progress: Callable | None = None,
                  items: Sequence[dict[str, Any]] | None = None,
                  seen: frozenset[Pair] | None = None) -> dict:
    """The metrics report of `records` scored through the Extractor (`extractor_predictions`);
    `seen`: the training pairs, for "recall_by_novelty"."""
    preds, probs = extractor_predictions(extractor, records, image_root, batch_size, progress,
                                         items)
    return report_of(records, preds, probs, extractor.attributes, extractor.threshold, seen,
                     closed=extractor.schema.closed_values)


def final_report(model_dir: str | os.PathLike, records: Sequence[Record],
                 image_root: str | os.PathLike | None, device: str = "auto") -> dict | None:
    """A trained folder's reported figure on `records`, through the Extractor; None for a
    model conditioned on gold attributes (an oracle bound: it needs the labels, which no
    Extractor input carries, so only cached examples can score it)."""
    from mjave.inference.extractor import Extractor
    extractor = Extractor.load(model_dir, device=device, batch_size=EVAL_BATCH_SIZE)
    if extractor.config.model.gold_attr_conditioning:
        return None
    seen, _ = training_values(extractor.config)
    return score_records(extractor, records, image_root, seen=seen)


def final_figure(model_dir: str | os.PathLike, records: Sequence[Record],
                 image_root: str | os.PathLike | None, epoch: int, device: str = "auto"
                 ) -> dict | None:
    """A finished run's reported valid figure: its best model scored through the Extractor
    (`final_report`), written once into the folder's metrics.json as `valid` (the cached-feature
    figure of that epoch, which chose it, kept as `valid_cached_features`). None where only
    cached features can score the model."""
    path = Path(model_dir) / METRICS
    metrics = read_json(path) if path.is_file() else {}
    if metrics.get("valid_scored_by") == "extractor" and metrics.get("epoch") == epoch:
        return metrics["valid"]   # a finished run called again
    report = final_report(model_dir, records, image_root, device)
    if report is None:
        return None
    metrics.update(epoch=epoch, valid=report, valid_scored_by="extractor",
                   valid_cached_features=metrics.get("valid"))
    write_json(path, metrics)
    return report


def derangement(products: Sequence[str], seed: int) -> dict[str, str]:
    """Each product -> the product whose image it gets, none its own (seeded)."""
    products = sorted(set(products))
    if len(products) < 2:
        raise ValueError("image shuffling needs at least two products")
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(len(products))
        if not np.any(perm == np.arange(len(products))):
            break
    return {p: products[j] for p, j in zip(products, perm)}


def shuffle_item_images(records: Sequence[Record], items: Sequence[dict[str, Any]], seed: int
                        ) -> list[dict[str, Any]]:
    """Give every item the image of another product (Elliott 2018's incongruent setting).

    Products are permuted as a whole (sentences of one product keep sharing an image) with a
    derangement, so no product keeps its own image."""
    source = derangement([r.product_id for r in records], seed)
    image_of = {r.product_id: item["image"] for r, item in zip(records, items)}
    return [{**item, "image": image_of[source[r.product_id]]} for r, item in zip(records, items)]


def image_awareness(extractor: Extractor, records: Sequence[Record],
                    image_root: str | os.PathLike | None, permutations: int = 3,
                    seed: int = 0) -> dict:
    """Paper section 4.3: F1 with the congruent image minus F1 with an incongruent one,
    as mean and standard deviation over `permutations` shuffles, for attributes and values
    (scored through the Extractor, as every reported figure is)."""
    if not extractor.uses_image:
        raise ValueError("image awareness needs a model that uses the image")
    items = extractor_items(extractor, records, image_root)
    congruent = score_records(extractor, records, items=items)
    rows = [score_records(extractor, records, items=shuffle_item_images(records, items, seed + i))
            for i in range(permutations)]
    out = {}
    for task in ("attribute", "value", "implicit"):
        if task not in congruent:   # "implicit": values named without a span, when scored
            continue
        f1 = (lambda r: r[task]["all"]["f1"]) if task == "implicit" else (lambda r: r[task]["f1"])
        inc = np.array([f1(r) for r in rows])
        out[task] = {"congruent": f1(congruent), "incongruent_mean": float(inc.mean()),
                     "incongruent_std": float(inc.std()),
                     "awareness": float(f1(congruent) - inc.mean())}
    return out


def evaluate_model(model_dir: str | Path, data_path: str, image_root: str | None = None,
                   device: str = "auto", format: str | None = None, strict: bool = True,
                   progress: Callable | None = None, batch_size: int = EVAL_BATCH_SIZE,
                   train: str | os.PathLike | None = None) -> dict:
    """`mjave evaluate`: the metrics report of a model folder on a data file.

    Predicts through `Extractor`, the path `mjave predict` and `mjave serve` take, so texts longer
    than the max length are windowed rather than truncated and the scores are those users get.
    Partially labelled records (`known_attributes`) are scored on their known attributes only.
    Recall on values seen and unseen in training ("recall_by_novelty") needs the training data:
    `train`, else the model's `data.train` (`training_values`); without it the report says why
    in "recall_by_novelty_omitted".
    """
    from mjave.inference.extractor import Extractor

    detect_labelled_format(data_path, format)  # CSV or Parquet data: refused before the load
    extractor = Extractor.load(model_dir, device=device, batch_size=batch_size)
    records, issues = read_records(data_path, format=format, strict=strict, labelled=True)
    known = set(extractor.attributes)
    issues.unknown_attribute_spans += sum(s.attr not in known for r in records for s in r.spans)
    seen, omitted = training_values(extractor.config, train)
    report = score_records(extractor, records, image_root, batch_size, progress, seen=seen)
    if omitted:
        report["recall_by_novelty_omitted"] = omitted
    report["issues"] = issues.summary()
    return report
