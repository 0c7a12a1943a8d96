"""Top-layer fine-tuning (`encoder.train_layers: K`): disk per 1,000 titles, accuracy of the
float16 cache, and the encoder's cost per training step.

1. Disk: the lower layers' output of N synthetic titles (`mjave.data.synthetic`, distinct texts)
   extracted into a fresh feature store, as training does; the "lower" namespace's bytes on
   disk (shards + index) per 1,000 titles. It does not depend on K (one (T, d) float16 matrix
   per title whichever layer it is taken at).
2. Accuracy: the top K layers on the cached (float16) states against the full float32 forward,
   max |difference| of the last hidden states over real tokens.
3. Cost: forward + backward of the text encoder alone on one batch, full fine-tuning (every
   layer, from the ids) against the top K layers on cached states; best of `--repeat`.

    python benchmarks/lower_cache.py                       # MiniLM (pip), 1,000 titles
    python benchmarks/lower_cache.py --encoder mpnet --layers 2 4 --titles 200
    python benchmarks/lower_cache.py --data ../shared/data/oamine/train.jsonl --max-length 64
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mjave.config import EncoderConfig
from mjave.data.formats import read_records
from mjave.data.records import Record
from mjave.data.synthetic import generate_records
from mjave.data.tagging import TextAligner, batch_pad
from mjave.encoders.features import LOWER_NAMESPACE, extract_features, text_feature_keys
from mjave.encoders.store import FeatureStore
from mjave.encoders.text import HFTextEncoder, load_tokenizer


def titles(n: int) -> list[Record]:
    """`n` synthetic records with distinct texts."""
    seen: dict[str, Record] = {}
    size = n
    while len(seen) < n:
        for split in generate_records(n_products=size, seed=0).values():
            for r in split:
                seen.setdefault(r.text, r)
        size *= 2
    return list(seen.values())[:n]


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def step_seconds(run, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run().float().pow(2).mean().backward()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--titles", type=int, default=1000)
    ap.add_argument("--data", help="titles from this data file instead of synthetic ones")
    ap.add_argument("--layers", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.data:
        distinct = {r.text: r for r in read_records(args.data)[0]}
        records = list(distinct.values())[:args.titles]
    else:
        records = titles(args.titles)
    out: dict = {"encoder": args.encoder, "titles": len(records), "data": args.data or "synthetic",
                 "torch": torch.__version__,
                 "threads": args.threads, "layers": {}}

    tokenizer = load_tokenizer(args.encoder)
    aligner = TextAligner(tokenizer, max_length=args.max_length)
    batch = batch_pad([aligner.encode_text(r.text) for r in records[:args.batch_size]],
                      tokenizer.pad_id)
    ids = torch.from_numpy(batch["input_ids"])
    mask = torch.from_numpy(batch["attention_mask"])
    real = mask.bool()
    whole = HFTextEncoder.from_pretrained(args.encoder, fine_tune=True).train()
    out["full_step_s"] = step_seconds(lambda: whole(ids, mask), args.repeat)
    with torch.no_grad():
        reference = whole.eval()(ids, mask)

    for k in args.layers:
        cfg = EncoderConfig(text_encoder=args.encoder, image_encoder="none", train_layers=k,
                            max_length=args.max_length)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            stats = extract_features(records, tmp, cfg, batch_size=args.batch_size)
            seconds = time.perf_counter() - t0
            store = FeatureStore(tmp)
            states = store.get(*text_feature_keys(cfg, records))
            disk = folder_bytes(Path(tmp) / LOWER_NAMESPACE)
            payload = sum(s.nbytes for s in states)
            tokens = float(np.mean([s.shape[0] for s in states]))
            top = HFTextEncoder.from_pretrained(args.encoder, fine_tune=True, train_layers=k)
            cached = torch.zeros(len(ids), ids.shape[1], top.hidden_size)
            for i, s in enumerate(states[:args.batch_size]):
                cached[i, :s.shape[0]] = torch.from_numpy(s.astype(np.float32))
            with torch.no_grad():
                diff = (top.eval().upper(cached, mask) - reference)[real].abs().max().item()
            top.train()
            row = {"mb_per_1000_titles": disk / 2**20 * 1000 / len(records),
                   "payload_mb_per_1000": payload / 2**20 * 1000 / len(records),
                   "tokens_per_title": tokens, "extract_s": seconds,
                   "texts_per_s": stats.texts_per_second, "max_abs_diff": diff,
                   "top_step_s": step_seconds(lambda: top.upper(cached, mask), args.repeat)}
        out["layers"][k] = row
        print(f"train_layers={k}: {row['mb_per_1000_titles']:.2f} MB / 1,000 titles on disk "
              f"({row['payload_mb_per_1000']:.2f} MB states, {tokens:.1f} tokens/title), "
              f"extract {seconds:.1f} s, max |diff| {diff:.1e}, encoder step "
              f"{row['top_step_s'] * 1000:.0f} ms vs full {out['full_step_s'] * 1000:.0f} ms")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
