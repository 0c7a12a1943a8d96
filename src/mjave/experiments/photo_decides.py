"""`mjave experiment photo-decides`: value F1 where only the photo decides (issue #31).

The synthetic catalog's twins share *ambiguous* sentences: the same text with different gold
spans, told apart only by the image (`mjave.data.synthetic`, outfit colours, golden as Color or
Material, a pattern word shown or not). A whole-split F1 mixes those with texts any text-only
model solves, which hides how much the image is used. This experiment splits the evaluation
file into the photo-decides texts (a text that occurs in the split with more than one gold span
set, `mjave.data.synthetic.ambiguous_texts`) and the rest, and reports value F1, overall and for
the attributes the photo decides (Color, Pattern, Material), of every model on each subset over
`repeats` seeds, plus each image model's gain over the text-only reference on the subset.
Scores are `mjave.evaluation.evaluate_records` on the subset's gold and predicted records.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mjave.config import path_field
from mjave.data.records import Record
from mjave.data.synthetic import COLORS, Product, ambiguous_texts, load_products
from mjave.evaluation.metrics import evaluate_records
from mjave.experiments.common import (ExperimentBase, ExperimentError, ExperimentResult,
                                      ModelVariant, Predictions, Progress, TrainedModel,
                                      VariantRuns, eval_file, fmt_ms, jave, md_table, mjave,
                                      read_data, run_variants, train_variant, write_results)
from mjave.model.batches import collate
from mjave.experiments.stats import mean_std

SUBSETS = ("photo-decides", "rest", "all")


def default_models() -> list[ModelVariant]:
    return [mjave(), jave()]


@dataclass
class PhotoDecidesConfig(ExperimentBase):
    """Value F1 of `models` on the photo-decides texts of `eval_data` (default base.data.test,
    else base.data.valid) and on the rest; `repeats` seeds (seed, seed+1, ...)."""

    output_dir: str = "runs/experiments/photo-decides"
    eval_data: str | None = path_field()
    models: list[ModelVariant] = field(default_factory=default_models)
    text_reference: str = "JAVE"
    attributes: list[str] = field(default_factory=lambda: ["Color", "Pattern", "Material"])
    repeats: int = 3
    # products.jsonl of the synthetic catalog: with it, the first seed of every image model is
    # also diagnosed (`diagnose`: colour probes, gates at colour words; needs scikit-learn).
    products: str | None = path_field()


def photo_decides_split(records: Sequence[Record]) -> tuple[list[int], list[int]]:
    """(positions of photo-decides records, positions of the rest): a record is photo-decides
    when its text occurs in `records` with more than one gold span set, so no reading of the
    text alone can be right for all of them."""
    amb = ambiguous_texts(records)
    photo = [i for i, r in enumerate(records) if r.text in amb]
    rest = [i for i, r in enumerate(records) if r.text not in amb]
    return photo, rest


def subset_scores(preds: Predictions, idx: Sequence[int], attributes: Sequence[str]) -> dict:
    """Value P/R/F1 (percent) of the records at `idx`, overall and for each of `attributes`."""
    gold = [preds.gold[i] for i in idx]
    pred = [preds.pred[i] for i in idx]
    report = evaluate_records(gold, pred)
    out = {"n_instances": len(idx), "value": report["value"]}
    empty = {"p": 0.0, "r": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "fn": 0}
    for a in attributes:
        out[a] = report["per_attribute"].get(a, {}).get("value", empty)
    return out


def run(cfg: PhotoDecidesConfig, progress: Progress | None = None) -> ExperimentResult:
    started = time.time()
    path = eval_file(cfg.eval_data, cfg.base)
    records = read_data(path, cfg.base)
    photo, rest = photo_decides_split(records)
    if not photo:
        raise ExperimentError(f"{path}: no text occurs with two different gold span sets, so "
                              "no photo-decides subset (a synthetic catalog with "
                              "ambiguous_rate > 0 has one)")
    subsets = {"photo-decides": photo, "rest": rest, "all": list(range(len(records)))}
    runs = run_variants(cfg.base, cfg.models, records, Path(cfg.output_dir), cfg.seed,
                        cfg.repeats, progress)
    cols = ["value", *cfg.attributes]
    scores: dict[str, dict[str, dict[str, list[dict]]]] = {}
    for name, r in runs.items():
        scores[name] = {s: {c: [] for c in cols} for s in SUBSETS}
        for p in r.predictions:
            for s, idx in subsets.items():
                sc = subset_scores(p, idx, cfg.attributes)
                for c in cols:
                    scores[name][s][c].append(sc[c])

    def cell(name: str, s: str, c: str, key: str = "f1") -> str:
        vals = [d[key] for d in scores[name][s][c]]
        m, sd = mean_std(vals) if vals else (None, None)
        return fmt_ms(m, sd, len(vals))

    parts = []
    for s in SUBSETS:
        rows = [[n, cell(n, s, "value"), *(cell(n, s, a) for a in cfg.attributes),
                 cell(n, s, "Color", "p") if "Color" in cfg.attributes else "-"]
                for n in scores]
        parts += [f"## {s} ({len(subsets[s])} texts)", "",
                  md_table(["model", "value F1", *(f"{a} value F1" for a in cfg.attributes),
                            "Color value P"], rows), ""]
    gains = {}
    ref = scores.get(cfg.text_reference)
    if ref is not None:
        rows = []
        for n in scores:
            if n == cfg.text_reference or not runs[n].uses_image:
                continue
            diffs = [a["f1"] - b["f1"] for a, b in zip(scores[n]["photo-decides"]["value"],
                                                       ref["photo-decides"]["value"])]
            gains[n] = mean_std(diffs)
            rows.append([n, fmt_ms(*gains[n], len(diffs))])
        if rows:
            parts += [f"## Gain over {cfg.text_reference} on photo-decides (value F1, paired "
                      "by seed)", "", md_table(["model", "gain"], rows)]
    diagnosis = diagnose_models(cfg, runs, records, progress) if cfg.products else {}
    if diagnosis:
        rows = [[n, *(("-" if k not in d else f"{d[k]:.3f}" if "gate" in k else f"{d[k]:.1f}")
                      for k in DIAGNOSIS_KEYS)] for n, d in diagnosis.items()]
        parts += ["", f"## Diagnosis (seed {cfg.seed}, probes fit on the training split, "
                  "accuracy % on the evaluation file)", "",
                  md_table(["model", *DIAGNOSIS_KEYS], rows)]
    notes = [f"`{path}`: {len(photo)} photo-decides texts ({len(set(records[i].text for i in photo))} "
             f"distinct), {len(rest)} others; mean ± std over {cfg.repeats} seeds"]
    results = {"eval_data": path, "subset_sizes": {s: len(i) for s, i in subsets.items()},
               "scores": scores, "gain_on_photo_decides": {n: {"mean": m, "std": sd}
                                                           for n, (m, sd) in gains.items()},
               "models": {n: r.summary() for n, r in runs.items()}, "diagnosis": diagnosis}
    return write_results("photo-decides", "Value F1 where only the photo decides (issue #31)",
                         cfg, "\n".join(parts), results, None, started, notes)


def diagnose_models(cfg: PhotoDecidesConfig, runs: dict[str, VariantRuns],
                    records: Sequence[Record], progress: Progress | None = None) -> dict:
    """`diagnose` for the first seed of every image model (the trained folders are reused)."""
    products = load_products(cfg.products)
    train_records = read_data(cfg.base.data.train, cfg.base)
    out = {}
    for v in cfg.models:
        if runs[v.name].uses_image:
            trained = train_variant(cfg.base, v, Path(cfg.output_dir), cfg.seed, progress,
                                    tag=f"seed-{cfg.seed}" if cfg.repeats > 1 else "")
            out[v.name] = diagnose(trained, train_records, records, products)
    return out


# --------------------------------------------------------------------------------------------
# Diagnosis: what colour information the visual path carries, and where it is lost


DIAGNOSIS_KEYS = ("product_colour per product from pooled", "category per product from pooled",
                  "colour from pooled", "colour from visual_term", "colour from fused",
                  "is value from [h; vG]", "is value from h x vG", "is value from fused",
                  "is-value base rate (test)",
                  "gate at colour word: is value", "gate at colour word: not value",
                  "gate at other words")
COLOUR_WORD = re.compile(r"\b(" + "|".join(sorted(COLORS, key=len, reverse=True)) + r")\b")


@dataclass
class TokenStates:
    """Per colour-word token of a set of records: the states the probes read."""

    product: list[str] = field(default_factory=list)         # product id
    category: list[str] = field(default_factory=list)        # the photo's garment
    product_colour: list[str] = field(default_factory=list)  # the photo's fill colour
    is_value: list[bool] = field(default_factory=list)       # the word is a gold Color span
    word: list[str] = field(default_factory=list)
    text_state: list[np.ndarray] = field(default_factory=list)      # h_i
    visual_term: list[np.ndarray] = field(default_factory=list)     # what the image adds to h'_i
    fused: list[np.ndarray] = field(default_factory=list)           # h'_i
    gate: list[float] = field(default_factory=list)                 # mean g^G_i (nan: no gate)
    pooled: list[np.ndarray] = field(default_factory=list)          # vG
    other_gate: list[float] = field(default_factory=list)  # mean g^G at the other tagged words


@torch.no_grad()
def colour_word_states(trained: TrainedModel, records: Sequence[Record],
                       products: dict[str, Product]) -> TokenStates:
    """h_i, the image's term of h'_i and h'_i at every colour word (first piece), in eval mode."""
    loaded = trained.loaded
    head = loaded.net.head
    loaded.net.eval()
    out = TokenStates()
    examples = trained.examples(records)
    for ex in examples:
        words = [(m.start(), m.group(1)) for m in COLOUR_WORD.finditer(ex.record.text)]
        product = products.get(ex.record.product_id or "")
        if not words or product is None or ex.image_features is None:
            continue
        batch = collate([ex], pad_id=loaded.aligner.pad_id, device=loaded.device)
        h, mask = batch["h"], batch["mask"].bool()
        full = head.cross(h, mask, batch["v_global"], batch["v"])
        text_only = head.cross.text_context(h, mask)
        gold = {(s.begin, s.value) for s in ex.record.spans if s.attr == "Color"}
        starts = [a for a, _ in ex.encoded.offsets]
        if full.global_gate is not None:
            colour_pos = {starts.index(b, 1) for b, _ in words if b in starts[1:]}
            tagged = batch["tag_mask"][0].nonzero().flatten().tolist()
            out.other_gate += [float(full.global_gate[0, i].mean()) for i in tagged
                               if i not in colour_pos]
        for begin, word in words:
            if begin not in starts[1:]:
                continue
            i = starts.index(begin, 1)
            out.product.append(product.cid)
            out.category.append(product.product_type)
            out.product_colour.append(product.color)
            out.is_value.append((begin, word) in gold)
            out.word.append(word)
            out.text_state.append(h[0, i].cpu().numpy())
            out.fused.append(full.h_prime[0, i].cpu().numpy())
            out.visual_term.append((full.h_prime[0, i] - text_only[0, i]).cpu().numpy())
            g = full.global_gate
            out.gate.append(float(g[0, i].mean()) if g is not None else float("nan"))
            out.pooled.append(batch["v_global"][0].cpu().numpy())
    return out


