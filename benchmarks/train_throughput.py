"""Frozen-feature training throughput of M-JAVE (instances/s), current path vs resident tensors.

Measures training steps of the full M-JAVE model (ModelConfig defaults, image on, 26 attributes:
the paper's Table 2) on random cached features at the paper's shapes: text 46 tokens x 768,
image 2048-d global + 49 x 2048 regional, batch 128. Every figure comes from the same run:

- reference "plain eager": the trainer's current loop, single process: `batches` + `collate`
  per batch from numpy `Example`s (host padding, pageable host-to-device copy), the forward
  under bf16 autocast on CUDA (the trainer's `train.bf16` default; float32 on CPU), Adam,
  clip 5.0, and `loss.item()` after every step.
- "resident": the same model and step, batches cut on the device from `ResidentData`
  (mjave.training.resident) and no per-step `.item()` (the losses are summed on the device).
- "resident+bf16+fused" (CUDA): bf16-stored features and fused Adam.
- "...+compile" (`--compile`): the forward and loss compiled with torch.compile, batches padded
  to the dataset's max length with the short last batch dropped (static shapes).

Timing excludes warm-up steps (and compilation); CUDA is synchronised around the timed steps.
All paths time full batches only. `--rounds R` times every path R times, interleaved, and
reports each path's median round (load on a shared machine then hits all paths alike). On CUDA
the float32 and the bf16 resident copies coexist: about 59 GB at N = 71,194, so an 80 GB GPU;
lower `--n` on a smaller one. The reference uses a pool of `--ref-pool` host examples
(its cost per step does not depend on N); on CUDA with N > pool the resident data are drawn
directly on the device (the same distributions; `ResidentData.from_examples` would copy the
same amount). On CPU N <= pool, so the resident data are built from the reference's examples.

Issue targets (GPU, H100): frozen-feature training >= 30,000 inst/s, where a plain eager head
gives about 15,000 inst/s.

    python benchmarks/train_throughput.py                          # auto device, N = 71,194 on GPU
    python benchmarks/train_throughput.py --device cpu --n 1024 --steps 6 --warmup 2
    python benchmarks/train_throughput.py --device cuda --compile --json train.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from mjave.data.records import Record
from mjave.data.tagging import Encoded
from mjave.model.batches import Example, batches, collate
from mjave.config import ModelConfig
from mjave.model.network import TextImageModel
from mjave.model.registry import build_model
from mjave.training.resident import (ResidentData, autocast_context, make_train_step,
                                     resident_batches)

TEXT_DIM, IMAGE_DIM, REGIONS, ATTRS, MAX_LEN = 768, 2048, 49, 26, 46
PAD_ID, CLIP_NORM, LR = 0, 5.0, 1e-4


@dataclass
class Result:
    name: str
    inst_per_s: float
    seconds: float
    steps: int
    instances: int
    peak_gib: float | None = None
    ratio: float | None = None       # vs the reference


# ------------------------------------------------------------------ data


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device here")
    return torch.device(name)


def random_lengths(n: int, min_len: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(min_len, MAX_LEN + 1, size=n)


def random_encoded(n_tokens: int, rng: np.random.Generator) -> Encoded:
    """[CLS] x_1 .. x_n [SEP], one piece per word (char-level, as MEPAVE), random BIO tags."""
    words = n_tokens - 2
    return Encoded(input_ids=[101, *rng.integers(1000, 20000, words).tolist(), 102],
                   offsets=[(0, 0)] * n_tokens, word_ids=[None, *range(words), None],
                   labels=[-100, *rng.integers(0, 1 + 2 * ATTRS, words).tolist(), -100])


def random_examples(n: int, min_len: int, seed: int = 0) -> list[Example]:
    """Host examples with numpy features, as `build_examples` returns them from the store."""
    rng = np.random.default_rng(seed)
    out = []
    for i, t in enumerate(random_lengths(n, min_len, rng)):
        out.append(Example(
            Record(id=str(i), text=""), random_encoded(int(t), rng),
            (rng.random(ATTRS) < 0.1).astype(np.float32),
            rng.standard_normal((int(t), TEXT_DIM), dtype=np.float32),
            rng.standard_normal((1 + REGIONS, IMAGE_DIM), dtype=np.float32)))
    return out


def random_resident(n: int, min_len: int, device: torch.device, dtype: torch.dtype,
                    text_features: bool = True, seed: int = 0) -> ResidentData:
    """`ResidentData` drawn on the device (no host copy of N x 550 KB of features)."""
    rng = np.random.default_rng(seed)
    lengths = random_lengths(n, min_len, rng)
    g = torch.Generator(device=device).manual_seed(seed)
    pos = torch.arange(MAX_LEN, device=device)
    length = torch.from_numpy(lengths).to(device)[:, None]
    mask = pos < length
    tag_mask = mask & (pos > 0) & (pos < length - 1)
    ids = torch.randint(1000, 20000, (n, MAX_LEN), device=device, generator=g)
    tags = torch.randint(0, 1 + 2 * ATTRS, (n, MAX_LEN), device=device, generator=g)
    data = ResidentData(
        input_ids=ids.masked_fill(~mask, PAD_ID), mask=mask, tag_mask=tag_mask,
        tag_labels=tags.masked_fill(~tag_mask, -100),
        attr_labels=(torch.rand(n, ATTRS, device=device, generator=g) < 0.1).float(),
        lengths=lengths, partial=np.zeros(n, dtype=bool))
    if text_features:
        data.h = _randn((n, MAX_LEN, TEXT_DIM), device, dtype, g) * mask[..., None]
    data.v_global = _randn((n, IMAGE_DIM), device, dtype, g)
    data.v = _randn((n, REGIONS, IMAGE_DIM), device, dtype, g)
    return data


def _randn(shape: tuple[int, ...], device: torch.device, dtype: torch.dtype,
           g: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, device=device, generator=g).to(dtype)


def to_dtype(data: ResidentData, dtype: torch.dtype) -> ResidentData:
    """Features re-stored in `dtype`, field by field so peak memory grows by one field only."""
    for key in ("h", "v_global", "v"):
        if getattr(data, key) is not None:
            setattr(data, key, getattr(data, key).to(dtype))
    return data


def endless(make_epoch: Callable[[torch.Generator], Iterator], seed: int = 0) -> Iterator:
    """Epoch after epoch, each shuffled by a generator seeded like the trainer's."""
    epoch = 0
    while True:
        epoch += 1
        yield from make_epoch(torch.Generator().manual_seed(seed * 100_003 + epoch))


