"""The two table-derived refinements of partial-label training, as the trainer applies them:
`train.category_absent` and `train.outside_weight_from_completeness` (both off by default; see
`mjave.data.category_tables` for the rules and docs/completion.md for why)."""

from __future__ import annotations

import logging
from typing import Sequence

from mjave.config import TrainConfig
from mjave.data.category_tables import category_attributes, table_completeness
from mjave.data.records import Record
from mjave.data.schema import AttributeSchema
from mjave.model.batches import Example, mark_category_absent

log = logging.getLogger(__name__)


def outside_weight(tc: TrainConfig, records: Sequence[Record], partial: bool) -> float:
    """The `partial_outside_weight` training uses: the configured one, or with
    `tc.outside_weight_from_completeness` (and partial labels on) the table's completeness
    estimated from `records` (the configured one when nothing can be estimated). Logged."""
    if not tc.outside_weight_from_completeness:
        return tc.partial_outside_weight
    if not partial:
        log.info("train.outside_weight_from_completeness: no effect, partial-label training "
                 "is off")
        return tc.partial_outside_weight
    completeness = table_completeness(records)
    if completeness is None:
        log.warning("train.outside_weight_from_completeness: no partially labelled record with "
                    "a category to estimate the table's completeness from; keeping "
                    "train.partial_outside_weight=%g", tc.partial_outside_weight)
        return tc.partial_outside_weight
    log.info("train.outside_weight_from_completeness: the table lists %.3f of its categories' "
             "attributes per product; partial_outside_weight %g -> %.3f",
             completeness, tc.partial_outside_weight, completeness)
    return min(1.0, max(0.0, completeness))


def category_absent_examples(examples: Sequence[Example], records: Sequence[Record],
                             schema: AttributeSchema, tc: TrainConfig,
                             partial: bool) -> list[Example]:
    """`examples` with each category's never-listed attributes marked known (absent) when
    `tc.category_absent` and partial labels are on; as they are otherwise. The per-category
    attribute sets come from `records` (the training table), computed once. Logged."""
    if not tc.category_absent:
        return list(examples)
    if not partial:
        log.info("train.category_absent: no effect, partial-label training is off")
        return list(examples)
    by_category = category_attributes(records)
    out = mark_category_absent(examples, schema, by_category)
    changed = sum(a is not b for a, b in zip(examples, out))
    absent = {c: len(set(schema.attributes) - attrs) for c, attrs in by_category.items()}
    log.info("train.category_absent: %d of %d training examples gain known-absent attributes "
             "(%d categories; per category %s of %d attributes never listed)",
             changed, len(out), len(by_category),
             _range(absent.values()), schema.num_attributes)
    return out


def _range(values) -> str:
    values = sorted(values)
    if not values:
        return "0"
    return str(values[0]) if values[0] == values[-1] else f"{values[0]}-{values[-1]}"
