"""Metrics for attribute prediction and value extraction, as M-JAVE reports them.

Every metric here is a *micro* average: true positives, false positives and false negatives are
counted per instance and summed over the whole evaluation set before P/R/F1 are computed, so a
long text with many values weighs more than a short one (this is what the paper's Table 3 and the
conlleval script report). Everything is set based, so a duplicate in a prediction counts once.

Only `mjave.data` and numpy are imported: evaluation must run where torch is not installed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np

from mjave.data.normalize import casefold_strip
from mjave.data.records import Record, Span

__all__ = [
    "NO_CATEGORY",
    "PRF",
    "attribute_prf",
    "attributes_from_probs",
    "check_ids",
    "evaluate_records",
    "casefold_strip",
    "pair_prf",
    "pair_set",
    "per_attribute",
    "per_attribute_prediction",
    "per_category",
    "span_prf",
]

K = TypeVar("K", bound=Hashable)

#: The `per_category` key used for records whose category is None.
NO_CATEGORY = "(none)"

#: Trailing characters kept by `casefold_strip` after a digit: "50%" and "50" are different values.


@dataclass(frozen=True)
class PRF:
    """Counts of one micro-averaged comparison; P/R/F1 are derived so that sums stay exact.

    Keeping counts (not ratios) is what makes micro averaging and `+` correct: the F1 of a union
    of evaluation sets is computed from summed counts, never from averaged F1s.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __post_init__(self) -> None:
        for name in ("tp", "fp", "fn"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"PRF.{name} must be a non-negative integer, got {value!r}")
            # Store plain ints so that reports are JSON serialisable even from numpy counts.
            object.__setattr__(self, name, int(value))

    @property
    def precision(self) -> float:
        """tp / (tp + fp) as a fraction; 0.0 when nothing was predicted (as seqeval does)."""
        denominator = self.tp + self.fp
        return self.tp / denominator if denominator else 0.0

    @property
    def recall(self) -> float:
        """tp / (tp + fn) as a fraction; 0.0 when there is nothing to find."""
        denominator = self.tp + self.fn
        return self.tp / denominator if denominator else 0.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall, 0.0 when both are 0 (or undefined)."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def support(self) -> int:
        """Number of gold items (tp + fn)."""
        return self.tp + self.fn

    @property
    def n_pred(self) -> int:
        """Number of predicted items (tp + fp)."""
        return self.tp + self.fp

    def to_dict(self) -> dict[str, float | int]:
        """JSON form: p/r/f1 in percent rounded to 2 decimals (as papers print them) plus counts."""
        return {
            "p": round(100 * self.precision, 2),
            "r": round(100 * self.recall, 2),
            "f1": round(100 * self.f1, 2),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PRF:
        """Rebuild from `to_dict` output (only the counts are read; extra keys are ignored)."""
        return cls(int(d["tp"]), int(d["fp"]), int(d["fn"]))

    @classmethod
    def from_sets(cls, gold: Iterable[Hashable], pred: Iterable[Hashable]) -> PRF:
        """Compare one instance: items are matched exactly and duplicates count once."""
        g, p = set(gold), set(pred)
        tp = len(g & p)
        return cls(tp, len(p) - tp, len(g) - tp)

    def __add__(self, other: PRF) -> PRF:
        if not isinstance(other, PRF):
            return NotImplemented
        return PRF(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def __radd__(self, other: object) -> PRF:
        # Lets the builtin sum() start from 0.
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        return NotImplemented


# --------------------------------------------------------------------------------------------
# Generic set-based micro averaging


def _check_same_length(gold: Sequence[Any], pred: Sequence[Any]) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} instances but pred has {len(pred)}")


def _micro(gold: Sequence[Iterable[K]], pred: Sequence[Iterable[K]]) -> PRF:
    """Sum per-instance set comparisons (instances are matched by position)."""
    _check_same_length(gold, pred)
    return sum((PRF.from_sets(g, p) for g, p in zip(gold, pred)), PRF())


def _micro_by_group(
    gold: Sequence[Iterable[K]], pred: Sequence[Iterable[K]], group: Callable[[K], str]
) -> dict[str, PRF]:
    """Micro PRF per group of items (e.g. per attribute), groups sorted by name."""
    _check_same_length(gold, pred)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for g_items, p_items in zip(gold, pred):
        g, p = set(g_items), set(p_items)
        for item in g & p:
            counts[group(item)][0] += 1
        for item in p - g:
            counts[group(item)][1] += 1
        for item in g - p:
            counts[group(item)][2] += 1
    return {name: PRF(*counts[name]) for name in sorted(counts)}


# --------------------------------------------------------------------------------------------
# Attribute prediction


def attribute_prf(gold: Sequence[set[str]], pred: Sequence[set[str]]) -> PRF:
    """Attribute prediction as in the paper: micro P/R/F1 over each instance's attribute set.

    An instance contributes |gold & pred| true positives, |pred - gold| false positives and
    |gold - pred| false negatives; instances with no gold and no predicted attribute add nothing.
    """
    return _micro(gold, pred)


def attributes_from_probs(
    probs: np.ndarray, attributes: Sequence[str], threshold: float = 0.5
) -> list[set[str]]:
    """Turn the attribute classifier's (N, L) sigmoid outputs into predicted attribute sets.

    An attribute is predicted when its probability is `>= threshold` (so exactly 0.5 counts as
    predicted at the default threshold); NaN is never predicted. Column j is `attributes[j]`.
    """
    array = np.asarray(probs, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"attribute probabilities must have shape (N, L), got {array.shape}")
    if array.shape[1] != len(attributes):
        raise ValueError(
            f"attribute probabilities have {array.shape[1]} columns but {len(attributes)} "
            "attribute names were given"
        )
    names = list(attributes)
    return [{names[j] for j in np.flatnonzero(row >= threshold)} for row in array]


def per_attribute_prediction(
    gold: Sequence[set[str]], pred: Sequence[set[str]]
) -> dict[str, PRF]:
    """Attribute-prediction PRF of each attribute (as a binary label over instances)."""
    return _micro_by_group(gold, pred, lambda attr: attr)


# --------------------------------------------------------------------------------------------
# Value extraction (span level, conlleval style)


def span_prf(gold: Sequence[Sequence[Span]], pred: Sequence[Sequence[Span]]) -> PRF:
    """Chunk-level micro P/R/F1 over (attribute, begin, end), as conlleval/seqeval count chunks.

    A predicted span is correct only if a gold span has the same boundaries *and* attribute:
    a partial overlap, or the right span with the wrong attribute, is one false positive plus
    one false negative. The value string is not compared (it is determined by the offsets).
    """
    return _micro(_span_keys(gold), _span_keys(pred))


def _span_keys(instances: Sequence[Sequence[Span]]) -> list[list[tuple[str, int, int]]]:
    return [[s.key() for s in spans] for spans in instances]


# --------------------------------------------------------------------------------------------
# Position-free attribute-value pairs


PairLike = Span | tuple[str, str]


def pair_set(items: Iterable[PairLike]) -> set[tuple[str, str]]:
    """(attribute, normalized value) pairs of one instance, from spans or (attr, value) tuples."""
    pairs: set[tuple[str, str]] = set()
    for item in items:
        if isinstance(item, Span):
            attr, value = item.attr, item.value
        else:
            attr, value = item
        pairs.add((attr, casefold_strip(value)))
    return pairs


def pair_prf(gold: Sequence[Iterable[PairLike]], pred: Sequence[Iterable[PairLike]]) -> PRF:
    """Position-free micro P/R/F1 over per-instance sets of (attribute, normalized value).

    This is how generative (LLM) extractors are scored, since they emit values without offsets:
    a predicted pair is right if the same attribute and normalized value is in the gold set of
    the instance, wherever (and however often) it occurs in the text. Items may be `Span`s or
    plain (attribute, value) tuples.
    """
    return _micro([pair_set(g) for g in gold], [pair_set(p) for p in pred])


# --------------------------------------------------------------------------------------------
# Breakdowns


def per_attribute(
    gold: Sequence[Sequence[Span]],
    pred: Sequence[Sequence[Span]],
    kind: Literal["span", "pair"] = "span",
) -> dict[str, PRF]:
    """Value-extraction PRF per attribute (span or pair level); a wrong-attribute prediction
    is a false positive of the predicted attribute and a false negative of the gold one."""
    if kind == "span":
        return _micro_by_group(_span_keys(gold), _span_keys(pred), lambda key: key[0])
    if kind == "pair":
        return _micro_by_group(
            [pair_set(g) for g in gold], [pair_set(p) for p in pred], lambda pair: pair[0]
        )
    raise ValueError(f"kind must be 'span' or 'pair', got {kind!r}")


def _category_name(category: str | None) -> str:
    return NO_CATEGORY if category is None else category


def per_category(
    gold: Sequence[Sequence[Span]],
    pred: Sequence[Sequence[Span]],
    categories: Sequence[str | None],
) -> dict[str, PRF]:
    """Span-level PRF per product category (None is reported as `NO_CATEGORY`), sorted by name."""
    _check_same_length(gold, pred)
    if len(categories) != len(gold):
        raise ValueError(f"{len(categories)} categories given for {len(gold)} instances")
    out: dict[str, PRF] = defaultdict(PRF)
    for g, p, category in zip(gold, pred, categories):
        name = _category_name(category)
        out[name] = out[name] + PRF.from_sets((s.key() for s in g), (s.key() for s in p))
    return {name: out[name] for name in sorted(out)}


# --------------------------------------------------------------------------------------------
# One report for a whole evaluation set


def check_ids(gold: Sequence[Record], pred: Sequence[Record]) -> None:
    """Records are matched by position; a shuffled or truncated prediction file must not be
    silently scored against the wrong gold texts."""
    for i, (g, p) in enumerate(zip(gold, pred)):
        if g.id != p.id:
            raise ValueError(
                f"gold and pred records differ at position {i}: gold id {g.id!r}, pred id {p.id!r}"
            )
    if len(gold) != len(pred):
        longer, which = (gold, "gold") if len(gold) > len(pred) else (pred, "pred")
        first_extra = longer[min(len(gold), len(pred))].id
        raise ValueError(
            f"gold has {len(gold)} records but pred has {len(pred)}; first unmatched {which} id "
            f"{first_extra!r}"
        )


def evaluate_records(
    gold: Sequence[Record],
    pred: Sequence[Record],
    attribute_probs: np.ndarray | None = None,
    attributes: Sequence[str] | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Score predicted records against gold ones and return one JSON-serialisable report.

    Gold attribute sets are the attributes of the gold spans (`Record.attributes()`). Predicted
    attribute sets come from `attribute_probs` ((N, L), column j = `attributes[j]`, predicted
    when `>= threshold`) when given, since M-JAVE predicts attributes with a separate classifier;
    otherwise from the attributes of the predicted spans.

    Report keys: "attribute", "value" (span level), "pair" (position-free), each a `PRF.to_dict`;
    "per_attribute" {attr: {"attribute", "value", "pair"}} ordered by gold span count (most
    first); "per_category" {category: {"n_instances", "attribute", "value", "pair"}}; and
    "n_instances". "attribute" also says where predicted sets came from ("source") and the
    threshold used (None when they came from spans). The slot protocol ("slot", one value per
    attribute asked) is added by `mjave.evaluation.slot.with_slot`, as `report_of` (the path of
    every reported figure) does.
    """
    check_ids(gold, pred)
    gold_sets = [set(r.attributes()) for r in gold]
    if attribute_probs is not None:
        if attributes is None:
            raise ValueError("attribute_probs needs the attribute names of its columns")
        if len(attribute_probs) != len(pred):
            raise ValueError(
                f"attribute_probs has {len(attribute_probs)} rows for {len(pred)} records"
            )
        pred_sets = attributes_from_probs(attribute_probs, attributes, threshold)
        source, used_threshold = "probs", float(threshold)
    else:
        pred_sets = [set(r.attributes()) for r in pred]
        source, used_threshold = "spans", None

    gold_spans = [r.spans for r in gold]
    pred_spans = [r.spans for r in pred]

    attr_by_attr = per_attribute_prediction(gold_sets, pred_sets)
    value_by_attr = per_attribute(gold_spans, pred_spans, kind="span")
    pair_by_attr = per_attribute(gold_spans, pred_spans, kind="pair")
    names = set(attr_by_attr) | set(value_by_attr) | set(pair_by_attr)

    def order(name: str) -> tuple[int, int, str]:
        return (
            -value_by_attr.get(name, PRF()).support,
            -attr_by_attr.get(name, PRF()).support,
            name,
        )

    per_attr = {
        name: {
            "attribute": attr_by_attr.get(name, PRF()).to_dict(),
            "value": value_by_attr.get(name, PRF()).to_dict(),
            "pair": pair_by_attr.get(name, PRF()).to_dict(),
        }
        for name in sorted(names, key=order)
    }

    groups: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(gold):
        groups[_category_name(record.category)].append(i)
    per_cat: dict[str, dict[str, Any]] = {}
    for name, idx in sorted(groups.items()):
        g_spans, p_spans = [gold_spans[i] for i in idx], [pred_spans[i] for i in idx]
        per_cat[name] = {
            "n_instances": len(idx),
            "attribute": attribute_prf(
                [gold_sets[i] for i in idx], [pred_sets[i] for i in idx]
            ).to_dict(),
            "value": span_prf(g_spans, p_spans).to_dict(),
            "pair": pair_prf(g_spans, p_spans).to_dict(),
        }

    return {
        "attribute": {
            **attribute_prf(gold_sets, pred_sets).to_dict(),
            "source": source,
            "threshold": used_threshold,
        },
        "value": span_prf(gold_spans, pred_spans).to_dict(),
        "pair": pair_prf(gold_spans, pred_spans).to_dict(),
        "per_attribute": per_attr,
        "per_category": per_cat,
        "n_instances": len(gold),
    }
