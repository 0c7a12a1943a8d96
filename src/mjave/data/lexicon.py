"""Value knowledge (issue #35, section 4): the values each attribute takes in the training table,
matched in a text and handed to the model as per-token features.

A text's match features are, for every token and attribute, two flags: the token begins a known
value of that attribute, or lies inside one. Text and values are cut into words (`\\w+` runs and
single other characters) and compared case-folded; a value matches only as a whole run of words,
so "Nike" does not match inside "Nikes".

Training sees the table it was built from, so every gold value would match and the model would
learn to trust the list blindly. Training examples therefore match against the lexicon without
their own contribution (leave-one-out: a value that only this record carries is unknown to it,
exactly as a value unseen in training is at test time), and `drop` hides further known values
at random, so the model also learns to find values the list lacks.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mjave.data.records import Record
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import Encoded

WORD = re.compile(r"\w+|[^\w\s]")
LEXICON = "value_lexicon.json"
"""The file a model folder keeps its lexicon in (only models trained with value knowledge)."""


def words(text: str) -> list[tuple[str, int, int]]:
    """(case-folded word, begin, end) of every word of `text`."""
    return [(m.group().casefold(), m.start(), m.end()) for m in WORD.finditer(text)]


def value_key(value: str) -> tuple[str, ...]:
    return tuple(w for w, _, _ in words(value))


class ValueLexicon:
    """Known values per attribute with the number of training records that carry each."""

    def __init__(self, counts: dict[str, Counter[tuple[str, ...]]]):
        self.counts = {a: c for a, c in counts.items() if c}
        # first word -> (value words, attribute), longest first, for the matcher
        self._by_first: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for attr, values in sorted(self.counts.items()):
            for key in values:
                self._by_first.setdefault(key[0], []).append((key, attr))
        for entries in self._by_first.values():
            entries.sort(key=lambda e: (-len(e[0]), e))

    @classmethod
    def from_records(cls, records: Iterable[Record]) -> "ValueLexicon":
        counts: dict[str, Counter[tuple[str, ...]]] = {}
        for r in records:
            for attr, key in record_values(r):
                counts.setdefault(attr, Counter())[key] += 1
        return cls(counts)

    def __len__(self) -> int:
        return sum(len(c) for c in self.counts.values())

    def matches(self, text: str, own: Counter[tuple[str, tuple[str, ...]]] | None = None,
                drop: float = 0.0, rng: random.Random | None = None
                ) -> list[tuple[str, int, int]]:
        """(attribute, begin, end) of every known value in `text` (overlaps kept). `own`: the
        record's own (attribute, value) counts, taken off the lexicon's (leave-one-out); `drop`:
        the probability, drawn from `rng`, that a matched value is treated as unknown (all its
        occurrences in the text alike)."""
        ws = words(text)
        out = []
        kept: dict[tuple[str, tuple[str, ...]], bool] = {}
        for i, (w, _, _) in enumerate(ws):
            for key, attr in self._by_first.get(w, ()):
                n = len(key)
                if tuple(x for x, _, _ in ws[i:i + n]) != key:
                    continue
                pair = (attr, key)
                if own and self.counts[attr][key] - own.get(pair, 0) <= 0:
                    continue
                if drop > 0:
                    if pair not in kept:
                        kept[pair] = (rng or random).random() >= drop
                    if not kept[pair]:
                        continue
                out.append((attr, ws[i][1], ws[i + n - 1][2]))
        return out

    def features(self, text: str, encoded: Encoded, schema: AttributeSchema,
                 own: Counter | None = None, drop: float = 0.0,
                 rng: random.Random | None = None) -> np.ndarray:
        """(T, 2L) float32: column 2l flags the tokens a known value of attribute l begins on,
        2l + 1 those inside one (its first token included). Attributes outside `schema` are
        ignored; special tokens and padding stay zero."""
        g = np.zeros((len(encoded), 2 * schema.num_attributes), dtype=np.float32)
        found = [(schema.attr_id(a), b, e) for a, b, e in self.matches(text, own, drop, rng)
                 if a in schema]
        if not found:
            return g
        for t, (a, b) in enumerate(encoded.offsets):
            if a == b:
                continue
            for col, begin, end in found:
                if begin <= a and b <= end:
                    g[t, 2 * col + 1] = 1.0
                    if a == begin:
                        g[t, 2 * col] = 1.0
        return g

    def training_features(self, records: Sequence[Record], encodeds: Sequence[Encoded],
                          schema: AttributeSchema, drop: float, seed: int) -> list[np.ndarray]:
        """Features of training records: each matched against the lexicon without its own values
        (leave-one-out), and each known value hidden from a record with probability `drop`
        (drawn per record from `seed`, so a rerun sees the same features)."""
        rng = random.Random(seed)
        return [self.features(r.text, enc, schema, Counter(record_values(r)), drop, rng)
                for r, enc in zip(records, encodeds)]

    def to_json(self) -> dict:
        values = {a: [[" ".join(k), n] for k, n in sorted(c.items())]
                  for a, c in sorted(self.counts.items())}
        return {"format": 1, "values": values}

    @classmethod
    def from_json(cls, data: dict) -> "ValueLexicon":
        return cls({a: Counter({tuple(v.split(" ")): int(n) for v, n in rows})
                    for a, rows in data["values"].items()})

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / LEXICON
        path.write_text(json.dumps(self.to_json(), ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "ValueLexicon":
        path = Path(folder) / LEXICON
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: missing; this model was trained with "
                                    "model.value_knowledge and needs its value lexicon") from None


def record_values(record: Record) -> list[tuple[str, tuple[str, ...]]]:
    """(attribute, value words) of a record's gold spans, each once."""
    seen = []
    for s in record.spans:
        key = value_key(record.text[s.begin:s.end])
        if key and (s.attr, key) not in seen:
            seen.append((s.attr, key))
    return seen


__all__ = ["LEXICON", "ValueLexicon", "record_values", "value_key", "words"]
