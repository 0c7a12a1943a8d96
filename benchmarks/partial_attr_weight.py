"""Partial-label training: masking vs down-weighting the attribute loss of unknown attributes,
and mixing the naive O target into the value loss of unlabelled tokens.

Simulates an incomplete catalog from a gold-annotated JSONL file: in every record each gold
attribute is hidden with probability `--hide` (seeded): its spans are removed and it is left out
of `known_attributes`. The same labels are trained naively and with partial labels at several
`train.partial_attr_weight` values (0 = masked, the default) and `train.partial_outside_weight`
values (`o…` runs; 0 = the marginal alone, the default), then every model is scored on:

- the hidden (attribute, value) pairs of the training texts (what completion must recover):
  precision, recall and F1 of the predicted spans of unknown attributes (pair level, value
  lower-cased with whitespace collapsed), at the argmax decoding and at the best span-score
  threshold (an oracle threshold, chosen on the answer key: it compares rankings);
- a fully labelled file (`--eval`): attribute F1 and value F1 (`mjave evaluate`'s metrics).

    python benchmarks/partial_attr_weight.py ../shared/data/oamine/train.jsonl \\
        --eval ../shared/data/oamine/valid.jsonl --seeds 0,1,2 --out runs/partial-attr-weight

Training: text only, frozen MiniLM features, max_length 64, 30 epochs, batch 32, lr 1e-3 (the
`mjave experiment completion` defaults). Prints a Markdown table of mean ± sample std.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from mjave.data.formats import read_records, write_records
from mjave.config import EncoderConfig
from mjave.pretrained import LoadedModel
from mjave.inference.predict import predict_examples
from mjave.config import ModelConfig
from mjave.config import DataConfig, RunConfig, TrainConfig
from mjave.training.evaluate import featurize, score
from mjave.training.trainer import train

# name -> (partial labels, train.partial_attr_weight, train.partial_outside_weight)
SETTINGS = {"naive": (False, 0.0, 0.0), "mask": (True, 0.0, 0.0), "w0.1": (True, 0.1, 0.0),
            "w0.3": (True, 0.3, 0.0), "w1": (True, 1.0, 0.0),
            "o0.1": (True, 0.0, 0.1), "o0.3": (True, 0.0, 0.3), "o0.5": (True, 0.0, 0.5),
            "w0.3o0.3": (True, 0.3, 0.3)}


def norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.lower()).strip()


def hide(records, seed: int, frac: float):
    rng = np.random.default_rng(seed)
    out, hidden = [], {}
    for r in records:
        gone = {a for a in r.attributes() if rng.random() < frac}
        known = sorted(set(r.attributes()) - gone)
        out.append(replace(r, spans=[s for s in r.spans if s.attr not in gone],
                           extra={**r.extra, "known_attributes": known}))
        hidden[r.id] = {(s.attr, norm(s.value)) for s in r.spans if s.attr in gone}
    return out, hidden


def hidden_pair_scores(records, hidden, decoded) -> dict:
    n_hidden = sum(len(v) for v in hidden.values())
    suggestions = []
    for r, d in zip(records, decoded):
        known = set(r.extra["known_attributes"])
        best: dict = {}
        for s, sc in zip(d.spans, d.span_scores):
            if s.attr not in known:
                p = (s.attr, norm(s.value))
                best[p] = max(best.get(p, 0.0), sc)
        suggestions += [(sc, p in hidden[r.id]) for p, sc in best.items()]
    suggestions.sort(key=lambda x: -x[0])
    hits = np.cumsum([h for _, h in suggestions]) if suggestions else np.zeros(1)
    k = np.arange(1, len(hits) + 1)
    P, R = hits / k, hits / max(1, n_hidden)
    F = 2 * P * R / np.maximum(P + R, 1e-9)
    return {"hidden_p": 100 * P[-1], "hidden_r": 100 * R[-1], "hidden_f1": 100 * F[-1],
            "hidden_best_f1": 100 * F.max()}


def run(name: str, seed: int, args, gold, eval_records) -> dict:
    partial, weight, outside = SETTINGS[name]
    out = Path(args.out)
    recs, hidden = hide(gold, seed, args.hide)
    data = out / "data" / f"seed-{seed}.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    write_records(recs, data)
    folder = out / "models" / f"{name}-{seed}"
    features = args.features or str(out / "features")
    cfg = RunConfig(
        output_dir=str(folder), features_dir=features, data=DataConfig(train=str(data)),
        encoder=EncoderConfig(text_encoder="minilm", image_encoder="none", max_length=64),
        model=ModelConfig(use_image=False),
        train=TrainConfig(epochs=args.epochs, batch_size=32, lr=1e-3, patience=args.epochs,
                          seed=seed, device=args.device, partial_labels=partial,
                          partial_attr_weight=weight, partial_outside_weight=outside))
    train(cfg)
    model = LoadedModel.load(folder, device=args.device)
    examples = featurize(model, recs, None, features)
    decoded, _ = predict_examples(model.net, examples, model.schema, 256, model.device,
                                  model.config.train.threshold, model.aligner.pad_id)
    row = {"name": name, "seed": seed, **hidden_pair_scores(recs, hidden, decoded)}
    if eval_records is not None:
        report = score(model, eval_records, featurize(model, eval_records, None, features))
        row.update(eval_attribute_f1=report["attribute"]["f1"], eval_value_f1=report["value"]["f1"])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="gold-annotated JSONL (the simulated catalog)")
    ap.add_argument("--eval", help="a fully labelled file to score attribute and value F1 on")
    ap.add_argument("--hide", type=float, default=0.5)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--runs", default=",".join(SETTINGS))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="runs/partial-attr-weight")
    ap.add_argument("--features", help="frozen-feature store (default OUT/features)")
    args = ap.parse_args()
    gold, _ = read_records(args.data)
    eval_records = read_records(args.eval)[0] if args.eval else None
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in args.runs.split(","):
            rows.append(run(name, seed, args, gold, eval_records))
            print(json.dumps(rows[-1]), flush=True)
    (Path(args.out) / "results.json").write_text(json.dumps(rows, indent=1))
    keys = [k for k in rows[0] if k not in ("name", "seed")]
    print("| run | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for name in args.runs.split(","):
        sub = [r for r in rows if r["name"] == name]
        cells = [f"{np.mean([r[k] for r in sub]):.1f} ± "
                 f"{np.std([r[k] for r in sub], ddof=1) if len(sub) > 1 else 0.0:.1f}"
                 for k in keys]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
