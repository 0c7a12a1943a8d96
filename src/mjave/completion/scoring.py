"""Suggestions scored against an answer key of (product, attribute, normalised value) pairs.

Pair level: a suggestion that is not a key pair is a false positive (also one for an attribute
the product does not have at all), a key pair no suggestion names a false negative. Works on
the suggestions file `mjave complete` writes, so what is scored is what a user gets.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

from mjave.data.normalize import collapse_punctuation
from mjave.data.records import Record

Pair = tuple[str, str, str]
"""(product_id, attribute, normalised value)."""


def read_suggestions(path: Path) -> list[tuple[Pair, float]]:
    """((product, attribute, normalised value), score) of a suggestions CSV."""
    with open(path, encoding="utf-8", newline="") as f:
        return [((r["product_id"], r["attribute"], r["normalized_value"]), float(r["score"]))
                for r in csv.DictReader(f)]


def read_suggestion_kinds(path: Path) -> dict[Pair, str]:
    """(product, attribute, normalised value) -> kind (`mjave.completion.kinds`) of a
    suggestions CSV."""
    with open(path, encoding="utf-8", newline="") as f:
        return {(r["product_id"], r["attribute"], r["normalized_value"]): r["kind"]
                for r in csv.DictReader(f)}


def of_kind(suggested: Iterable[tuple[Pair, float]], kinds: dict[Pair, str], kind: str
            ) -> list[tuple[Pair, float]]:
    """The suggestions of one kind."""
    return [(p, s) for p, s in suggested if kinds.get(p) == kind]


def score_pairs(suggested: Iterable[tuple[Pair, float]], key: set[Pair],
                threshold: float = 0.0) -> tuple[int, int, int]:
    """(tp, fp, fn) of the suggestions scoring >= threshold against the answer key."""
    pairs = {p for p, s in suggested if s >= threshold}
    tp = len(pairs & key)
    return tp, len(pairs) - tp, len(key) - tp


def false_positive_kinds(suggested: Iterable[tuple[Pair, float]], key: set[Pair],
                         gold_attributes: dict[str, set[str]], threshold: float = 0.0
                         ) -> tuple[int, int]:
    """(absent attribute, wrong value): the false positives at `threshold` whose attribute the
    product has no gold value of, and those naming a gold attribute with another value."""
    wrong = absent = 0
    for pair in {p for p, s in suggested if s >= threshold} - key:
        if pair[1] in gold_attributes.get(pair[0], ()):
            wrong += 1
        else:
            absent += 1
    return absent, wrong


def seen_in_training(training: Iterable[Record], key: set[Pair]) -> int:
    """How many key pairs have an (attribute, normalised value) that a training span holds
    (for any product): the values a model could have learnt by heart."""
    taught = {(s.attr, collapse_punctuation(s.value)) for r in training for s in r.spans}
    return sum((attr, value) in taught for _, attr, value in key)


__all__ = ["Pair", "false_positive_kinds", "of_kind", "read_suggestion_kinds",
           "read_suggestions", "score_pairs", "seen_in_training"]
