"""The slot protocol of LLM extraction papers (ExtractGPT): one value per attribute asked.

A generative extractor is asked, for each text, a list of attributes and answers at most one value
for each. Span and pair F1 score every predicted value; this protocol instead keeps, for each
text and each attribute asked, the ONE highest-scoring predicted value and counts:

- VC: that value is one of the gold values of the attribute (compared after `casefold_strip`,
  as pair F1 compares values);
- VW: gold has values and the predicted value is none of them;
- VN: nothing is predicted though gold has a value;
- NV: gold has no value (the attribute is asked but absent) and a value is predicted;
- nothing is counted when the attribute is asked, absent in gold and nothing is predicted.

P = VC / (NV + VC + VW), R = VC / (VN + VC + VW), F1 their harmonic mean: a wrong value costs
both precision and recall. The attributes asked of a text are those of its gold spans plus the
record's `extra["absent_attrs"]` (OA-Mine's JSONL field: attributes of the category known not to
be in the text); a record without that field is asked its gold attributes only, so NV cannot
occur. Predicted values of attributes that were not asked are ignored.

Only `mjave.data` and `mjave.evaluation.metrics` are imported: scoring needs no torch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mjave.data.records import Record, Span
from mjave.evaluation.metrics import NO_CATEGORY, PRF, check_ids, casefold_strip

__all__ = [
    "ABSENT_ATTRS",
    "SlotCounts",
    "absent_attributes",
    "asked_attributes",
    "best_values",
    "slot_counts",
    "slot_outcomes",
    "slot_per_attribute",
    "with_slot",
]

#: The `Record.extra` key of the attributes asked of a text but absent from it (OA-Mine JSONL).
ABSENT_ATTRS = "absent_attrs"

Outcome = Literal["vc", "vw", "vn", "nv"]


@dataclass(frozen=True)
class SlotCounts:
    """The four slot counts; P/R/F1 come from the equivalent `PRF` (tp = VC, fp = NV + VW,
    fn = VN + VW), so sums stay exact and the percentages are rounded as every other metric's."""

    vc: int = 0
    vw: int = 0
    vn: int = 0
    nv: int = 0

    def __post_init__(self) -> None:
        for name in ("vc", "vw", "vn", "nv"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"SlotCounts.{name} must be a non-negative integer, got {value!r}")

    @property
    def prf(self) -> PRF:
        return PRF(self.vc, self.nv + self.vw, self.vn + self.vw)

    @property
    def precision(self) -> float:
        return self.prf.precision

    @property
    def recall(self) -> float:
        return self.prf.recall

    @property
    def f1(self) -> float:
        return self.prf.f1

    def to_dict(self) -> dict[str, float | int]:
        """`PRF.to_dict` (p/r/f1 in percent, tp/fp/fn) plus the four slot counts."""
        return {**self.prf.to_dict(), "vc": self.vc, "vw": self.vw, "vn": self.vn, "nv": self.nv}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SlotCounts:
        return cls(int(d["vc"]), int(d["vw"]), int(d["vn"]), int(d["nv"]))

    def __add__(self, other: SlotCounts) -> SlotCounts:
        if not isinstance(other, SlotCounts):
            return NotImplemented
        return SlotCounts(self.vc + other.vc, self.vw + other.vw, self.vn + other.vn,
                          self.nv + other.nv)

    def __radd__(self, other: object) -> SlotCounts:
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        return NotImplemented


def absent_attributes(record: Record) -> frozenset[str]:
    """Attributes asked of `record` but known to be absent (`extra["absent_attrs"]`, a list)."""
    absent = record.extra.get(ABSENT_ATTRS)
    if absent is None:
        return frozenset()
    if isinstance(absent, str) or not all(isinstance(a, str) for a in absent):
        raise ValueError(f"record {record.id!r}: {ABSENT_ATTRS} must be a list of attribute "
                         f"names, got {absent!r}")
    return frozenset(absent)


def asked_attributes(record: Record) -> frozenset[str]:
    """The attributes a text is scored on: those of its gold spans plus its absent ones."""
    return frozenset(s.attr for s in record.spans) | absent_attributes(record)


