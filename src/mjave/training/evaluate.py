"""Score a trained model folder on a data file, optionally with shuffled (incongruent) images."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mjave.data.errors import RowIssues
from mjave.data.formats import read_records
from mjave.data.records import Record, Span
from mjave.evaluation.metrics import evaluate_records
from mjave.inference.examples import build_examples
from mjave.inference.loading import LoadedModel
from mjave.inference.predict import as_records, decode_options, predict_examples
from mjave.model.batches import Example


def featurize(model: LoadedModel, records: Sequence[Record], image_root: str | None,
              features_dir: str | None, issues: RowIssues | None = None,
              progress: Callable | None = None) -> list[Example]:
    """Examples for `records` under `model`'s encoders (cached in `features_dir` if given)."""
    def run(store_dir: str) -> list[Example]:
        return build_examples(records, model.aligner, model.schema, model.config.encoder, store_dir,
                              image_root, text_features=model.uses_text_features,
                              image_features=model.uses_image, issues=issues, progress=progress)
    if features_dir:
        return run(features_dir)
    with tempfile.TemporaryDirectory(prefix="mjave-features-") as tmp:
        return run(tmp)


def known_attributes_only(gold: Sequence[Record], pred: Sequence[Record], probs: np.ndarray,
                          attributes: Sequence[str]
                          ) -> tuple[list[Record], list[Record], np.ndarray]:
    """Views of (gold, predicted records, attribute probabilities) that score each partially
    labelled gold record only on the attributes its labels are complete for: its
    `known_attributes` plus those of its gold spans. Predicted spans of other attributes are
    dropped and their probabilities zeroed, so an unlabelled value the model rightly finds is not
    counted as a false positive. Fully labelled records are left as they are."""
    pred_out, probs = list(pred), probs.copy()
    for i, g in enumerate(gold):
        known = g.known_attributes()
        if known is None:
            continue
        scored = known | {s.attr for s in g.spans}
        p = pred_out[i]
        pred_out[i] = replace(p, spans=[s for s in p.spans if s.attr in scored])
        for j, a in enumerate(attributes):
            if a not in scored:
                probs[i, j] = 0.0
    return list(gold), pred_out, probs


def score(model: LoadedModel, records: Sequence[Record], examples: Sequence[Example],
          threshold: float | None = None) -> dict:
    threshold = model.config.train.threshold if threshold is None else threshold
    decoded, probs = predict_examples(model.net, examples, model.schema,
                                      model.config.train.eval_batch_size, model.device, threshold,
                                      model.aligner.pad_id, **decode_options(model.config.model))
    gold, pred = list(records), as_records(examples, decoded)
    if any(r.known_attributes() is not None for r in gold):
        gold, pred, probs = known_attributes_only(gold, pred, probs, model.schema.attributes)
    return evaluate_records(gold, pred, probs, model.schema.attributes, threshold)


def shuffle_images(examples: Sequence[Example], seed: int) -> list[Example]:
    """Give every example the image of another product (Elliott 2018's incongruent setting).

    Products are permuted as a whole (sentences of one product keep sharing an image) with a
    derangement, so no product keeps its own image.
    """
    products = sorted({e.record.product_id for e in examples})
    if len(products) < 2:
        raise ValueError("image shuffling needs at least two products")
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(len(products))
        if not np.any(perm == np.arange(len(products))):
            break
    source = {p: products[j] for p, j in zip(products, perm)}
    image_of = {e.record.product_id: e.image_features for e in examples}
    return [replace(e, image_features=image_of[source[e.record.product_id]]) for e in examples]


def image_awareness(model: LoadedModel, records: Sequence[Record], examples: Sequence[Example],
                    permutations: int = 3, seed: int = 0) -> dict:
    """Paper section 4.3: F1 with the congruent image minus F1 with an incongruent one,
    as mean and standard deviation over `permutations` shuffles, for attributes and values."""
    if not model.uses_image:
        raise ValueError("image awareness needs a model that uses the image")
    congruent = score(model, records, examples)
    rows = [score(model, records, shuffle_images(examples, seed + i)) for i in range(permutations)]
    out = {}
    for task in ("attribute", "value"):
        inc = np.array([r[task]["f1"] for r in rows])
        out[task] = {"congruent": congruent[task]["f1"], "incongruent_mean": float(inc.mean()),
                     "incongruent_std": float(inc.std()),
                     "awareness": float(congruent[task]["f1"] - inc.mean())}
    return out


def evaluate_model(model_dir: str | Path, data_path: str, image_root: str | None = None,
                   device: str = "auto", format: str | None = None, strict: bool = True,
                   progress: Callable | None = None, batch_size: int = 64) -> dict:
    """`mjave evaluate`: the metrics report of a model folder on a data file.

    Predicts through `Extractor`, the path `mjave predict` and `mjave serve` take, so texts longer
    than the max length are windowed rather than truncated and the scores are those users get.
    Partially labelled records (`known_attributes`) are scored on their known attributes only.
    """
    from mjave.encoders.features import resolve_image_path
    from mjave.inference.extractor import Extractor

    extractor = Extractor.load(model_dir, device=device, batch_size=batch_size)
    records, issues = read_records(data_path, format=format, strict=strict)
    index = {a: j for j, a in enumerate(extractor.attributes)}
    issues.unknown_attribute_spans += sum(s.attr not in index for r in records for s in r.spans)
    preds: list[Record] = []
    probs = np.zeros((len(records), len(index)), dtype=np.float32)
    chunks = [records[i:i + batch_size] for i in range(0, len(records), batch_size)]
    for chunk in (progress(chunks, total=len(chunks), desc="evaluate") if progress else chunks):
        items = [{"text": r.text, "category": r.category,
                  "image": resolve_image_path(r, image_root)[0] if extractor.uses_image else None}
                 for r in chunk]
        for r, result in zip(chunk, extractor.predict_batch(items)):
            for a in result["attributes"]:
                probs[len(preds), index[a["name"]]] = a["score"]
            preds.append(Record(id=r.id, text=r.text, cid=r.cid, category=r.category,
                                spans=[Span(v["begin"], v["end"], v["attribute"], v["value"])
                                       for v in result["values"]]))
    gold = records
    if any(r.known_attributes() is not None for r in records):
        gold, preds, probs = known_attributes_only(records, preds, probs, extractor.attributes)
    report = evaluate_records(gold, preds, probs, extractor.attributes, extractor.threshold)
    report["issues"] = issues.summary()
    return report
