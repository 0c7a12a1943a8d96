"""Dataset statistics: what a dataset holds before anyone trains on it (and what BIO will lose)."""

from __future__ import annotations

import math
import unicodedata
from collections import Counter, defaultdict
from typing import Any, Iterable

from mjave.data.errors import RowIssues
from mjave.data.closed_values import MAX_VALUES, MIN_COUNT, MIN_COVERAGE, closed_checks
from mjave.data.records import Record
from mjave.data.spans import resolve_overlaps

HISTOGRAM_CAP = 10  # texts with this many spans or more share the last histogram bucket


def percentile(sorted_values: list[int], p: float) -> int:
    """Nearest-rank percentile (an observed value, so 'p99 = 412 characters' is a real text)."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def dataset_stats(records: Iterable[Record], issues: RowIssues | None = None) -> dict[str, Any]:
    """Counts, distributions and BIO losses of a dataset, as a JSON-ready dict."""
    records = list(records)
    n = 0
    products: set[str] = set()
    categories: Counter = Counter()
    attr_spans: Counter = Counter()
    attr_values: dict[str, set[str]] = defaultdict(set)
    attr_texts: Counter = Counter()
    per_text: Counter = Counter()
    lengths: list[int] = []
    dropped = texts_with_drops = 0
    most_values = several = 0   # spans of one attribute in one text; (text, attribute)s with 2+
    for r in records:
        n += 1
        products.add(r.product_id)
        if r.category is not None:
            categories[r.category] += 1
        for s in r.spans:
            attr_spans[s.attr] += 1
            attr_values[s.attr].add(s.value)
        attr_texts.update(set(r.attributes()))
        per_attr = Counter(s.attr for s in r.spans)
        most_values = max(most_values, *per_attr.values(), 0)
        several += sum(1 for c in per_attr.values() if c > 1)
        per_text[len(r.spans)] += 1
        lengths.append(len(r.text))
        lost = len(resolve_overlaps(r.spans)[1])
        dropped += lost
        texts_with_drops += lost > 0
    lengths.sort()
    total = sum(attr_spans.values())
    histogram: dict[str, int] = {}
    for k in range(HISTOGRAM_CAP):
        histogram[str(k)] = per_text.get(k, 0)
    histogram[f"{HISTOGRAM_CAP}+"] = sum(v for k, v in per_text.items() if k >= HISTOGRAM_CAP)
    skipped = issues.reasons() if issues is not None else Counter()
    return {
        "instances": n,
        "products": len(products),
        "categories": dict(categories.most_common()),
        "attributes": {a: {"spans": c, "values": len(attr_values[a]), "texts": attr_texts[a]}
                       for a, c in sorted(attr_spans.items(), key=lambda kv: (-kv[1], kv[0]))},
        "spans": total,
        "spans_per_text": {"mean": round(total / n, 3) if n else 0.0,
                           "max": max(per_text) if per_text else 0, "histogram": histogram},
        "text_length": {"p50": percentile(lengths, 50), "p90": percentile(lengths, 90),
                        "p99": percentile(lengths, 99), "max": lengths[-1] if lengths else 0},
        "overlaps": {"dropped_spans": dropped, "texts": texts_with_drops},
        "values_per_attribute": {"max": most_values, "text_attributes_with_several": several},
        "closed_values": closed_summary(records),
        "rows_read": issues.rows_read if issues is not None else n,
        "skipped": {"rows": sum(skipped.values()), "by_reason": dict(skipped.most_common())},
    }


def closed_summary(records: list[Record]) -> dict[str, Any]:
    """Which attributes `model.implicit_values` would name without a span, and by what rule
    (`mjave.data.closed_values`), plus how many texts carry product-level values."""
    return {"rule": {"max_values": MAX_VALUES, "min_count": MIN_COUNT,
                     "min_coverage": MIN_COVERAGE},
            "attributes": {c.attribute: {"closed": c.closed, "frequent_values": len(c.frequent),
                                         "distinct_values": c.distinct,
                                         "coverage": round(c.coverage, 4),
                                         "occurrences": c.occurrences}
                           for c in closed_checks(records)},
            "texts_with_implicit_values": sum(bool(r.implicit_values()) for r in records)}


def _width(s: str) -> int:
    """Terminal columns: CJK characters take two, so Chinese attribute names still line up."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    """Left-aligned first column, right-aligned numbers."""
    widths = [max(_width(x) for x in col) for col in zip(header, *rows)]
    lines = []
    for row in [header, *rows]:
        cells = [x + " " * (w - _width(x)) if i == 0 else " " * (w - _width(x)) + x
                 for i, (x, w) in enumerate(zip(row, widths))]
        lines.append(("  " + "  ".join(cells)).rstrip())
    return lines


def format_stats(stats: dict[str, Any], max_rows: int = 30) -> str:
    """A plain-text report of `dataset_stats` for the terminal."""
    sp, tl, ov = stats["spans_per_text"], stats["text_length"], stats["overlaps"]
    vp = stats["values_per_attribute"]
    out = [f"instances  {stats['instances']}  (rows read {stats['rows_read']}, "
           f"skipped {stats['skipped']['rows']})",
           f"products   {stats['products']}",
           f"spans      {stats['spans']}  (per text: mean {sp['mean']}, max {sp['max']})",
           f"text length in characters: p50 {tl['p50']}, p90 {tl['p90']}, p99 {tl['p99']}, "
           f"max {tl['max']}",
           f"overlapping spans BIO drops: {ov['dropped_spans']} in {ov['texts']} texts "
           "(policy: keep the longer, then the earlier)",
           f"values of one attribute in one text: max {vp['max']} "
           f"({vp['text_attributes_with_several']} text-attribute pairs have several; "
           "model.max_values_per_attribute can cap predictions to match)"]
    if stats["skipped"]["by_reason"]:
        out.append("skipped rows by reason:")
        out += _table([(r, str(c)) for r, c in stats["skipped"]["by_reason"].items()],
                      ("reason", "rows"))
    hist = list(sp["histogram"].items())
    while len(hist) > 1 and hist[-1][1] == 0:  # empty buckets past the longest text say nothing
        hist.pop()
    out.append("spans per text:")
    out += _table([(k, str(v)) for k, v in hist], ("spans", "texts"))
    if stats["categories"]:
        cats = list(stats["categories"].items())
        out.append(f"categories ({len(cats)}):")
        out += _table([(c, str(v)) for c, v in cats[:max_rows]], ("category", "texts"))
        if len(cats) > max_rows:
            out.append(f"  ... and {len(cats) - max_rows} more")
    attrs = list(stats["attributes"].items())
    out.append(f"attributes ({len(attrs)}):")
    out += _table([(a, str(d["spans"]), str(d["values"]), str(d["texts"]))
                   for a, d in attrs[:max_rows]], ("attribute", "spans", "values", "texts"))
    if len(attrs) > max_rows:
        out.append(f"  ... and {len(attrs) - max_rows} more")
    out += _closed_lines(stats.get("closed_values"))
    return "\n".join(out)


def _closed_lines(closed: dict[str, Any] | None) -> list[str]:
    if not closed:
        return []
    rule = closed["rule"]
    names = [f"{a} ({d['frequent_values']} values)"
             for a, d in closed["attributes"].items() if d["closed"]]
    near = sorted(((a, d) for a, d in closed["attributes"].items() if not d["closed"]
                   and d["frequent_values"] >= 2), key=lambda x: -x[1]["coverage"])[:5]
    out = [f"closed-vocabulary attributes (model.implicit_values names them without a span: at "
           f"most {rule['max_values']} values seen in {rule['min_count']}+ records, covering "
           f"{100 * rule['min_coverage']:.0f}%+ of the attribute): "
           f"{', '.join(names) if names else 'none'}"]
    if near:
        out.append("  closest of the others: " + ", ".join(
            f"{a} ({d['frequent_values']} values, {100 * d['coverage']:.0f}%)" for a, d in near))
    out.append(f"texts with values they do not state (implicit_values / unmatched): "
               f"{closed['texts_with_implicit_values']}")
    return out