def probe_accuracy(x_train: np.ndarray, y_train: Sequence, x_test: np.ndarray,
                   y_test: Sequence) -> float:
    """Test accuracy (percent) of a logistic-regression probe on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    clf.fit(x_train, list(y_train))
    return 100.0 * float(clf.score(x_test, list(y_test)))


def _first_per_product(s: TokenStates) -> list[int]:
    """One colour word per product: the per-product probe counts every photo once."""
    first: dict[str, int] = {}
    for i, p in enumerate(s.product):
        first.setdefault(p, i)
    return sorted(first.values())


def _outer(a: TokenStates, b: TokenStates, k: int = 32) -> tuple[np.ndarray, ...]:
    """Flattened outer products of h_i and vG (k principal components each, fit on `a`): the
    features of a bilinear read-out, for a linear probe."""
    from sklearn.decomposition import PCA
    ha, va = np.stack(a.text_state), np.stack(a.pooled)
    ph, pv = PCA(k, random_state=0).fit(ha), PCA(k, random_state=0).fit(va)

    def outer(h: np.ndarray, v: np.ndarray) -> np.ndarray:
        x, y = ph.transform(h), pv.transform(v)
        return np.einsum("ni,nj->nij", x, y).reshape(len(x), -1)
    return outer(ha, va), outer(np.stack(b.text_state), np.stack(b.pooled))


def diagnose(trained: TrainedModel, train: Sequence[Record], test: Sequence[Record],
             products: dict[str, Product]) -> dict:
    """Linear probes of the photo's colour and of "this word is the Color value", fit on the
    training split's colour words and scored on the test split's; global gates at colour words.

    The photo's colour is probed from the pooled image vG, from what the image adds to h'_i and
    from h'_i; "is the value" (the decision Eq. 9 must make at a colour word) from h'_i, and from
    [h_i; vG] (all a model without a token-image product can use linearly)."""
    a, b = colour_word_states(trained, train, products), colour_word_states(trained, test, products)

    def arr(s: TokenStates, name: str) -> np.ndarray:
        return np.stack(getattr(s, name))

    out: dict[str, Any] = {"colour_words": {"train": len(a.word), "test": len(b.word)}}
    pa, pb = _first_per_product(a), _first_per_product(b)
    for label in ("product_colour", "category"):
        out[f"{label} per product from pooled"] = probe_accuracy(
            arr(a, "pooled")[pa], [getattr(a, label)[i] for i in pa],
            arr(b, "pooled")[pb], [getattr(b, label)[i] for i in pb])
    for name in ("pooled", "visual_term", "fused"):
        out[f"colour from {name}"] = probe_accuracy(arr(a, name), a.product_colour,
                                                    arr(b, name), b.product_colour)
    concat_a = np.concatenate([arr(a, "text_state"), arr(a, "pooled")], 1)
    concat_b = np.concatenate([arr(b, "text_state"), arr(b, "pooled")], 1)
    out["is value from [h; vG]"] = probe_accuracy(concat_a, a.is_value, concat_b, b.is_value)
    xa, xb = _outer(a, b)
    out["is value from h x vG"] = probe_accuracy(xa, a.is_value, xb, b.is_value)
    out["is value from fused"] = probe_accuracy(arr(a, "fused"), a.is_value, arr(b, "fused"),
                                                b.is_value)
    gates = np.asarray(b.gate)
    if not np.isnan(gates).all():
        value = np.asarray(b.is_value)
        out["gate at colour word: is value"] = float(gates[value].mean())
        out["gate at colour word: not value"] = float(gates[~value].mean())
        out["gate at other words"] = float(np.mean(b.other_gate))
    out["is-value base rate (test)"] = 100.0 * float(np.mean(b.is_value))
    return out
