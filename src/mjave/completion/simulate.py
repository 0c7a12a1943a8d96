"""An incomplete catalog simulated from a gold-annotated dataset, where the answer is known.

The gold (attribute, value) pairs of each product are its table; hiding some of its attributes
gives the table a catalog team has and the pairs it lacks (the answer key). A user measures
`mjave complete` on their own gold data with these (docs/completion.md, section 4);
`mjave experiment completion` is built on them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from mjave.completion.scoring import Pair
from mjave.data.catalog_table import TableRow
from mjave.data.normalize import collapse_punctuation
from mjave.data.records import Record

GoldTable = dict[str, list[tuple[str, str]]]
"""product_id -> its gold (attribute, value) pairs."""


def gold_table(records: Sequence[Record]) -> GoldTable:
    """product_id -> its gold (attribute, value) pairs, one per normalised value, first-seen
    surface form, in text order."""
    out: GoldTable = {}
    seen: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for r in records:
        pairs = out.setdefault(r.product_id, [])
        for s in sorted(r.spans, key=lambda s: (s.begin, s.end)):
            key = (s.attr, collapse_punctuation(s.value))
            if key[1] and key not in seen[r.product_id]:
                seen[r.product_id].add(key)
                pairs.append((s.attr, s.value))
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


__all__ = ["GoldTable", "gold_table", "halves", "hide_attributes", "hide_whole_attributes",
           "merge_hidden", "product_categories", "split_table"]
