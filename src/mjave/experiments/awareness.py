"""`mjave experiment awareness`: image awareness, the paper's section 4.3 and Table 7.

The model is scored with the congruent images (C) and with K random derangements of the images
over products (I; `mjave.training.evaluate.shuffle_item_images` with seeds seed .. seed+K-1),
scored through the Extractor as every reported figure is. For
each permutation and task, the per-instance F1 with the congruent image is paired with the one
with the incongruent image (Eq. 16) and tested (paired t-test or Wilcoxon, one-sided by default:
does the incongruent image make things worse?); the K p-values are combined with Fisher's
method (the paper: X^2 = 6790.80 for attributes, 780.80 for values, K = 8). Reported:
corpus micro F1 for C and I (mean ± std over K), their difference, and Delta_Awareness of Eq. 15
(the mean over texts of the per-instance F1 difference, mean ± std over K).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mjave.config import path_field
from mjave.experiments import plots
from mjave.experiments.common import (ExperimentBase, ExperimentResult, ExperimentError,
                                      ModelVariant, Progress, eval_file, fmt_p, md_table, mjave,
                                      read_data, train_variant, write_results)
from mjave.experiments.stats import (Alternative, TestName, fisher_combine, mean_std,
                                     paired_test)
from mjave.training.evaluate import shuffle_item_images

AWARE_TASKS = ("value", "attribute")


@dataclass
class AwarenessConfig(ExperimentBase):
    """Image awareness of `model` (it must read images) on `eval_data` (default base.data.test,
    else base.data.valid) over `permutations` derangements of the images."""

    output_dir: str = "runs/experiments/awareness"
    eval_data: str | None = path_field()
    model: ModelVariant = field(default_factory=mjave)
    permutations: int = 8
    test: TestName = "ttest"
    alternative: Alternative = "greater"


def run(cfg: AwarenessConfig, progress: Progress | None = None) -> ExperimentResult:
    started = time.time()
    if cfg.permutations < 1:
        raise ExperimentError(f"permutations must be at least 1, got {cfg.permutations}")
    path = eval_file(cfg.eval_data, cfg.base)
    records = read_data(path, cfg.base)
    model = train_variant(cfg.base, cfg.model, Path(cfg.output_dir), cfg.seed, progress)
    if not model.uses_image:
        raise ExperimentError(f"{cfg.model.name} does not read images: image awareness needs a "
                              "multimodal model")
    items = model.items(records)
    congruent = model.predict(records, items=items)
    c_report, c_scores = congruent.report(), congruent.instance_scores()

    perms = []
    for k in range(cfg.permutations):
        shuffled = model.predict(records, items=shuffle_item_images(records, items, cfg.seed + k))
        i_report, i_scores = shuffled.report(), shuffled.instance_scores()
        row: dict = {"permutation_seed": cfg.seed + k}
        for t in AWARE_TASKS:
            test = paired_test(c_scores[t], i_scores[t], cfg.test, cfg.alternative)
            row[t] = {"incongruent_f1": i_report[t]["f1"],
                      "awareness_micro": c_report[t]["f1"] - i_report[t]["f1"],
                      "awareness_instance": 100.0 * float(np.mean(c_scores[t] - i_scores[t])),
                      "test": test.to_dict()}
        perms.append(row)

    summary = {}
    for t in AWARE_TASKS:
        inc = mean_std([p[t]["incongruent_f1"] for p in perms])
        micro = mean_std([p[t]["awareness_micro"] for p in perms])
        inst = mean_std([p[t]["awareness_instance"] for p in perms])
        fisher = fisher_combine([p[t]["test"]["p_value"] for p in perms])
        summary[t] = {"congruent_f1": c_report[t]["f1"],
                      "incongruent_f1_mean": inc[0], "incongruent_f1_std": inc[1],
                      "awareness_micro_mean": micro[0], "awareness_micro_std": micro[1],
                      "awareness_instance_mean": inst[0], "awareness_instance_std": inst[1],
                      "fisher": fisher.to_dict()}

    k = cfg.permutations
    rows = [[t, f"{s['congruent_f1']:.2f}",
             f"{s['incongruent_f1_mean']:.2f} ± {s['incongruent_f1_std']:.2f}",
             f"{s['awareness_micro_mean']:.2f} ± {s['awareness_micro_std']:.2f}",
             f"{s['awareness_instance_mean']:.2f} ± {s['awareness_instance_std']:.2f}",
             f"{s['fisher']['statistic']:.2f}", fmt_p(s["fisher"]["p_value"])]
            for t, s in summary.items()]
    main = md_table(["task", "C (F1)", f"I (F1, K={k})", "C − I", "Δ_Awareness (Eq. 15)",
                     f"Fisher X² (df {2 * k})", "p"], rows)
    per = md_table(["permutation seed", "I value F1", "p value", "I attribute F1", "p attribute"],
                   [[str(p["permutation_seed"]), f"{p['value']['incongruent_f1']:.2f}",
                     fmt_p(p["value"]["test"]["p_value"]),
                     f"{p['attribute']['incongruent_f1']:.2f}",
                     fmt_p(p["attribute"]["test"]["p_value"])] for p in perms])
    markdown = f"{main}\n\nPer permutation:\n\n{per}"
    chart = plots.bar_chart(
        list(AWARE_TASKS),
        {"congruent image": [summary[t]["congruent_f1"] for t in AWARE_TASKS],
         f"incongruent (mean of {k})": [summary[t]["incongruent_f1_mean"] for t in AWARE_TASKS]},
        title=f"Image awareness of {cfg.model.name} (F1 %)",
        errors={"congruent image": [0.0, 0.0],
                f"incongruent (mean of {k})": [summary[t]["incongruent_f1_std"]
                                               for t in AWARE_TASKS]})
    notes = [f"{cfg.model.name} on `{path}` ({len(records)} texts, "
             f"{len({r.product_id for r in records})} products); images deranged over products",
             f"test per permutation: {cfg.test} ({cfg.alternative}) of per-instance F1, "
             "congruent vs incongruent; p-values combined with Fisher's method",
             "Δ_Awareness: mean over texts of the per-instance F1 difference (Eq. 15-16), in "
             "points; C − I: difference of corpus micro F1"]
    results = {"eval_data": path, "n_instances": len(records), "model": cfg.model.name,
               "congruent": {t: c_report[t] for t in ("attribute", "value", "pair")},
               "summary": summary, "permutations": perms}
    return write_results("awareness", "Image awareness (paper section 4.3, Table 7)", cfg,
                         markdown, results, {"awareness.png": chart}, started, notes)
