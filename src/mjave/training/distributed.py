"""Data-parallel training under torchrun: `torchrun --nproc_per_node=N -m mjave train ...`.

The trainer calls these helpers; in a single process (no torchrun, or WORLD_SIZE=1) every one of
them is a no-op that hands its input back, so single-process training is unchanged.

What makes N processes train like one (see docs/model.md, "Training on several GPUs or
machines"):

- `train.batch_size` stays the global batch. Every rank draws the same seeded batch order and
  takes a contiguous share of each global batch (`shard`); the step count per epoch, the
  learning-rate schedule and the checkpoints are those of a single process.
- The losses are means over the local batch's examples and tagged tokens, and ranks hold
  different numbers of tagged tokens, so DDP's average of per-rank means is not the global mean.
  `batch_loss` all-reduces the (examples, tagged tokens) counts and reweights each rank's means
  by its share (`mjave.model.losses.shard_loss`), times the world size that DDP divides by: the
  averaged gradient is the gradient of the global batch loss.
- Rank 0 alone writes files, logs at INFO, draws progress bars and evaluates on valid; its
  trainer state (best F1, patience) is then broadcast, so every rank stops at the same epoch.
- Dropout: each rank reseeds per epoch from (seed, epoch, rank), so ranks draw different masks
  and a resumed run draws the ones it would have. Masks differ from a single process's, so a
  distributed run equals a single-process one exactly (to float rounding) only with
  `model.dropout: 0` (and a text encoder without dropout when it is fine-tuned).
"""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import timedelta
from typing import Any, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from mjave.model.losses import shard_loss, tag_count
from mjave.model.mjave import MJAVEOutput

T = TypeVar("T")

# Rank 0 fills the feature store and evaluates while the others wait in a collective call; the
# default timeouts (10 min for NCCL) are too short for a large catalog.
TIMEOUT_ENV = "MJAVE_DIST_TIMEOUT_MIN"
DEFAULT_TIMEOUT_MIN = 120


def launched() -> bool:
    """True in a process that torchrun started as one of several (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def enabled() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if enabled() else 1


def rank() -> int:
    return dist.get_rank() if enabled() else 0


def launch_rank() -> int:
    """This process's global rank as torchrun set it (RANK), readable before the process group
    exists and after it is gone (e.g. by the CLI, to print a summary once)."""
    return int(os.environ.get("RANK", "0")) if launched() else 0


def local_rank() -> int:
    """This process's index on its machine (torchrun's LOCAL_RANK): which GPU it drives."""
    return int(os.environ.get("LOCAL_RANK", "0")) if launched() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes files, logs and evaluates."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """The device this process trains on: `cuda:LOCAL_RANK` under torchrun on CUDA (one GPU per
    process, whatever index the config names), else `device`."""
    if device.type == "cuda" and launched():
        return torch.device("cuda", local_rank())
    return device


def _timeout() -> timedelta:
    return timedelta(minutes=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_MIN)))


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join torchrun's process group for the block: NCCL on CUDA, gloo on CPU. Ranks other than
    0 log warnings only; on success every rank waits for the others before the group goes. A
    no-op in a single process, or when a group already exists (whoever created it destroys it)."""
    if not launched() or dist.is_initialized():
        yield
        return
    device = local_device(device)
    kwargs: dict[str, Any] = {}
    if device.type == "cuda":
        torch.cuda.set_device(device)
        kwargs["device_id"] = device
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=_timeout(),
                            **kwargs)
    logger = logging.getLogger("mjave")
    level = logger.level
    if not is_main():
        logger.setLevel(logging.WARNING)
    try:
        yield
        # Leave together: rank 0 still writes the model folder after the last epoch, and a
        # rank that tears gloo down while its peer is busy can abort at exit (seen in CI as
        # "terminate called without an active exception"). Not on an error: the peers would
        # wait out the timeout for a rank that is gone.
        dist.barrier()
    finally:
        logger.setLevel(level)
        dist.destroy_process_group()


