"""GLiNER as a peer in the same run: trained on mjave's split and encoder, scored by mjave's metrics.

Issue #35, section 5. Trains `gliner` 0.2.29 (a span model: a fresh, randomly initialised GLiNER
head on the same LOCAL encoder folder mjave fine-tunes) on the same train split with GLiNER's
own training API, predicts the valid split and scores it with `report_of`, the function behind
every figure mjave reports (`mjave evaluate`, `benchmarks/realdata.py`): span ("value"), pair,
attribute and slot P/R/F1, and "unseen R" (recall on gold values whose (attribute, normalised
value) pair is not in the training split, `mjave.evaluation.novelty`). One seed per run.

    python benchmarks/gliner_peer.py --dataset oamine                    # MiniLM, 10 epochs
    python benchmarks/gliner_peer.py --dataset wdcpave --encoder mpnet --epochs 5
    python benchmarks/gliner_peer.py --train T.jsonl --valid V.jsonl --encoder /path/to/folder
    OMP_NUM_THREADS=1 python benchmarks/gliner_peer.py --dataset oamine --limit 60 --epochs 1 \\
        --venv /tmp/glvenv                                               # smoke run

Pins and isolation. gliner 0.2.29 needs transformers<5.17 and mjave runs on 5.25, so GLiNER runs
in its own virtual environment (`--venv`, default runs/peers/gliner-0.2.29/venv, created when
missing with `python3 -m venv` and `pip install torch==2.13.0 "gliner[training]==0.2.29"`),
through `benchmarks/peers/gliner_worker.py`, which imports nothing of mjave. The two share only
the encoder folder (read offline) and the data files; this side converts and scores, the worker
trains and predicts. mjave's own environment is left as it is.

Settings, the same as mjave's recipes (configs/runs/oamine.yaml) where they have a counterpart:

- words: GLiNER's own "whitespace" splitter (`\\w+(?:[-_]\\w+)*|\\S`, the pattern it applies at
  prediction), with character offsets kept. A gold span whose ends are not word boundaries, or
  that is wider than `--max-width` words, cannot be represented: it is counted and reported,
  left out of the training rows and kept in the gold the valid split is scored on (a recall
  ceiling GLiNER has and mjave's models, which tag subword-aligned words, partly do not);
- labels: each text is asked only the attributes seen with its category in training (mjave's
  `model.restrict_to_category`, `AttributeSchema.allowed_attributes`; all of them for a text
  without a category or with one training lacked). `--train-labels category` (default) gives
  each training row the same list, its negatives included; `sampled` leaves GLiNER to sample
  negative labels within the batch, its default;
- decoding: flat spans (no overlap), one label per span, GLiNER scores under `--threshold`
  (0.5, the recipe's `min_span_score`) dropped, and at most one value per attribute and text,
  the best-scoring (the recipe's `max_values_per_attribute: 1`, `best_values`);
- training: `--epochs` (10), `--lr` 5e-5 for the encoder and `--others-lr` 5e-4 for GLiNER's
  layers, linear schedule with 10% warm-up, batch 8, spans up to `--max-width` 12 words, seed
  `--seed`; GLiNER's loss and negative sampling of spans as it ships. Not tuned: no valid-split
  selection, as mjave's published figures.

Speed (CPU, one thread, MiniLM): about 1.1-1.4 s per step of 8 OA-Mine titles, so one epoch of
the 1,236 training titles (155 steps) takes about 3-3.5 minutes; predicting 216 titles about 9 s.
A fresh GLiNER head learns slowly: after 100 steps (200 titles, 4 epochs) no span reached the 0.5
threshold yet, so judge a run by its full length, not by a short one.

The output folder (default runs/peers/gliner-0.2.29/<dataset>-<encoder>-s<seed>) gets data.json
(the converted split), the worker's model/ and predictions.jsonl, run.log (everything the worker
printed, with elapsed seconds) and results.json (the report, timings, versions and settings).
A benchmark, not a test; tests/test_gliner_peer.py checks the conversion and scoring.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GLINER_VERSION = "0.2.29"
PEER_REQUIREMENTS = ("torch==2.13.0", f"gliner[training]=={GLINER_VERSION}")
DEFAULT_VENV = ROOT / "runs" / "peers" / f"gliner-{GLINER_VERSION}" / "venv"
WORKER = ROOT / "benchmarks" / "peers" / "gliner_worker.py"
WDCPAVE = ROOT.parent / "shared" / "data" / "wdcpave"
MODEL_NAME = f"GLiNER {GLINER_VERSION}"
TASKS = ("attribute", "value", "pair", "slot")

WORD = re.compile(r"\w+(?:[-_]\w+)*|\S")
"""GLiNER's "whitespace" words splitter (gliner.data_processing.tokenizer), copied: it splits the
texts at prediction, so the training rows must be split the same way."""


# ---- records -> GLiNER rows ---------------------------------------------------------------

def words_of(text: str) -> list[tuple[int, int]]:
    """(begin, end) character offsets of the words GLiNER sees in `text`."""
    return [m.span() for m in WORD.finditer(text)]


def word_span_to_chars(words: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """Character offsets of words `start`..`end` (inclusive), as GLiNER maps its predictions."""
    return words[start][0], words[end][1]


@dataclass
class Conversion:
    """GLiNER rows of some records and the gold spans they could not carry (never dropped
    silently: reported, and left in the gold that is scored)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    spans: int = 0
    misaligned: list[tuple[str, str, str]] = field(default_factory=list)
    too_wide: list[tuple[str, str, str]] = field(default_factory=list)

    def summary(self, what: str) -> str:
        lost = len(self.misaligned) + len(self.too_wide)
        share = 100 * lost / self.spans if self.spans else 0.0
        line = (f"{what}: {len(self.rows)} texts, {self.spans} gold spans; {len(self.misaligned)} "
                f"not on word boundaries, {len(self.too_wide)} wider than --max-width "
                f"({share:.1f}% GLiNER cannot represent)")
        examples = [f"{rid} {attr}={value!r}" for rid, attr, value in self.misaligned[:3]]
        return line + (f", e.g. {'; '.join(examples)}" if examples else "")


