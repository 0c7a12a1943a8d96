"""WSM (the paper's section 4 baseline): values seen in training, found again by word matching.

Not a neural model and not trained by the trainer: `WSM().fit(train_records)` builds, per
attribute, the dictionary of value strings of the training spans; `predict(records)` returns
records whose spans are the dictionary matches, ready for
`mjave.evaluation.metrics.evaluate_records(gold, predicted)` (attributes then come from the spans).

Matching rules:
- case-insensitive (per-character lower-casing, so character offsets never move);
- a match must start and end on a word boundary: "red" is found in "red shirt" and "red-ish",
  never inside "bored". Between two CJK characters (and between a CJK character and anything)
  there is always a boundary, so Chinese text is matched character by character;
- where matches overlap the longest wins, then the earliest (`mjave.data.spans.resolve_overlaps`);
- a value string seen under several attributes goes to the one it was seen under most often
  (ties: the first attribute by name);
- with `per_category=True`, a record whose category was seen in training is matched against that
  category's dictionary only (a "Shoes" value does not fire in a "Bags" text); records without a
  category, or with an unseen one, use the dictionary of all training records.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Sequence

from mjave.data.formats.conll import CJK_RE
from mjave.data.records import Record, Span
from mjave.data.spans import resolve_overlaps

FORMAT = "mjave-wsm"
VERSION = 1
ALL = ""  # dictionary key of the category-independent dictionary

_END = "\0"  # trie key marking "a value ends here"; never a character of a lowered value


def _lower(text: str) -> str:
    """Lower-case one character at a time, keeping a character whose lower form is longer
    (e.g. 'İ'), so that indices into the result are indices into `text`."""
    return "".join(c if len(low := c.lower()) != 1 else low for c in text)


def _wordish(c: str) -> bool:
    """A character that glues to its alphanumeric neighbours (not CJK: every CJK character is
    a word of its own for matching)."""
    return c.isalnum() and not CJK_RE.match(c)


def _boundary(text: str, i: int) -> bool:
    """Is there a word boundary between text[i-1] and text[i]?"""
    if i <= 0 or i >= len(text):
        return True
    return not (_wordish(text[i - 1]) and _wordish(text[i]))


class WSM:
    """Word-Matching baseline: a dictionary of training values per attribute (and category)."""

    def __init__(self, per_category: bool = True):
        self.per_category = per_category
        # counts[category][lowered value][attribute] = number of training spans
        self.counts: dict[str, dict[str, dict[str, int]]] = {}
        self._tries: dict[str, dict] = {}

    # ---------------------------------------------------------------- building
    def fit(self, records: Iterable[Record]) -> "WSM":
        """Collect the (lower-cased) span texts of `records`; returns self."""
        counts: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
        for r in records:
            keys = [ALL] + ([r.category] if self.per_category and r.category else [])
            for s in r.spans:
                value = _lower(r.text[s.begin:s.end]).strip()
                if not value:
                    continue
                for k in keys:
                    counts[k][value][s.attr] += 1
        self.counts = {k: {v: dict(c) for v, c in d.items()} for k, d in counts.items()}
        self._tries = {}
        return self

    @property
    def attributes(self) -> list[str]:
        return sorted({a for c in self.counts.get(ALL, {}).values() for a in c})

    def _attr_of(self, by_attr: dict[str, int]) -> str:
        return min(by_attr, key=lambda a: (-by_attr[a], a))

    def _trie(self, key: str) -> dict:
        """A character trie of the `key` dictionary; leaves (`_END`) hold the attribute."""
        if key not in self._tries:
            root: dict = {}
            for value, by_attr in self.counts.get(key, {}).items():
                node = root
                for ch in value:
                    node = node.setdefault(ch, {})
                node[_END] = self._attr_of(by_attr)
            self._tries[key] = root
        return self._tries[key]

    # ---------------------------------------------------------------- matching
    def match(self, text: str, category: str | None = None) -> list[Span]:
        """Dictionary matches in `text`, non-overlapping, sorted by position."""
        key = category if self.per_category and category and category in self.counts else ALL
        root = self._trie(key)
        low = _lower(text)
        candidates = []
        for i in range(len(low)):
            if not _boundary(low, i):
                continue
            node = root
            for j in range(i, len(low)):
                node = node.get(low[j])
                if node is None:
                    break
                if _END in node and _boundary(low, j + 1):
                    candidates.append(Span(i, j + 1, node[_END], text[i:j + 1]))
        kept, _ = resolve_overlaps(candidates)
        return kept

    def predict(self, records: Sequence[Record]) -> list[Record]:
        """Copies of `records` whose spans are the matches (same ids, for `evaluate_records`)."""
        return [replace(r, spans=self.match(r.text, r.category), extra=dict(r.extra))
                for r in records]

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "per_category": self.per_category,
                "values": self.counts}

    @classmethod
    def from_dict(cls, data: dict) -> "WSM":
        if data.get("format") != FORMAT:
            raise ValueError(f"not a WSM dictionary (format {data.get('format')!r})")
        if data.get("version") != VERSION:
            raise ValueError(f"WSM dictionary version {data.get('version')!r}; "
                             f"this mjave reads version {VERSION}")
        model = cls(per_category=bool(data["per_category"]))
        model.counts = {k: {v: {a: int(n) for a, n in c.items()} for v, c in d.items()}
                        for k, d in data["values"].items()}
        return model

    def save(self, path: str | Path) -> Path:
        """Write the dictionaries as JSON (UTF-8, CJK kept readable)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1,
                                   sort_keys=True) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "WSM":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
