"""`mjave experiment completion`: how well `mjave complete` fills an incomplete catalog.

An incomplete catalog is simulated from a gold-annotated dataset (`data`): the gold (attribute,
value) pairs of each product are its table; per product a fraction `hide` of its attributes is
hidden (all values of a hidden attribute go: a catalog lacks attributes, not half of one), by
stochastic rounding so that `hide` of the attributes are hidden on average also when products
have few (a product with 3 attributes and hide 0.5 hides 1 or 2, equally likely), seeded by the
run's seed. The hidden pairs are the answer key. Then, as a catalog team would (train on the
catalog, fill the catalog):

1. `label_records` labels the texts from the visible table (`mjave data label`), holding out a
   seeded `calibration_fraction` of the visible (product, attribute) pairs for calibration;
2. a model is trained on the labelled texts;
3. `complete` suggests values over ALL products for the attributes the visible table lacks.

Suggestions are scored at pair level against the hidden pairs: (product, attribute, normalised
value); a suggestion that is not a hidden pair is a false positive (also one for an attribute the
product does not have at all), a hidden pair no suggestion names a false negative. Every value
the model decodes is a suggestion (threshold 0). Three runs:

- `partial`: trained with `train.partial_labels=true` (unlabelled tokens may be values of the
  attributes the table does not know for the product);
- `naive`: the same labels with `train.partial_labels=false` (unlabelled tokens are "O");
- `full_labels`: the reference with complete labels but no overlap: the products are split in
  two seeded halves; a model trained on one half's gold spans completes the other half (against
  the visible table and hidden pairs of that half), then the halves swap; counts are pooled.

Calibration: for each run the threshold `complete --min-precision P` would choose on the
held-out calibration pairs (never on the hidden pairs) is applied to the suggestions, and the
precision it reaches on the hidden pairs is reported (`calibration.reached`, for the `partial`
run, which is the workflow docs/completion.md recommends; every run under `calibration.runs`):
what `--force` delivers. `refused` says whether the command would have refused (P cannot be
backed on the held-out pairs, cross-validation over products included: exit 2, no rows), and
`delivered` is the precision the command delivers without `--force` (None: it wrote nothing).

Transfer (issue #19): `settings` lists several catalogs, each a gold dataset completed as a
whole or with `leave_out_category`: that category's products are left out of every training
(partial and naive train on the other categories' labelled products, the full-labels reference
on their gold spans) and are the only products completed, so the models meet a category they
never saw. All catalogs share the seeds and land in one table (`catalog` column); each also gets
its own results in `OUTPUT/<catalog>/`. The default `base` is the shipped completion recipe
(`mjave.completion.recipe`), the model a catalog team trains for `mjave complete`.

Results (JSON, 0-1): `partial`, `naive`, `full_labels`, each `precision`, `recall`, `f1` (mean
over seeds) with `*_std` (sample std) and `per_seed` (counts, false positives split into
`fp_absent_attribute` / `fp_wrong_value`, and `hidden_values_seen`: the share of hidden pairs
whose attribute and value the run's training labels hold for some product); `calibration` with
`requested`, `reached` and `refused` (seeds the command would have refused); `margin_f1`
(partial - naive), `gap_f1` (full_labels - partial) and `targets` (issue #19's three checks).
With several catalogs these are under `settings[<catalog>]`; with one, also at the top.
"""

from __future__ import annotations

import csv
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from mjave.data.formats import write_records
from mjave.data.records import Record
from mjave.config import path_field
from mjave.experiments.common import (ExperimentBase, ExperimentError, ExperimentResult,
                                      ModelVariant, Progress, md_table, read_data, slug,
                                      train_variant, write_results)
from mjave.experiments.stats import mean_std
from mjave.config import RunConfig

RUNS = ("partial", "naive", "full_labels")
Pair = tuple[str, str, str]  # (product_id, attribute, normalised value)


def _default_base() -> RunConfig:
    """The shipped completion recipe (`mjave.completion.recipe`, fine-tuned MiniLM, partial
    outside weight 0.02), fixed epochs and no validation set: the labels of the hidden pairs
    are what is measured, and they must not steer training."""
    from mjave.completion.recipe import completion_recipe
    return replace(completion_recipe(), output_dir="runs/experiments/unused")


