"""Recall on gold values seen and unseen in training: does a model find values it never saw?

A gold value is an (attribute, normalised value) pair of a text, exactly as pair F1 counts it
(`pair_set`: `casefold_strip`, one per text however often it occurs). It is **seen** when the
same pair occurs among the training records' gold spans (`seen_pairs`), otherwise **unseen**.

Only recall is split. A prediction's novelty could be defined ("the predicted pair was in the
training set"), but precision over that split would mix two questions (is the value right, was
it memorised) and a wrong value is usually unseen by construction, so the figure would mostly
measure how often a model invents values; recall over gold values has no such ambiguity.

Two levels:

- pair: a gold value is found when the text's predicted pairs contain it (the pair-F1 match),
  so seen found + unseen found = the pair TP;
- slot: found when it is the ONE value the slot protocol keeps for its attribute
  (`best_values`, the highest-scoring), so seen found + unseen found = the slot VC. A text with
  two gold values of one attribute has two gold values here but one slot, so this recall is not
  the slot R (VC / (VC + VW + VN)) on multi-valued data.

Only `mjave.data` and `mjave.evaluation` are imported: scoring needs no torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mjave.data.records import Record
from mjave.evaluation.metrics import check_ids, casefold_strip, pair_set
from mjave.evaluation.slot import best_values

__all__ = ["NoveltyCounts", "Pair", "recall_by_novelty", "seen_pairs", "split_by_novelty"]

Pair = tuple[str, str]


def seen_pairs(training: Iterable[Record]) -> frozenset[Pair]:
    """Every (attribute, normalised value) of the training records' gold spans."""
    return frozenset(p for r in training for p in pair_set(r.spans))


@dataclass(frozen=True)
class NoveltyCounts:
    """Gold values and how many of them were found; counts, so that sums stay exact."""

    gold: int = 0
    found: int = 0

    @property
    def recall(self) -> float | None:
        """found / gold; None (not 0) when there is no gold value, since "nothing unseen to
        find" is no failure to find it."""
        return self.found / self.gold if self.gold else None

    def to_dict(self) -> dict[str, Any]:
        """Counts plus recall in percent rounded to 2 decimals, as every other metric's."""
        r = self.recall
        return {"gold": self.gold, "found": self.found,
                "recall": None if r is None else round(100 * r, 2)}

    def __add__(self, other: NoveltyCounts) -> NoveltyCounts:
        if not isinstance(other, NoveltyCounts):
            return NotImplemented
        return NoveltyCounts(self.gold + other.gold, self.found + other.found)


def split_by_novelty(gold: Iterable[Pair], found: Iterable[Pair], seen: frozenset[Pair]
                     ) -> tuple[NoveltyCounts, NoveltyCounts]:
    """(seen, unseen) counts of one text's gold pairs; `found` are those of them it hit."""
    hit = set(found)
    counts = {True: NoveltyCounts(), False: NoveltyCounts()}
    for pair in set(gold):
        counts[pair in seen] += NoveltyCounts(1, int(pair in hit))
    return counts[True], counts[False]


def slot_hits(gold: Record, pred: Record) -> set[Pair]:
    """The gold pairs of a text that the slot protocol finds: its kept value per attribute."""
    kept = {(attr, casefold_strip(span.value)) for attr, span in best_values(pred.spans).items()}
    return pair_set(gold.spans) & kept


def _level(gold: Sequence[Record], pred: Sequence[Record], seen: frozenset[Pair], slot: bool
           ) -> tuple[NoveltyCounts, NoveltyCounts]:
    seen_total, unseen_total = NoveltyCounts(), NoveltyCounts()
    for g, p in zip(gold, pred):
        gold_pairs = pair_set(g.spans)
        found = slot_hits(g, p) if slot else gold_pairs & pair_set(p.spans)
        s, u = split_by_novelty(gold_pairs, found, seen)
        seen_total, unseen_total = seen_total + s, unseen_total + u
    return seen_total, unseen_total


def recall_by_novelty(gold: Sequence[Record], pred: Sequence[Record], seen: frozenset[Pair]
                      ) -> dict[str, Any]:
    """The report entry: pair-level {"seen", "unseen"} (`NoveltyCounts.to_dict`), the unseen
    share of gold values in percent ("unseen_share", None without gold values) and the same
    split at slot level ("slot": {"seen", "unseen"}). Recall only: see the module docstring."""
    check_ids(gold, pred)
    seen_counts, unseen_counts = _level(gold, pred, seen, slot=False)
    slot_seen, slot_unseen = _level(gold, pred, seen, slot=True)
    total = seen_counts.gold + unseen_counts.gold
    return {
        "seen": seen_counts.to_dict(),
        "unseen": unseen_counts.to_dict(),
        "unseen_share": round(100 * unseen_counts.gold / total, 2) if total else None,
        "slot": {"seen": slot_seen.to_dict(), "unseen": slot_unseen.to_dict()},
    }
