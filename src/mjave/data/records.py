"""The one in-memory shape every format is read into and written from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, order=True)
class Span:
    """A value mention: `text[begin:end]` (end exclusive, Python string indices) is `value`.

    `score` is the model's confidence in a predicted span (None for gold and for predictors
    without one). It is left out of equality, ordering, hashing and repr, so a scored prediction
    still matches its gold span; only metrics that rank values (the slot protocol) read it.
    """

    begin: int
    end: int
    attr: str
    value: str
    score: float | None = field(default=None, compare=False, repr=False)

    def key(self) -> tuple[str, int, int]:
        """What span-level metrics compare: (attribute, begin, end)."""
        return (self.attr, self.begin, self.end)


@dataclass
class Record:
    """One text of one product.

    `id` is the sentence id (MEPAVE `sid`), `cid` the product id shared by the sentences of one
    product and naming its image. `extra` keeps fields a format carries that mjave does not use
    (for example OA-Mine's `absent_attrs`), so that a read-write round trip loses nothing.
    """

    id: str
    text: str
    spans: list[Span] = field(default_factory=list)
    cid: str | None = None
    category: str | None = None
    image: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def product_id(self) -> str:
        """The key image features are stored under: the cid if any, else the record id."""
        return self.cid if self.cid is not None else self.id

    def known_attributes(self) -> frozenset[str] | None:
        """Attributes whose labels are complete for this record, or None when all of them are.

        Distant labelling from a partial catalog table (`mjave data label`) stores the table's
        attributes of the product in `extra["known_attributes"]`: a token outside every span is
        then known to be "not a value" only for those attributes (partial-label training)."""
        known = self.extra.get("known_attributes")
        return None if known is None else frozenset(known)

    def implicit_values(self) -> dict[str, str | None]:
        """Product-level values the text need not state (issue #31, image-only values): the
        attribute -> value pairs of `extra["implicit_values"]` (None: the product is known to
        have no value of it, e.g. a solid garment's Pattern), then the catalog-table values
        `mjave data label` found nowhere in the text (`extra["unmatched"]`, reason "not found").
        Gold spans are not included: callers add them where they want them."""
        out: dict[str, str | None] = {}
        for u in self.extra.get("unmatched") or ():
            if isinstance(u, dict) and u.get("reason") == "not found" and u.get("attribute"):
                out.setdefault(str(u["attribute"]), str(u.get("value", "")))
        given = self.extra.get("implicit_values") or {}
        if isinstance(given, dict):
            out.update({str(a): (None if v is None else str(v)) for a, v in given.items()})
        return out

    def attributes(self) -> list[str]:
        """Attributes mentioned in the text, sorted, each once (the attribute-prediction label set)."""
        return sorted({s.attr for s in self.spans})
