"""Scoring of implicit values (issue #31, section 2): values a model names without a span.

For a closed attribute (one the model can name from a small set of values, e.g. Color) a model
may predict a product-level value that the text does not state, read from the photo. Predicted
records carry them in `extra["implicit_values"]` ({attribute: value}) and their scores in
`extra["implicit_scores"]`; gold records in `Record.implicit_values()` ({attribute: value or
None}, None: known to have no value, e.g. a solid garment's Pattern).

Only a (record, attribute) pair whose implicit gold is known is scored (`implicit_gold`: a closed
attribute the record has an implicit value of and no gold span of). With gold value v: the
predicted value v (compared after `casefold_strip`) is a TP, another value FP + FN, no
prediction FN. With gold None: any prediction is FP. Predictions of attributes the gold knows
nothing about are ignored: nobody knows what the photo shows.

`with_implicit` adds the `implicit_report` to an `evaluate_records` report and makes its pair
scores count implicit values together with spans (`gold_pairs_with_implicit`,
`pred_pairs_with_implicit`).

Only `mjave.data` and `mjave.evaluation` are imported: scoring needs no torch.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from mjave.data.records import Record
from mjave.evaluation.metrics import (
    NO_CATEGORY,
    PRF,
    casefold_strip,
    check_ids,
    pair_prf,
    pair_set,
    per_attribute,
)
from mjave.evaluation.slot import SlotCounts

__all__ = [
    "IMPLICIT_SCORES",
    "IMPLICIT_VALUES",
    "gold_pairs_with_implicit",
    "has_implicit_gold",
    "implicit_gold",
    "implicit_predictions",
    "implicit_report",
    "pred_pairs_with_implicit",
    "with_implicit",
]

#: The `Record.extra` key of a predicted record's implicit values ({attribute: value}).
IMPLICIT_VALUES = "implicit_values"
#: The `Record.extra` key of a predicted record's implicit value scores ({attribute: score}).
IMPLICIT_SCORES = "implicit_scores"


def implicit_gold(record: Record, closed: Collection[str]) -> dict[str, str | None]:
    """The gold record's implicit values (`Record.implicit_values`) of the `closed` attributes
    it has no gold span of: the (record, attribute) pairs `implicit_report` scores. A value the
    text states as a span is span gold, and a model names an implicit value only when it found
    no span of the attribute, so an attribute with a gold span is not scored here."""
    spanned = {s.attr for s in record.spans}
    return {attr: value for attr, value in record.implicit_values().items()
            if attr in closed and attr not in spanned}


def has_implicit_gold(gold: Sequence[Record], closed: Collection[str] | None) -> bool:
    """Whether any gold record has implicit gold of a `closed` attribute (False without any)."""
    return bool(closed) and any(implicit_gold(g, closed) for g in gold)


def implicit_predictions(record: Record) -> dict[str, str]:
    """A predicted record's implicit values (`extra["implicit_values"]`), None values dropped."""
    given = record.extra.get(IMPLICIT_VALUES) or {}
    return {str(a): str(v) for a, v in given.items() if v is not None}


def gold_pairs_with_implicit(record: Record, closed: Collection[str]) -> set[tuple[str, str]]:
    """The gold (attribute, normalised value) pairs of one record: its gold spans' plus its
    implicit gold values (`implicit_gold`; None, "no value", adds no pair)."""
    implicit = [(a, v) for a, v in implicit_gold(record, closed).items() if v is not None]
    return pair_set([*record.spans, *implicit])


def pred_pairs_with_implicit(pred: Record, gold: Record, closed: Collection[str]
                             ) -> set[tuple[str, str]]:
    """The predicted (attribute, normalised value) pairs of one record: its predicted spans'
    plus its implicit values of `closed` attributes the `gold` record knows (a gold span or
    implicit gold of it, None included). An implicit value of an attribute the gold knows
    nothing about is ignored, as `implicit_report` ignores it: whether the photo shows it is
    unknown, so it is neither right nor wrong."""
    known = {s.attr for s in gold.spans} | set(implicit_gold(gold, closed))
    implicit = [(a, v) for a, v in implicit_predictions(pred).items()
                if a in closed and a in known]
    return pair_set([*pred.spans, *implicit])


def _ratio(count: int, n: int) -> float:
    """A share in percent, rounded to 2 decimals as `PRF.to_dict` rounds (0.0 when n is 0)."""
    return round(100 * count / n, 2) if n else 0.0


