"""Attribute-prediction and value-extraction metrics (micro P/R/F1) and their text reports.

Imports only `mjave.data` and numpy, so that predictions can be scored without torch.
"""

from mjave.evaluation.metrics import (
    NO_CATEGORY,
    PRF,
    attribute_prf,
    attributes_from_probs,
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

__all__ = [
    "NO_CATEGORY",
    "PRF",
    "attribute_prf",
    "attributes_from_probs",
    "evaluate_records",
    "format_comparison",
    "format_report",
    "normalize_value",
    "pair_prf",
    "pair_set",
    "per_attribute",
    "per_attribute_prediction",
    "per_category",
    "span_prf",
]