def barrier() -> None:
    if enabled():
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0, then on the first process of every other machine, then on the
    rest. The feature store takes one writer at a time: rank 0 fills it, and processes that see
    the same store (one machine, or a shared filesystem) only read it; a machine that does not
    see it fills its own before its other processes read."""
    if not enabled():
        yield
        return
    stage = 0 if rank() == 0 else 1 if local_rank() == 0 else 2
    for turn in range(3):
        if turn == stage:
            yield
        dist.barrier()


def shard(chunk: Sequence[T]) -> tuple[list[T], bool]:
    """This rank's contiguous share of a global batch, and whether it counts. A global batch
    smaller than the world leaves some ranks nothing: they get its first example as a stand-in
    (False) that `batch_loss` weighs 0, so they still join the gradient all-reduce."""
    n, r, w = len(chunk), rank(), world_size()
    part = list(chunk[r * n // w:(r + 1) * n // w])
    return (part, True) if part else ([chunk[0]], False)


_output_registered = False


def _register_output() -> None:
    """Make `MJAVEOutput` a pytree node. DDP finds a module's output tensors with pytree and
    would see the dataclass as an opaque leaf: with a static graph it then never all-reduces
    the gradients of the first step."""
    global _output_registered
    if not _output_registered:
        torch.export.register_dataclass(MJAVEOutput, serialized_type_name="mjave.MJAVEOutput")
        _output_registered = True


def wrap(net: nn.Module, device: torch.device) -> nn.Module:
    """`net` under DistributedDataParallel, which averages gradients over ranks in `backward`;
    `net` itself in a single process. Every step uses the same parameters (static graph), and
    those no loss reaches (BERT's pooler) keep no gradient, as in a single process."""
    if not enabled():
        return net
    _register_output()
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=ids, static_graph=True)


def batch_loss(output: Any, batch: dict[str, Tensor], counts: bool = True) -> tuple[Tensor, Tensor]:
    """(what to backpropagate, this rank's part of the global batch loss) for a model output
    with `loss` and `loss_value` (`MJAVEOutput`). In a single process both are `output.loss`.
    `counts=False` (a stand-in shard) weighs the output 0."""
    if not enabled():
        return output.loss, output.loss
    local = torch.zeros(2, dtype=torch.long, device=output.loss.device)
    if counts:
        local[0] = batch["mask"].shape[0]
        local[1] = tag_count(batch["tag_labels"], batch["tag_mask"].bool() & batch["mask"].bool())
    totals = local.clone()
    dist.all_reduce(totals)
    part = shard_loss(output.loss, output.loss_value, local, totals)
    return part * world_size(), part.detach()  # DDP divides the summed gradients by the world


def _collective_device() -> torch.device:
    return (torch.device("cuda", torch.cuda.current_device())
            if dist.get_backend() == "nccl" else torch.device("cpu"))


def sum_over_ranks(values: list[float]) -> list[float]:
    """Element-wise sums over ranks (per-step parts of the loss -> global batch losses)."""
    if not enabled():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return t.tolist()


def broadcast_object(obj: T) -> T:
    """Rank 0's `obj` on every rank (the trainer state, so early stopping agrees)."""
    if not enabled():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_collective_device())
    return box[0]


def check_same(value: Any, what: str) -> None:
    """Stop every rank with one message when the ranks disagree on `value`."""
    if not enabled():
        return
    values: list[Any] = [None] * world_size()
    dist.all_gather_object(values, value)
    if any(v != values[0] for v in values):
        raise RuntimeError(f"the {world_size()} processes disagree on {what}: {values}")


def seed_dropout(seed: int, epoch: int) -> None:
    """Distributed only: reseed the global RNG (dropout) from (seed, epoch, rank) at the start of
    each epoch, so ranks draw different masks and a resumed run draws the same ones (the
    checkpoint holds rank 0's RNG only). A single process keeps its RNG running on."""
    if enabled():
        torch.manual_seed((seed + 1) * 1_000_003 + epoch * 65_537 + rank())