@dataclass
class CompletionSetting:
    """One catalog of the transfer protocol: a gold-annotated dataset, completed as a whole
    (`leave_out_category` None) or with one category's products left out of every training and
    completed alone (a category the models never saw)."""

    name: str = ""                            # row label and folder (default: from the data)
    data: str = path_field("")
    leave_out_category: str | None = None
    seeds: int | None = None                  # None: the experiment's `seeds`

    def label(self) -> str:
        if self.name:
            return self.name
        stem = Path(self.data).parent.name or Path(self.data).stem
        return stem + (f" / {self.leave_out_category} left out" if self.leave_out_category
                       else "")


@dataclass
class CompletionConfig(ExperimentBase):
    """Hide `hide` of the gold pairs of `data` per product, label -> train -> complete, `seeds`
    times (seeds seed, seed+1, ...). `base` gives the encoders and training settings (its
    data.train is replaced by each run's training file). `settings` runs several catalogs (the
    transfer protocol: two datasets and a left-out category) into one table instead of `data`."""

    output_dir: str = "runs/experiments/completion"
    data: str = path_field("")
    # with `data`: train on the other categories' products, complete this category's
    leave_out_category: str | None = None
    settings: list[CompletionSetting] = field(default_factory=list)
    hide: float = 0.5
    seeds: int = 3
    min_precision: float = 0.9
    # of the lower precision bound the threshold is judged on (`mjave complete --confidence`)
    calibration_confidence: float = 0.9
    # folds of the product-grouped cross-validation of the threshold (`mjave complete
    # --cv-folds`; 0: off)
    calibration_folds: int = 5
    calibration_fraction: float = 0.1
    label_occurrences: str = "all"   # `mjave data label --occurrences` (all | first)
    runs: list[str] = field(default_factory=lambda: list(RUNS))
    # dotted overrides of `base` per run, e.g. {"partial": {"train.partial_attr_weight": 0.5}}
    run_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_size: int = 64          # prediction batch of `complete`
    base: RunConfig = field(default_factory=_default_base)


# --------------------------------------------------------------------------------------------
# The simulated catalog


def gold_table(records: Sequence[Record]) -> dict[str, list[tuple[str, str]]]:
    """product_id -> its gold (attribute, value) pairs, one per normalised value, first-seen
    surface form, in text order."""
    from mjave.data.normalize import collapse_punctuation
    out: dict[str, list[tuple[str, str]]] = {}
    seen: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for r in records:
        pairs = out.setdefault(r.product_id, [])
        for s in sorted(r.spans, key=lambda s: (s.begin, s.end)):
            key = (s.attr, collapse_punctuation(s.value))
            if key[1] and key not in seen[r.product_id]:
                seen[r.product_id].add(key)
                pairs.append((s.attr, s.value))
    return out


def hide_attributes(table: dict[str, list[tuple[str, str]]], fraction: float, seed: int
                    ) -> dict[str, set[str]]:
    """product_id -> its hidden attributes: floor(fraction * n) of its n attributes plus one
    more with probability equal to the remainder (seeded; products in sorted order)."""
    if not 0.0 <= fraction <= 1.0:
        raise ExperimentError(f"hide must lie in [0, 1], got {fraction}")
    rng = np.random.default_rng([seed, 90210])
    out: dict[str, set[str]] = {}
    for pid in sorted(table):
        attrs = sorted({a for a, _ in table[pid]})
        want = fraction * len(attrs)
        k = int(math.floor(want + 1e-9))
        if rng.random() < want - k:
            k += 1
        chosen = rng.permutation(len(attrs))[:k] if attrs else []
        out[pid] = {attrs[i] for i in chosen}
    return out


def split_table(table: dict[str, list[tuple[str, str]]], hidden: dict[str, set[str]]
                ) -> tuple[list[Any], set[Pair]]:
    """(visible TableRows in product order, hidden (product, attribute, normalised value))."""
    from mjave.data.catalog_table import TableRow
    from mjave.data.normalize import collapse_punctuation
    rows, key = [], set()
    for pid in sorted(table):
        for attr, value in table[pid]:
            if attr in hidden.get(pid, ()):
                key.add((pid, attr, collapse_punctuation(value)))
            else:
                rows.append(TableRow(pid, attr, value, len(rows) + 2))
    return rows, key


