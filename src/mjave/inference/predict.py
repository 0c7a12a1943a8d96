"""Run a network over examples and decode: the loop behind validation, evaluation and prediction."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from mjave.data.records import Record
from mjave.data.schema import AttributeSchema
from mjave.inference.decode import Decoded, SpanBatch, TokenLayout, decode_spans
from mjave.model.batches import Example, batches
from mjave.model.config import ModelConfig
from mjave.model.network import TextImageModel


def decode_options(model_config: ModelConfig) -> dict[str, Any]:
    """The decoding keywords of `predict_examples`/`predict_batches` a model's `ModelConfig`
    asks for (category restriction, argmax or viterbi, span-score cut, values per attribute):
    every path that scores
    or serves a model decodes through this, so they all decode alike."""
    return {"restrict_to_category": model_config.restrict_to_category,
            "decoding": model_config.decoding,
            "min_span_score": model_config.min_span_score,
            "max_values_per_attribute": model_config.max_values_per_attribute}


@torch.no_grad()
def predict_examples(net: TextImageModel, examples: Sequence[Example], schema: AttributeSchema,
                     batch_size: int = 256, device: torch.device | str = "cpu",
                     threshold: float = 0.5, pad_id: int = 0,
                     restrict_to_category: bool = False, bf16: bool = False,
                     decoding: str = "argmax", min_span_score: float = 0.0,
                     max_values_per_attribute: int = 0
                     ) -> tuple[list[Decoded], np.ndarray]:
    """Decoded spans and attributes per example, plus the (N, L) attribute probabilities.

    `restrict_to_category`: decode only attributes the schema saw with each record's category.
    `bf16`: run the forward under CUDA bfloat16 autocast (outputs are decoded in float32).
    `decoding`, `min_span_score`, `max_values_per_attribute`: how spans are decoded
    (`mjave.inference.decode.decode_spans`)."""
    decoded: list[Decoded] = []
    for _, spans in predict_batches(net, examples, schema, batch_size, device, threshold,
                                    pad_id, restrict_to_category, bf16, decoding,
                                    min_span_score, max_values_per_attribute):
        decoded.extend(spans.decoded())
    probs = [d.attr_probs for d in decoded]
    return decoded, (np.stack(probs) if probs else np.zeros((0, schema.num_attributes)))


@torch.no_grad()
def predict_batches(net: TextImageModel, examples: Sequence[Example], schema: AttributeSchema,
                    batch_size: int = 256, device: torch.device | str = "cpu",
                    threshold: float = 0.5, pad_id: int = 0,
                    restrict_to_category: bool = False, bf16: bool = False,
                    decoding: str = "argmax", min_span_score: float = 0.0,
                    max_values_per_attribute: int = 0
                    ) -> Iterator[tuple[list[Example], SpanBatch]]:
    """`predict_examples` batch by batch, decoded as arrays (`SpanBatch`): the Extractor builds
    its results from these without a `Span` object per value."""
    net.eval()
    for chunk in batches(examples, batch_size):
        layout = TokenLayout.from_encodings([e.encoded for e in chunk])
        batch = collate_examples(chunk, layout, pad_id=pad_id, device=device)
        with autocast(bf16):
            out = net(batch, with_labels=False)
        tag_probs, attr_probs = host_outputs(out)
        allowed = ([schema.allowed_attributes(e.record.category) for e in chunk]
                   if restrict_to_category else None)
        yield chunk, decode_spans(layout, [e.record.text for e in chunk], tag_probs,
                                  attr_probs, schema, threshold, allowed, decoding,
                                  min_span_score, max_values_per_attribute)


def host_outputs(out: Any) -> tuple[np.ndarray, np.ndarray]:
    """(tag probabilities, attribute probabilities) as float32 numpy: the softmax runs where
    the network ran (bf16 outputs are cast to float32 first), then one copy to the host."""
    return (out.tag_logits.float().softmax(-1).cpu().numpy(),
            out.attr_probs.float().cpu().numpy())


def autocast(bf16: bool) -> Any:
    """CUDA bfloat16 autocast when asked, else nothing at all (CPU runs stay as they were)."""
    if bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def collate_examples(examples: Sequence[Example], layout: TokenLayout, pad_id: int = 0,
                     device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """`mjave.model.batches.collate` of `examples` (the same tensors, keys and order) built from
    their `TokenLayout`: whole-batch numpy, no tensor per example."""
    flat_labels = _flat_labels(examples, layout)
    out = {"input_ids": torch.from_numpy(layout.padded(layout.ids, pad_id)),
           "mask": torch.from_numpy(layout.padded(np.ones(len(layout.ids), dtype=bool), False)),
           "tag_mask": torch.from_numpy(layout.padded(layout.first, False)),
           "tag_labels": torch.from_numpy(layout.padded(flat_labels, -100)),
           "attr_labels": torch.from_numpy(np.stack([e.attr_labels for e in examples]))}
    if any(e.attr_known is not None for e in examples):
        L = len(examples[0].attr_labels)
        out["attr_known"] = torch.from_numpy(np.stack(
            [np.ones(L, dtype=bool) if e.attr_known is None else e.attr_known.astype(bool)
             for e in examples]))
    if examples[0].text_features is not None:
        out["h"] = torch.from_numpy(_text_features(examples, layout))
    if examples[0].image_features is not None:
        img = torch.from_numpy(np.stack([e.image_features for e in examples]).astype(np.float32))
        out["v_global"], out["v"] = img[:, 0], img[:, 1:]
    return {k: v.to(device) for k, v in out.items()}


def _flat_labels(examples: Sequence[Example], layout: TokenLayout) -> np.ndarray:
    """Labels of every token, row after row (prediction encodings are all -100: no copy)."""
    labels = [e.encoded.labels for e in examples]
    if all(lab.count(-100) == len(lab) for lab in labels):
        return np.full(len(layout.ids), -100, dtype=np.int64)
    return np.concatenate([np.asarray(lab, dtype=np.int64) for lab in labels])


def _text_features(examples: Sequence[Example], layout: TokenLayout) -> np.ndarray:
    """(B, T, d) float32 cached token states, zero on padding (as `collate` pads them)."""
    d = examples[0].text_features.shape[-1]
    h = np.zeros((len(examples), int(layout.lengths.max()), d), dtype=np.float32)
    for b, e in enumerate(examples):
        if e.text_features.shape[0] != len(e.encoded):
            raise ValueError(f"record {e.record.id}: stored text features have "
                             f"{e.text_features.shape[0]} tokens but the tokenizer gives "
                             f"{len(e.encoded)}; the feature store was built with other "
                             "encoder settings")
        h[b, :len(e.encoded)] = e.text_features
    return h


def as_records(examples: Sequence[Example], decoded: Sequence[Decoded]) -> list[Record]:
    """Predicted records (same ids, texts and products as the inputs) for the metrics."""
    return [Record(id=e.record.id, text=e.record.text, spans=list(d.spans), cid=e.record.cid,
                   category=e.record.category, image=e.record.image)
            for e, d in zip(examples, decoded)]