def to_gliner(records: Iterable[Any], max_width: int,
              labels: Mapping[str, Sequence[str]] | None = None) -> Conversion:
    """GLiNER training rows {"tokenized_text", "ner": [[start_word, end_word, attr], ...]}, plus
    "ner_labels" (the text's label list, `labels[record.id]`) when `labels` is given."""
    out = Conversion()
    for r in records:
        words = words_of(r.text)
        starts = {b: i for i, (b, _) in enumerate(words)}
        ends = {e: i for i, (_, e) in enumerate(words)}
        ner = []
        for s in r.spans:
            out.spans += 1
            first, last = starts.get(s.begin), ends.get(s.end)
            if first is None or last is None or last < first:
                out.misaligned.append((r.id, s.attr, s.value))
            elif last - first + 1 > max_width:
                out.too_wide.append((r.id, s.attr, s.value))
            else:
                ner.append([first, last, s.attr])
        row: dict[str, Any] = {"tokenized_text": [r.text[b:e] for b, e in words], "ner": ner}
        if labels is not None:
            row["ner_labels"] = list(labels[r.id])
        out.rows.append(row)
    return out


def text_labels(schema: Any, records: Iterable[Any]) -> dict[str, list[str]]:
    """Each record's label list: the attributes `schema` (of the training records) saw with its
    category, as mjave's restrict_to_category decodes; every attribute when there is none."""
    return {r.id: list(schema.allowed_attributes(r.category) or schema.attributes)
            for r in records}


# ---- GLiNER predictions -> scored records --------------------------------------------------

