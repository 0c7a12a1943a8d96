"""Frozen-feature training data kept resident on the device, and a (optionally compiled) step.

With cached text and image features, the per-batch work of the ordinary path (`batches` then
`collate`: a Python loop over the examples, tensors built from lists, a host-to-device copy of
~70 MB per batch of 128 at the paper's shapes) costs more than the M-JAVE head itself on a GPU.
`ResidentData` pads every example once, up front, into (N, T_max, ...) tensors on the device;
`resident_batches` then cuts a batch by indexing there. It draws the same permutation as
`batches` and trims each batch to its longest text, so its batches equal
`collate(batches(...))` exactly (features kept in float32) and training matches step for step.

Memory at the paper's shapes (71,194 texts of 46 tokens x 768, 1 + 49 image vectors x 2048):
about 39 GB in float32, 20 GB with `feature_dtype=torch.bfloat16` (the features only; ids,
masks and labels stay exact). bf16 features are meant for bf16 autocast, which rounds the
inputs of every matmul to bf16 anyway.

Padding (`pad_to`):
- `"batch"` (default): trim to the batch's longest text, as `collate` does. Least compute, but
  the sequence length changes from batch to batch, so `torch.compile` sees varying shapes
  (recompiles, then dynamic-shape kernels) and CUDA graphs cannot be reused.
- `"dataset"`: every batch padded to the dataset's longest text. Static shapes (one compiled
  graph, CUDA graphs usable), paid for with the padding compute (attention grows with T^2, the
  rest with T). M-JAVE masks padding out of every softmax, sum and max, so the loss is the same
  up to float rounding, not bit for bit.
`drop_last=True` also drops the short last batch, the other shape change within an epoch.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass, fields
from typing import Callable, Iterator, Literal, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from mjave.model.batches import Example, check_text_features

log = logging.getLogger(__name__)

PadTo = Literal["batch", "dataset"]
FEATURE_KEYS = ("h", "v_global", "v")
SEQUENCE_KEYS = ("input_ids", "mask", "tag_mask", "tag_labels", "h", "knowledge")   # (N, T, ...)
_CHUNK = 4096   # examples copied to the device at a time, to bound host memory while building


@dataclass
class ResidentData:
    """Every example padded to T_max, on one device. Host copies of the lengths and the
    partial-label flags let batches be cut and trimmed without reading the device back."""

    input_ids: Tensor            # (N, T) long, pad_id beyond each text
    mask: Tensor                 # (N, T) bool
    tag_mask: Tensor             # (N, T) bool
    tag_labels: Tensor           # (N, T) long, -100 beyond each text
    attr_labels: Tensor          # (N, L) as the examples hold them (float32)
    lengths: np.ndarray          # (N,) host: tokens per text
    partial: np.ndarray          # (N,) host bool: the example carries attr_known
    attr_known: Tensor | None = None   # (N, L) bool, all True for fully labelled examples
    h: Tensor | None = None            # (N, T, text_dim) cached token states
    v_global: Tensor | None = None     # (N, image_dim)
    v: Tensor | None = None            # (N, K, image_dim)
    knowledge: Tensor | None = None    # (N, T, 2L) known-value flags (`model.value_knowledge`)
    implicit_labels: Tensor | None = None   # (N, V) implicit head targets (`implicit_values`)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def max_length(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def device(self) -> torch.device:
        return self.input_ids.device

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return len(self) // batch_size if drop_last else -(-len(self) // batch_size)

    def nbytes(self) -> int:
        """Device memory the tensors hold."""
        return sum(t.numel() * t.element_size() for t in self._tensors().values())

    def _tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if isinstance(getattr(self, f.name), Tensor)}

    @classmethod
    def from_examples(cls, examples: Sequence[Example], pad_id: int = 0,
                      device: torch.device | str = "cpu",
                      feature_dtype: torch.dtype = torch.float32) -> "ResidentData":
        """Pad all examples once, with `collate`'s conventions. Features are copied in chunks
        of `_CHUNK` examples, so the host never holds a second full copy of them."""
        if not examples:
            raise ValueError("no examples to keep resident")
        device = torch.device(device)
        lengths = np.array([len(e.encoded) for e in examples], dtype=np.int64)
        T = int(lengths.max())
        partial = np.array([e.attr_known is not None for e in examples], dtype=bool)
        data = cls(**_text_tensors(examples, T, pad_id, device), lengths=lengths, partial=partial,
                   attr_known=_known_tensor(examples, device) if partial.any() else None)
        if examples[0].text_features is not None:
            check_text_features(examples)
            d = examples[0].text_features.shape[-1]
            data.h = _chunked(examples, (T, d), feature_dtype, device, _fill_text)
        if examples[0].knowledge is not None:
            d = examples[0].knowledge.shape[-1]
            data.knowledge = _chunked(examples, (T, d), torch.float32, device, _fill_knowledge)
        if examples[0].implicit_labels is not None:
            data.implicit_labels = torch.from_numpy(
                np.stack([e.implicit_labels for e in examples])).to(device)
        if examples[0].image_features is not None:
            rows, d = examples[0].image_features.shape
            data.v_global = _chunked(examples, (d,), feature_dtype, device, _fill_global)
            data.v = _chunked(examples, (rows - 1, d), feature_dtype, device, _fill_regions)
        return data


def _text_tensors(examples: Sequence[Example], T: int, pad_id: int,
                  device: torch.device) -> dict[str, Tensor]:
    N = len(examples)
    input_ids = np.full((N, T), pad_id, dtype=np.int64)
    mask = np.zeros((N, T), dtype=bool)
    tag_mask = np.zeros((N, T), dtype=bool)
    labels = np.full((N, T), -100, dtype=np.int64)
    for i, e in enumerate(examples):
        n = len(e.encoded)
        input_ids[i, :n] = e.encoded.input_ids
        mask[i, :n] = True
        tag_mask[i, :n] = e.encoded.label_mask
        labels[i, :n] = e.encoded.labels
    host = {"input_ids": input_ids, "mask": mask, "tag_mask": tag_mask, "tag_labels": labels,
            "attr_labels": np.stack([e.attr_labels for e in examples])}
    return {k: torch.from_numpy(v).to(device) for k, v in host.items()}


def _known_tensor(examples: Sequence[Example], device: torch.device) -> Tensor:
    L = len(examples[0].attr_labels)
    known = np.stack([np.ones(L, dtype=bool) if e.attr_known is None
                      else e.attr_known.astype(bool) for e in examples])
    return torch.from_numpy(known).to(device)


def _fill_text(buf: np.ndarray, e: Example) -> None:
    buf[:len(e.encoded)] = e.text_features


def _fill_knowledge(buf: np.ndarray, e: Example) -> None:
    buf[:len(e.encoded)] = e.knowledge


def _fill_global(buf: np.ndarray, e: Example) -> None:
    buf[...] = e.image_features[0]


def _fill_regions(buf: np.ndarray, e: Example) -> None:
    buf[...] = e.image_features[1:]


def _chunked(examples: Sequence[Example], tail: tuple[int, ...], dtype: torch.dtype,
             device: torch.device, fill: Callable[[np.ndarray, Example], None]) -> Tensor:
    """(N, *tail) tensor of `dtype` on `device`, filled `_CHUNK` examples at a time through a
    float32 host buffer (zeros where `fill` writes nothing: the padding)."""
    out = torch.empty((len(examples), *tail), dtype=dtype, device=device)
    for s in range(0, len(examples), _CHUNK):
        chunk = examples[s:s + _CHUNK]
        buf = np.zeros((len(chunk), *tail), dtype=np.float32)
        for i, e in enumerate(chunk):
            fill(buf[i], e)
        out[s:s + len(chunk)] = torch.from_numpy(buf).to(device=device, dtype=dtype)
    return out


def batch_order(n: int, generator: torch.Generator | None) -> Tensor:
    """The example order of `mjave.model.batches.batches`: the same randperm call on the same
    generator (so it advances the generator identically), or 0..n-1 without one."""
    if generator is None:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)


def resident_batches(data: ResidentData, batch_size: int,
                     generator: torch.Generator | None = None, pad_to: PadTo = "batch",
                     drop_last: bool = False, with_attr_known: bool = True,
                     feature_dtype: torch.dtype | None = None,
                     with_index: bool = False) -> Iterator[dict[str, Tensor]]:
    """Batches in the order `batches(examples, batch_size, generator)` gives, cut on the device.

    Keys and values are those of `collate` (`attr_known` only in batches holding a partially
    labelled example, and only when `with_attr_known`). Per batch the host does a slice of
    precomputed numpy arrays and launches gather kernels: no host copy, no sync.
    `feature_dtype` casts h / v_global / v (None: as stored). `with_index`: each batch also
    holds `index`, its rows' positions in `data` (distillation looks its targets up by it)."""
    if pad_to not in ("batch", "dataset"):
        raise ValueError(f"pad_to must be 'batch' or 'dataset', got {pad_to!r}")
    order = batch_order(len(data), generator)
    host_order = order.numpy()
    index = order.to(data.device)
    n_batches = data.num_batches(batch_size, drop_last)
    if n_batches == 0:
        return
    starts = np.arange(n_batches) * batch_size
    used = host_order[:min(len(data), n_batches * batch_size)]   # without a dropped last batch
    batch_T = (np.full(n_batches, data.max_length) if pad_to == "dataset"
               else np.maximum.reduceat(data.lengths[used], starts))
    partial = np.logical_or.reduceat(data.partial[used], starts)
    tensors = data._tensors()
    if not (with_attr_known and data.attr_known is not None):
        tensors.pop("attr_known", None)
    for b, s in enumerate(starts):
        idx = index[s:s + batch_size]
        batch = _cut(tensors, idx, int(batch_T[b]), bool(partial[b]), feature_dtype)
        if with_index:
            batch["index"] = idx
        yield batch


