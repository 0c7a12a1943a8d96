"""`mjave experiment domain`: train in one domain, test in another, the paper's Table 8.

A domain is a set of data files (another dataset, another generated catalog) optionally narrowed
to some product categories. Every model trains on the source domain's training file and is
scored on the source's test file (in-domain) and on each target's test file (out-of-domain);
the gap Δ↓ = in-domain F1 minus out-of-domain F1 (the paper: PI vs QA texts, JAVE 14.31 and
M-JAVE 11.00 value-F1 points). Each domain gets its own feature store, since record ids of two
datasets may collide.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from mjave.experiments import plots
from mjave.experiments.common import (ExperimentBase, ExperimentError, ExperimentResult,
                                      ModelVariant, Progress, jave, md_table, mjave, read_data,
                                      slug, train_variant, write_data, write_results)
from mjave.data.records import Record
from mjave.config import RunConfig, path_field


@dataclass
class DomainData:
    """One domain: data files (test is what gets scored), where its images are, and an optional
    category filter (only records whose `category` is listed are kept)."""

    name: str = "source"
    train: str | None = path_field()
    valid: str | None = path_field()
    test: str | None = path_field()
    image_root: str | None = path_field()
    categories: list[str] = field(default_factory=list)
    features_dir: str | None = None   # default: <output_dir>/features/<name>


@dataclass
class DomainConfig(ExperimentBase):
    """Models trained on `source` (its train/valid replace base.data) and tested on `source` and
    every domain in `targets`."""

    output_dir: str = "runs/experiments/domain"
    source: DomainData = field(default_factory=DomainData)
    targets: list[DomainData] = field(default_factory=list)
    models: list[ModelVariant] = field(default_factory=lambda: [jave(), mjave()])


def _records(domain: DomainData, split: str, base: RunConfig, out: Path) -> tuple[str, list[Record]]:
    """A split of a domain, filtered to its categories (written under out/data when filtered)."""
    path = getattr(domain, split)
    if not path:
        raise ExperimentError(f"domain {domain.name!r} has no {split} file")
    records = read_data(path, base)
    if domain.categories:
        keep = set(domain.categories)
        records = [r for r in records if r.category in keep]
        if not records:
            raise ExperimentError(f"domain {domain.name!r}: no {split} records of categories "
                                  f"{sorted(keep)} in {path}")
        path = write_data(records, out / "data" / f"{slug(domain.name)}-{split}{Path(path).suffix}",
                          base)
    return path, records


def _features(domain: DomainData, out: Path) -> str:
    return domain.features_dir or str(out / "features" / slug(domain.name))


def run(cfg: DomainConfig, progress: Progress | None = None) -> ExperimentResult:
    started = time.time()
    if not cfg.targets:
        raise ExperimentError("domain: list at least one target domain")
    names = [cfg.source.name, *(t.name for t in cfg.targets)]
    if len(set(names)) != len(names):
        raise ExperimentError(f"domain names must be unique, got {names}")
    out = Path(cfg.output_dir)
    src = cfg.source
    train_path, _ = _records(src, "train", cfg.base, out)
    valid_path = _records(src, "valid", cfg.base, out)[0] if src.valid else None
    base = replace(cfg.base, features_dir=_features(src, out),
                   data=replace(cfg.base.data, train=train_path, valid=valid_path, test=None,
                                image_root=src.image_root))
    tests = {d.name: (d, *_records(d, "test", cfg.base, out)) for d in [src, *cfg.targets]}

    results: dict[str, dict] = {}
    for v in cfg.models:
        model = train_variant(base, v, out, cfg.seed, progress)
        per = {}
        for name, (domain, path, records) in tests.items():
            report = model.predict(records, image_root=domain.image_root,
                                   features_dir=_features(domain, out)).report()
            per[name] = {"eval_data": path, "n_instances": len(records),
                         **{t: report[t] for t in ("attribute", "value", "pair")}}
        gaps = {d.name: {t: per[src.name][t]["f1"] - per[d.name][t]["f1"]
                         for t in ("attribute", "value", "pair")} for d in cfg.targets}
        results[v.name] = {"scores": per, "gap": gaps}

    header = ["model", "target", "attr. in", "attr. out", "attr. Δ↓", "value in", "value out",
              "value Δ↓"]
    rows = []
    for name, r in results.items():
        s = r["scores"]
        for d in cfg.targets:
            rows.append([name, d.name,
                         f"{s[src.name]['attribute']['f1']:.2f}",
                         f"{s[d.name]['attribute']['f1']:.2f}",
                         f"{r['gap'][d.name]['attribute']:.2f}",
                         f"{s[src.name]['value']['f1']:.2f}", f"{s[d.name]['value']['f1']:.2f}",
                         f"{r['gap'][d.name]['value']:.2f}"])
    groups = [f"{t}: {m}" for t in ("attribute", "value") for m in results]
    chart = plots.bar_chart(
        groups, {n: [results[m]["scores"][n][t]["f1"] for t in ("attribute", "value")
                     for m in results] for n in names},
        title=f"Trained on {src.name}: in-domain vs out-of-domain F1 (%)")
    notes = [f"trained on `{train_path}`; in-domain = `{tests[src.name][1]}`; " + "; ".join(
        f"{d.name} = `{tests[d.name][1]}` ({len(tests[d.name][2])} texts)" for d in cfg.targets),
        "Δ↓ = in-domain F1 minus out-of-domain F1 (smaller is more robust)"]
    return write_results("domain", "Domain shift (paper Table 8)", cfg, md_table(header, rows),
                         {"source": src.name, "models": results}, {"domain.png": chart},
                         started, notes)