def best_values(spans: Iterable[Span]) -> dict[str, Span]:
    """The highest-scoring predicted span of each attribute. Spans without a score rank below
    scored ones; ties (and predictors that give no scores) go to the first span in the text."""
    best: dict[str, Span] = {}
    for span in sorted(spans, key=lambda s: (s.begin, s.end)):
        current = best.get(span.attr)
        if current is None or _rank(span) > _rank(current):
            best[span.attr] = span
    return best


def _rank(span: Span) -> tuple[bool, float]:
    return (span.score is not None, span.score if span.score is not None else 0.0)


def slot_outcomes(gold: Record, pred: Iterable[Span]) -> dict[str, Outcome]:
    """Each attribute asked of `gold` -> its outcome ("vc", "vw", "vn", "nv"); true negatives
    (asked, absent, nothing predicted) are left out, and so are predictions of unasked ones."""
    gold_values: dict[str, set[str]] = defaultdict(set)
    for s in gold.spans:
        gold_values[s.attr].add(casefold_strip(s.value))
    best = best_values(pred)
    out: dict[str, Outcome] = {}
    for attr in sorted(asked_attributes(gold)):
        span, values = best.get(attr), gold_values.get(attr)
        if span is None:
            if values:
                out[attr] = "vn"
        elif not values:
            out[attr] = "nv"
        else:
            out[attr] = "vc" if casefold_strip(span.value) in values else "vw"
    return out


def _tally(outcomes: Iterable[Outcome]) -> SlotCounts:
    counts = {"vc": 0, "vw": 0, "vn": 0, "nv": 0}
    for o in outcomes:
        counts[o] += 1
    return SlotCounts(**counts)


def slot_counts(gold: Sequence[Record], pred: Sequence[Record]) -> SlotCounts:
    """Slot counts summed over the texts (records matched by position and id). Predicted spans
    carry their score in `Span.score`; see `best_values` for spans without one."""
    check_ids(gold, pred)
    return _tally(o for g, p in zip(gold, pred) for o in slot_outcomes(g, p.spans).values())


def slot_per_attribute(gold: Sequence[Record], pred: Sequence[Record]) -> dict[str, SlotCounts]:
    """Slot counts of each attribute asked somewhere, sorted by name."""
    check_ids(gold, pred)
    by_attr: dict[str, list[Outcome]] = defaultdict(list)
    for g, p in zip(gold, pred):
        for attr, outcome in slot_outcomes(g, p.spans).items():
            by_attr[attr].append(outcome)
    for g in gold:   # attributes asked with only true negatives still get a (zero) row
        for attr in asked_attributes(g):
            by_attr.setdefault(attr, [])
    return {attr: _tally(by_attr[attr]) for attr in sorted(by_attr)}


def with_slot(report: Mapping[str, Any], gold: Sequence[Record], pred: Sequence[Record]
              ) -> dict[str, Any]:
    """A copy of an `evaluate_records` report (of the same gold and pred) with the slot protocol
    added: "slot" overall, in every "per_attribute" entry (attributes asked but never in another
    breakdown get an entry of their own) and in every "per_category" entry."""
    out = dict(report)
    out["slot"] = slot_counts(gold, pred).to_dict()
    per_attr = {name: dict(d) for name, d in (report.get("per_attribute") or {}).items()}
    for attr, counts in slot_per_attribute(gold, pred).items():
        per_attr.setdefault(attr, {})["slot"] = counts.to_dict()
    for d in per_attr.values():
        d.setdefault("slot", SlotCounts().to_dict())
    out["per_attribute"] = per_attr
    groups: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(gold):
        groups[NO_CATEGORY if g.category is None else g.category].append(i)
    per_cat = {name: dict(d) for name, d in (report.get("per_category") or {}).items()}
    for name, idx in groups.items():
        counts = slot_counts([gold[i] for i in idx], [pred[i] for i in idx])
        per_cat.setdefault(name, {})["slot"] = counts.to_dict()
    out["per_category"] = per_cat
    return out
