"""`ReviewDB.claim` orders the queue inside SQLite (`mjave.review.order.sql_key`); the order is
defined once more in Python (`queue_order`, `next_in_order`, worked by hand in
tests/test_review_order.py). Here both are run on one random queue, with ties, filters, decided
and leased items and skips, and must hand out the same items; and the indexed orders must be
answered from their index, not by sorting the whole queue."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from mjave.data.records import Record
from mjave.review.db import Filters, ReviewDB
from mjave.review.inputs import ItemIn
from mjave.review.order import ORDERS, QueueRow, draw_key, next_in_order, queue_order, sql_key

ATTRIBUTES = ("Color", "Fit", "Material", "Brand")


def _queue(tmp_path: Path, seed: int, n: int = 120) -> tuple[ReviewDB, list[ItemIn]]:
    rng = random.Random(seed)
    # scores on a coarse grid: many ties, in score and in distance from 0.5 (0.4 and 0.6)
    items = [ItemIn("suggestion", f"p{k % 40}", rng.choice(ATTRIBUTES), f"v{k}",
                    rng.choice([0.1, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9, 0.95]))
             for k in range(n)]
    products = {f"p{k}": [Record(id=f"r{k}", text=f"text {k}", category=rng.choice(["a", "b"]))]
                for k in range(40)}
    db = ReviewDB(tmp_path / f"q{seed}.sqlite", random_seed=f"seed{seed}")
    db.load(items, products)
    return db, items


def _reference(db: ReviewDB, order: str, filters: Filters, after: int | None) -> int | None:
    """The next item by the Python definition, over the database's current state; the claiming
    session's own lease does not count (a claim releases it first)."""
    with sqlite3.connect(db.path) as c:
        where, args = filters.sql()
        rows = c.execute(f"SELECT i.id, i.attribute, i.score, i.product_id, i.value, "
                         f"EXISTS (SELECT 1 FROM state s WHERE s.item_id = i.id) OR EXISTS "
                         f"(SELECT 1 FROM leases l WHERE l.item_id = i.id AND l.session != 's') "
                         f"FROM items i WHERE i.kind = 'suggestion' AND {where}", args).fetchall()
    ordered = queue_order([QueueRow(r[0], r[1], r[2], draw_key(db.random_seed, r[3], r[1], r[4]))
                           for r in rows], order)
    return next_in_order(ordered, {r[0] for r in rows if not r[5]}, after)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("seed", [0, 1])
def test_sql_claims_follow_the_python_order(tmp_path, order, seed):
    db, _ = _queue(tmp_path, seed)
    rng = random.Random(100 + seed)
    first = db.claim("other", "bob", order="score")          # another reviewer holds one
    assert first is not None
    for filters in (Filters(), Filters(attribute="Fit"), Filters(category="a"),
                    Filters(min_score=0.4, max_score=0.7)):
        after = None
        for _ in range(30):
            expected = _reference(db, order, filters, after)
            got = db.claim("s", "alice", filters=filters, after=after, order=order)
            assert (got and got["id"]) == expected
            if got is None:
                break
            if rng.random() < 0.3:          # a skip: the next claim goes on after this item
                after = got["id"]
            else:
                db.decide(got["id"], rng.choice(["accept", "reject"]), "alice", session="s")
                after = None
        # a stale or unknown `after` starts from the top
        assert (db.claim("s", "alice", filters=filters, after=10**6, order=order) or {}).get(
            "id") == _reference(db, order, filters, None)


def test_stored_gain_rounds_follow_a_reload_with_new_scores(tmp_path):
    db, items = _queue(tmp_path, 2)
    products = {f"p{k}": [Record(id=f"r{k}", text=f"text {k}")] for k in range(40)}
    for item in db_claims(db, 10):
        db.decide(item, "accept", "alice", session="s")
    rng = random.Random(7)
    # rescored, and new items of one attribute: every round of that attribute moves
    db.load([ItemIn(i.kind, i.product_id, i.attribute, i.value, rng.random()) for i in items]
            + [ItemIn("suggestion", "p1", "Fit", f"new{k}", 0.5) for k in range(5)], products)
    for filters in (Filters(), Filters(attribute="Fit")):
        after = None
        for _ in range(15):
            expected = _reference(db, "gain", filters, after)
            got = db.claim("s", "alice", filters=filters, after=after, order="gain")
            assert (got and got["id"]) == expected
            after = got["id"]


def db_claims(db: ReviewDB, n: int) -> list[int]:
    out, after = [], None
    for _ in range(n):
        after = db.claim("s", "alice", after=after, order="gain")["id"]
        out.append(after)
    return out


@pytest.mark.parametrize("order,stored", [("score", False), ("uncertainty", False),
                                          ("random", False), ("gain", True)])
def test_indexed_orders_are_answered_from_their_index(tmp_path, order, stored):
    db, _ = _queue(tmp_path, 0, n=20)
    keys = ", ".join((*sql_key(order, stored_round=stored), "i.id"))
    query = (f"SELECT i.id FROM items i WHERE i.kind = 'suggestion' AND 1 AND NOT EXISTS "
             f"(SELECT 1 FROM state s WHERE s.item_id = i.id) ORDER BY {keys} LIMIT 1")
    with sqlite3.connect(db.path) as c:
        plan = " | ".join(r[-1] for r in c.execute("EXPLAIN QUERY PLAN " + query))
    assert "TEMP B-TREE" not in plan, plan                    # no sort of the whole queue
    assert "INDEX items_" in plan, plan


def test_a_skip_wraps_around_but_not_back_onto_the_skipped_item(tmp_path):
    db, _ = _queue(tmp_path, 3, n=6)
    for order in ORDERS:
        ids = []
        after = None
        for _ in range(6):
            got = db.claim("s", "alice", after=after, order=order)
            ids.append(got["id"])
            after = got["id"]
        assert sorted(ids) == list(range(1, 7)), order        # every item once, in a cycle
        last = db.claim("s", "alice", after=after, order=order)["id"]
        assert last == ids[0], order                          # then round again
        db.release("s")