def implicit_report(gold: Sequence[Record], pred: Sequence[Record], closed: Collection[str]
                    ) -> dict[str, Any]:
    """Scores of the implicit values of `pred` against the implicit gold of `gold` (records
    matched by position and id), per closed attribute and overall.

    Returns {"all": entry, "per_attribute": {attribute: entry}} (attributes sorted by name),
    each entry a `PRF.to_dict` (micro P/R/F1 in percent and TP/FP/FN) plus "n" (scored (record,
    attribute) pairs), "correct" (those whose prediction equals the gold, a None gold with no
    prediction included), "accuracy" (correct / n, percent) and "majority" (percent; per
    attribute also "majority_value", None being a value). Overall "majority" sums each
    attribute's majority count, i.e. it is the accuracy of the per-attribute majority guesser.

    Why "majority": the issue compares implicit values to a text-only reference. A text-only
    model can do no better on these pairs than guess each attribute's most common value (the
    text does not state it, by construction), so an accuracy at or below "majority" means the
    photo added nothing. It is computed on the evaluated gold itself, so it is an upper bound of
    such a guesser (one fit on training data can only do as well or worse).
    """
    check_ids(gold, pred)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])   # tp, fp, fn
    correct: Counter[str] = Counter()
    values: dict[str, Counter[str | None]] = defaultdict(Counter)
    for g, p in zip(gold, pred):
        predicted = implicit_predictions(p)
        for attr, value in implicit_gold(g, closed).items():
            gold_value = None if value is None else casefold_strip(value)
            guess = predicted.get(attr)
            guess = None if guess is None else casefold_strip(guess)
            values[attr][gold_value] += 1
            c = counts[attr]
            if guess == gold_value:
                correct[attr] += 1
                c[0] += gold_value is not None
            else:
                c[1] += guess is not None
                c[2] += gold_value is not None

    per_attr: dict[str, dict[str, Any]] = {}
    for attr in sorted(values):
        n = sum(values[attr].values())
        # Most common gold value; ties go to a value over None, then to the first in name order.
        majority_value, majority = min(values[attr].items(),
                                       key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))
        per_attr[attr] = {**PRF(*counts[attr]).to_dict(), "n": n, "correct": correct[attr],
                          "accuracy": _ratio(correct[attr], n),
                          "majority": _ratio(majority, n), "majority_value": majority_value}
    n_all = sum(d["n"] for d in per_attr.values())
    correct_all = sum(correct.values())
    majority_all = sum(max(values[attr].values()) for attr in per_attr)
    total = sum((PRF(*counts[attr]) for attr in per_attr), PRF())
    return {
        "all": {**total.to_dict(), "n": n_all, "correct": correct_all,
                "accuracy": _ratio(correct_all, n_all), "majority": _ratio(majority_all, n_all)},
        "per_attribute": per_attr,
    }


def with_implicit(report: Mapping[str, Any], gold: Sequence[Record], pred: Sequence[Record],
                  closed: Collection[str] | None) -> dict[str, Any]:
    """A copy of an `evaluate_records` report (of the same gold and pred) with implicit values
    scored, when `closed` is non-empty and some gold record has implicit gold
    (`has_implicit_gold`); otherwise an unchanged copy.

    Adds "implicit" (`implicit_report`) and "pair_includes_implicit": True, and recomputes every
    pair score ("pair" overall, in each "per_attribute" and "per_category" entry) over
    `gold_pairs_with_implicit` / `pred_pairs_with_implicit`, so that a value named without a
    span counts like one found in the text. Attributes that gain a pair row only this way get
    zero attribute and value scores (they have no gold or predicted span and no attribute
    prediction, or `evaluate_records` would have listed them). Span ("value"), attribute, slot
    and novelty scores stay span-only.
    """
    out = dict(report)
    if not closed or not has_implicit_gold(gold, closed):
        return out
    check_ids(gold, pred)
    gold_pairs = [gold_pairs_with_implicit(g, closed) for g in gold]
    pred_pairs = [pred_pairs_with_implicit(p, g, closed) for g, p in zip(gold, pred)]

    out["pair"] = pair_prf(gold_pairs, pred_pairs).to_dict()
    out["pair_includes_implicit"] = True
    per_attr = {name: dict(d) for name, d in (report.get("per_attribute") or {}).items()}
    for d in per_attr.values():
        d["pair"] = PRF().to_dict()
    # pair_set (which per_attribute applies) takes (attribute, value) tuples as well as spans.
    by_attr = per_attribute(gold_pairs, pred_pairs, kind="pair")  # type: ignore[arg-type]
    for attr, prf in by_attr.items():
        entry = per_attr.setdefault(attr, {"attribute": PRF().to_dict(),
                                           "value": PRF().to_dict()})
        if "slot" in report:   # with_slot gave every entry one; an unasked attribute has zeros
            entry.setdefault("slot", SlotCounts().to_dict())
        entry["pair"] = prf.to_dict()
    out["per_attribute"] = per_attr

    pair_by_category: dict[str, PRF] = defaultdict(PRF)
    for g, g_pairs, p_pairs in zip(gold, gold_pairs, pred_pairs):
        name = NO_CATEGORY if g.category is None else g.category
        pair_by_category[name] += PRF.from_sets(g_pairs, p_pairs)
    per_cat = {name: dict(d) for name, d in (report.get("per_category") or {}).items()}
    for name, pair in pair_by_category.items():
        per_cat.setdefault(name, {})["pair"] = pair.to_dict()
    out["per_category"] = per_cat
    out["implicit"] = implicit_report(gold, pred, closed)
    return out
