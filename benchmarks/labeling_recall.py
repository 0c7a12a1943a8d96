"""How well distant labelling reproduces gold spans from the gold (attribute, value) pairs alone.

For a gold-annotated JSONL file, the table is each record's gold pairs (product_id = record id),
the texts are labelled without their spans by `mjave.data.labeling.label_records`, and the
labelled spans are compared with the gold ones exactly on (attribute, begin, end):

    python benchmarks/labeling_recall.py ../shared/data/oamine/train.jsonl
    python benchmarks/labeling_recall.py ../shared/data/wdcpave/train.jsonl --occurrences first

Precision counts every labelled span that is not a gold span as wrong, so a value that repeats in
a text where only one occurrence is annotated (WDC-PAVE) costs precision with
`--occurrences all`. Prints the figures (and `--json` writes them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from mjave.data.catalog_table import TableRow
from mjave.data.formats import read_records
from mjave.data.labeling import CONFLICTS, OCCURRENCES, LabelPolicy, label_records


def measure(path: str, policy: LabelPolicy, show_misses: int = 0) -> dict:
    records, _ = read_records(path)
    table = [TableRow(r.id, s.attr, s.value, line=i)
             for i, r in enumerate(records, 1) for s in r.spans]
    gold = {(r.id, *s.key()) for r in records for s in r.spans}
    start = time.perf_counter()
    labelled, summary = label_records([replace(r, spans=[]) for r in records], table,
                                      policy=policy)
    seconds = time.perf_counter() - start
    found = {(r.id, *s.key()) for r in labelled for s in r.spans}
    tp = len(gold & found)
    result = {
        "data": path, "policy": summary.policy, "texts": len(records), "gold_spans": len(gold),
        "labelled_spans": len(found), "true_positives": tp,
        "precision": tp / len(found) if found else 0.0,
        "recall": tp / len(gold) if gold else 0.0,
        "seconds": round(seconds, 2),
        "summary": {k: v for k, v in summary.to_dict().items()
                    if k not in ("by_attribute", "unknown_product_lines", "policy")},
    }
    if show_misses:
        text = {r.id: r.text for r in records}
        for kind, keys in (("missed", gold - found), ("extra", found - gold)):
            for rid, attr, b, e in sorted(keys)[:show_misses]:
                print(f"{kind}: {rid} {attr} [{b}:{e}] {text[rid][b:e]!r}", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="gold-annotated JSONL (e.g. ../shared/data/oamine/train.jsonl)")
    ap.add_argument("--occurrences", choices=OCCURRENCES, default=None,
                    help="one policy only (default: both)")
    ap.add_argument("--conflicts", choices=CONFLICTS, default="drop")
    ap.add_argument("--case-breaks", action="store_true",
                    help="a change of case inside a word is a word boundary")
    ap.add_argument("--show-misses", type=int, default=0, metavar="N",
                    help="print the first N missed and N extra spans on stderr")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    results = []
    for occ in [args.occurrences] if args.occurrences else list(OCCURRENCES):
        policy = LabelPolicy(occurrences=occ, conflicts=args.conflicts,
                             case_breaks=args.case_breaks)
        r = measure(args.data, policy, args.show_misses)
        results.append(r)
        s = r["summary"]
        print(f"{Path(args.data).parent.name}/{Path(args.data).name} occurrences={occ} "
              f"conflicts={args.conflicts} case_breaks={args.case_breaks}: precision "
              f"{r['precision']:.4f} recall {r['recall']:.4f} ({r['true_positives']} of "
              f"{r['gold_spans']} gold spans, {r['labelled_spans']} labelled; {r['texts']} texts, {r['seconds']} s)")
        print(f"  pairs {s['pairs']}, not found {s['values_unmatched']}, lost to conflicts "
              f"{s['values_lost_to_conflicts']}, lost to overlaps {s['values_lost_to_overlaps']}"
              f", conflicts {s['conflicts']}, overlaps resolved {s['spans_overlap_resolved']}, "
              f"further occurrences skipped {s['extra_occurrences_skipped']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
