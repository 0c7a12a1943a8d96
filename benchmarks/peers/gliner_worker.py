"""Train and predict GLiNER inside its own virtual environment (the peer of benchmarks/gliner_peer.py).

gliner 0.2.29 needs transformers<5.17 while mjave runs on 5.25, so this script runs under the peer
venv and imports only gliner, torch, transformers and the standard library: nothing of mjave.
It reads one JSON file written by gliner_peer.py,

    {"train": [{"tokenized_text": [...], "ner": [[start_word, end_word, label], ...],
                "ner_labels": [...]?}, ...],
     "valid": [{"id": ..., "text": ..., "labels": [...]}, ...]}

builds a fresh GLiNER (span model, randomly initialised head) on the LOCAL encoder folder
(offline: HF_HUB_OFFLINE, local_files_only), trains it with GLiNER's own `train_model`, saves it
under OUTPUT/model, predicts every valid text with that text's own label list and writes
OUTPUT/predictions.jsonl ({"id", "entities": [{"start", "end", "label", "score"}]}: character
offsets as GLiNER returns them) and OUTPUT/worker.json (versions, timings, steps).

    peer-venv/bin/python benchmarks/peers/gliner_worker.py --data data.json --output DIR \\
        --encoder /path/to/encoder --epochs 10 --lr 5e-5 --others-lr 5e-4 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

# Offline before transformers is imported: the encoder is a local folder, nothing is fetched.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def log(message: str) -> None:
    """One progress line, flushed at once: the parent streams it to its terminal and log."""
    print(f"[gliner-worker] {message}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the JSON file written by gliner_peer.py")
    ap.add_argument("--output", required=True, help="folder for the model and the predictions")
    ap.add_argument("--encoder", required=True, help="local Hugging Face encoder folder")
    ap.add_argument("--epochs", type=float, default=10)
    ap.add_argument("--lr", type=float, default=5e-5, help="encoder learning rate")
    ap.add_argument("--others-lr", type=float, default=5e-4,
                    help="learning rate of the GLiNER layers on top (randomly initialised)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-width", type=int, default=12, help="longest span, in words")
    ap.add_argument("--max-len", type=int, default=384, help="longest text, in words")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.5, help="GLiNER's span score threshold")
    ap.add_argument("--predict-batch-size", type=int, default=16)
    return ap.parse_args(argv)


def seed_everything(seed: int) -> None:
    """Python, torch (CPU and CUDA) and transformers' own seeding, before the model is built:
    the fresh GLiNER layers are initialised from the torch generator."""
    import torch
    import transformers

    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    transformers.set_seed(seed)


def build_model(encoder: str, max_width: int, max_len: int, device: str) -> Any:
    """A fresh uni-encoder span GLiNER whose backbone is the pretrained local encoder folder."""
    from gliner import GLiNER, GLiNERConfig

    config = GLiNERConfig(model_name=encoder, max_width=max_width, max_len=max_len,
                          span_mode="markerV0", words_splitter_type="whitespace")
    return GLiNER.from_config(config, backbone_from_pretrained=True, local_files_only=True,
                              map_location=device)


def train(model: Any, rows: list[dict], a: argparse.Namespace, out: Path, device: str) -> dict:
    """GLiNER's own training API (`train_model`, its Trainer and TrainingArguments); epochs,
    not its default max_steps, decide the length. Returns steps and timings."""
    args = model.create_training_args(
        output_dir=str(out / "trainer"), learning_rate=a.lr, others_lr=a.others_lr,
        per_device_train_batch_size=a.batch_size, per_device_eval_batch_size=a.batch_size,
        num_train_epochs=a.epochs, max_steps=-1, warmup_ratio=0.1, lr_scheduler_type="linear",
        save_strategy="no", logging_steps=10, disable_tqdm=True, use_cpu=device == "cpu",
        dataloader_num_workers=0, seed=a.seed, data_seed=a.seed, report_to="none")
    started = time.time()
    trainer = model.train_model(train_dataset=rows, eval_dataset=None, training_args=args)
    seconds = time.time() - started
    steps = int(trainer.state.global_step)
    return {"train_s": round(seconds, 2), "steps": steps,
            "s_per_step": round(seconds / steps, 4) if steps else None,
            "final_loss": next((h["train_loss"] for h in reversed(trainer.state.log_history)
                                if "train_loss" in h), None)}


def predict(model: Any, valid: list[dict], threshold: float, batch_size: int) -> list[dict]:
    """Entities of every valid text, each asked only its own labels (flat, one label per span)."""
    texts = [v["text"] for v in valid]
    labels = [list(v["labels"]) for v in valid]
    found = model.inference(texts, labels, flat_ner=True, threshold=threshold,
                            multi_label=False, batch_size=batch_size)
    return [{"id": v["id"],
             "entities": [{"start": int(e["start"]), "end": int(e["end"]), "label": e["label"],
                           "score": float(e["score"])} for e in entities]}
            for v, entities in zip(valid, found)]


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    import gliner
    import torch
    import transformers

    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    data = json.loads(Path(a.data).read_text(encoding="utf-8"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    log(f"gliner {gliner.__version__}, transformers {transformers.__version__}, torch "
        f"{torch.__version__}, device {device}, {torch.get_num_threads()} threads; "
        f"{len(data['train'])} train rows, {len(data['valid'])} valid texts")
    seed_everything(a.seed)
    started = time.time()
    model = build_model(a.encoder, a.max_width, a.max_len, device)
    log(f"built {type(model).__name__} on {a.encoder} in {time.time() - started:.1f} s")
    timing = train(model, data["train"], a, out, device)
    log(f"trained: {timing['steps']} steps in {timing['train_s']:.1f} s "
        f"({timing['s_per_step']} s/step)")
    model.save_pretrained(str(out / "model"))
    started = time.time()
    predictions = predict(model, data["valid"], a.threshold, a.predict_batch_size)
    predict_s = time.time() - started
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for p in predictions:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    log(f"predicted {len(predictions)} texts in {predict_s:.1f} s "
        f"({sum(len(p['entities']) for p in predictions)} entities)")
    meta = {"gliner": gliner.__version__, "transformers": transformers.__version__,
            "torch": torch.__version__, "device": device, "threads": torch.get_num_threads(),
            **timing, "predict_s": round(predict_s, 2), "settings": vars(a)}
    (out / "worker.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
