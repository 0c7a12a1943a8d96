"""Choosing the score threshold of catalog suggestions from held-out known values.

The held-out values are (attribute, value) pairs the catalog table knows but the model was not
trained on: the `extra["calibration"]` pairs `mjave data label` split off, or the gold pairs of a
`--calibration` file. The model's suggestions for those attributes can be judged: a suggestion is
correct when its normalised value is one of the held-out values of that product and attribute.
From the (score, correct) pairs, `select_threshold` picks the lowest score threshold `t` whose
precision over the suggestions scoring `>= t` reaches the requested precision `P`: the lowest
such threshold keeps the most suggestions, so it has the highest recall of all thresholds that
reach `P` (precision is not monotone in `t`, so every candidate is checked).

"Reaches" is judged on a lower confidence bound of the precision (Wilson score, one-sided, at
`confidence`; 0.5 is the plain estimate). Held-out values are few at the high scores where the
threshold usually lands (a handful of suggestions), and taking the lowest of many thresholds
whose noisy estimate touches `P` picks, on average, one whose true precision is below `P`;
the bound asks for more evidence where there is less of it.

- Candidate thresholds are the distinct scores; suggestions with equal scores are kept or
  dropped together (a threshold cannot split a tie).
- Not reachable (no threshold reaches `P`): the threshold of the highest precision bound is
  used (the lowest such threshold if several tie), `reachable` is False and `warning` says so.
- No held-out suggestion at all: nothing to calibrate on; `fallback` is used as the threshold,
  precision is None and `warning` says so.

Recall is the number of correct suggestions scoring `>= t` over `n_gold`, the number of held-out
pairs (pairs the model never suggested count as missed); None when `n_gold` is not given.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable


@dataclass(frozen=True)
class Calibration:
    """The chosen threshold and what it reached on the held-out values."""

    requested: float | None        # the precision asked for (None: no calibration asked)
    threshold: float               # suggestions scoring >= threshold are kept
    precision: float | None        # estimated precision at the threshold (held-out values)
    recall: float | None           # estimated recall at the threshold (held-out values)
    reachable: bool                # some threshold reached `requested`
    kept: int = 0                  # held-out suggestions scoring >= threshold
    correct: int = 0               # of which correct
    suggestions: int = 0           # held-out suggestions in all
    n_gold: int | None = None      # held-out pairs
    source: str = ""               # where the held-out values came from
    warning: str | None = None
    confidence: float = 0.5        # of the lower bound the selection judged precision on
    precision_bound: float | None = None   # that bound at the threshold

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for the CLI."""
        if self.precision is None:
            est = "no held-out suggestion to estimate precision on"
        else:
            rec = "-" if self.recall is None else f"{self.recall:.3f}"
            bound = ("" if self.precision_bound is None or self.confidence <= 0.5 else
                     f" (lower bound {self.precision_bound:.3f} at {self.confidence:g} "
                     "confidence)")
            est = (f"estimated precision {self.precision:.3f}{bound}, recall {rec} "
                   f"({self.correct} of {self.kept} held-out suggestions correct"
                   f"{'' if self.n_gold is None else f', {self.n_gold} held-out values'})")
        asked = "" if self.requested is None else f" for precision >= {self.requested:g}"
        src = f" on {self.source}" if self.source else ""
        return f"threshold {self.threshold:.4f}{asked}{src}: {est}"


def precision_recall_at(pairs: Iterable[tuple[float, bool]], threshold: float,
                        n_gold: int | None = None) -> tuple[float | None, float | None, int, int]:
    """(precision, recall, kept, correct) of the suggestions scoring >= threshold."""
    kept = correct = 0
    for score, ok in pairs:
        if score >= threshold:
            kept += 1
            correct += bool(ok)
    precision = correct / kept if kept else None
    recall = correct / n_gold if n_gold else None
    return precision, recall, kept, correct


