"""The order of the review queue: which undecided item a reviewer gets next.

- `score` (the default): best score first, as `mjave complete` ranks them. Reviews then confirm
  what the model is surest of: good for publishing fast, little for the next model.
- `uncertainty`: the score closest to `centre` (0.5: the rows of `mjave complete` carry no
  threshold of their own) first. A decision there is the one the model could least predict,
  so it teaches the next model most (uncertainty sampling).
- `gain`: uncertainty spread across attributes. Round `k` holds every attribute's `k`-th most
  uncertain item (most uncertain of the round first), so one frequent attribute cannot take
  the whole round and every attribute's weakest values get a reviewer early.

Ties are broken by item id. `ReviewDB.claim` orders every item matching the page's filters,
decided ones included, and leases the first undecided one nobody holds: the order is the same
for every reviewer and every claim (a skip goes on from the skipped item's place), and under
`gain` an attribute whose uncertain items were already decided (say, in score order) waits
for the rounds of the attributes reviewed less.

`queue_order` writes each order out in Python; `sql_key` gives the same order as SQL sort keys,
which `ReviewDB.claim` runs inside SQLite, from an index (`gain` on a page filtered by category
or score ranks that part of the queue on each claim): ordering a queue of 100,000 items in
Python cost about a second a claim (`benchmarks/review_claims.py`).
tests/test_review_claims_sql.py checks that both hand out the same items.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Iterable, Literal, NamedTuple, get_args

QueueOrder = Literal["score", "uncertainty", "gain", "random"]
ORDERS: tuple[str, ...] = get_args(QueueOrder)
DEFAULT_ORDER: QueueOrder = "score"
FAIR_ORDER: QueueOrder = "random"
"""The order whose unfiltered decisions are a fair sample of the queue (module docstring)."""
DEFAULT_CENTRE = 0.5
"""Where a score is least certain: a probability's midpoint (the rows carry no threshold)."""


class QueueRow(NamedTuple):
    """What the order reads of an item."""

    id: int
    attribute: str
    score: float
    draw: int = 0      # the item's place under `random` (`draw_key`)


def draw_key(seed: str, product_id: str, attribute: str, value: str) -> int:
    """An item's place in the `random` order: a hash of what the item is (not of its score or
    row id), so the shuffle is the same for every reviewer and claim and survives reloading the
    queue with new scores, and differs between databases (their `seed`)."""
    text = "\x1f".join((seed, product_id, attribute, value)).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def uncertainty(score: float, centre: float = DEFAULT_CENTRE) -> float:
    """Distance of `score` from `centre`: 0 is the least certain."""
    return abs(score - centre)


def by_uncertainty(rows: Iterable[QueueRow], centre: float = DEFAULT_CENTRE) -> list[QueueRow]:
    return sorted(rows, key=lambda r: (uncertainty(r.score, centre), r.id))


def round_robin(rows: Iterable[QueueRow], centre: float = DEFAULT_CENTRE) -> list[QueueRow]:
    """Round k: each attribute's k-th most uncertain row, the round's most uncertain first."""
    per_attribute: dict[str, list[QueueRow]] = defaultdict(list)
    for row in by_uncertainty(rows, centre):
        per_attribute[row.attribute].append(row)
    rank = {row.id: k for rows_ in per_attribute.values() for k, row in enumerate(rows_)}
    return sorted((r for rows_ in per_attribute.values() for r in rows_),
                  key=lambda r: (rank[r.id], uncertainty(r.score, centre), r.id))


def gain_round_sql(centre: float = DEFAULT_CENTRE) -> str:
    """`gain`'s round of each row a query over the `items` row `i` selects: its rank among the
    selected rows of its kind and attribute by uncertainty (1: the most uncertain)."""
    return (f"row_number() OVER (PARTITION BY i.kind, i.attribute "
            f"ORDER BY abs(i.score - {float(centre)!r}), i.id)")


def sql_key(order: QueueOrder, centre: float = DEFAULT_CENTRE, stored_round: bool = False
            ) -> tuple[str, ...]:
    """The order as SQL sort keys over the `items` row `i`, ascending, ties broken by `i.id`
    after them: the same order as `queue_order`. `gain`'s first key is its round
    (`gain_round_sql`), a window that must be taken over the filtered queue alone, or, with
    `stored_round`, the `gain_round` column: the round over the whole queue, stored when items
    are loaded, which is also the round of a queue filtered to whole attributes (no filter, or
    one attribute). `random` reads the `draw` column (`signed_draw` of `draw_key`, stored when an
    item is loaded)."""
    distance = f"abs(i.score - {float(centre)!r})"
    if order == "score":
        return ("-i.score",)
    if order == "uncertainty":
        return (distance,)
    if order == "gain":
        return ("i.gain_round" if stored_round else gain_round_sql(centre), distance)
    if order == "random":
        return ("i.draw",)
    raise ValueError(f"queue order {order!r}: use one of {', '.join(ORDERS)}")


def signed_draw(key: int) -> int:
    """`draw_key` (0 .. 2**64) shifted into SQLite's signed 64-bit integers, order kept."""
    return key - 2**63


def queue_order(rows: Iterable[QueueRow], order: QueueOrder = DEFAULT_ORDER,
                centre: float = DEFAULT_CENTRE) -> list[int]:
    """The ids of `rows` in the order `order` reviews them (module docstring)."""
    if order == "score":
        return [r.id for r in sorted(rows, key=lambda r: (-r.score, r.id))]
    if order == "uncertainty":
        return [r.id for r in by_uncertainty(rows, centre)]
    if order == "gain":
        return [r.id for r in round_robin(rows, centre)]
    if order == "random":
        return [r.id for r in sorted(rows, key=lambda r: (r.draw, r.id))]
    raise ValueError(f"queue order {order!r}: use one of {', '.join(ORDERS)}")


def next_in_order(ordered: list[int], eligible: set[int], after: int | None = None
                  ) -> int | None:
    """The first id of `ordered` in `eligible`; with `after` (an id of `ordered`), the first one
    after it, wrapping around to the top but never back onto `after` itself (a skip)."""
    if after is not None and after in ordered:
        at = ordered.index(after)
        ordered = ordered[at + 1:] + ordered[:at]
    return next((i for i in ordered if i in eligible), None)


__all__ = ["DEFAULT_CENTRE", "DEFAULT_ORDER", "FAIR_ORDER", "ORDERS", "QueueOrder", "QueueRow",
           "by_uncertainty", "draw_key", "gain_round_sql", "next_in_order", "queue_order",
           "round_robin", "signed_draw", "sql_key", "uncertainty"]