# ------------------------------------------------------------------ model and timing


def model_config() -> ModelConfig:
    return ModelConfig(num_attributes=ATTRS, use_image=True)


def make_net(device: torch.device, seed: int = 0) -> TextImageModel:
    torch.manual_seed(seed)
    return TextImageModel(build_model(model_config())).to(device).train()


def adam(net: torch.nn.Module, fused: bool) -> torch.optim.Optimizer:
    """The trainer's default optimizer (Adam, lr 1e-4); `fused` only where torch has it."""
    return torch.optim.Adam(net.parameters(), lr=LR, **({"fused": True} if fused else {}))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class TrainPath:
    """One way of training: `step_once()` runs a step and returns its batch size."""

    name: str
    step_once: Callable[[], int]
    warmup: int
    finish: Callable[[], None] = lambda: None   # checks run after the timing
    compiled: Callable[[], bool] | None = None  # compiled paths: still compiled at the end?

    def label(self) -> str:
        failed = self.compiled is not None and not self.compiled()
        return self.name + (" [compile failed: ran eager]" if failed else "")


def measure(path: TrainPath, steps: int, device: torch.device) -> Result:
    """Instances/s over `steps` calls of `step_once`, the device synchronised at both ends."""
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    instances = sum(path.step_once() for _ in range(steps))
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return Result(path.name, instances / seconds, seconds, steps, instances, peak)


