"""Attribute names <-> label ids, and the BIO tag set derived from them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from mjave.data.errors import DataError
from mjave.data.records import Record

OUTSIDE = "O"


@dataclass(frozen=True)
class AttributeSchema:
    """The attribute vocabulary of a model.

    Attribute `i` owns tag ids `1 + 2i` (B-) and `2 + 2i` (I-); tag 0 is O. That fixed layout is
    what lets the KL term of Eq. 12 map each attribute to its two tags without a lookup table.
    """

    attributes: tuple[str, ...]
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    # Closed-vocabulary attributes a model names without a span (`model.implicit_values`, issue
    # #31): attribute -> its values; the implicit head scores "none" and then these, per attribute.
    closed_values: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    # The tag names, built once: decoding names a tag per word, and rebuilding 1 + 2L strings
    # per call dominated it.
    _tags: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        attrs = tuple(self.attributes)
        if len(set(attrs)) != len(attrs):
            raise ValueError(f"duplicate attribute names in schema: {attrs}")
        object.__setattr__(self, "attributes", attrs)
        object.__setattr__(self, "_index", {a: i for i, a in enumerate(attrs)})
        tags = [OUTSIDE]
        for a in attrs:
            tags += [f"B-{a}", f"I-{a}"]
        object.__setattr__(self, "_tags", tuple(tags))

    @classmethod
    def from_records(cls, records: Iterable[Record]) -> "AttributeSchema":
        """All attributes seen in the spans of `records`, sorted by name (deterministic ids),
        and for each category the attributes seen with it (for category-restricted decoding)."""
        names: set[str] = set()
        by_category: dict[str, set[str]] = {}
        for r in records:
            attrs = {s.attr for s in r.spans}
            names |= attrs
            if r.category is not None:
                by_category.setdefault(r.category, set()).update(attrs)
        return cls(tuple(sorted(names)),
                   {c: tuple(sorted(a)) for c, a in sorted(by_category.items())})

    def allowed_attributes(self, category: str | None) -> tuple[str, ...] | None:
        """Attributes seen with `category` in training; None (no restriction) for a category
        the training data did not have."""
        if category is None:
            return None
        return self.categories.get(category)

    @property
    def num_attributes(self) -> int:
        return len(self.attributes)

    @property
    def tags(self) -> list[str]:
        """A fresh list each call (callers may change it; the cached tuple stays intact)."""
        return list(self._tags)

    @property
    def num_tags(self) -> int:
        return 1 + 2 * len(self.attributes)

    def __contains__(self, attr: str) -> bool:
        return attr in self._index

    def attr_id(self, attr: str) -> int:
        try:
            return self._index[attr]
        except KeyError:
            raise DataError(f"unknown attribute {attr!r}; the model knows "
                            f"{len(self.attributes)}: {', '.join(self.attributes[:20])}"
                            f"{' ...' if len(self.attributes) > 20 else ''}",
                            field="attr", reason="unknown attribute") from None

    def begin_tag(self, attr: str) -> int:
        return 1 + 2 * self.attr_id(attr)

    def inside_tag(self, attr: str) -> int:
        return 2 + 2 * self.attr_id(attr)

    def tag_name(self, tag_id: int) -> str:
        return self._tags[tag_id]

    def tag_id(self, tag: str) -> int:
        if tag == OUTSIDE:
            return 0
        prefix, _, attr = tag.partition("-")
        if prefix == "B":
            return self.begin_tag(attr)
        if prefix == "I":
            return self.inside_tag(attr)
        raise DataError(f"not a BIO tag: {tag!r}", field="tag", reason="bad tag")

    @property
    def num_implicit_values(self) -> int:
        """Outputs of the implicit head: per closed attribute, "none" and then each value."""
        return sum(len(v) + 1 for v in self.closed_values.values())

    def implicit_slots(self) -> list[tuple[str, int, int]]:
        """(attribute, first, end) of each closed attribute's columns among the head's outputs:
        column `first` is "none" (the product has no value of it), the next ones its values."""
        out, k = [], 0
        for attr, values in self.closed_values.items():
            out.append((attr, k, k + len(values) + 1))
            k += len(values) + 1
        return out

    def to_json(self) -> dict:
        data = {"format": "mjave.schema/1", "attributes": list(self.attributes),
                "tags": self.tags, "categories": {c: list(a) for c, a in self.categories.items()}}
        if self.closed_values:
            data["closed_values"] = {a: list(v) for a, v in self.closed_values.items()}
        return data

    @classmethod
    def from_json(cls, data: dict) -> "AttributeSchema":
        if not isinstance(data, dict) or not isinstance(data.get("attributes"), list):
            raise DataError("schema JSON must be an object with an 'attributes' list",
                            field="attributes", reason="bad schema")
        attrs = data["attributes"]
        bad = next((a for a in attrs if not isinstance(a, str) or not a), None)
        if bad is not None or any(not isinstance(a, str) for a in attrs):
            raise DataError(f"attribute names must be non-empty strings, got {bad!r}",
                            field="attributes", reason="bad schema")
        if len(set(attrs)) != len(attrs):
            dup = next(a for a in attrs if attrs.count(a) > 1)
            raise DataError(f"attribute {dup!r} appears twice", field="attributes",
                            reason="bad schema")
        categories = data.get("categories") or {}
        if not isinstance(categories, dict) or any(
                not isinstance(v, list) or any(a not in attrs for a in v) for v in categories.values()):
            raise DataError("schema 'categories' must map each category to a list of its "
                            "attributes", field="categories", reason="bad schema")
        closed = data.get("closed_values") or {}
        if not isinstance(closed, dict) or any(
                not isinstance(v, list) or not all(isinstance(x, str) for x in v)
                for v in closed.values()):
            raise DataError("schema 'closed_values' must map each attribute to a list of its "
                            "values", field="closed_values", reason="bad schema")
        schema = cls(tuple(attrs), {c: tuple(v) for c, v in categories.items()},
                     {a: tuple(v) for a, v in closed.items()})
        if "tags" in data and data["tags"] != schema.tags:
            raise DataError("schema 'tags' do not match its 'attributes'", field="tags",
                            reason="bad schema")
        return schema

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n",
                              encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "AttributeSchema":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"cannot read schema: {e}", path=str(path), reason="bad schema") from None
        try:
            return cls.from_json(data)
        except DataError as e:
            raise e.located(path=str(path)) from None
