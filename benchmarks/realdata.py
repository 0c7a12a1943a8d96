"""Real-data quality: mjave's models against a plain token classifier, measured in the same run.

Trains every model of a recipe (`configs/experiments/<dataset>-realdata.yaml`: an `mjave experiment table`
config) on the dataset's train split with N seeds, scores valid, and prints attribute, value
(span) and pair F1 as mean ± std next to the plain token-classification baseline (the same
MiniLM-L6 encoder plus one linear BIO layer, fine-tuned the same way), with the difference; also
slot F1 (the LLM papers' protocol, one value per attribute asked) when the experiment's summary
carries it, and "unseen R": recall on gold values whose (attribute, normalised value) pair is not
in the training split (`mjave.evaluation.novelty`), where rare values show.

    python benchmarks/realdata.py --dataset oamine              # 3 seeds, the committed recipe
    python benchmarks/realdata.py --dataset wdcpave --seeds 1
    python benchmarks/realdata.py --config my-recipe.yaml --set base.train.epochs=5

The models land in the recipe's output_dir (a rerun resumes finished seeds); the table is also
written there (results.md / results.json) by the experiment. OA-Mine ships in the package;
WDC-PAVE is read from ../shared/data (or give `--set base.data.train=...`); a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "Token classification"
TASKS = ("attribute", "value", "pair")
SLOT = "slot"
WDCPAVE_TRAIN = ROOT.parent / "shared" / "data" / "wdcpave" / "train.jsonl"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--dataset", choices=("oamine", "wdcpave"),
                       help="use configs/experiments/<dataset>-realdata.yaml")
    which.add_argument("--config", help="an `mjave experiment table` config file")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per model (repeats)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config field, e.g. base.train.epochs=5")
    ap.add_argument("--output", help="output folder (default: the config's output_dir)")
    return ap.parse_args(argv)


def unseen_cell(row: dict) -> str:
    """Recall on gold values unseen in training, mean ± std over the seeds ("-": none)."""
    unseen = (row.get("recall_by_novelty") or {}).get("unseen") or {}
    if unseen.get("recall") is None:
        return "-"
    return f"{unseen['recall']:.2f} ± {unseen['recall_std']:<5.2f}"


def unseen_per_run(row: dict) -> list[float | None] | None:
    return ((row.get("recall_by_novelty") or {}).get("unseen") or {}).get("recall_per_run")


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    from mjave.config import apply_overrides, load
    from mjave.experiments.runner import run_experiment
    from mjave.experiments.table import TableConfig

    path = Path(a.config) if a.config else ROOT / "configs" / "experiments" / f"{a.dataset}-realdata.yaml"
    # WDC-PAVE does not ship (research use only): its recipe names no data, ../shared has it
    data = [f"base.data.train={WDCPAVE_TRAIN}"] if a.dataset == "wdcpave" else []
    cfg = apply_overrides(load(TableConfig, path), [f"repeats={a.seeds}", *data, *a.set])
    if a.output:
        cfg.output_dir = a.output
    names = [m.name for m in cfg.models]
    if BASELINE not in names:
        print(f"error: {path} has no {BASELINE!r} model to compare against", file=sys.stderr)
        return 2
    started = time.time()
    result = run_experiment("table", cfg)
    models = result.results["models"]
    base = models[BASELINE]
    print(f"\n{path.name}: {result.results['n_instances']} valid texts, {a.seeds} seed(s), "
          f"{time.time() - started:.0f} s, torch CPU on {platform.processor() or platform.machine()}")
    ran = [r for r in models.values() if r.get("available")]
    tasks = (*TASKS, SLOT) if ran and all(SLOT in r for r in ran) else TASKS
    print(f"{'model':<28}" + "".join(f"{t + ' F1':>22}" for t in tasks)
          + f"{'unseen R':>22}{'value F1 - baseline':>22}")
    for name, row in models.items():
        if not row.get("available"):
            print(f"{name:<28}  not available: {row.get('reason')}")
            continue
        cells = "".join(f"{row[t]['f1']:>14.2f} ± {row[t]['f1_std']:<5.2f}" for t in tasks)
        diff = row["value"]["f1"] - base["value"]["f1"]
        print(f"{name:<28}{cells}{unseen_cell(row):>22}{diff:>+22.2f}")
    novelty = next((r["recall_by_novelty"] for r in ran if "recall_by_novelty" in r), None)
    if novelty:
        print(f"unseen R: pair-level recall on the {novelty['unseen']['gold']} gold values "
              f"({novelty['unseen_share']}%) not among the training split's (attribute, value) "
              f"pairs; seen ones: {novelty['seen']['gold']}")
    print(json.dumps({n: {**{t: r[t]["f1_per_run"] for t in tasks},
                          "unseen_recall": unseen_per_run(r)}
                      for n, r in models.items() if r.get("available")}))
    print(f"table: {result.output_dir / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
