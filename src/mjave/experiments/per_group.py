"""`mjave experiment per-group`: F1 per product category and per attribute (Figures 3 and 4).

The breakdowns are `evaluate_records`' (micro F1 inside each group). Categories are the records'
`category` field, or, with `category_map`, a JSONL file mapping product ids to categories for
the breakdown only (the synthetic catalog keeps the fine product type in `products.jsonl`, key
`product_type`, while its records all say "apparel"); the model never sees that mapping.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from mjave.config import path_field
from mjave.experiments import plots
from mjave.experiments.common import (ExperimentBase, ExperimentError, ExperimentResult,
                                      ModelVariant, Progress, eval_file, md_table, mjave,
                                      read_data, train_variant, write_results)
from mjave.data.records import Record


@dataclass
class PerGroupConfig(ExperimentBase):
    """Per-category and per-attribute F1 of `model` on `eval_data`."""

    output_dir: str = "runs/experiments/per-group"
    eval_data: str | None = path_field()
    model: ModelVariant = field(default_factory=mjave)
    category_map: str | None = path_field()
    category_key: str = "category"
    id_key: str = "cid"


def recategorise(records: list[Record], path: str, key: str, id_key: str) -> list[Record]:
    """Records with `category` looked up by product id in the JSONL file at `path`."""
    mapping = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            if id_key not in row or key not in row:
                raise ExperimentError(f"{path}:{n}: needs keys {id_key!r} and {key!r}")
            mapping[str(row[id_key])] = str(row[key])
    return [replace(r, category=mapping.get(r.product_id, r.category)) for r in records]


def run(cfg: PerGroupConfig, progress: Progress | None = None) -> ExperimentResult:
    started = time.time()
    path = eval_file(cfg.eval_data, cfg.base)
    records = read_data(path, cfg.base)
    model = train_variant(cfg.base, cfg.model, Path(cfg.output_dir), cfg.seed, progress)
    preds = model.predict(records)
    if cfg.category_map:
        preds = replace(preds, gold=recategorise(preds.gold, cfg.category_map, cfg.category_key,
                                                 cfg.id_key))
    report = preds.report()
    cats, attrs = report["per_category"], report["per_attribute"]
    cat_rows = [[name, str(d["n_instances"]), f"{d['attribute']['f1']:.2f}",
                 f"{d['value']['f1']:.2f}", f"{d['pair']['f1']:.2f}"] for name, d in cats.items()]
    attr_rows = [[name, str(d["value"]["tp"] + d["value"]["fn"]), f"{d['attribute']['f1']:.2f}",
                  f"{d['value']['f1']:.2f}", f"{d['pair']['f1']:.2f}"]
                 for name, d in attrs.items()]
    markdown = "\n".join([
        "## Per category (Figure 3)", "",
        md_table(["category", "texts", "attribute F1", "value F1", "pair F1"], cat_rows), "",
        "## Per attribute (Figure 4)", "",
        md_table(["attribute", "gold values", "attribute F1", "value F1", "pair F1"],
                 attr_rows)])
    images = {
        "per-category.png": plots.bar_chart(
            list(cats), {"attribute F1": [d["attribute"]["f1"] for d in cats.values()],
                         "value F1": [d["value"]["f1"] for d in cats.values()]},
            title=f"{cfg.model.name} per product category (F1 %)"),
        "per-attribute.png": plots.bar_chart(
            list(attrs), {"attribute F1": [d["attribute"]["f1"] for d in attrs.values()],
                          "value F1": [d["value"]["f1"] for d in attrs.values()]},
            title=f"{cfg.model.name} per attribute (F1 %)"),
    }
    notes = [f"{cfg.model.name} on `{path}` ({len(records)} texts); overall attribute F1 "
             f"{report['attribute']['f1']:.2f}, value F1 {report['value']['f1']:.2f}"]
    if cfg.category_map:
        notes.append(f"categories from `{cfg.category_map}` ({cfg.category_key!r} by "
                     f"{cfg.id_key!r}), for this breakdown only")
    results = {"eval_data": path, "model": cfg.model.name,
               "overall": {t: report[t] for t in ("attribute", "value", "pair")},
               "per_category": cats, "per_attribute": attrs}
    return write_results("per-group", "Per category and per attribute (paper Figures 3 and 4)",
                         cfg, markdown, results, images, started, notes)
