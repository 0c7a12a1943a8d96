"""Values the text does not state, read from the photo (issue #31, section 2), on generated
catalogs: implicit Color and Pattern F1 of M-JAVE with the implicit head, beside the text-only
JAVE reference and M-JAVE with shuffled images, both of which should sit at or below the
majority-class rate.

Each run is `mjave demo`'s pipeline (`run_demo`) on a catalog with `--silent` of its products
text-silent, at the given catalog seed and ambiguity rate (training seeded alike), then both
models scored on the valid split too. Settings are chosen on valid; test is reported.

    python benchmarks/implicit_values.py --seeds 0 1 2 --ambiguous 0.95 0.5 --silent 0.3 \\
        --output runs/implicit/global

Per run it writes `<output>/<run>/implicit.json`; the table at the end gives mean and standard
deviation over runs per (split, model, attribute).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mjave.data.formats import read_records
from mjave.experiments.demo import DemoConfig, run_demo
from mjave.inference.extractor import Extractor
from mjave.training.evaluate import EVAL_BATCH_SIZE, score_records


def one_run(out: Path, seed: int, ambiguous: float, silent: float, epochs: int,
            overrides: list[str]) -> dict:
    cfg = DemoConfig(output_dir=str(out), seed=seed, ambiguous_rate=ambiguous,
                     text_silent_rate=silent, epochs=epochs, model_overrides=overrides,
                     awareness_permutations=2)
    start = time.time()
    result = run_demo(cfg)
    catalog = out / "catalog"
    valid, _ = read_records(catalog / "valid.jsonl", labelled=True)
    rows = {"test": {k: v["implicit"] for k, v in result.reports.items()},
            "test_shuffled": {"M-JAVE": result.awareness.get("implicit")},
            "test_value_f1": {k: v["value"]["f1"] for k, v in result.reports.items()},
            "valid": {}}
    for name in ("JAVE", "M-JAVE"):
        extractor = Extractor.load(out / "models" / name, device="cpu",
                                   batch_size=EVAL_BATCH_SIZE)
        rows["valid"][name] = score_records(extractor, valid, catalog)["implicit"]
    rows["seconds"] = round(time.time() - start, 1)
    rows["settings"] = {"seed": seed, "ambiguous_rate": ambiguous, "text_silent_rate": silent,
                        "epochs": epochs, "overrides": overrides}
    (out / "implicit.json").write_text(json.dumps(rows, indent=2))
    return rows


def summary(runs: list[dict]) -> str:
    lines = ["split  model   attribute   F1 mean ± std   accuracy   majority   n (per run)"]
    for split in ("valid", "test"):
        for model in ("JAVE", "M-JAVE"):
            attrs = ["all", *sorted(runs[0][split][model]["per_attribute"])]
            for attr in attrs:
                rows = [(r[split][model]["all"] if attr == "all"
                         else r[split][model]["per_attribute"][attr]) for r in runs]
                f1 = np.array([x["f1"] for x in rows])
                acc = np.array([x["accuracy"] for x in rows])
                maj = np.array([x["majority"] for x in rows])
                lines.append(f"{split:6s} {model:7s} {attr:10s} {f1.mean():6.2f} ± {f1.std():5.2f}"
                             f"   {acc.mean():8.2f}   {maj.mean():8.2f}   "
                             f"{[x['n'] for x in rows]}")
    shuffled = np.array([r["test_shuffled"]["M-JAVE"]["incongruent_mean"] for r in runs])
    lines.append(f"test   M-JAVE, shuffled images: implicit F1 {shuffled.mean():.2f} ± "
                 f"{shuffled.std():.2f}")
    gain = np.array([r["test_value_f1"]["M-JAVE"] - r["test_value_f1"]["JAVE"] for r in runs])
    lines.append(f"test   span value F1, M-JAVE minus JAVE: {gain.mean():+.2f} ± {gain.std():.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--ambiguous", type=float, nargs="+", default=[0.95],
                    help="catalog ambiguity rates (each with every seed)")
    ap.add_argument("--silent", type=float, default=0.3, help="share of text-silent products")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--output", default="runs/implicit")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="a config override for both models, e.g. model.implicit_threshold=0.4")
    a = ap.parse_args(argv)
    runs = []
    for ambiguous in a.ambiguous:
        for seed in a.seeds:
            out = Path(a.output) / f"amb{ambiguous}-seed{seed}"
            done = out / "implicit.json"
            runs.append(json.loads(done.read_text()) if done.is_file() else
                        one_run(out, seed, ambiguous, a.silent, a.epochs, a.overrides))
            print(f"{out}: done", file=sys.stderr)
    print(summary(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
