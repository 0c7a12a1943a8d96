"""`mjave experiment significance`: is model A better than model B on the same test texts?

Both models are trained (or loaded from `model_dir`) and scored on one evaluation file; their
per-instance F1 scores (attribute set, value spans, pairs) are compared with a paired t-test
(the paper's Table 3 claim) or a Wilcoxon signed-rank test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from mjave.config import path_field
from mjave.experiments import plots
from mjave.experiments.common import (TASKS, ExperimentBase, ExperimentError, ExperimentResult,
                                      ModelVariant, Progress, eval_file, fmt_p, jave, md_table,
                                      mjave, read_data, train_variant, write_results)
from mjave.experiments.stats import Alternative, TestName, paired_test


@dataclass
class SignificanceConfig(ExperimentBase):
    """`model_a` against `model_b` on `eval_data` (default base.data.test, else valid)."""

    output_dir: str = "runs/experiments/significance"
    eval_data: str | None = path_field()
    model_a: ModelVariant = field(default_factory=mjave)
    model_b: ModelVariant = field(default_factory=jave)
    test: TestName = "ttest"
    alternative: Alternative = "two-sided"


def run(cfg: SignificanceConfig, progress: Progress | None = None) -> ExperimentResult:
    started = time.time()
    if cfg.model_a.name == cfg.model_b.name:
        raise ExperimentError("model_a and model_b need different names")
    path = eval_file(cfg.eval_data, cfg.base)
    records = read_data(path, cfg.base)
    if len(records) < 2:
        raise ExperimentError("a paired test needs at least two evaluation texts")
    out = Path(cfg.output_dir)
    preds = {v.name: train_variant(cfg.base, v, out, cfg.seed, progress).predict(records)
             for v in (cfg.model_a, cfg.model_b)}
    a, b = cfg.model_a.name, cfg.model_b.name
    reports = {n: p.report() for n, p in preds.items()}
    scores = {n: p.instance_scores() for n, p in preds.items()}
    tests = {t: paired_test(scores[a][t], scores[b][t], cfg.test, cfg.alternative)
             for t in TASKS}
    rows = [[t, f"{reports[a][t]['f1']:.2f}", f"{reports[b][t]['f1']:.2f}",
             f"{100 * r.mean_a:.2f}", f"{100 * r.mean_b:.2f}", f"{100 * r.mean_diff:+.2f}",
             f"{r.statistic:.3f}", fmt_p(r.p_value)] for t, r in tests.items()]
    header = ["task", f"{a} F1", f"{b} F1", f"{a} inst. F1", f"{b} inst. F1", "mean diff",
              "statistic", "p"]
    chart = plots.bar_chart(
        list(TASKS), {a: [100 * tests[t].mean_a for t in TASKS],
                      b: [100 * tests[t].mean_b for t in TASKS]},
        title=f"Mean per-instance F1 (%), {cfg.test}: " + ", ".join(
            f"{t} p={fmt_p(tests[t].p_value)}" for t in TASKS))
    notes = [f"evaluated on `{path}` ({len(records)} texts); F1 = corpus micro F1, inst. F1 = "
             "mean per-instance F1 (1.0 when gold and prediction are both empty)",
             f"{cfg.test} ({cfg.alternative}) on per-instance F1 of {a} minus {b}"]
    results = {"eval_data": path, "n_instances": len(records),
               "reports": {n: {t: r[t] for t in TASKS} for n, r in reports.items()},
               "tests": {t: r.to_dict() for t, r in tests.items()}}
    return write_results("significance", f"Significance: {a} vs {b}", cfg,
                         md_table(header, rows), results, {"significance.png": chart},
                         started, notes)