def precision_lower_bound(correct: int, kept: int, confidence: float = 0.5) -> float:
    """One-sided Wilson score lower bound of a precision `correct / kept` at `confidence`
    (0.5: the estimate itself). Unlike the normal approximation it stays inside [0, 1] and is
    sensible for the handful of suggestions at the top of a ranking."""
    if kept <= 0:
        return 0.0
    p = correct / kept
    if confidence <= 0.5:
        return p
    from scipy.stats import norm
    z = float(norm.ppf(confidence))
    centre = p + z * z / (2 * kept)
    spread = z * math.sqrt(p * (1 - p) / kept + z * z / (4 * kept * kept))
    return max(0.0, (centre - spread) / (1 + z * z / kept))


def select_threshold(pairs: Iterable[tuple[float, bool]], min_precision: float,
                     n_gold: int | None = None, fallback: float = 0.0,
                     source: str = "", confidence: float = 0.5) -> Calibration:
    """The lowest threshold whose held-out precision is >= `min_precision` (module docstring),
    judged on its lower bound at `confidence` (0.5: the estimate).

    `pairs`: (score, is_correct) of every held-out suggestion; `n_gold`: the number of
    held-out pairs, for recall; `fallback`: the threshold used when there is nothing to judge.
    """
    if not 0.0 <= min_precision <= 1.0:
        raise ValueError(f"the requested precision must lie in [0, 1], not {min_precision}")
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"the confidence must lie in [0.5, 1), not {confidence}")
    items = sorted(((float(s), bool(c)) for s, c in pairs), key=lambda t: -t[0])
    if any(math.isnan(s) for s, _ in items):
        raise ValueError("a suggestion score is NaN")
    if n_gold is not None and n_gold < 0:
        raise ValueError(f"n_gold must be >= 0, not {n_gold}")

    def recall_of(correct: int) -> float | None:
        return correct / n_gold if n_gold else None

    if not items:
        return Calibration(min_precision, float(fallback), None, 0.0 if n_gold else None, False,
                           0, 0, 0, n_gold, source,
                           "no held-out suggestion to calibrate on: the threshold "
                           f"{fallback:g} is used and the precision cannot be estimated")
    # Walk down the distinct scores: at each, every suggestion scoring >= it is kept.
    best: tuple[float, int, int] | None = None       # (threshold, kept, correct) reaching P
    top: tuple[float, float, int, int] | None = None  # (precision, threshold, kept, correct)
    kept = correct = 0
    i = 0
    while i < len(items):
        score = items[i][0]
        while i < len(items) and items[i][0] == score:
            kept += 1
            correct += items[i][1]
            i += 1
        bound = precision_lower_bound(correct, kept, confidence)
        # >= with a tolerance of rounding, so 9/10 reaches 0.9
        if bound >= min_precision - 1e-12:
            best = (score, kept, correct)             # lower thresholds overwrite higher ones
        if top is None or bound > top[0] + 1e-12:
            top = (bound, score, kept, correct)
        elif bound >= top[0] - 1e-12:                    # a tie: the lower threshold wins
            top = (top[0], score, kept, correct)
    extra = {"confidence": confidence}
    if best is not None:
        t, k, c = best
        return Calibration(min_precision, t, c / k, recall_of(c), True, k, c, len(items), n_gold,
                           source, precision_bound=precision_lower_bound(c, k, confidence),
                           **extra)
    assert top is not None
    b, t, k, c = top
    what = "precision" if confidence <= 0.5 else f"precision bound ({confidence:g} confidence)"
    return Calibration(min_precision, t, c / k, recall_of(c), False, k, c, len(items), n_gold,
                       source,
                       f"precision {min_precision:g} is not reachable on the held-out values "
                       f"(the {what} is at most {b:.3f}): using the threshold of the highest "
                       f"{what}, {t:.4f}", precision_bound=b, **extra)


def fixed_threshold(pairs: Iterable[tuple[float, bool]], threshold: float,
                    n_gold: int | None = None, source: str = "") -> Calibration:
    """What a given threshold reaches on held-out values (no selection; `requested` None)."""
    items = list(pairs)
    p, r, kept, correct = precision_recall_at(items, threshold, n_gold)
    return Calibration(None, float(threshold), p, r, True, kept, correct, len(items), n_gold,
                       source)


__all__ = ["Calibration", "fixed_threshold", "precision_lower_bound", "precision_recall_at",
           "select_threshold"]
