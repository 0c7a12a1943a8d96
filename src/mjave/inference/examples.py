"""Records -> model examples: aligned tokens, labels and cached encoder features.

Training, evaluation and prediction all featurise through here, so the tokens a model was
trained on and the tokens it is scored on are produced by the same aligner and store.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from mjave.data.errors import RowIssues
from mjave.data.lexicon import ValueLexicon
from mjave.data.records import Record
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import TextAligner
from mjave.config import EncoderConfig
from mjave.encoders.features import extract_features, image_feature_keys, text_feature_keys
from mjave.encoders.store import FeatureStore
from mjave.model.batches import (Example, attribute_targets, implicit_targets,
                                 known_attribute_mask)

if TYPE_CHECKING:
    from mjave.encoders.text import HFTextEncoder


def _known_spans_only(records: Sequence[Record], schema: AttributeSchema,
                      issues: RowIssues | None) -> list[Record]:
    """Label views of `records` without spans of attributes outside the schema (e.g. an attribute
    only the validation file has): counted, and still scored as misses against the originals."""
    out = []
    for r in records:
        known = [s for s in r.spans if s.attr in schema]
        if len(known) != len(r.spans):
            if issues is not None:
                issues.unknown_attribute_spans += len(r.spans) - len(known)
            r = replace(r, spans=known)
        out.append(r)
    return out


def build_examples(records: Sequence[Record], aligner: TextAligner, schema: AttributeSchema,
                   encoder: EncoderConfig, store_dir: str | Path, image_root: str | None,
                   text_features: bool, image_features: bool, issues: RowIssues | None = None,
                   progress: Callable | None = None, batch_size: int = 32,
                   text_encoder: HFTextEncoder | None = None,
                   lexicon: ValueLexicon | None = None,
                   lexicon_draw: tuple[float, int] | None = None) -> list[Example]:
    """Align every record and attach its features, encoding into the store what is missing.

    `text_features=False` when a text encoder runs inside the model (fine-tuning, BiLSTM);
    under top-layer fine-tuning (`encoder.train_layers: K`) the text features are the frozen
    lower layers' output, computed by `text_encoder` (the network's own) when given.
    `image_features=False` for text-only models, which then never open an image.
    A record carrying `known_attributes` (partial labels) gets its `Example.attr_known` mask.
    `lexicon` (`model.value_knowledge`) gives each example its known-value flags, matched as at
    prediction time, or, for training records, with `lexicon_draw` = (drop, seed): leave-one-out
    and a seeded share of the matched values hidden (`ValueLexicon.training_features`).
    """
    if text_features or image_features:
        extract_features(records, store_dir, encoder, image_root=image_root,
                         batch_size=batch_size, progress=progress,
                         text=text_features, image=image_features, text_encoder=text_encoder)
    store = FeatureStore(store_dir) if (text_features or image_features) else None
    encodeds = aligner.encode_many(_known_spans_only(records, schema, issues), issues)
    texts = (store.get(*text_feature_keys(encoder, records)) if text_features
             else [None] * len(records))
    images = (store.get(*image_feature_keys(encoder, records)) if image_features
              else [None] * len(records))
    knowledge: list = [None] * len(records)
    if lexicon is not None and lexicon_draw is not None:
        knowledge = lexicon.training_features(records, encodeds, schema, *lexicon_draw)
    elif lexicon is not None:
        knowledge = [lexicon.features(r.text, e, schema) for r, e in zip(records, encodeds)]
    return [Example(r, e, attribute_targets(r, schema), t, i, known_attribute_mask(r, schema), k,
                    implicit_targets(r, schema))
            for r, e, t, i, k in zip(records, encodeds, texts, images, knowledge)]
