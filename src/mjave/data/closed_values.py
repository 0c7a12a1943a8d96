"""Closed-vocabulary attributes (issue #31, section 2): attributes whose values form a small known
set (colours, patterns, sleeve types), so a model can name one without a span, from the photo.

An attribute is closed when its values seen in at least `min_count` training records number at
most `max_values` and cover at least `min_coverage` of its occurrences (gold spans and
product-level values, `Record.implicit_values`). `mjave data stats` shows which attributes pass
and why; `model.implicit_attributes` declares them instead.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from mjave.data.records import Record
from mjave.data.normalize import casefold_strip

log = logging.getLogger(__name__)

MAX_VALUES = 20
MIN_COUNT = 3
MIN_COVERAGE = 0.95


def product_values(record: Record) -> dict[str, str | None]:
    """The record's known value per attribute, normalised (`casefold_strip`): its gold spans'
    first, then its product-level values (`Record.implicit_values`; None: known to have none)."""
    out: dict[str, str | None] = {}
    for s in record.spans:
        out.setdefault(s.attr, casefold_strip(s.value))
    for attr, value in record.implicit_values().items():
        out.setdefault(attr, None if value is None else casefold_strip(value))
    return out


@dataclass(frozen=True)
class ClosedCheck:
    """Why an attribute is closed or not: what `mjave data stats` prints."""

    attribute: str
    occurrences: int
    distinct: int
    frequent: tuple[str, ...]     # values seen in at least min_count records, most common first
    coverage: float               # their share of the occurrences
    closed: bool


def closed_checks(records: Iterable[Record], max_values: int = MAX_VALUES,
                  min_count: int = MIN_COUNT, min_coverage: float = MIN_COVERAGE
                  ) -> list[ClosedCheck]:
    counts: dict[str, Counter[str]] = {}
    for r in records:
        for attr, value in product_values(r).items():
            if value:
                counts.setdefault(attr, Counter())[value] += 1
    out = []
    for attr in sorted(counts):
        c = counts[attr]
        total = sum(c.values())
        frequent = tuple(v for v, n in sorted(c.items(), key=lambda x: (-x[1], x[0]))
                         if n >= min_count)
        coverage = sum(c[v] for v in frequent) / total
        closed = 2 <= len(frequent) <= max_values and coverage >= min_coverage
        out.append(ClosedCheck(attr, total, len(c), frequent, coverage, closed))
    return out


def infer_closed_values(records: Sequence[Record], declared: Sequence[str] = (),
                        max_values: int = MAX_VALUES, min_count: int = MIN_COUNT,
                        min_coverage: float = MIN_COVERAGE) -> dict[str, tuple[str, ...]]:
    """attribute -> its values (sorted), for the closed attributes of `records`, or for the
    `declared` ones (their values seen at least `min_count` times). A declared attribute with
    fewer than two such values is left out with a warning; ValueError when none is left."""
    checks = {c.attribute: c for c in closed_checks(records, max_values, min_count, min_coverage)}
    if declared:
        missing = [a for a in declared if a not in checks or len(checks[a].frequent) < 2]
        if missing:
            message = (f"model.implicit_attributes: {', '.join(missing)} "
                       f"{'has' if len(missing) == 1 else 'have'} fewer than two values seen "
                       f"in {min_count} training records or more")
            if len(missing) == len(declared):
                raise ValueError(message)
            log.warning("%s: left out", message)
        return {a: tuple(sorted(checks[a].frequent)) for a in declared if a not in missing}
    return {a: tuple(sorted(c.frequent)) for a, c in checks.items() if c.closed}


__all__ = ["MAX_VALUES", "MIN_COUNT", "MIN_COVERAGE", "ClosedCheck", "closed_checks",
           "infer_closed_values", "product_values"]
