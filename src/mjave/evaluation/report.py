"""Plain-text tables for the reports of `evaluate_records`, for logs and the terminal.

Widths are computed in terminal columns (CJK characters take two), since MEPAVE attribute and
category names are Chinese.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["format_comparison", "format_report", "implicit_table", "novelty_line"]

_SECTIONS = (("attribute", "attribute"), ("value", "value (span)"), ("pair", "pair"))
_SLOT = ("slot", "slot (1 value/attr)")
_PAIR_IMPLICIT = "pair (+implicit)"
_BREAKDOWN_COLUMNS = ("attr F1", "value P", "value R", "value F1", "pair F1")


def _width(text: str) -> int:
    """Display width: East Asian wide/full-width characters take two columns."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * max(0, width - _width(text))
    return fill + text if right else text + fill


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """First column left-aligned, the others (numbers) right-aligned."""
    widths = [
        max(_width(row[j]) for row in [header, *rows]) for j in range(len(header))
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(_pad(c, widths[j], right=j > 0) for j, c in enumerate(cells)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _num(d: Mapping[str, Any] | None, key: str) -> str:
    """A percentage or count from a `PRF.to_dict`, "-" when the section is missing."""
    if not d or key not in d or d[key] is None:
        return "-"
    value = d[key]
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _has_slot(entries: Mapping[str, Mapping[str, Any]]) -> bool:
    return any("slot" in d for d in entries.values())


def _recall_cell(d: Mapping[str, Any]) -> str:
    """ "66.67 (2/3)": a `NoveltyCounts.to_dict` as recall and counts ("-" without gold)."""
    return f"{_num(d, 'recall')} ({d.get('found', 0)}/{d.get('gold', 0)})"


def novelty_line(report: Mapping[str, Any]) -> str | None:
    """The one line of recall on values seen / unseen in training (`recall_by_novelty`), or
    why it was omitted; None when the report has neither."""
    novelty = report.get("recall_by_novelty")
    if not novelty:
        omitted = report.get("recall_by_novelty_omitted")
        return f"recall on values unseen in training: omitted, {omitted}" if omitted else None
    total = novelty["seen"]["gold"] + novelty["unseen"]["gold"]
    line = (f"recall on values seen / unseen in training (pair): "
            f"seen {_recall_cell(novelty['seen'])}, unseen {_recall_cell(novelty['unseen'])}; "
            f"unseen share {_num(novelty, 'unseen_share')}% of {total} gold values")
    slot = novelty.get("slot")
    if slot:
        line += f"; slot: seen {_recall_cell(slot['seen'])}, unseen {_recall_cell(slot['unseen'])}"
    return line


def implicit_table(implicit: Mapping[str, Any]) -> str:
    """The table of an `implicit_report`: per attribute, then "all", the scored (record,
    attribute) pairs, accuracy, the majority reference's accuracy and P/R/F1 (percent)."""
    entries = [*(implicit.get("per_attribute") or {}).items(), ("all", implicit.get("all"))]
    rows = [[name, *(_num(d, k) for k in ("n", "accuracy", "majority", "p", "r", "f1"))]
            for name, d in entries if d]
    return _table(["attribute", "n", "accuracy", "majority", "P", "R", "F1"], rows)


def format_report(report: Mapping[str, Any], title: str = "") -> str:
    """Overall P/R/F1 of the metrics, then per-attribute and per-category tables.

    The per-attribute table is sorted by support (gold value spans, then gold attribute
    occurrences), largest first, so the attributes that move the micro average come first.
    A report with the slot protocol (`mjave.evaluation.slot.with_slot`) gets its row (TP = VC,
    FP = NV + VW, FN = VN + VW), a line with the four counts and a "slot F1" column; one with
    "recall_by_novelty" (or the reason it was omitted) a line for that (`novelty_line`); one
    with "implicit" (`mjave.evaluation.implicit.with_implicit`) the `implicit_table`, and its
    pair row says that pair scores count implicit values.
    """
    parts: list[str] = []
    if title:
        parts += [title, "=" * _width(title)]
    n = report.get("n_instances")
    head = f"instances: {n}" if n is not None else ""
    attr = report.get("attribute") or {}
    if attr.get("source") == "probs":
        head += f"   (attributes from classifier probabilities, >= {attr.get('threshold')})"
    elif attr.get("source") == "spans":
        head += "   (attributes from predicted spans)"
    if head:
        parts.append(head.strip())

    overall = [
        [_PAIR_IMPLICIT if key == "pair" and report.get("pair_includes_implicit") else label,
         *(_num(report.get(key), k) for k in ("p", "r", "f1", "tp", "fp", "fn"))]
        for key, label in (*_SECTIONS, _SLOT)
        if key in report
    ]
    parts.append(_table(["metric", "P", "R", "F1", "TP", "FP", "FN"], overall))
    slot = report.get("slot")
    if slot:
        parts.append("slot counts (one value per attribute asked): "
                     + "  ".join(f"{k.upper()} {_num(slot, k)}" for k in ("vc", "vw", "vn", "nv")))
    novelty = novelty_line(report)
    if novelty:
        parts.append(novelty)
    implicit = report.get("implicit")
    if implicit:
        parts += ["", "implicit values (closed attributes the text does not state; majority: "
                      "always the most common gold value)", implicit_table(implicit)]

    per_attr: Mapping[str, Mapping[str, Any]] = report.get("per_attribute") or {}
    if per_attr:
        slot_column = _has_slot(per_attr)

        def support(item: tuple[str, Mapping[str, Any]]) -> tuple[int, int, str]:
            name, d = item
            value, attribute = d.get("value") or {}, d.get("attribute") or {}
            return (
                -(value.get("tp", 0) + value.get("fn", 0)),
                -(attribute.get("tp", 0) + attribute.get("fn", 0)),
                name,
            )

        rows = []
        for name, d in sorted(per_attr.items(), key=support):
            value = d.get("value") or {}
            rows.append(
                [
                    name,
                    str(value.get("tp", 0) + value.get("fn", 0)),
                    _num(d.get("attribute"), "f1"),
                    _num(value, "p"),
                    _num(value, "r"),
                    _num(value, "f1"),
                    _num(d.get("pair"), "f1"),
                    *([_num(d.get("slot"), "f1")] if slot_column else []),
                ]
            )
        parts += [
            "",
            "per attribute (support = gold value spans)",
            _table(["attribute", "support", *_BREAKDOWN_COLUMNS,
                    *(["slot F1"] if slot_column else [])], rows),
        ]

    per_cat: Mapping[str, Mapping[str, Any]] = report.get("per_category") or {}
    if per_cat:
        slot_column = _has_slot(per_cat)
        rows = [
            [
                name,
                _num(d, "n_instances"),
                _num(d.get("attribute"), "f1"),
                _num(d.get("value"), "p"),
                _num(d.get("value"), "r"),
                _num(d.get("value"), "f1"),
                _num(d.get("pair"), "f1"),
                *([_num(d.get("slot"), "f1")] if slot_column else []),
            ]
            for name, d in per_cat.items()
        ]
        parts += [
            "",
            "per category",
            _table(["category", "n", *_BREAKDOWN_COLUMNS, *(["slot F1"] if slot_column else [])],
                   rows),
        ]
    return "\n".join(parts)


def format_comparison(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per model (in the given order): attribute, value and pair F1 of its report,
    like the paper's Table 3 with the position-free pair F1 added, and slot F1 when any report
    has the slot protocol; "-" where a report lacks one."""
    sections = [*_SECTIONS, *([_SLOT] if _has_slot(rows) else [])]
    implicit = any("implicit" in d for d in rows.values())
    table = [
        [model, *(_num(report.get(key), "f1") for key, _ in sections),
         *([_num(report.get("implicit", {}).get("all"), "f1")] if implicit else [])]
        for model, report in rows.items()
    ]
    return _table(["model", "attribute F1", "value F1", "pair F1",
                   *(["slot F1"] if len(sections) > len(_SECTIONS) else []),
                   *(["implicit F1"] if implicit else [])], table)