def read_predictions(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The worker's predictions.jsonl: record id -> entities (start, end, label, score)."""
    out: dict[str, list[dict[str, Any]]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                out[row["id"]] = row["entities"]
    return out


def predicted_records(gold: Sequence[Any], entities: Mapping[str, Sequence[Mapping[str, Any]]],
                      max_values_per_attribute: int = 1) -> list[Any]:
    """Predicted Records, gold order and ids, each span scored; with `max_values_per_attribute`
    1 only the best-scoring value of each attribute is kept (the recipe's decoding). A text the
    worker returned nothing for is an error, not an empty prediction."""
    from dataclasses import replace

    from mjave.data.records import Span
    from mjave.evaluation.slot import best_values

    if max_values_per_attribute not in (0, 1):
        raise ValueError("max_values_per_attribute must be 0 (no limit) or 1")
    out = []
    for g in gold:
        if g.id not in entities:
            raise ValueError(f"no prediction for valid record {g.id!r}")
        spans = [Span(int(e["start"]), int(e["end"]), e["label"],
                      g.text[int(e["start"]):int(e["end"])], score=float(e["score"]))
                 for e in entities[g.id]]
        if max_values_per_attribute == 1:
            spans = sorted(best_values(spans).values(), key=lambda s: (s.begin, s.end))
        out.append(replace(g, spans=spans))
    return out


def score(gold: Sequence[Any], pred: Sequence[Any], train: Sequence[Any]) -> dict[str, Any]:
    """mjave's report of the predictions (`report_of`, the path of every reported figure), with
    recall on values seen / unseen in `train`."""
    from mjave.evaluation import seen_pairs
    from mjave.training.evaluate import report_of

    return report_of(gold, pred, None, None, 0.5, seen_pairs(train))


def table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """realdata.py's columns (one run: no ± std): F1 per task and unseen recall."""
    lines = [f"{'model':<28}" + "".join(f"{t + ' F1':>14}" for t in TASKS) + f"{'unseen R':>14}"]
    for name, report in rows.items():
        unseen = report.get("recall_by_novelty", {}).get("unseen", {}).get("recall")
        cells = "".join(f"{report[t]['f1']:>14.2f}" for t in TASKS)
        lines.append(f"{name:<28}{cells}{'-' if unseen is None else f'{unseen:.2f}':>14}")
    return "\n".join(lines)


# ---- the peer environment ------------------------------------------------------------------

def ensure_venv(venv: Path) -> Path:
    """The peer venv's python, the venv created with the pinned packages when missing."""
    python = venv / "bin" / "python"
    if python.exists():
        return python
    print(f"creating the GLiNER venv {venv} ({' '.join(PEER_REQUIREMENTS)})", flush=True)
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", *PEER_REQUIREMENTS], check=True)
    return python


def stream(command: Sequence[str], log_path: Path) -> int:
    """Run `command`, echoing each output line to the terminal and to `log_path` with the
    seconds since start (the per-step timing of a run reads off it)."""
    started = time.time()
    with open(log_path, "a", encoding="utf-8") as log, subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            stamped = f"{time.time() - started:8.1f}s {line.rstrip()}"
            print(stamped, flush=True)
            log.write(stamped + "\n")
            log.flush()
        return proc.wait()


# ---- the run -------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--dataset", choices=("oamine", "wdcpave"))
    which.add_argument("--train", help="training records (any labelled mjave format)")
    ap.add_argument("--valid", help="valid records, with --train")
    ap.add_argument("--encoder", default="minilm", help="minilm, mpnet or a local model folder")
    ap.add_argument("--epochs", type=float, default=10)
    ap.add_argument("--lr", type=float, default=5e-5, help="encoder learning rate")
    ap.add_argument("--others-lr", type=float, default=5e-4, help="GLiNER layers' learning rate")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-width", type=int, default=12, help="longest span, in words")
    ap.add_argument("--threshold", type=float, default=0.5, help="GLiNER span score threshold")
    ap.add_argument("--train-labels", choices=("category", "sampled"), default="category",
                    help="training label lists: the category's attributes, or GLiNER's "
                    "in-batch negative sampling")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--venv", default=str(DEFAULT_VENV), help="the peer virtual environment")
    ap.add_argument("--output", help="output folder")
    ap.add_argument("--limit", type=int, help="first N train and valid records (smoke runs)")
    a = ap.parse_args(argv)
    if a.train and not a.valid:
        ap.error("--train needs --valid")
    return a


def splits(a: argparse.Namespace) -> tuple[Path, Path] | None:
    """(train, valid) files, or None when WDC-PAVE (which does not ship) is not in ../shared."""
    if a.train:
        return Path(a.train), Path(a.valid)
    if a.dataset == "wdcpave":
        train, valid = WDCPAVE / "train.jsonl", WDCPAVE / "valid.jsonl"
        return (train, valid) if train.is_file() and valid.is_file() else None
    from mjave.datasets import dataset_path

    return dataset_path(a.dataset, "train"), dataset_path(a.dataset, "valid")


def encoder_folder(name: str) -> Path:
    """mjave's own resolution of 'minilm' / 'mpnet' / a folder: the same weights both sides."""
    from mjave.encoders.text import resolve_text_encoder_path

    return resolve_text_encoder_path(name).resolve()


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    files = splits(a)
    if files is None:
        print(f"skipped: WDC-PAVE is not in {WDCPAVE} (train.jsonl, valid.jsonl); it does not "
              "ship with mjave (research use only)")
        return 0
    from mjave.data.formats import read_records
    from mjave.data.schema import AttributeSchema

    started = time.time()
    train, _ = read_records(files[0], labelled=True)
    valid, _ = read_records(files[1], labelled=True)
    if a.limit:
        train, valid = train[:a.limit], valid[:a.limit]
    encoder = encoder_folder(a.encoder)
    name = a.dataset or files[0].stem
    out = Path(a.output or ROOT / "runs" / "peers" / f"gliner-{GLINER_VERSION}" /
               f"{name}-{Path(a.encoder).name}-s{a.seed}")
    out.mkdir(parents=True, exist_ok=True)

    schema = AttributeSchema.from_records(train)
    train_labels = text_labels(schema, train) if a.train_labels == "category" else None
    valid_labels = text_labels(schema, valid)
    converted = to_gliner(train, a.max_width, train_labels)
    gold_view = to_gliner(valid, a.max_width)
    print(converted.summary("train"))
    print(gold_view.summary("valid") + " (kept in the scored gold)")
    data = {"train": converted.rows,
            "valid": [{"id": r.id, "text": r.text, "labels": valid_labels[r.id]} for r in valid]}
    (out / "data.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    python = ensure_venv(Path(a.venv))
    command = [str(python), str(WORKER), "--data", str(out / "data.json"), "--output", str(out),
               "--encoder", str(encoder), "--epochs", str(a.epochs), "--lr", str(a.lr),
               "--others-lr", str(a.others_lr), "--batch-size", str(a.batch_size),
               "--max-width", str(a.max_width), "--seed", str(a.seed),
               "--threshold", str(a.threshold)]
    (out / "run.log").write_text(" ".join(command) + "\n", encoding="utf-8")
    rc = stream(command, out / "run.log")
    if rc:
        print(f"error: the GLiNER worker failed (exit {rc}); see {out / 'run.log'}",
              file=sys.stderr)
        return rc

    pred = predicted_records(valid, read_predictions(out / "predictions.jsonl"))
    report = score(valid, pred, train)
    worker = json.loads((out / "worker.json").read_text(encoding="utf-8"))
    seconds = time.time() - started
    print(f"\n{name}: {len(valid)} valid texts, {len(train)} train, encoder {a.encoder}, "
          f"{seconds:.0f} s ({worker['steps']} steps, {worker['s_per_step']} s/step, "
          f"{worker['device']})")
    print(table({MODEL_NAME: report}))
    novelty = report.get("recall_by_novelty", {})
    if novelty:
        print(f"unseen R: pair-level recall on the {novelty['unseen']['gold']} gold values "
              f"({novelty['unseen_share']}%) not in the training split; seen ones: "
              f"{novelty['seen']['gold']}")
    results = {
        "model": MODEL_NAME, "dataset": name, "train_file": str(files[0]),
        "valid_file": str(files[1]), "n_train": len(train), "n_valid": len(valid),
        "encoder": str(encoder), "seconds": round(seconds, 1), "worker": worker,
        "settings": {k: v for k, v in vars(a).items() if k not in ("output",)},
        "unrepresentable": {"train_misaligned": len(converted.misaligned),
                            "train_too_wide": len(converted.too_wide),
                            "valid_misaligned": len(gold_view.misaligned),
                            "valid_too_wide": len(gold_view.too_wide)},
        **{t: report[t] for t in TASKS},
        "recall_by_novelty": report.get("recall_by_novelty"),
        "report": report,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
