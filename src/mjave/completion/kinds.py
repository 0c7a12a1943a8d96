"""The two kinds of suggestion, each with its own promise (issue #33).

`--min-precision` is chosen on held-out values of attributes products are known to have, so it
can only speak for suggestions of that kind:

- `fills_known_gap`: the product lacks an attribute that at least `known_attribute_share` of
  its category's products carry in the table: the held-out values judge this kind;
- `new_attribute`: an attribute its category's products rarely carry, or never do: no
  held-out value can back its precision, so it goes to review, never silently into the
  `--min-precision` output.

The shares come from the table alone: per category, the share of its products (those of the
products file and those of the table; a product's category is that of its texts, "" when they
have none or it has no text) with at least one table row of the attribute.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping

FILLS_KNOWN_GAP = "fills_known_gap"
NEW_ATTRIBUTE = "new_attribute"
KINDS = (FILLS_KNOWN_GAP, NEW_ATTRIBUTE)
Kind = Literal["fills_known_gap", "new_attribute"]

UNKNOWN_CATEGORY = ""
"""The category of a product whose texts name none (or that has no text, only table rows)."""


@dataclass(frozen=True)
class CategoryShares:
    """How many products each category has and how many carry each attribute in the table."""

    products: Mapping[str, int]
    carrying: Mapping[tuple[str, str], int]
    cut: float
    known: frozenset[tuple[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        known = frozenset(k for k, n in self.carrying.items()
                          if n > 0 and n / self.products.get(k[0], n) >= self.cut)
        object.__setattr__(self, "known", known)

    def share(self, category: str, attribute: str) -> float:
        """Share of `category`'s products with a table row of `attribute` (0 when unseen)."""
        total = self.products.get(category, 0)
        return self.carrying.get((category, attribute), 0) / total if total else 0.0

    def kind(self, category: str | None, attribute: str) -> Kind:
        """`fills_known_gap` when the category carries the attribute (share >= cut, and at
        least one product: never carried is always new), else `new_attribute`."""
        key = (category or UNKNOWN_CATEGORY, attribute)
        return FILLS_KNOWN_GAP if key in self.known else NEW_ATTRIBUTE

    def known_attributes(self) -> int:
        """(category, attribute) pairs above the cut: what the summary reports."""
        return len(self.known)


def category_shares(categories: Mapping[str, str | None], table: Iterable[tuple[str, str]],
                    cut: float) -> CategoryShares:
    """The shares of a table: `categories` maps product -> category (the products file),
    `table` yields (product, attribute) rows; a table product missing from `categories` counts
    under `UNKNOWN_CATEGORY`. Each product counts once per attribute."""
    cat = {p: c or UNKNOWN_CATEGORY for p, c in categories.items()}
    carriers: set[tuple[str, str]] = set()
    for pid, attribute in table:
        cat.setdefault(pid, UNKNOWN_CATEGORY)
        carriers.add((pid, attribute))
    carrying = Counter((cat[p], a) for p, a in carriers)
    return CategoryShares(dict(Counter(cat.values())), dict(carrying), cut)


__all__ = ["CategoryShares", "FILLS_KNOWN_GAP", "KINDS", "Kind", "NEW_ATTRIBUTE",
           "UNKNOWN_CATEGORY", "category_shares"]
