"""Load test of `mjave serve`: throughput and latency with micro-batching vs. without.

Starts the server in a subprocess on 127.0.0.1 (a free ephemeral port), sends a bounded load
(default 2,000 requests from 32 concurrent clients, httpx.AsyncClient with timeouts), reports
requests/s, p50/p99 latency, failed requests and the batch sizes the server formed, then does the
same with --max-batch-size 1 and prints the ratio. Traffic only ever goes to 127.0.0.1, every
phase has a time limit, and the server is stopped at the end (exit 1 if any request failed).

    python benchmarks/serve_load.py                    # trains a tiny multimodal model first
    python benchmarks/serve_load.py --no-image         # tiny text-only model, text requests
    python benchmarks/serve_load.py --model runs/model --image-file shirt.jpg
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

HOST = "127.0.0.1"  # never anything else: this script must not send traffic off the machine
COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 170, 60)}
TEXTS = [f"{a} shirt with {b} shoes, slim fit" for a in COLOURS for b in COLOURS if a != b]


# ---- a tiny model (the recipe of tests/test_training.py) ----

def train_tiny_model(folder: Path, use_image: bool, image_size: int) -> Path:
    """A 1-layer, 32-wide random BERT with the real MiniLM tokenizer, trained 3 epochs on a
    24-product colour catalog: seconds to train, but the full inference path."""
    import torch
    from PIL import Image

    from mjave.config import EncoderConfig
    from mjave.config import ModelConfig
    from mjave.config import DataConfig, RunConfig, TrainConfig
    from mjave.training.trainer import train

    bert = folder / "bert"
    from mjave.testing import save_tiny_bert
    save_tiny_bert(bert)
    data = folder / "data"
    (data / "images").mkdir(parents=True)
    names = list(COLOURS)
    rows: dict[str, list] = {"train": [], "valid": []}
    k = 0
    for split, n in (("train", 24), ("valid", 8)):
        for i in range(n):
            a, b = names[i % 3], names[(i + 1) % 3]
            shown = a if (i // 3) % 2 == 0 else b
            cid = f"p{k}"
            k += 1
            Image.new("RGB", (64, 64), COLOURS[shown]).save(data / "images" / f"{cid}.png")
            text = f"{a} shirt with {b} shoes, slim fit"
            begin = text.index(shown + " ") if shown == a else text.index(" " + shown) + 1
            fit = text.index("slim fit")
            rows[split].append({"id": f"s{cid}", "cid": cid, "text": text,
                                "image": f"images/{cid}.png",
                                "spans": [{"attr": "Color", "begin": begin,
                                           "end": begin + len(shown), "value": shown},
                                          {"attr": "Fit", "begin": fit, "end": fit + 8,
                                           "value": "slim fit"}]})
    for split, items in rows.items():
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items),
                                             encoding="utf-8")
    cfg = RunConfig(
        output_dir=str(folder / "model"), features_dir=str(folder / "features"),
        data=DataConfig(train=str(data / "train.jsonl"), valid=str(data / "valid.jsonl"),
                        image_root=str(data)),
        encoder=EncoderConfig(text_encoder=str(bert),
                              image_encoder="efficientnet-lite0" if use_image else "none",
                              image_size=image_size),
        model=ModelConfig(use_image=use_image, attention_size=16),
        train=TrainConfig(epochs=3, batch_size=8, lr=1e-3, patience=100, device="cpu"))
    return Path(train(cfg).output_dir)


def png_base64(colour: tuple[int, int, int], side: int = 64) -> str:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


# ---- server process ----

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """`python -m mjave.serving MODEL` on 127.0.0.1:<free port>, stopped on exit."""

    def __init__(self, model: Path, max_batch_size: int, max_wait_ms: float, log: Path):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mjave.serving", str(model), "--host", HOST,
             "--port", str(self.port), "--max-batch-size", str(max_batch_size),
             "--max-wait-ms", str(max_wait_ms), "--device", "cpu", "--log-level", "warning"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see its log")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server not ready after {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


# ---- load ----

@dataclass
class PhaseResult:
    name: str
    max_batch_size: int
    sent: int = 0
    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    throughput: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    batcher: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[i]


async def run_load(url: str, bodies: list[dict], n_requests: int, concurrency: int,
                   time_limit: float, result: PhaseResult) -> None:
    """`concurrency` clients send until `n_requests` are sent or `time_limit` passes."""
    latencies: list[float] = []
    next_index = 0
    deadline = time.monotonic() + time_limit
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(60.0, connect=5.0),
                                 limits=limits) as client:
        async def worker() -> None:
            nonlocal next_index
            while next_index < n_requests and time.monotonic() < deadline:
                body = bodies[next_index % len(bodies)]
                next_index += 1
                result.sent += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/extract", json=body)
                    key = str(r.status_code)
                except httpx.HTTPError as e:
                    key = type(e).__name__
                latencies.append(time.perf_counter() - t0)
                if key == "200":
                    result.ok += 1
                else:
                    result.failed += 1
                    result.errors[key] = result.errors.get(key, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - t0
    latencies.sort()
    result.throughput = result.ok / result.seconds if result.seconds else 0.0
    result.p50_ms = percentile(latencies, 50) * 1000
    result.p99_ms = percentile(latencies, 99) * 1000


def phase(name: str, model: Path, bodies: list[dict], args: argparse.Namespace,
          max_batch_size: int, log: Path) -> PhaseResult:
    result = PhaseResult(name, max_batch_size)
    server = Server(model, max_batch_size, args.max_wait_ms, log)
    try:
        server.wait_ready()
        warm = PhaseResult("warm-up", max_batch_size)
        asyncio.run(run_load(server.url, bodies, min(2 * args.concurrency, args.requests),
                             args.concurrency, 60.0, warm))
        before = httpx.get(server.url + "/readyz", timeout=5).json()["batcher"]
        asyncio.run(run_load(server.url, bodies, args.requests, args.concurrency,
                             args.time_limit, result))
        after = httpx.get(server.url + "/readyz", timeout=5).json()["batcher"]
        batches = after["batches"] - before["batches"]
        items = after["items"] - before["items"]
        result.batcher = {"batches": batches, "items": items,
                          "mean_batch_size": round(items / batches, 2) if batches else 0.0,
                          "largest_batch": after["largest_batch"]}
    finally:
        server.stop()
    return result


def report(r: PhaseResult) -> str:
    return (f"{r.name:<22} {r.ok:>6}/{r.sent:<6} {r.failed:>6} {r.seconds:>8.1f} "
            f"{r.throughput:>9.1f} {r.p50_ms:>9.1f} {r.p99_ms:>9.1f} "
            f"{r.batcher.get('mean_batch_size', 0):>10}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="model folder (default: train a tiny one)")
    p.add_argument("--requests", type=int, default=2000, help="per phase (default 2000)")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--time-limit", type=float, default=300.0,
                   help="seconds per phase; sending stops after it (default 300)")
    p.add_argument("--no-image", action="store_true",
                   help="text-only requests (and a text-only tiny model)")
    p.add_argument("--image-size", type=int, default=224,
                   help="image encoder input side of the tiny model (default 224)")
    p.add_argument("--image-file", type=Path, help="image sent with every request "
                   "(default: small coloured PNGs)")
    p.add_argument("--skip-unbatched", action="store_true",
                   help="do not measure --max-batch-size 1")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.time_limit <= 0:
        p.error("--requests, --concurrency and --time-limit must be positive")

    with tempfile.TemporaryDirectory(prefix="mjave-serve-load-") as tmp:
        tmp_path = Path(tmp)
        model = args.model
        if model is None:
            t0 = time.perf_counter()
            print(f"training a tiny {'text-only' if args.no_image else 'multimodal'} model ...",
                  flush=True)
            model = train_tiny_model(tmp_path, use_image=not args.no_image,
                                     image_size=args.image_size)
            print(f"  done in {time.perf_counter() - t0:.0f} s: {model}", flush=True)
        if args.no_image:
            bodies = [{"id": i, "text": t} for i, t in enumerate(TEXTS)]
        else:
            images = ([base64.b64encode(args.image_file.read_bytes()).decode("ascii")]
                      if args.image_file else [png_base64(c) for c in COLOURS.values()])
            bodies = [{"id": i, "text": t, "image_base64": images[i % len(images)]}
                      for i, t in enumerate(TEXTS)]
        log = tmp_path / "server.log"
        print(f"load: {args.requests} requests, concurrency {args.concurrency}, "
              f"{'text only' if args.no_image else 'text + image'}, server and client on "
              f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        results = [phase(f"batched (max {args.max_batch_size})", model, bodies, args,
                         args.max_batch_size, log)]
        if not args.skip_unbatched:
            results.append(phase("unbatched (max 1)", model, bodies, args, 1, log))
        failed = sum(r.failed for r in results)
        if failed:
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)

    print(f"\n{'phase':<22} {'ok/sent':>13} {'failed':>6} {'seconds':>8} {'req/s':>9} "
          f"{'p50 ms':>9} {'p99 ms':>9} {'mean batch':>10}")
    for r in results:
        print(report(r))
        if r.errors:
            print(f"  errors: {r.errors}")
    print(f"\nload average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
          "cores (other processes compete with server and client)")
    if len(results) == 2 and results[1].throughput:
        print(f"\nmicro-batching throughput ratio: "
              f"{results[0].throughput / results[1].throughput:.2f}x")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    if failed:
        print(f"FAILED: {failed} requests", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
