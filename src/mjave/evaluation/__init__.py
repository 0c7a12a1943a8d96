"""Attribute-prediction and value-extraction metrics (micro P/R/F1), the slot protocol of LLM
extraction papers (one value per attribute asked) and their text reports.

Imports only `mjave.data` and numpy, so that predictions can be scored without torch.
"""

from mjave.evaluation.metrics import (
    NO_CATEGORY,
    PRF,
    attribute_prf,
    attributes_from_probs,
    check_ids,
    evaluate_records,
    normalize_value,
    pair_prf,
    pair_set,
    per_attribute,
    per_attribute_prediction,
    per_category,
    span_prf,
)
from mjave.evaluation.report import format_comparison, format_report
from mjave.evaluation.slot import (
    SlotCounts,
    asked_attributes,
    slot_counts,
    slot_per_attribute,
    with_slot,
)

__all__ = [
    "NO_CATEGORY",
    "PRF",
    "SlotCounts",
    "asked_attributes",
    "attribute_prf",
    "attributes_from_probs",
    "check_ids",
    "evaluate_records",
    "format_comparison",
    "format_report",
    "normalize_value",
    "pair_prf",
    "pair_set",
    "per_attribute",
    "per_attribute_prediction",
    "per_category",
    "slot_counts",
    "slot_per_attribute",
    "span_prf",
    "with_slot",
]
