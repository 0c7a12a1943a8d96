"""`mjave experiment low-resource`: training on fractions of the training set, Table 9.

For every fraction < 1, `samples` random subsets of the training texts are drawn (numpy
generator seeded with (seed, fraction, sample), so a config file fixes them) and written to
`<output_dir>/data/`; every model trains on each subset (same validation file, same seed) and is
scored on the evaluation file. The full training set is one run. Reported: mean ± sample std.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mjave.config import path_field
from mjave.experiments import plots
from mjave.experiments.common import (ExperimentBase, ExperimentError, ExperimentResult,
                                      ModelVariant, Progress, eval_file, fmt_ms, jave, md_table,
                                      mjave, read_data, train_variant, write_data, write_results)
from mjave.experiments.stats import mean_std


def _default_fractions() -> list[float]:
    return [1.0, 0.8, 0.6, 0.4, 0.2]


@dataclass
class LowResourceConfig(ExperimentBase):
    """Models trained on `fractions` of base.data.train, `samples` random subsets each."""

    output_dir: str = "runs/experiments/low-resource"
    eval_data: str | None = path_field()
    fractions: list[float] = field(default_factory=_default_fractions)
    samples: int = 3
    models: list[ModelVariant] = field(default_factory=lambda: [jave(), mjave()])


def subset_indices(n: int, fraction: float, seed: int, sample: int) -> list[int]:
    """Sorted indices of a random subset of round(fraction * n) texts (at least one)."""
    k = max(1, int(round(fraction * n)))
    rng = np.random.default_rng([seed, int(round(fraction * 1_000_000)), sample])
    return sorted(rng.choice(n, size=k, replace=False).tolist())


def _pct(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def run(cfg: LowResourceConfig, progress: Progress | None = None) -> ExperimentResult:
    started = time.time()
    if not cfg.fractions or any(not 0 < f <= 1 for f in cfg.fractions):
        raise ExperimentError(f"fractions must lie in (0, 1], got {cfg.fractions}")
    if cfg.samples < 1:
        raise ExperimentError(f"samples must be at least 1, got {cfg.samples}")
    out = Path(cfg.output_dir)
    path = eval_file(cfg.eval_data, cfg.base)
    records = read_data(path, cfg.base)
    train_records = read_data(cfg.base.data.train, cfg.base)
    suffix = Path(cfg.base.data.train).suffix

    scores: dict[str, dict[float, list[dict]]] = {v.name: {} for v in cfg.models}
    sizes: dict[float, int] = {}
    for fraction in cfg.fractions:
        n_samples = 1 if fraction == 1.0 else cfg.samples
        for s in range(n_samples):
            if fraction == 1.0:
                base, tag = cfg.base, "100pct"
                sizes[fraction] = len(train_records)
            else:
                idx = subset_indices(len(train_records), fraction, cfg.seed, s)
                sizes[fraction] = len(idx)
                tag = f"{100 * fraction:g}pct-s{s}"
                file = write_data([train_records[i] for i in idx],
                                  out / "data" / f"train-{tag}{suffix}", cfg.base)
                base = replace(cfg.base, data=replace(cfg.base.data, train=file))
            for v in cfg.models:
                model = train_variant(base, v, out, cfg.seed, progress, tag=tag)
                report = model.predict(records).report()
                scores[v.name].setdefault(fraction, []).append(
                    {t: report[t]["f1"] for t in ("attribute", "value", "pair")})

    summary = {name: {_pct(f): {t: dict(zip(("mean", "std"), mean_std([r[t] for r in runs])))
                                | {"runs": [r[t] for r in runs]}
                                for t in ("attribute", "value", "pair")}
                      for f, runs in per.items()}
               for name, per in scores.items()}
    header = ["task / model", *(_pct(f) for f in cfg.fractions)]
    rows = []
    for t in ("attribute", "value"):
        rows.append([f"**{t}**", *([""] * len(cfg.fractions))])
        for name in scores:
            cells = []
            for f in cfg.fractions:
                m = summary[name][_pct(f)][t]
                cells.append(fmt_ms(m["mean"], m["std"], len(m["runs"])))
            rows.append([name, *cells])
    images = {}
    for t in ("attribute", "value"):
        images[f"low-resource-{t}.png"] = plots.line_chart(
            cfg.fractions,
            {n: [summary[n][_pct(f)][t]["mean"] for f in cfg.fractions] for n in scores},
            title=f"{t} F1 (%) vs share of the training set", x_label="training data",
            errors={n: [summary[n][_pct(f)][t]["std"] for f in cfg.fractions] for n in scores})
    notes = [f"evaluated on `{path}` ({len(records)} texts); training texts per fraction: "
             + ", ".join(f"{_pct(f)} = {sizes[f]}" for f in cfg.fractions),
             f"{cfg.samples} random subsets per fraction below 100% (mean ± sample std); "
             "one run on the full set"]
    results = {"eval_data": path, "train_sizes": {_pct(f): sizes[f] for f in cfg.fractions},
               "models": summary}
    return write_results("low-resource", "Low-resource training (paper Table 9)", cfg,
                         md_table(header, rows), results, images, started, notes)
