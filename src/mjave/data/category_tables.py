"""What a partial catalog table says per category: the attributes a category ever has, and how
completely the table lists them for its products.

Partial-label training (`train.partial_labels`) lets a token outside every span be a value of
any attribute the record does not know. A table lists the attributes a product HAS, so "not
known" mixes the few attributes the table forgot with the many the product lacks, and among
those, attributes its whole category never has (a shirt has no screen size). These functions
read both facts off the training records themselves, once, so the trainer can rule the latter
out (`train.category_absent`) and set the weight of the naive O target from the table
(`train.outside_weight_from_completeness`). Pure functions of records: no torch, no numpy.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping

from mjave.data.records import Record


def listed_attributes(record: Record) -> frozenset[str]:
    """The attributes the catalog table lists for the record's product: its `known_attributes`,
    the attributes `mjave data label` held out for calibration (`extra["calibration"]`, listed by
    the table though not labelled) and the attributes of its spans. A fully labelled record
    (no `known_attributes`) lists the attributes of its spans."""
    attrs = {s.attr for s in record.spans}
    known = record.known_attributes()
    if known is not None:
        attrs |= known
    for held in record.extra.get("calibration") or ():
        if isinstance(held, Mapping) and isinstance(held.get("attribute"), str):
            attrs.add(held["attribute"])
    return frozenset(attrs)


def category_attributes(records: Iterable[Record]) -> dict[str, frozenset[str]]:
    """Category -> every attribute any of its records lists (`listed_attributes`). Records
    without a category are left out: nothing is known about what they may have."""
    out: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if r.category is not None:
            out[r.category] |= listed_attributes(r)
    return {c: frozenset(a) for c, a in sorted(out.items())}


def absent_attributes(category: str | None, by_category: Mapping[str, frozenset[str]],
                      attributes: Iterable[str]) -> frozenset[str]:
    """Of `attributes`, those the table never lists for `category`: known to be absent from
    every product of it. Empty for no category or a category `by_category` does not have
    (nothing is known about it then)."""
    if category is None or category not in by_category:
        return frozenset()
    return frozenset(a for a in attributes if a not in by_category[category])


def table_completeness(records: Iterable[Record],
                       by_category: Mapping[str, frozenset[str]] | None = None) -> float | None:
    """How completely the table lists its products' attributes, in [0, 1]; None when no record
    can say (no partially labelled record with a category that lists some attribute).

    The estimate: for each product (records grouped by category and `product_id`) that carries
    `known_attributes`, the share of its category's attributes (`by_category`, default
    `category_attributes(records)`: those listed for any product of the category) that the
    product's table lists (`listed_attributes`, over all its texts), averaged over the products,
    each product once. 1 means every product lists everything its category has (the naive O
    target is right); a low value means the table leaves most of a product's attributes out (an
    unlabelled token is less surely O). It is an upper bound of the true completeness: an
    attribute no product of a category lists is not counted at all. Fully labelled records and
    records without a category do not take part."""
    records = list(records)
    if by_category is None:
        by_category = category_attributes(records)
    listed: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in records:
        if r.category is None or r.known_attributes() is None:
            continue
        listed[(r.category, r.product_id)] |= listed_attributes(r)
    shares = [len(attrs & by_category[cat]) / len(by_category[cat])
              for (cat, _), attrs in listed.items() if by_category.get(cat)]
    return sum(shares) / len(shares) if shares else None
