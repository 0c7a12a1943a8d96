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


__all__ = ["GoldTable", "gold_table", "halves", "hide_attributes", "split_table"]
