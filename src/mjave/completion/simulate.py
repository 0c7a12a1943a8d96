"""An incomplete catalog simulated from a gold-annotated dataset, where the answer is known.

The gold (attribute, value) pairs of each product are its table; hiding some of its attributes
gives the table a catalog team has and the pairs it lacks (the answer key). A user measures
`mjave complete` on their own gold data with these (docs/completion.md, section 4);
`mjave experiment completion` is built on them.

Review rounds (issue #33): a reviewer who knows the answer key works through a round of the
review queue (`load_suggestions` loads a suggestions file into a `ReviewDB` as `mjave review`
does, `review_round` claims and decides in a queue order), `reviewed` reads back what the
reviews settled, and `catalog_counts` scores the catalog after a round: reviewed values plus
the suggestions still open.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from mjave.completion.scoring import Pair
from mjave.data.catalog_table import TableRow
from mjave.data.normalize import collapse_punctuation
from mjave.data.records import Record
from mjave.review.db import ReviewDB
from mjave.review.export import accepted_values
from mjave.review.inputs import check_products, read_items
from mjave.review.order import FAIR_ORDER, QueueOrder

GoldTable = dict[str, list[tuple[str, str]]]
"""product_id -> its gold (attribute, value) pairs."""


def gold_table(records: Sequence[Record]) -> GoldTable:
    """product_id -> its gold (attribute, value) pairs, one per normalised value, first-seen
    surface form: its spans' in text order, then the product-level values its texts do not
    state (`Record.implicit_values`, issue #31: a colour only the photo shows)."""
    out: GoldTable = {}
    seen: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for r in records:
        pairs = out.setdefault(r.product_id, [])
        named = [(s.attr, s.value) for s in sorted(r.spans, key=lambda s: (s.begin, s.end))]
        named += [(a, v) for a, v in r.implicit_values().items() if v is not None]
        for attr, value in named:
            key = (attr, collapse_punctuation(value))
            if key[1] and key not in seen[r.product_id]:
                seen[r.product_id].add(key)
                pairs.append((attr, value))
    return out


def hide_attributes(table: GoldTable, fraction: float, seed: int) -> dict[str, set[str]]:
    """product_id -> its hidden attributes: floor(fraction * n) of its n attributes plus one
    more with probability equal to the remainder (seeded; products in sorted order), so that
    `fraction` of the attributes are hidden on average also where products have few. All values
    of a hidden attribute go: a catalog lacks attributes, not half of one."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"hide must lie in [0, 1], got {fraction}")
    rng = np.random.default_rng([seed, 90210])
    out: dict[str, set[str]] = {}
    for pid in sorted(table):
        attrs = sorted({a for a, _ in table[pid]})
        want = fraction * len(attrs)
        k = int(math.floor(want + 1e-9))
        if rng.random() < want - k:
            k += 1
        chosen = rng.permutation(len(attrs))[:k] if attrs else []
        out[pid] = {attrs[i] for i in chosen}
    return out


def product_categories(records: Iterable[Record]) -> dict[str, str]:
    """product_id -> the first category its texts name ("" when none does)."""
    out: dict[str, str] = {}
    for r in records:
        if not out.get(r.product_id):
            out[r.product_id] = r.category or ""
    return out


def hide_whole_attributes(table: GoldTable, categories: dict[str, str], per_category: int,
                          seed: int) -> dict[str, set[str]]:
    """product_id -> the attributes hidden for every product of its category: `per_category`
    of the attributes the category's products carry (seeded, categories in sorted order). The
    table then never shows them for the category, so their suggestions are `new_attribute`
    (mjave.completion.kinds) while the gold still scores them."""
    if per_category < 0:
        raise ValueError(f"hide_whole_attributes must be at least 0, got {per_category}")
    rng = np.random.default_rng([seed, 31337])
    members: dict[str, list[str]] = defaultdict(list)
    for pid in sorted(table):
        members[categories.get(pid, "")].append(pid)
    out: dict[str, set[str]] = {}
    for category in sorted(members):
        attrs = sorted({a for pid in members[category] for a, _ in table[pid]})
        chosen = {attrs[i] for i in rng.permutation(len(attrs))[:per_category]}
        for pid in members[category]:
            out[pid] = set(chosen)
    return out


def merge_hidden(*hidden: dict[str, set[str]]) -> dict[str, set[str]]:
    """The union of several product_id -> hidden attributes maps."""
    out: dict[str, set[str]] = defaultdict(set)
    for h in hidden:
        for pid, attrs in h.items():
            out[pid] |= attrs
    return dict(out)


def split_table(table: GoldTable, hidden: dict[str, set[str]]
                ) -> tuple[list[TableRow], set[Pair]]:
    """(visible TableRows in product order, hidden (product, attribute, normalised value))."""
    rows: list[TableRow] = []
    key: set[Pair] = set()
    for pid in sorted(table):
        for attr, value in table[pid]:
            if attr in hidden.get(pid, ()):
                key.add((pid, attr, collapse_punctuation(value)))
            else:
                rows.append(TableRow(pid, attr, value, len(rows) + 2))
    return rows, key


def halves(products: Iterable[str], seed: int) -> tuple[set[str], set[str]]:
    """Two seeded halves of the products."""
    ids = sorted(products)
    order = np.random.default_rng([seed, 4242]).permutation(len(ids))
    first = {ids[i] for i in order[: len(ids) // 2]}
    return first, set(ids) - first


SIMULATED_REVIEWER = "simulated"


def load_suggestions(db: ReviewDB, suggestions: Path, products: Mapping[str, list[Record]]
                     ) -> int:
    """Load a suggestions file into `db` the way `mjave review` does (`read_items`, every
    product checked, `ReviewDB.load`: an item already there keeps its decision); returns the
    number of items read. A bad row or an unknown product is a DataError."""
    items, errors = read_items(suggestions, "suggestion")
    errors += check_products(items, dict(products), str(suggestions))
    if errors:
        raise errors[0]
    db.load(items, dict(products))
    return len(items)


@dataclass(frozen=True)
class SimulatedDecision:
    """One suggestion a simulated reviewer decided: its pair, surface value, score and verdict."""

    pair: Pair
    value: str
    score: float
    accepted: bool


def review_round(db: ReviewDB, key: set[Pair], n: int, order: QueueOrder,
                 reviewer: str = SIMULATED_REVIEWER, fair: int = 0) -> list[SimulatedDecision]:
    """Claim up to `n` undecided suggestions (`ReviewDB.claim`, as a page of `mjave review`
    does): the first `fair` of them in `random` order (a fair sample the next calibration may
    judge unreviewed rows by), the rest in queue `order`; decide each as a reviewer who knows
    the answer key: accept when (product, attribute, normalised value) is a hidden pair, else
    reject (edits are not simulated). Fewer than `n` when the queue runs dry."""
    if not 0 <= fair <= n:
        raise ValueError(f"fair must lie in [0, {n}], not {fair}")
    out: list[SimulatedDecision] = []
    for part, size in ((FAIR_ORDER, fair), (order, n - fair)):
        session = f"{reviewer}-{part}"
        for _ in range(size):
            item = db.claim(session, reviewer, order=part)
            if item is None:
                break
            norm = item["normalized_value"] or collapse_punctuation(item["value"])
            pair = (item["product_id"], item["attribute"], norm)
            accepted = pair in key
            db.decide(item["id"], "accept" if accepted else "reject", reviewer, session=session)
            out.append(SimulatedDecision(pair, item["value"], float(item["score"]), accepted))
    return out


@dataclass
class Reviewed:
    """What the reviews of a database settled: the accepted pairs (with the value kept, edits
    included) and the rejected ones."""

    accepted: dict[Pair, str] = field(default_factory=dict)
    rejected: set[Pair] = field(default_factory=set)

    @property
    def decided(self) -> set[Pair]:
        return set(self.accepted) | self.rejected

    def table_rows(self, first_line: int = 2) -> list[TableRow]:
        """The accepted values as table rows (what `mjave review export -o` writes), in pair
        order, numbered from `first_line`."""
        return [TableRow(pid, attr, value, first_line + i)
                for i, ((pid, attr, _), value) in enumerate(sorted(self.accepted.items()))]


def reviewed(db: ReviewDB) -> Reviewed:
    """The effective decisions of `db`'s suggestions as pairs (`mjave.review.export`'s reading:
    accept and edit keep a value, the edit's under its own normalised form)."""
    out = Reviewed()
    kept, _ = accepted_values(db)
    for row in kept:
        if row["kind"] == "suggestion":
            value = row["final_value"]
            out.accepted[(row["product_id"], row["attribute"], collapse_punctuation(value))] = value
    for row in db.effective():
        if row["kind"] == "suggestion" and row["action"] in ("reject", "edit"):
            pair = (row["product_id"], row["attribute"],
                    row["normalized_value"] or collapse_punctuation(row["value"]))
            if pair not in out.accepted:
                out.rejected.add(pair)
    return out


def catalog_counts(suggested: Iterable[tuple[Pair, float]], key: set[Pair], done: Reviewed
                   ) -> tuple[int, int, int]:
    """(tp, fp, fn) of the catalog after a round of reviews against the hidden pairs `key`: the
    accepted values are found pairs, the rejected ones are gone (a team does not publish a value
    its reviewers rejected), and every other suggestion (threshold 0) counts as in
    `scoring.score_pairs`: a hidden pair is found, anything else a false positive."""
    found = {p for p in done.accepted if p in key}
    wrong = len({p for p in done.accepted if p not in key})
    decided = done.decided
    for pair in {p for p, _ in suggested if p not in decided}:
        if pair in key:
            found.add(pair)
        else:
            wrong += 1
    return len(found), wrong, len(key) - len(found)


__all__ = ["GoldTable", "Reviewed", "SIMULATED_REVIEWER", "SimulatedDecision", "catalog_counts",
           "gold_table", "halves", "hide_attributes", "hide_whole_attributes",
           "load_suggestions", "merge_hidden", "product_categories", "review_round", "reviewed",
           "split_table"]