def run_all(paths: list[TrainPath], steps: int, rounds: int, device: torch.device) -> list[Result]:
    """Warm every path up, then time them in turn, `rounds` times (interleaved, so drifting
    load on a shared machine hits all alike), keeping each path's median round."""
    for path in paths:
        for _ in range(path.warmup):
            path.step_once()
    timed: dict[str, list[Result]] = {p.name: [] for p in paths}
    for r in range(rounds):
        for path in paths:
            res = measure(path, steps, device)
            timed[path.name].append(res)
            print(f"  round {r + 1}: {path.name:<30} {res.inst_per_s:>10,.1f} inst/s  "
                  f"({steps} steps, {res.seconds:.2f} s)", flush=True)
    medians = []
    for path in paths:
        path.finish()
        rs = sorted(timed[path.name], key=lambda x: x.inst_per_s)
        medians.append(dataclasses.replace(rs[len(rs) // 2], name=path.label()))
    return medians


def reference(examples: list[Example], args: argparse.Namespace, device: torch.device) -> TrainPath:
    """The trainer's loop body on host-collated batches, `loss.item()` every step."""
    net = make_net(device)
    optimizer = adam(net, fused=False)
    bf16 = torch.bfloat16 if device.type == "cuda" else None
    full = lambda g: (c for c in batches(examples, args.batch_size, g)  # noqa: E731
                      if len(c) == args.batch_size)
    chunks = endless(full)
    losses: list[float] = []

    def step_once() -> int:
        batch = collate(next(chunks), pad_id=PAD_ID, device=device)
        with autocast_context(device, bf16):
            output = net(batch, unknown_attr_weight=0.0)
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), CLIP_NORM)
        optimizer.step()
        losses.append(output.loss.item())
        return args.batch_size
    return TrainPath("plain eager (reference)", step_once, args.warmup)


def resident(name: str, data: ResidentData, args: argparse.Namespace, device: torch.device,
             fused: bool, compile: bool) -> TrainPath:
    """`make_train_step` on device-cut batches."""
    net = make_net(device)
    bf16 = torch.bfloat16 if device.type == "cuda" else None
    step = make_train_step(net, adam(net, fused), CLIP_NORM, compile=compile, device=device,
                           autocast_dtype=bf16, compile_mode=args.compile_mode)
    return resident_path(name, step, data, args, device, compile)


def resident_path(name: str, step: Callable, data: ResidentData, args: argparse.Namespace,
                  device: torch.device, compile: bool) -> TrainPath:
    """Steps over endless device-cut batches (static shapes when compiled); losses summed on
    the device and checked once at the end, so timing never waits on a host read."""
    cut = endless(lambda g: resident_batches(data, args.batch_size, g, drop_last=True,
                                             pad_to="dataset" if compile else "batch"))
    total = torch.zeros((), device=device)

    def step_once() -> int:
        total.add_(step(next(cut)))
        return args.batch_size

    def finish() -> None:
        if not torch.isfinite(total):
            raise RuntimeError(f"{name}: non-finite loss")
    warmup = args.warmup + (args.compile_warmup if compile else 0)
    return TrainPath(name, step_once, warmup, finish, step.compiled if compile else None)


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--n", type=int, help="training instances (default 71,194 on CUDA, 1,024 "
                                          "on CPU)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, help="timed steps (default 200 CUDA, 6 CPU)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (default 20 CUDA, 2 CPU)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="time every path this many times, interleaved; report the median")
    ap.add_argument("--min-len", type=int, default=MAX_LEN,
                    help=f"texts have min-len..{MAX_LEN} tokens (default: all {MAX_LEN})")
    ap.add_argument("--ref-pool", type=int, default=2048,
                    help="host examples the reference cycles through")
    ap.add_argument("--compile", action="store_true", help="add torch.compile candidates")
    ap.add_argument("--compile-mode", default=None,
                    help="torch.compile mode (default, reduce-overhead, max-autotune, ...)")
    ap.add_argument("--compile-warmup", type=int, default=3,
                    help="extra untimed steps for compiled candidates")
    ap.add_argument("--json", type=Path, help="save the figures here")
    args = ap.parse_args(argv)
    cuda = pick_device(args.device).type == "cuda"
    args.n = args.n or (71_194 if cuda else 1_024)
    args.steps = args.steps or (200 if cuda else 6)
    args.warmup = args.warmup if args.warmup is not None else (20 if cuda else 2)
    if not 3 <= args.min_len <= MAX_LEN:
        ap.error(f"--min-len must lie in 3..{MAX_LEN}")
    if args.n < args.batch_size:
        ap.error("--n must hold at least one batch")
    return args


def candidates(args: argparse.Namespace, device: torch.device,
               examples: list[Example]) -> list[TrainPath]:
    """The resident variants. On CUDA the float32 and the bf16 copy of the data coexist
    (about 59 GB at N = 71,194: fits an 80 GB GPU)."""
    cuda = device.type == "cuda"
    start = time.perf_counter()
    data = (ResidentData.from_examples(examples, PAD_ID, device) if args.n <= len(examples)
            else random_resident(args.n, args.min_len, device, torch.float32))
    sync(device)
    print(f"  resident data: {len(data):,} instances, {data.nbytes() / 2**30:.2f} GiB float32, "
          f"built in {time.perf_counter() - start:.1f} s", flush=True)
    out = [resident("resident", data, args, device, fused=False, compile=False)]
    label = "resident"
    if cuda:
        data = to_dtype(dataclasses.replace(data), torch.bfloat16)
        label = "resident+bf16+fused"
        out.append(resident(label, data, args, device, fused=True, compile=False))
    if args.compile:
        out.append(resident(label + "+compile", data, args, device, fused=cuda, compile=True))
    return out


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def report(benchmark: str, results: list[Result], device: torch.device,
           args: argparse.Namespace) -> None:
    """Print each path's instances/s and its ratio to the first (the reference); save JSON."""
    for r in results:
        r.ratio = r.inst_per_s / results[0].inst_per_s
    print(f"\n{'path':<32} {'inst/s':>10} {'vs reference':>13}   on {describe(device)}")
    for r in results:
        print(f"{r.name:<32} {r.inst_per_s:>10,.1f} {r.ratio:>12.2f}x")
    if args.json:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        args.json.write_text(json.dumps({"benchmark": benchmark, "device": describe(device),
                                         "torch": torch.__version__, "args": settings,
                                         "results": [asdict(r) for r in results]}, indent=2)
                             + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device)
    print(f"device: {describe(device)}; torch {torch.__version__}; N={args.n:,}, batch "
          f"{args.batch_size}, texts {args.min_len}..{MAX_LEN} x {TEXT_DIM}, image 1+{REGIONS} "
          f"x {IMAGE_DIM}, {ATTRS} attributes", flush=True)
    examples = random_examples(min(args.n, args.ref_pool), args.min_len)
    paths = [reference(examples, args, device), *candidates(args, device, examples)]
    results = run_all(paths, args.steps, args.rounds, device)
    report("train_throughput", results, device, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
