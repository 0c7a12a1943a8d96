"""`mjave experiment table`: several models on one dataset, the paper's Table 3.

Attribute F1, value (span) F1 and position-free pair F1 of every model on the evaluation file,
plus the paired t-test of the paper's significance claim ("M-JAVE outperforms the baselines
significantly, paired t-test"): per-instance F1 of the reference model against each other model.
Baselines that are not installed get a "not available" row instead of stopping the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mjave.config import path_field
from mjave.experiments import plots
from mjave.experiments.common import (BASELINES, TASKS, ExperimentBase, ExperimentResult,
                                      ModelVariant, Progress, VariantRuns, baseline, eval_file,
                                      f1_cell, fmt_p, jave, md_table, mjave, read_data,
                                      run_variants, write_results, wsm)
from mjave.experiments.stats import paired_test


def default_models() -> list[ModelVariant]:
    return [mjave(), jave(), wsm(), *(baseline(n) for n in BASELINES)]


@dataclass
class TableConfig(ExperimentBase):
    """Models compared on `eval_data` (default base.data.test, else base.data.valid).

    `reference`: the model every other one is t-tested against (per-instance F1, paired over
    the evaluation texts; with repeats > 1 each text's F1 is its mean over the seeds).
    `repeats` > 1 trains each neural model with seeds seed, seed+1, ... and reports mean ± std.
    """

    output_dir: str = "runs/experiments/table"
    eval_data: str | None = path_field()
    models: list[ModelVariant] = field(default_factory=default_models)
    reference: str = "M-JAVE"
    repeats: int = 1


def seed_mean_scores(r: VariantRuns) -> dict[str, np.ndarray]:
    """Per-instance F1 averaged over the variant's runs: a test on one seed's predictions
    would call a seed's luck a difference between the models."""
    per_run = [p.instance_scores() for p in r.predictions]
    return {t: np.mean([s[t] for s in per_run], axis=0) for t in per_run[0]}


def significance_rows(runs: dict[str, VariantRuns], reference: str) -> dict[str, dict]:
    """Paired t-tests (two-sided) of the reference against every other model that ran."""
    ref = runs.get(reference)
    if ref is None or not ref.predictions:
        return {}
    ref_scores = seed_mean_scores(ref)
    out = {}
    for name, r in runs.items():
        if name == reference or not r.predictions or len(ref_scores["value"]) < 2:
            continue
        scores = seed_mean_scores(r)
        out[name] = {t: paired_test(ref_scores[t], scores[t], "ttest").to_dict()
                     for t in ("attribute", "value")}
    return out


def run(cfg: TableConfig, progress: Progress | None = None) -> ExperimentResult:
    started = time.time()
    path = eval_file(cfg.eval_data, cfg.base)
    records = read_data(path, cfg.base)
    runs = run_variants(cfg.base, cfg.models, records, Path(cfg.output_dir), cfg.seed,
                        cfg.repeats, progress)
    tests = significance_rows(runs, cfg.reference)
    header = ["model", "attribute F1", "value F1", "pair F1"]
    if tests:
        header += [f"p attr. (vs {cfg.reference})", f"p value (vs {cfg.reference})"]
    rows = []
    for name, r in runs.items():
        if r.unavailable:
            rows.append([name, "not available", "-", "-"] + (["-", "-"] if tests else []))
            continue
        row = [name, *(f1_cell(r, t) for t in TASKS)]
        if tests:
            t = tests.get(name)
            row += [fmt_p(t["attribute"]["p_value"]), fmt_p(t["value"]["p_value"])] if t \
                else ["", ""]
        rows.append(row)
    ran = [n for n, r in runs.items() if not r.unavailable]
    chart = plots.bar_chart(
        ["attribute F1", "value F1", "pair F1"],
        {n: [runs[n].f1(t)[0] for t in TASKS] for n in ran},
        title=f"Models on {Path(path).name} (F1 %)",
        errors={n: [runs[n].f1(t)[1] for t in TASKS] for n in ran} if cfg.repeats > 1 else None)
    notes = [f"evaluated on `{path}` ({len(records)} texts); micro F1 in percent"]
    if tests:
        notes.append(f"p: two-sided paired t-test of per-instance F1"
                     f"{' (mean over the seeds)' if cfg.repeats > 1 else ''}, "
                     f"{cfg.reference} against the row's model")
    missing = [n for n, r in runs.items() if r.unavailable]
    if missing:
        notes.append("not available (code not installed): " + ", ".join(
            f"{n} ({runs[n].unavailable})" for n in missing))
    results = {"eval_data": path, "n_instances": len(records),
               "models": {n: r.summary() for n, r in runs.items()},
               "significance_vs_reference": tests}
    return write_results("table", "Model comparison (paper Table 3)", cfg,
                         md_table(header, rows), results, {"table.png": chart}, started, notes)