def halves(products: Iterable[str], seed: int) -> tuple[set[str], set[str]]:
    """Two seeded halves of the products."""
    ids = sorted(products)
    order = np.random.default_rng([seed, 4242]).permutation(len(ids))
    first = {ids[i] for i in order[: len(ids) // 2]}
    return first, set(ids) - first


# --------------------------------------------------------------------------------------------
# Scoring


@dataclass
class RunScore:
    """Suggestions of one run (one seed) against the hidden pairs."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    suggestions: int = 0
    # false positives by kind: a value for an attribute the product has no gold value of, and a
    # wrong value of a hidden attribute
    fp_absent_attribute: int = 0
    fp_wrong_value: int = 0
    # hidden pairs whose (attribute, value) the run's training labels hold for some product
    hidden_seen: int = 0
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1,
                "tp": self.tp, "fp": self.fp, "fn": self.fn, "suggestions": self.suggestions,
                "fp_absent_attribute": self.fp_absent_attribute,
                "fp_wrong_value": self.fp_wrong_value,
                "hidden_values_seen": self.hidden_seen / (self.tp + self.fn)
                if self.tp + self.fn else None, "calibration": self.calibration}


def read_suggestions(path: Path) -> list[tuple[Pair, float]]:
    """((product, attribute, normalised value), score) of a suggestions CSV."""
    with open(path, encoding="utf-8", newline="") as f:
        return [((r["product_id"], r["attribute"], r["normalized_value"]), float(r["score"]))
                for r in csv.DictReader(f)]


def score_pairs(suggested: Iterable[tuple[Pair, float]], key: set[Pair],
                threshold: float = 0.0) -> tuple[int, int, int]:
    """(tp, fp, fn) of the suggestions scoring >= threshold against the answer key."""
    pairs = {p for p, s in suggested if s >= threshold}
    tp = len(pairs & key)
    return tp, len(pairs) - tp, len(key) - tp


def false_positive_kinds(suggested: Iterable[tuple[Pair, float]], key: set[Pair],
                         gold_attributes: dict[str, set[str]], threshold: float = 0.0
                         ) -> tuple[int, int]:
    """(absent attribute, wrong value): the false positives at `threshold` whose attribute the
    product has no gold value of, and those naming a gold attribute with another value."""
    wrong = absent = 0
    for pair in {p for p, s in suggested if s >= threshold} - key:
        if pair[1] in gold_attributes.get(pair[0], ()):
            wrong += 1
        else:
            absent += 1
    return absent, wrong


def seen_in_training(training: Iterable[Record], key: set[Pair]) -> int:
    """How many hidden pairs have an (attribute, normalised value) that a training span holds
    (for any product): the values a model could have learnt by heart."""
    from mjave.data.normalize import collapse_punctuation
    taught = {(s.attr, collapse_punctuation(s.value)) for r in training for s in r.spans}
    return sum((attr, value) in taught for _, attr, value in key)


def _complete_and_score(model_dir: Path, products: Sequence[Record], rows: Sequence[Any],
                        key: set[Pair], out: Path, cfg: CompletionConfig, score: RunScore,
                        gold_attributes: dict[str, set[str]]) -> list[tuple[Pair, float]]:
    """Run `complete` (threshold 0) into `out`, add its counts to `score`; the suggestions."""
    from mjave.completion.calibrate import calibrate
    from mjave.completion.suggest import complete
    from mjave.inference.extractor import Extractor
    extractor = Extractor.load(model_dir, device=cfg.base.train.device,
                               batch_size=cfg.batch_size)
    summary = complete(extractor, products, rows, out / "suggestions.csv", threshold=0.0,
                       conflicts=out / "conflicts.csv")
    suggested = read_suggestions(out / "suggestions.csv")
    tp, fp, fn = score_pairs(suggested, key)
    score.tp, score.fp, score.fn = score.tp + tp, score.fp + fp, score.fn + fn
    score.suggestions += len(suggested)
    absent, wrong = false_positive_kinds(suggested, key, gold_attributes)
    score.fp_absent_attribute += absent
    score.fp_wrong_value += wrong
    # what `mjave complete --min-precision P` decides (same seed of the cross-validation)
    cal = calibrate(summary.held_out_pairs, cfg.min_precision, summary.held_out_values,
                    fallback=1.0, confidence=cfg.calibration_confidence,
                    folds=cfg.calibration_folds)
    ctp, cfp, cfn = score_pairs(suggested, key, cal.threshold)
    part = {"threshold": cal.threshold, "estimated_precision": cal.precision,
            "estimated_recall": cal.recall, "reachable": cal.reachable,
            "cv_precision": cal.cv_precision, "backed_precision": cal.backed_precision,
            "refused": cal.refused,
            "held_out_suggestions": cal.suggestions, "held_out_values": cal.n_gold,
            "tp": ctp, "fp": cfp, "fn": cfn}
    score.calibration.setdefault("parts", []).append(part)
    return suggested


def _finish_calibration(score: RunScore, requested: float) -> None:
    parts = score.calibration.pop("parts", [])
    tp = sum(p["tp"] for p in parts)
    fp = sum(p["fp"] for p in parts)
    fn = sum(p["fn"] for p in parts)
    # without --force a refused part writes nothing
    dtp = sum(p["tp"] for p in parts if not p["refused"])
    dfp = sum(p["fp"] for p in parts if not p["refused"])
    score.calibration = {
        "requested": requested,
        "reached": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "refused": any(p["refused"] for p in parts),
        "delivered": dtp / (dtp + dfp) if dtp + dfp else None,
        "threshold": [p["threshold"] for p in parts],
        "estimated_precision": [p["estimated_precision"] for p in parts],
        "estimated_recall": [p["estimated_recall"] for p in parts],
        "cv_precision": [p["cv_precision"] for p in parts],
        "backed_precision": [p["backed_precision"] for p in parts],
        "refused_parts": [p["refused"] for p in parts],
        "reachable": all(p["reachable"] for p in parts),
        "held_out_suggestions": sum(p["held_out_suggestions"] for p in parts),
        "held_out_values": sum(p["held_out_values"] or 0 for p in parts),
        "kept": tp + fp}


# --------------------------------------------------------------------------------------------
# The experiment


def _mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return mean_std(vals)


def _header(min_precision: float) -> list[str]:
    return ["precision", "recall", "F1", f"precision at --min-precision {min_precision:g}",
            "refused"]


def _settings(cfg: CompletionConfig) -> list[CompletionSetting]:
    """The catalogs to run: `settings`, or the one given by `data` (and `leave_out_category`)."""
    if cfg.settings:
        if cfg.data or cfg.leave_out_category:
            raise ExperimentError("give the catalogs as `settings` or as `data` (with "
                                  "`leave_out_category`), not both")
        settings = list(cfg.settings)
    elif cfg.data:
        settings = [CompletionSetting(data=cfg.data, leave_out_category=cfg.leave_out_category)]
    else:
        raise ExperimentError("no data: give the gold-annotated dataset (--data FILE or "
                              "data: in the config) or `settings`")
    for st in settings:
        if not st.data:
            raise ExperimentError(f"setting {st.label()!r}: no data")
        if st.seeds is not None and st.seeds < 1:
            raise ExperimentError(f"setting {st.label()!r}: seeds must be at least 1, got "
                                  f"{st.seeds}")
    names = [st.label() for st in settings]
    if len({slug(n) for n in names}) != len(names):
        raise ExperimentError(f"settings need distinct names, got {names}")
    return settings


def _products_of_category(records: Sequence[Record], category: str, data: str) -> set[str]:
    """The products with a text of `category`; an error listing the categories when none."""
    chosen = {r.product_id for r in records if r.category == category}
    if not chosen:
        have = sorted({r.category for r in records if r.category})
        raise ExperimentError(f"{data}: no product of category {category!r} to leave out "
                              f"(categories: {', '.join(have) or 'none'})")
    if len(chosen) == len({r.product_id for r in records}):
        raise ExperimentError(f"{data}: every product is of category {category!r}: nothing "
                              f"is left to train on")
    return chosen


def run(cfg: CompletionConfig, progress: Progress | None = None) -> ExperimentResult:
    started = time.time()
    if cfg.seeds < 1:
        raise ExperimentError(f"seeds must be at least 1, got {cfg.seeds}")
    unknown = [r for r in [*cfg.runs, *cfg.run_overrides] if r not in RUNS]
    if unknown or not cfg.runs:
        raise ExperimentError(f"runs (and run_overrides keys) must be some of "
                              f"{', '.join(RUNS)}, got {cfg.runs} ({list(cfg.run_overrides)})")
    if not 0.0 <= cfg.min_precision <= 1.0:
        raise ExperimentError(f"min_precision must lie in [0, 1], got {cfg.min_precision}")
    settings = _settings(cfg)
    out = Path(cfg.output_dir)
    several = len(settings) > 1
    per_setting: dict[str, dict[str, Any]] = {}
    table_rows: list[list[str]] = []
    notes: list[str] = []
    for st in settings:
        name = st.label()
        folder = out / slug(name) if several else out
        results, rows, setting_notes = _run_setting(cfg, st, folder, progress)
        if several:   # each catalog's own results as soon as it is done
            write_results("completion", f"Catalog completion: {name}",
                          replace(cfg, output_dir=str(folder), settings=[st]),
                          md_table(["run", *_header(cfg.min_precision)], rows), results, None, started,
                          setting_notes)
        per_setting[name] = results
        table_rows += [[name, *row] for row in rows]
        notes += [f"{name}: {n}" if several else n for n in setting_notes]
    results = dict(per_setting[settings[0].label()]) if not several else {}
    results["settings"] = per_setting
    header = ["catalog", "run", *_header(cfg.min_precision)]
    notes += [
        "pair level (product, attribute, normalised value) against the hidden pairs; every "
        "decoded value is a suggestion (threshold 0); mean ± sample std over seeds",
        f"precision at --min-precision: on the hidden pairs at the threshold chosen for "
        f"precision {cfg.min_precision:g} on the calibration pairs held out at labelling "
        f"({cfg.calibration_fraction:g} of the visible (product, attribute) pairs), as "
        f"`--force` writes them; refused: seeds where `mjave complete --min-precision "
        f"{cfg.min_precision:g}` would have refused (the precision cannot be backed, "
        f"{cfg.calibration_folds}-fold cross-validation over products included: exit 2, "
        f"no rows)"]
    return write_results("completion", "Catalog completion: suggestions against hidden pairs",
                         cfg, md_table(header, table_rows), results, None, started, notes)


def _run_setting(cfg: CompletionConfig, setting: CompletionSetting, out: Path,
                 progress: Progress | None) -> tuple[dict[str, Any], list[list[str]], list[str]]:
    """One catalog: (results, table rows without the catalog column, notes)."""
    from mjave.data.labeling import LabelPolicy, label_records
    try:
        policy = LabelPolicy(occurrences=cfg.label_occurrences)
    except ValueError as e:
        raise ExperimentError(str(e)) from None
    gold = read_data(setting.data, cfg.base)
    table = gold_table(gold)
    n_pairs = sum(len(p) for p in table.values())
    if not n_pairs:
        raise ExperimentError(f"{setting.data}: no gold spans, nothing to hide")
    gold_attributes = {pid: {a for a, _ in pairs} for pid, pairs in table.items()}
    # the products completed, and those the partial and naive models train on: all of them
    # (a team trains on its catalog and fills it), or with a category left out, the others
    everyone = set(table) | {r.product_id for r in gold}
    if setting.leave_out_category:
        targets = _products_of_category(gold, setting.leave_out_category, setting.data)
        trained_on = everyone - targets
    else:
        targets = trained_on = everyone
    # fixed epochs, no validation set (_default_base): a base recipe's valid split
    # (configs/runs/completion.yaml names OA-Mine's) does not pick the epoch here
    base = replace(cfg.base, data=replace(cfg.base.data, format=None, valid=None))
    if not base.features_dir:
        base = replace(base, features_dir=str(out / "features"))

    scores: dict[str, list[RunScore]] = {r: [] for r in cfg.runs}
    seeds = [cfg.seed + k for k in range(setting.seeds or cfg.seeds)]
    facts: list[dict[str, Any]] = []
    for s in seeds:
        tag = f"seed-{s}"
        folder = out / "data" / tag
        folder.mkdir(parents=True, exist_ok=True)
        hidden = hide_attributes(table, cfg.hide, s)
        rows, key = split_table(table, hidden)
        stripped = [replace(r, spans=[]) for r in gold]
        labelled, lsum = label_records(stripped, rows, policy=policy,
                                       calibration_fraction=cfg.calibration_fraction, seed=s)
        labelled_file = folder / "labelled.jsonl"
        write_records([r for r in labelled if r.product_id in trained_on], labelled_file,
                      format="jsonl")
        target_records = [r for r in labelled if r.product_id in targets]
        target_rows = [r for r in rows if r.product_id in targets]
        target_key = {p for p in key if p[0] in targets}
        facts.append({"seed": s, "visible_pairs": len(target_rows),
                      "hidden_pairs": len(target_key),
                      "labelled_values": lsum.values_labelled, "labelled_spans":
                      lsum.occurrences_labelled, "calibration_pairs": lsum.calibration_pairs,
                      "completed_products": len(targets), "trained_products": len(trained_on)})
        run_base = replace(base, data=replace(base.data, train=str(labelled_file)))
        for name, partial in (("partial", True), ("naive", False)):
            if name not in scores:
                continue
            overrides = {"train.partial_labels": partial, **cfg.run_overrides.get(name, {})}
            model = train_variant(run_base, ModelVariant(name, overrides), out, s, progress,
                                  tag=tag)
            score = RunScore(hidden_seen=seen_in_training(
                (r for r in labelled if r.product_id in trained_on), target_key))
            _complete_and_score(model.folder, target_records, target_rows, target_key,
                                out / "runs" / name / tag, cfg, score, gold_attributes)
            _finish_calibration(score, cfg.min_precision)
            scores[name].append(score)
        if "full_labels" in scores:
            score = RunScore()
            # never the texts it completes: two halves that swap, or the other categories
            folds = ([(trained_on, targets)] if setting.leave_out_category
                     else list(zip(halves(table, s), reversed(halves(table, s)))))
            for i, (train_part, test_part) in enumerate(folds):
                train_file = folder / f"gold-half-{i}.jsonl"
                train_gold = [r for r in gold if r.product_id in train_part]
                write_records(train_gold, train_file, format="jsonl")
                score.hidden_seen += seen_in_training(
                    train_gold, {p for p in key if p[0] in test_part})
                half_base = replace(base, data=replace(base.data, train=str(train_file)))
                model = train_variant(half_base, ModelVariant(
                    "full_labels", dict(cfg.run_overrides.get("full_labels", {}))), out, s,
                    progress, tag=f"{tag}/half-{i}")
                _complete_and_score(model.folder,
                                    [r for r in labelled if r.product_id in test_part],
                                    [r for r in rows if r.product_id in test_part],
                                    {p for p in key if p[0] in test_part},
                                    out / "runs" / "full_labels" / tag / f"half-{i}", cfg, score,
                                    gold_attributes)
            _finish_calibration(score, cfg.min_precision)
            scores["full_labels"].append(score)

    results: dict[str, Any] = {}
    for name, runs in scores.items():
        entry: dict[str, Any] = {}
        for m in ("precision", "recall", "f1"):
            mean, std = mean_std([getattr(r, m) for r in runs])
            entry[m], entry[f"{m}_std"] = mean, std
            entry[f"{m}_per_seed"] = [getattr(r, m) for r in runs]
        entry["per_seed"] = [dict(r.to_dict(), seed=s) for r, s in zip(runs, seeds)]
        results[name] = entry
    cal_runs = {}
    for name, runs in scores.items():
        reached, reached_std = _mean_std([r.calibration["reached"] for r in runs])
        cal_runs[name] = {"reached": reached, "reached_std": reached_std,
                          "reached_per_seed": [r.calibration["reached"] for r in runs],
                          "recall_per_seed": [r.calibration["recall"] for r in runs],
                          "threshold_per_seed": [r.calibration["threshold"] for r in runs],
                          "refused_per_seed": [r.calibration["refused"] for r in runs],
                          "refused": sum(r.calibration["refused"] for r in runs),
                          "delivered_per_seed": [r.calibration["delivered"] for r in runs],
                          "cv_precision_per_seed": [r.calibration["cv_precision"]
                                                    for r in runs],
                          "estimated_precision_per_seed":
                              [r.calibration["estimated_precision"] for r in runs]}
    headline = "partial" if "partial" in cal_runs else next(iter(cal_runs))
    results["calibration"] = {"requested": cfg.min_precision,
                              "reached": cal_runs[headline]["reached"],
                              "reached_std": cal_runs[headline]["reached_std"],
                              "refused": cal_runs[headline]["refused"],
                              "run": headline, "runs": cal_runs}
    if "partial" in results and "naive" in results:
        results["margin_f1"] = results["partial"]["f1"] - results["naive"]["f1"]
    if "partial" in results and "full_labels" in results:
        results["gap_f1"] = results["full_labels"]["f1"] - results["partial"]["f1"]
    results["targets"] = _targets(results, cal_runs, cfg.min_precision)
    results["setup"] = {"data": setting.data, "leave_out_category": setting.leave_out_category,
                        "texts": len(gold), "products": len(table), "gold_pairs": n_pairs,
                        "completed_products": len(targets), "hide": cfg.hide, "seeds": seeds,
                        "calibration_fraction": cfg.calibration_fraction, "per_seed": facts}

    def cell(entry: dict[str, Any], m: str) -> str:
        return (f"{entry[m]:.3f} ± {entry[m + '_std']:.3f}" if len(seeds) > 1
                else f"{entry[m]:.3f}")

    table_rows = []
    for name in scores:
        c = cal_runs[name]
        reached = ("-" if c["reached"] is None else
                   f"{c['reached']:.3f} ± {c['reached_std']:.3f}" if len(seeds) > 1
                   else f"{c['reached']:.3f}")
        table_rows.append([name, cell(results[name], "precision"),
                           cell(results[name], "recall"), cell(results[name], "f1"), reached,
                           f"{c['refused']} of {len(seeds)}"])
    left_out = (f", category {setting.leave_out_category!r} ({len(targets)} products) left out "
                f"of training and completed alone" if setting.leave_out_category else "")
    notes = [f"`{setting.data}`: {len(gold)} texts, {len(table)} products, {n_pairs} gold pairs; "
             f"{cfg.hide:g} of each product's attributes hidden{left_out} (seeds "
             f"{', '.join(map(str, seeds))})"]
    if "margin_f1" in results:
        notes.append(f"partial minus naive F1: {results['margin_f1']:+.3f}")
    if "gap_f1" in results:
        notes.append(f"full_labels minus partial F1: {results['gap_f1']:+.3f}")
    for name in scores:
        fp = sum(r.fp for r in scores[name])
        if fp:
            absent = sum(r.fp_absent_attribute for r in scores[name])
            notes.append(f"{name}: {absent / fp:.0%} of the false positives name an attribute "
                         f"the product has no gold value of")
    return results, table_rows, notes


MARGIN_TARGET = 0.10    # partial F1 above naive by at least this (issue #19)
GAP_TARGET = 0.05       # partial F1 within this of the full-labels reference
PRECISION_TOLERANCE = 0.03


def _targets(results: dict[str, Any], cal_runs: dict[str, Any], requested: float
             ) -> dict[str, Any]:
    """Whether the partial run meets the completion targets (None: not measured): beats naive
    by MARGIN_TARGET, is within GAP_TARGET of full labels, and at the requested precision
    delivers within PRECISION_TOLERANCE of it on every seed or refuses."""
    out: dict[str, Any] = {"margin": None, "gap": None, "precision": None}
    if "margin_f1" in results:
        out["margin"] = results["margin_f1"] >= MARGIN_TARGET
    if "gap_f1" in results:
        out["gap"] = results["gap_f1"] <= GAP_TARGET
    if "partial" in cal_runs:
        c = cal_runs["partial"]
        out["precision"] = all(
            refused or delivered is None or abs(delivered - requested) <= PRECISION_TOLERANCE
            or delivered > requested
            for refused, delivered in zip(c["refused_per_seed"], c["delivered_per_seed"]))
    return out


__all__ = ["CompletionConfig", "CompletionSetting", "RunScore", "false_positive_kinds",
           "gold_table", "halves", "hide_attributes", "read_suggestions", "run", "score_pairs",
           "seen_in_training", "split_table"]
