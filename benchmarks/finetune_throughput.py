"""Fine-tuning throughput (instances/s): M-JAVE over an in-loop BERT-base vs bare BERT-base.

Measures training steps with a BERT-base-sized text encoder fine-tuned inside M-JAVE (random
weights, `transformers.BertConfig()` defaults: 12 layers, hidden 768, 12 heads; wrapped in
`HFTextEncoder(fine_tune=True)` as `build_network` does when `encoder.fine_tune` is on) with
the full M-JAVE head (image on, 26 attributes, 49 x 2048 regions), texts of 46 tokens,
batch 32. The reference, timed in the same run, is a bare `BertForTokenClassification`
fine-tuning step on the same token batches (53 BIO tags): what the encoder alone costs.

Both get the same treatment: batches cut on the device from `ResidentData` (no host work),
AdamW (fused on CUDA), clip 5.0, bf16 autocast on CUDA, no per-step `.item()`. The M-JAVE step
uses the trainer's parameter groups (head lr 1e-4, encoder lr 2e-5). `--compile` adds both
models compiled with torch.compile (padded to 46 tokens, static shapes). Warm-up steps (and
compilation) are not timed; CUDA is synchronised around the timed steps.

Issue targets (GPU, H100): fine-tuning with BERT-base >= 3,000 inst/s, where a bare BERT-base
fine-tuning step gives about 3,500 inst/s (the M-JAVE head should cost at most ~15% on top).

    python benchmarks/finetune_throughput.py                       # auto device
    python benchmarks/finetune_throughput.py --device cpu --batch-size 8 --steps 3 --warmup 1
    python benchmarks/finetune_throughput.py --device cuda --compile --json finetune.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch

from mjave.encoders.text import HFTextEncoder
from mjave.model.network import TextImageModel
from mjave.model.registry import build_model
from mjave.training.resident import (FallbackCompiled, ResidentData, autocast_context,
                                     compile_with_fallback, make_train_step, resident_batches)
from train_throughput import (ATTRS, CLIP_NORM, LR, MAX_LEN, TrainPath, describe, endless,
                              model_config, pick_device, random_resident, report,
                              resident_path, run_all)

ENCODER_LR = 2e-5


def bert_config(layers: int, num_labels: int = 2):
    """BERT-base (`BertConfig()` defaults) with `layers` layers."""
    from transformers import BertConfig
    return BertConfig(num_hidden_layers=layers, num_labels=num_labels)


def adamw(groups: list[dict], device: torch.device) -> torch.optim.AdamW:
    return torch.optim.AdamW(groups, lr=ENCODER_LR,
                             **({"fused": True} if device.type == "cuda" else {}))


def make_mjave(layers: int, device: torch.device) -> tuple[TextImageModel, torch.optim.Optimizer]:
    """M-JAVE over a fine-tuned random BERT, as `build_network` assembles it."""
    from transformers import BertModel
    torch.manual_seed(0)
    encoder = HFTextEncoder(BertModel(bert_config(layers)), fine_tune=True, name="random-bert")
    net = TextImageModel(build_model(model_config()), encoder).to(device).train()
    groups = [{"params": list(net.head.parameters()), "lr": LR},
              {"params": list(net.text_encoder.parameters()), "lr": ENCODER_LR}]
    return net, adamw(groups, device)


def make_bert(layers: int, device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    from transformers import BertForTokenClassification
    torch.manual_seed(0)
    model = BertForTokenClassification(bert_config(layers, num_labels=1 + 2 * ATTRS))
    model = model.to(device).train()
    return model, adamw([{"params": list(model.parameters())}], device)


def bert_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
              compile: bool, mode: str | None = None
              ) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """A plain token-classification fine-tuning step (HF's loss over the tagged positions)."""
    bf16 = torch.bfloat16 if device.type == "cuda" else None

    def loss_of(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = batch["tag_labels"].masked_fill(~batch["tag_mask"], -100)
        with autocast_context(device, bf16):
            return model(input_ids=batch["input_ids"], attention_mask=batch["mask"].long(),
                         labels=labels).loss
    forward = compile_with_fallback(loss_of, mode=mode) if compile else loss_of

    def step(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = forward(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        optimizer.step()
        return loss.detach()
    step.compiled = lambda: isinstance(forward, FallbackCompiled) and not forward.fell_back
    return step


def build_paths(args: argparse.Namespace, device: torch.device,
                data: ResidentData) -> list[TrainPath]:
    bf16 = torch.bfloat16 if device.type == "cuda" else None
    paths = []
    for compile in ([False, True] if args.compile else [False]):
        tag = "+compile" if compile else ""
        model, opt = make_bert(args.layers, device)
        paths.append(resident_path(f"bare BERT (reference){tag}",
                             bert_step(model, opt, device, compile, args.compile_mode), data, args,
                             device, compile))
        net, opt = make_mjave(args.layers, device)
        step = make_train_step(net, opt, CLIP_NORM, compile=compile, device=device,
                               autocast_dtype=bf16, compile_mode=args.compile_mode)
        paths.append(resident_path(f"M-JAVE + BERT{tag}", step, data, args, device, compile))
    return paths


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--n", type=int, help="instances resident on the device (default 8 batches)")
    ap.add_argument("--steps", type=int, help="timed steps (default 100 CUDA, 3 CPU)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (default 10 CUDA, 1 CPU)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="time every path this many times, interleaved; report the median")
    ap.add_argument("--layers", type=int, default=12,
                    help="BERT layers (12 = BERT-base; fewer for a quick CPU check)")
    ap.add_argument("--min-len", type=int, default=MAX_LEN,
                    help=f"texts have min-len..{MAX_LEN} tokens (default: all {MAX_LEN})")
    ap.add_argument("--compile", action="store_true", help="add torch.compile'd paths")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode (both models)")
    ap.add_argument("--compile-warmup", type=int, default=3)
    ap.add_argument("--json", type=Path, help="save the figures here")
    args = ap.parse_args(argv)
    cuda = pick_device(args.device).type == "cuda"
    args.n = args.n or 8 * args.batch_size
    args.steps = args.steps or (100 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    if args.n < args.batch_size:
        ap.error("--n must hold at least one batch")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device)
    print(f"device: {describe(device)}; torch {torch.__version__}; BERT {args.layers} layers x "
          f"768, texts {args.min_len}..{MAX_LEN} tokens, batch {args.batch_size}", flush=True)
    data = random_resident(args.n, args.min_len, device, torch.float32, text_features=False)
    results = run_all(build_paths(args, device, data), args.steps, args.rounds, device)
    report("finetune_throughput", results, device, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
