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
    python benchmarks/realdata.py --dataset oamine --peer gliner --peer-encoder minilm

`--peer gliner` also trains GLiNER 0.2.29 (benchmarks/gliner_peer.py: its own virtual
environment, the same encoder folder, train and valid split; one seed, it is slow) after the
mjave models and prints its row in the same table, scored by the same report.

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
    ap.add_argument("--peer", choices=("gliner",), action="append", default=[],
                    help="also train and score this peer in the same run (one seed)")
    ap.add_argument("--peer-encoder", default="minilm",
                    help="the peer's encoder: minilm, mpnet or a local folder")
    ap.add_argument("--peer-epochs", type=float, default=10)
    ap.add_argument("--peer-venv", help="the peer's virtual environment (default: gliner_peer's)")
    return ap.parse_args(argv)


def peer_rows(a: argparse.Namespace, out: Path) -> dict[str, dict]:
    """Train and score each `--peer` on the same split (seed 0); its report, shaped like a
    table row of one run (std 0), by model name."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gliner_peer

    rows = {}
    for peer in a.peer:
        folder = out / "peers" / f"{peer}-{Path(a.peer_encoder).name}"
        argv = ["--dataset", a.dataset, "--encoder", a.peer_encoder, "--epochs",
                str(a.peer_epochs), "--seed", "0", "--output", str(folder)]
        if a.peer_venv:
            argv += ["--venv", a.peer_venv]
        rc = gliner_peer.main(argv)
        if rc != 0 or not (folder / "results.json").is_file():
            rows[peer] = {"available": False, "reason": f"the peer run failed, see {folder}"
                          if rc else "skipped (its data is absent)"}
            continue
        got = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        report = got["report"]
        row = {"available": True, "recall_by_novelty": report.get("recall_by_novelty")}
        for t in (*TASKS, SLOT):
            if t in report:
                row[t] = {"f1": report[t]["f1"], "f1_std": 0.0}
        rows[f"{got['model']} ({Path(a.peer_encoder).name}, 1 seed)"] = row
    return rows


def unseen_cell(row: dict) -> str:
    """Recall on gold values unseen in training, mean ± std over the seeds ("-": none)."""
    unseen = (row.get("recall_by_novelty") or {}).get("unseen") or {}
    if unseen.get("recall") is None:
        return "-"
    return f"{unseen['recall']:.2f} ± {unseen.get('recall_std', 0.0):<5.2f}"


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
    if a.peer and not a.dataset:
        print("error: --peer needs --dataset (the peer reads the same split)", file=sys.stderr)
        return 2
    started = time.time()
    result = run_experiment("table", cfg)
    models = dict(result.results["models"])
    models.update(peer_rows(a, result.output_dir) if a.peer else {})
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
    print(json.dumps({n: {**{t: r[t].get("f1_per_run", [r[t]["f1"]]) for t in tasks},
                          "unseen_recall": unseen_per_run(r)}
                      for n, r in models.items() if r.get("available")}))
    print(f"table: {result.output_dir / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
