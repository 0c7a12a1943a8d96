"""Run a network over examples and decode: the loop behind validation, evaluation and prediction."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from mjave.data.formats.predictions import implicit_extra
from mjave.data.records import Record
from mjave.data.schema import AttributeSchema
from mjave.inference.crf import Transitions
from mjave.inference.decode import (Decoded, SpanBatch, TokenLayout, decode_spans,
                                    implicit_probs)
from mjave.model.batches import Example, batches, collate
from mjave.config import ModelConfig
from mjave.model.network import TextImageModel


def decode_options(model_config: ModelConfig) -> dict[str, Any]:
    """The decoding keywords of `predict_examples`/`predict_batches` a model's `ModelConfig`
    asks for (category restriction, argmax, viterbi or crf, span-score cut, values per attribute):
    every path that scores
    or serves a model decodes through this, so they all decode alike."""
    return {"restrict_to_category": model_config.restrict_to_category,
            "decoding": model_config.decoding,
            "min_span_score": model_config.min_span_score,
            "max_values_per_attribute": model_config.max_values_per_attribute,
            "implicit_threshold": model_config.implicit_threshold,
            "implicit_agreement": model_config.implicit_agreement}


@torch.no_grad()
def predict_examples(net: TextImageModel, examples: Sequence[Example], schema: AttributeSchema,
                     batch_size: int = 256, device: torch.device | str = "cpu",
                     threshold: float = 0.5, pad_id: int = 0,
                     restrict_to_category: bool = False, bf16: bool = False,
                     decoding: str = "argmax", min_span_score: float = 0.0,
                     max_values_per_attribute: int = 0, implicit_threshold: float = 0.5,
                     implicit_agreement: bool = False
                     ) -> tuple[list[Decoded], np.ndarray]:
    """Decoded spans and attributes per example, plus the (N, L) attribute probabilities.

    `restrict_to_category`: decode only attributes the schema saw with each record's category.
    `bf16`: run the forward under CUDA bfloat16 autocast (outputs are decoded in float32).
    `decoding`, `min_span_score`, `max_values_per_attribute`: how spans are decoded
    (`mjave.inference.decode.decode_spans`); `implicit_threshold`: the least score of a value
    named without a span (models with `implicit_values`); `implicit_agreement`: of a closed
    attribute's spans with different values keep the photo's (`SpanBatch.agree_with_implicit`)."""
    decoded: list[Decoded] = []
    for _, spans in predict_batches(net, examples, schema, batch_size, device, threshold,
                                    pad_id, restrict_to_category, bf16, decoding,
                                    min_span_score, max_values_per_attribute,
                                    implicit_threshold, implicit_agreement):
        decoded.extend(spans.decoded())
    probs = [d.attr_probs for d in decoded]
    return decoded, (np.stack(probs) if probs else np.zeros((0, schema.num_attributes)))


@torch.no_grad()
def predict_batches(net: TextImageModel, examples: Sequence[Example], schema: AttributeSchema,
                    batch_size: int = 256, device: torch.device | str = "cpu",
                    threshold: float = 0.5, pad_id: int = 0,
                    restrict_to_category: bool = False, bf16: bool = False,
                    decoding: str = "argmax", min_span_score: float = 0.0,
                    max_values_per_attribute: int = 0, implicit_threshold: float = 0.5,
                    implicit_agreement: bool = False
                    ) -> Iterator[tuple[list[Example], SpanBatch]]:
    """`predict_examples` batch by batch, decoded as arrays (`SpanBatch`): the Extractor builds
    its results from these without a `Span` object per value."""
    net.eval()
    transitions = network_transitions(net) if decoding == "crf" else None
    for chunk in batches(examples, batch_size):
        layout = TokenLayout.from_encodings([e.encoded for e in chunk])
        batch = collate(chunk, pad_id=pad_id, device=device, layout=layout)
        with autocast(bf16):
            out = net(batch, with_labels=False)
        tag_probs, attr_probs = host_outputs(out)
        allowed = ([schema.allowed_attributes(e.record.category) for e in chunk]
                   if restrict_to_category else None)
        spans = decode_spans(layout, [e.record.text for e in chunk], tag_probs, attr_probs,
                             schema, threshold, allowed, decoding, min_span_score,
                             max_values_per_attribute, transitions)
        implicit = getattr(out, "implicit_logits", None)
        if implicit is not None:
            probs = implicit_probs(implicit.float().cpu().numpy(), schema)
            if implicit_agreement:
                spans.agree_with_implicit(probs)
            spans.with_implicit(probs, implicit_threshold)
        yield chunk, spans


def network_transitions(net: Any) -> Transitions | None:
    """The CRF transitions a network decodes with (`decoding="crf"`): an exported graph's
    (`OnnxNetwork.transitions`, from its export record) or those of the torch head's CRF;
    None for a network without one."""
    if not isinstance(net, TextImageModel):
        return getattr(net, "transitions", None)
    crf = getattr(net.head, "crf", None)
    if crf is None:
        return None
    with torch.no_grad():
        start, matrix, end = (x.detach().double().cpu().numpy() for x in crf.potentials())
    return Transitions(start, matrix, end)


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


def as_records(examples: Sequence[Example], decoded: Sequence[Decoded]) -> list[Record]:
    """Predicted records (same ids, texts and products as the inputs) for the metrics; each span
    carries its decoder score (the slot protocol ranks values by it)."""
    return [Record(id=e.record.id, text=e.record.text,
                   spans=[replace(s, score=float(sc)) for s, sc in zip(d.spans, d.span_scores)],
                   cid=e.record.cid,
                   category=e.record.category, image=e.record.image,
                   extra=implicit_extra(d.implicit))
            for e, d in zip(examples, decoded)]

