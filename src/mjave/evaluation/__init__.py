"""Attribute-prediction and value-extraction metrics (micro P/R/F1), the slot protocol of LLM
extraction papers (one value per attribute asked), implicit (image-only) values, recall on
values seen / unseen in training and their text reports.

Imports only `mjave.data` and numpy, so that predictions can be scored without torch.
"""

from mjave.evaluation.implicit import (
    gold_pairs_with_implicit,
    implicit_gold,
    implicit_report,
    pred_pairs_with_implicit,
    with_implicit,
)
from mjave.evaluation.metrics import (
    NO_CATEGORY,
    PRF,
    attribute_prf,
    attributes_from_probs,
    check_ids,
    evaluate_records,
    casefold_strip,
    pair_prf,
    pair_set,
    per_attribute,
    per_attribute_prediction,
    per_category,
    span_prf,
)
from mjave.evaluation.novelty import NoveltyCounts, recall_by_novelty, seen_pairs
from mjave.evaluation.report import format_comparison, format_report, novelty_line
from mjave.evaluation.slot import (
    SlotCounts,
    asked_attributes,
    slot_counts,
    slot_per_attribute,
    with_slot,
)

__all__ = [
    "NO_CATEGORY",
    "NoveltyCounts",
    "PRF",
    "SlotCounts",
    "asked_attributes",
    "attribute_prf",
    "attributes_from_probs",
    "check_ids",
    "evaluate_records",
    "format_comparison",
    "format_report",
    "casefold_strip",
    "gold_pairs_with_implicit",
    "implicit_gold",
    "implicit_report",
    "novelty_line",
    "pair_prf",
    "pair_set",
    "per_attribute",
    "per_attribute_prediction",
    "per_category",
    "pred_pairs_with_implicit",
    "recall_by_novelty",
    "seen_pairs",
    "slot_counts",
    "slot_per_attribute",
    "span_prf",
    "with_implicit",
    "with_slot",
]