def _cut(tensors: dict[str, Tensor], idx: Tensor, T: int, partial: bool,
         feature_dtype: torch.dtype | None) -> dict[str, Tensor]:
    """One batch: rows `idx`, sequences trimmed to T before the gather (less to copy)."""
    out = {}
    for key, t in tensors.items():
        if key == "attr_known" and not partial:
            continue
        if key in SEQUENCE_KEYS:
            t = t[:, :T]
        t = t[idx]   # advanced indexing: on CPU ~6x faster than index_select for wide rows
        if feature_dtype is not None and key in FEATURE_KEYS:
            t = t.to(feature_dtype)
        out[key] = t
    return out


# --------------------------------------------------------------------------------------------
# One training step, eager or compiled
# --------------------------------------------------------------------------------------------


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """bf16/fp16 autocast on CUDA when `dtype` is given; nothing otherwise (CPU stays float32,
    as in the trainer)."""
    if dtype is not None and device.type == "cuda":
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def compile_available() -> bool:
    """Whether this torch build offers torch.compile at all (it may still fail on first use,
    e.g. without a C++ compiler, which `make_train_step` falls back from)."""
    return hasattr(torch, "compile") and hasattr(torch, "_dynamo")


def make_train_step(net: nn.Module, optimizer: torch.optim.Optimizer, clip_norm: float,
                    compile: bool = False, *, device: torch.device | str | None = None,
                    autocast_dtype: torch.dtype | None = None, unknown_attr_weight: float = 0.0,
                    scheduler: object | None = None, compile_backend: str | Callable = "inductor",
                    compile_mode: str | None = None, dynamic: bool | None = None
                    ) -> Callable[[dict[str, Tensor]], Tensor]:
    """`step(batch) -> loss` doing what the trainer's loop body does (forward under autocast,
    zero_grad, backward, clip, optimizer and scheduler step) but returning the loss as a
    detached device tensor: no `.item()`, so the host never waits for the GPU.

    `compile=True` compiles the forward and loss (backward follows through AOT autograd); the
    optimizer step stays eager. Should compiling fail (no compiler, an unsupported op), the step
    warns once and runs eagerly from then on; the failure happens before backward, so no update
    is lost or doubled. `dynamic`: torch.compile's flag (None: recompile once on a new shape,
    then go dynamic); with `pad_to="dataset"` and `drop_last` shapes never change.
    `step.compiled()` tells whether the step currently runs compiled."""
    device = torch.device(device) if device is not None else next(net.parameters()).device

    def loss_of(batch: dict[str, Tensor]) -> Tensor:
        with autocast_context(device, autocast_dtype):
            return net(batch, unknown_attr_weight=unknown_attr_weight).loss

    forward = (compile_with_fallback(loss_of, backend=compile_backend, mode=compile_mode,
                                     dynamic=dynamic) if compile else loss_of)
    params = [p for p in net.parameters() if p.requires_grad]

    def step(batch: dict[str, Tensor]) -> Tensor:
        loss = forward(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return loss.detach()
    step.compiled = lambda: isinstance(forward, FallbackCompiled) and not forward.fell_back
    return step


def compile_with_fallback(fn: Callable[[dict[str, Tensor]], Tensor],
                          backend: str | Callable = "inductor", mode: str | None = None,
                          dynamic: bool | None = None
                          ) -> "FallbackCompiled | Callable[[dict[str, Tensor]], Tensor]":
    """`torch.compile(fn)` that runs `fn` eagerly should compiling fail; `fn` itself (with a
    warning) where this torch build has no torch.compile."""
    if not compile_available():
        warnings.warn("torch.compile is not available in this torch build; training eagerly")
        return fn
    return FallbackCompiled(torch.compile(fn, backend=backend, mode=mode, dynamic=dynamic), fn)


class FallbackCompiled:
    """`compiled`, switching to `eager` for good the first time compiling raises. A genuine
    error of the model raises again from the eager call, so nothing is hidden."""

    def __init__(self, compiled: Callable[[dict[str, Tensor]], Tensor],
                 eager: Callable[[dict[str, Tensor]], Tensor]):
        self.compiled, self.eager = compiled, eager
        self.fell_back = False

    def __call__(self, batch: dict[str, Tensor]) -> Tensor:
        if self.fell_back:
            return self.eager(batch)
        try:
            return self.compiled(batch)
        except Exception as e:  # noqa: BLE001 - any compiler failure means: run eagerly
            warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e)[:200]}); "
                          "training eagerly")
            log.warning("torch.compile failed, training eagerly: %s", e)
            self.fell_back = True
            return self.eager(batch)


__all__ = ["FallbackCompiled", "ResidentData", "autocast_context", "batch_order",
           "compile_available", "compile_with_fallback", "make_train_step", "resident_batches"]
