"""`mjave review export`: the reviewed values as a catalog table and as training data.

Only each item's effective decision counts (the last one, after undos):

| item | decision | catalog row (`product_id, attribute, value`) | labelled span |
|---|---|---|---|
| suggestion | accept | the suggested value | yes |
| suggestion | edit | the edited value | yes, where the text has it |
| suggestion | reject | none | none |
| conflict | keep_text | the text's value (it replaces the table's) | yes |
| conflict | edit | the edited value (it replaces the table's) | yes, where the text has it |
| conflict | keep_table | none (the table is right already) | none |

The labelled JSONL (`--labeled`) holds every text of every product with at least one accepted
or edited value, in the JSONL record format `mjave train` reads. Each accepted value is labelled
at every place its text spells it (the policy `mjave data label` uses by default, so that a
second, unlabelled mention is not taught as "no value"): the offsets of the suggestion when the
value was accepted unchanged and they still hold it, plus every other occurrence found after
normalisation (`mjave.data.normalize` when present, else a case-insensitive search). A value
found in none of its product's texts (typically an edit the text does not spell) is kept in the
record's `unmatched` list and counted, never silently dropped. `known_attributes` on each record
lists the attributes the review settled for the product, so partial-label training
(`train.partial_labels`) does not read the other attributes' unlabelled tokens as "no value".
Where two accepted values overlap in a text the higher-scored one is kept (counted).
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from mjave.data.errors import DataError
from mjave.data.formats import write_records
from mjave.data.outputs import atomic_write, check_not_input, same_file
from mjave.data.records import Record, Span
from mjave.review.db import ReviewDB
from mjave.review.inputs import find_all, same_value

PathLike = str | os.PathLike
KEEPS = {"accept", "edit", "keep_text"}
"""Effective actions whose value goes into the catalog."""


@dataclass
class ExportSummary:
    decided: int = 0
    rows: int = 0                      # catalog rows written
    by_action: dict[str, int] = field(default_factory=dict)
    records: int = 0                   # labelled texts written
    spans: int = 0
    unmatched: int = 0                 # accepted values found in none of their product's texts
    overlaps: int = 0                  # spans dropped because a better one overlapped them

    def lines(self) -> list[str]:
        acts = ", ".join(f"{n} {a}" for a, n in sorted(self.by_action.items())) or "none"
        out = [f"{self.decided} decided items ({acts}); {self.rows} catalog rows"]
        if self.records:
            out.append(f"{self.records} labelled texts, {self.spans} spans, {self.unmatched} "
                       f"values not found in their text, {self.overlaps} overlapping spans "
                       "dropped")
        return out


def accepted_values(db: ReviewDB) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The items whose effective decision keeps a value, with `final_value` set, and the count
    of decided items per action."""
    by_action: dict[str, int] = defaultdict(int)
    out = []
    for row in db.effective():
        by_action[row["action"]] += 1
        if row["action"] in KEEPS:
            row["final_value"] = row["edited_value"] if row["action"] == "edit" else row["value"]
            out.append(row)
    return out, dict(by_action)


def write_catalog(rows: list[dict[str, Any]], path: PathLike) -> int:
    """`product_id, attribute, value` for each kept value (each distinct row once)."""
    seen: set[tuple[str, str, str]] = set()
    table = []
    for r in rows:
        key = (r["product_id"], r["attribute"], r["final_value"])
        if key not in seen:
            seen.add(key)
            table.append(key)
    table.sort()

    with atomic_write(path, newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["product_id", "attribute", "value"])
        w.writerows(table)
    return len(table)


def labelled_records(db: ReviewDB, rows: list[dict[str, Any]], summary: ExportSummary
                     ) -> list[Record]:
    """The span-labelled texts of the products with kept values (see the module docstring)."""
    by_product: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_product[r["product_id"]].append(r)
    records: list[Record] = []
    for pid in sorted(by_product):
        values = by_product[pid]
        texts = db.product_records(pid)
        candidates: dict[str, list[tuple[int, float, int, int, str]]] = defaultdict(list)
        unmatched = []
        for v in values:
            found = False
            for t in texts:
                text = t["text"]
                spans = set(find_all(text, v["final_value"]))
                exact = (v["action"] != "edit" and v["record_id"] == t["record_id"]
                         and v["hl_begin"] is not None
                         and same_value(text[v["hl_begin"]:v["hl_end"]], v["final_value"]))
                if exact:
                    spans.add((v["hl_begin"], v["hl_end"]))
                for b, e in spans:
                    # rank: the reviewed mention itself first, then by score, then longer
                    first = 0 if exact and (b, e) == (v["hl_begin"], v["hl_end"]) else 1
                    candidates[t["record_id"]].append((first, -v["score"], b, e, v["attribute"]))
                found = found or bool(spans)
            if not found:
                unmatched.append({"attribute": v["attribute"], "value": v["final_value"]})
                summary.unmatched += 1
        known = sorted({v["attribute"] for v in values})
        for i, t in enumerate(texts):
            kept: list[Span] = []
            for first, neg_score, b, e, attr in sorted(candidates[t["record_id"]],
                                                      key=lambda c: (c[0], c[1], c[2] - c[3],
                                                                     c[2])):
                if any(b < k.end and k.begin < e for k in kept):
                    if not any((k.begin, k.end, k.attr) == (b, e, attr) for k in kept):
                        summary.overlaps += 1
                    continue
                kept.append(Span(b, e, attr, t["text"][b:e]))
            kept.sort()
            extra: dict[str, Any] = {"known_attributes": known}
            if i == 0 and unmatched:
                extra["unmatched"] = unmatched
            records.append(Record(id=t["record_id"], text=t["text"], spans=kept,
                                  cid=pid if pid != t["record_id"] else None,
                                  category=t["category"], image=t["image"], extra=extra))
            summary.spans += len(kept)
    summary.records = len(records)
    return records


def export(db: ReviewDB, output: PathLike | None = None, labeled: PathLike | None = None
           ) -> ExportSummary:
    """Write the catalog table to `output` and/or the labelled JSONL to `labeled`; neither may
    be the database itself, nor the two one file (checked before anything is written)."""
    for path in (output, labeled):
        if path is not None:
            check_not_input(path, [db.path], "the export")
    if output is not None and labeled is not None and same_file(output, labeled):
        raise DataError("the catalog table and the labelled JSONL are the same file",
                        path=str(labeled), reason="same file")
    rows, by_action = accepted_values(db)
    summary = ExportSummary(decided=sum(by_action.values()), by_action=by_action)
    if output is not None:
        summary.rows = write_catalog(rows, output)
    if labeled is not None:
        records = labelled_records(db, rows, summary)
        write_records(records, labeled, "jsonl")
    return summary


__all__ = ["ExportSummary", "accepted_values", "export", "labelled_records", "write_catalog"]
