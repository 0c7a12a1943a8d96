"""Cost of one review claim (`ReviewDB.claim`) on a large queue, per queue order.

In one process, on one database of `--items` suggestions: each order's claim as shipped (the
order runs inside SQLite, `mjave.review.order.sql_key`) against the reference, the same order
written out in Python over every queued row (`queue_order` + `next_in_order`, how claims ran
before 2026-12-08), both picking the next free item after a reviewer's decisions. Prints ms a
claim and the reference's time over the shipped one; the two must hand out the same items.

    python benchmarks/review_claims.py                     # 100,000 items, 20 claims an order
    python benchmarks/review_claims.py --items 20000 --claims 50
"""

from __future__ import annotations

import argparse
import platform
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from mjave.data.records import Record
from mjave.review.db import ReviewDB
from mjave.review.inputs import ItemIn
from mjave.review.order import ORDERS, QueueRow, draw_key, next_in_order, queue_order


def python_next(db: ReviewDB, order: str, session: str) -> int | None:
    """The reference: every queued row read and ordered in Python."""
    with sqlite3.connect(db.path) as c:
        rows = c.execute("SELECT i.id, i.attribute, i.score, i.product_id, i.value, "
                         "EXISTS (SELECT 1 FROM state s WHERE s.item_id = i.id) OR EXISTS "
                         "(SELECT 1 FROM leases l WHERE l.item_id = i.id AND l.session != ?) "
                         "FROM items i WHERE i.kind = 'suggestion'", (session,)).fetchall()
    ordered = queue_order([QueueRow(r[0], r[1], r[2], draw_key(db.random_seed, r[3], r[1], r[4])
                                    if order == "random" else 0) for r in rows], order)
    return next_in_order(ordered, {r[0] for r in rows if not r[5]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--claims", type=int, default=20)
    ap.add_argument("--attributes", type=int, default=40)
    a = ap.parse_args()
    rng = random.Random(0)
    products = {f"p{k}": [Record(id=f"r{k}", text=f"product {k}")] for k in range(a.items // 4)}
    items = [ItemIn("suggestion", f"p{k // 4}", f"A{rng.randrange(a.attributes)}", f"v{k}",
                    round(rng.random(), 3)) for k in range(a.items)]
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.machine()) \
        if platform.system() == "Linux" else platform.machine()
    print(f"{a.items:,} queued suggestions, {a.attributes} attributes, {a.claims} claims an "
          f"order, SQLite {sqlite3.sqlite_version}, {cpu}")
    with tempfile.TemporaryDirectory() as tmp:
        db = ReviewDB(Path(tmp) / "queue.sqlite", random_seed="bench")
        start = time.perf_counter()
        db.load(items, products)
        print(f"load: {time.perf_counter() - start:.1f} s")
        print(f"| order | shipped (SQL), ms a claim | reference (Python), ms a claim | ratio |")
        print("|---|---:|---:|---:|")
        for order in ORDERS:
            shipped = reference = 0.0
            for _ in range(a.claims):
                t = time.perf_counter()
                expected = python_next(db, order, "bench")
                reference += time.perf_counter() - t
                t = time.perf_counter()
                got = db.claim("bench", "bench", order=order)
                shipped += time.perf_counter() - t
                if got is None or got["id"] != expected:
                    raise SystemExit(f"{order}: the shipped claim gave {got and got['id']}, "
                                     f"the reference {expected}")
                db.decide(got["id"], "accept", "bench", session="bench")
            print(f"| {order} | {1000 * shipped / a.claims:.1f} | "
                  f"{1000 * reference / a.claims:.1f} | {reference / shipped:.0f}x |")


if __name__ == "__main__":
    main()
