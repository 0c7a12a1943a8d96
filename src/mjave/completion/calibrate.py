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

**Backing the promise** (`calibrate`, what `mjave complete --min-precision` runs). The lowest
threshold whose bound touches `P` on the held-out suggestions is an in-sample choice: when the
few top suggestions all come from one product that happens to be right, it holds there and
nowhere else. `cross_validate` judges the *procedure* on products it did not see: the products
are split into `folds` seeded folds (a product's suggestions stay together), the threshold is
chosen on the other folds' suggestions and applied to the fold, and the fold predictions are
pooled (a fold whose other folds reach no threshold emits nothing, as the command would).
`calibrate` refuses (`refused`: nothing may be emitted) when there is no held-out suggestion,
when no threshold's bound reaches `P`, or when the pooled cross-validated precision's Wilson
bound at `confidence` is below `P`; `backed_precision` is then the precision it can back: the
best bound in sample, and where that reaches `P` the lower of it and the cross-validated bound.
With `force` it says so (`forced`) instead.

**Weights.** A judged pair may stand for several suggestions of the run (`Judged.weight`,
set by `mjave.completion.stratify` when reviews judge part of the run): precisions are then
weighted means and every Wilson bound is taken on the effective number of suggestions (Kish,
(sum w)^2 / sum w^2). Unit weights give exactly the unweighted figures.

Pairs are `(score, correct)` or `(score, correct, product)` (`Judged`); without a product each
suggestion is a group of its own in the cross-validation. `evidence` names what judged them in
the messages ("held-out"; "reviewed" when `mjave complete --reviews` judged them,
`mjave.completion.reviewed`).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable, NamedTuple, Sequence

from mjave.config.complete import DEFAULT_FOLDS

HELD_OUT_EVIDENCE = "held-out"
"""What judges the suggestions unless told otherwise: held-out known values."""


class Judged(NamedTuple):
    """One held-out suggestion: its score, whether a held-out value confirms it, its product
    (the group cross-validation keeps in one fold; None: unknown) and how many suggestions of
    the run it stands for (`weight`, 1 unless `mjave.completion.stratify` re-weighted it)."""

    score: float
    correct: bool
    product: str | None = None
    weight: float = 1.0


def _weight(p: Sequence[Any]) -> float:
    return float(p[3]) if len(p) > 3 else 1.0


class _Tally:
    """Kept and correct suggestions, counted and weighted: the weighted precision and its
    effective number of suggestions (Kish: (sum w)^2 / sum w^2; the count itself when every
    weight is 1, so unweighted pairs give exactly the plain precision and bound)."""

    __slots__ = ("kept", "correct", "w", "w_correct", "w2")

    def __init__(self) -> None:
        self.kept = self.correct = 0
        self.w = self.w_correct = self.w2 = 0.0

    def add(self, correct: bool, weight: float) -> None:
        self.kept += 1
        self.correct += bool(correct)
        self.w += weight
        self.w_correct += weight * bool(correct)
        self.w2 += weight * weight

    @property
    def precision(self) -> float | None:
        return self.w_correct / self.w if self.w > 0 else None

    def bound(self, confidence: float) -> float:
        if self.w <= 0:
            return 0.0
        return wilson_lower_bound(self.w_correct / self.w, self.w * self.w / self.w2,
                                  confidence)


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
    # product-grouped cross-validation of the selection (`cross_validate`; None: not run)
    cv_precision: float | None = None        # pooled precision of the fold predictions
    cv_precision_bound: float | None = None  # its Wilson lower bound at `confidence`
    cv_kept: int = 0
    cv_correct: int = 0
    cv_folds: int = 0
    cv_refused_folds: int = 0                # folds whose training folds reached no threshold
    backed_precision: float | None = None    # the precision bound it can back (`calibrate`)
    refused: bool = False          # `requested` cannot be backed: emit nothing
    forced: bool = False           # `requested` cannot be backed, emitted anyway (`force`)
    evidence: str = HELD_OUT_EVIDENCE   # what judged the suggestions (the messages' word)
    # precisions weighted to the scores of the suggestions the run writes
    # (`mjave.completion.stratify`): `kept` / `correct` stay counts
    weighted: bool = False

    @property
    def gold_values(self) -> str:
        """What `n_gold` counts, in words: held-out values, and the accepted values of
        reviewed suggestions."""
        return self.evidence.replace("reviewed", "accepted") + " values"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def backed(self) -> bool:
        """Whether the requested precision is backed (neither refused nor forced)."""
        return not (self.refused or self.forced)

    def summary(self) -> str:
        """One line for the CLI."""
        if self.precision is None:
            est = f"no {self.evidence} suggestion to estimate precision on"
        else:
            rec = "-" if self.recall is None else f"{self.recall:.3f}"
            bound = ("" if self.precision_bound is None or self.confidence <= 0.5 else
                     f" (lower bound {self.precision_bound:.3f} at {self.confidence:g} "
                     "confidence)")
            weighted = (", weighted to the scores of the suggestions written"
                        if self.weighted else "")
            est = (f"estimated precision {self.precision:.3f}{bound}, recall {rec} "
                   f"({self.correct} of {self.kept} {self.evidence} suggestions correct"
                   f"{'' if self.n_gold is None else f', {self.n_gold} {self.gold_values}'}"
                   f"{weighted})")
        if self.cv_precision_bound is not None:
            cvp = "-" if self.cv_precision is None else f"{self.cv_precision:.3f}"
            silent = (f", {self.cv_refused_folds} of them reaching no threshold"
                      if self.cv_refused_folds else "")
            est += (f"; cross-validated over products ({self.cv_folds} folds{silent}): "
                    f"precision {cvp}, lower bound {self.cv_precision_bound:.3f} "
                    f"({self.cv_correct} of {self.cv_kept} correct)")
        asked = "" if self.requested is None else f" for precision >= {self.requested:g}"
        src = f" on {self.source}" if self.source else ""
        state = "REFUSED " if self.refused else "FORCED " if self.forced else ""
        return f"{state}threshold {self.threshold:.4f}{asked}{src}: {est}"


def precision_recall_at(pairs: Iterable[Sequence[Any]], threshold: float,
                        n_gold: int | None = None) -> tuple[float | None, float | None, int, int]:
    """(precision, recall, kept, correct) of the suggestions scoring >= threshold."""
    kept = correct = 0
    for p in pairs:
        score, ok = p[0], p[1]
        if score >= threshold:
            kept += 1
            correct += bool(ok)
    precision = correct / kept if kept else None
    recall = correct / n_gold if n_gold else None
    return precision, recall, kept, correct


def precision_lower_bound(correct: float, kept: float, confidence: float = 0.5) -> float:
    """One-sided Wilson score lower bound of a precision `correct / kept` at `confidence`
    (0.5: the estimate itself). Unlike the normal approximation it stays inside [0, 1] and is
    sensible for the handful of suggestions at the top of a ranking."""
    if kept <= 0:
        return 0.0
    return wilson_lower_bound(correct / kept, kept, confidence)


def wilson_lower_bound(p: float, n: float, confidence: float = 0.5) -> float:
    """The Wilson bound of a precision `p` observed on `n` suggestions (`n` may be an effective
    number, for weighted suggestions)."""
    if n <= 0:
        return 0.0
    if confidence <= 0.5:
        return p
    from scipy.stats import norm
    z = float(norm.ppf(confidence))
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(max(0.0, p * (1 - p)) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def select_threshold(pairs: Iterable[Sequence[Any]], min_precision: float,
                     n_gold: int | None = None, fallback: float = 0.0,
                     source: str = "", confidence: float = 0.5,
                     evidence: str = HELD_OUT_EVIDENCE) -> Calibration:
    """The lowest threshold whose held-out precision is >= `min_precision` (module docstring),
    judged on its lower bound at `confidence` (0.5: the estimate).

    `pairs`: (score, is_correct[, product]) of every held-out suggestion; `n_gold`: the
    number of held-out pairs, for recall; `fallback`: the threshold used when there is
    nothing to judge.
    """
    if not 0.0 <= min_precision <= 1.0:
        raise ValueError(f"the requested precision must lie in [0, 1], not {min_precision}")
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"the confidence must lie in [0.5, 1), not {confidence}")
    items = sorted(((float(p[0]), bool(p[1]), _weight(p)) for p in pairs), key=lambda t: -t[0])
    if any(math.isnan(s) for s, _, _ in items):
        raise ValueError("a suggestion score is NaN")
    if any(not w > 0 for _, _, w in items):
        raise ValueError("a suggestion weight is not positive")
    if n_gold is not None and n_gold < 0:
        raise ValueError(f"n_gold must be >= 0, not {n_gold}")
    weighted = any(w != 1.0 for _, _, w in items)

    def recall_of(correct: int) -> float | None:
        return correct / n_gold if n_gold else None

    if not items:
        return Calibration(min_precision, float(fallback), None, 0.0 if n_gold else None, False,
                           0, 0, 0, n_gold, source,
                           f"no {evidence} suggestion to calibrate on: the threshold "
                           f"{fallback:g} is used and the precision cannot be estimated",
                           evidence=evidence)
    # Walk down the distinct scores: at each, every suggestion scoring >= it is kept.
    best: tuple[float, int, int, float, float] | None = None   # reaching P: (t, kept, correct,
    top: tuple[float, float, int, int, float] | None = None    # precision, bound); the best bound
    tally = _Tally()
    i = 0
    while i < len(items):
        score = items[i][0]
        while i < len(items) and items[i][0] == score:
            tally.add(items[i][1], items[i][2])
            i += 1
        bound = tally.bound(confidence)
        precision = tally.precision or 0.0
        # >= with a tolerance of rounding, so 9/10 reaches 0.9
        if bound >= min_precision - 1e-12:
            best = (score, tally.kept, tally.correct, precision, bound)  # lower ones overwrite
        if top is None or bound > top[0] + 1e-12:
            top = (bound, score, tally.kept, tally.correct, precision)
        elif bound >= top[0] - 1e-12:                    # a tie: the lower threshold wins
            top = (top[0], score, tally.kept, tally.correct, precision)
    extra = {"confidence": confidence, "evidence": evidence, "weighted": weighted}
    if best is not None:
        t, k, c, p, b = best
        return Calibration(min_precision, t, p, recall_of(c), True, k, c, len(items), n_gold,
                           source, precision_bound=b, **extra)
    assert top is not None
    b, t, k, c, p = top
    what = "precision" if confidence <= 0.5 else f"precision bound ({confidence:g} confidence)"
    return Calibration(min_precision, t, p, recall_of(c), False, k, c, len(items), n_gold,
                       source,
                       f"precision {min_precision:g} is not reachable on the {evidence} values "
                       f"(the {what} is at most {b:.3f}): using the threshold of the highest "
                       f"{what}, {t:.4f}", precision_bound=b, **extra)


@dataclass(frozen=True)
class CrossValidation:
    """The selection judged on products it did not see (`cross_validate`)."""

    folds: int                      # folds used (0: fewer than two products, not possible)
    kept: int                       # fold suggestions kept at their fold's threshold, pooled
    correct: int                    # of which correct
    precision: float | None         # correct / kept (None: nothing kept)
    precision_bound: float          # its Wilson lower bound at `confidence` (0 if none kept)
    refused_folds: int              # folds whose other folds reached no threshold: no output
    thresholds: tuple[float | None, ...] = ()   # per fold (None where it refused)


def _groups(items: Sequence[Sequence[Any]]) -> list[str]:
    """The product of each suggestion; one without a product is a group of its own."""
    out = []
    for i, p in enumerate(items):
        pid = p[2] if len(p) > 2 else None
        out.append(f"\x00{i}" if pid is None else str(pid))
    return out


def cross_validate(pairs: Iterable[Sequence[Any]], min_precision: float,
                   folds: int = DEFAULT_FOLDS, seed: int = 0,
                   confidence: float = 0.5) -> CrossValidation:
    """Product-grouped K-fold check of `select_threshold` (module docstring).

    The distinct products are shuffled (seeded) and dealt into `folds` folds (fewer when there
    are fewer products: one product per fold). For each fold the threshold is chosen on the
    other folds' suggestions; where that reaches `min_precision` it is applied to the fold's
    suggestions, else the fold emits nothing. The kept fold suggestions are pooled.
    """
    items = list(pairs)
    groups = _groups(items)
    products = sorted(set(groups))
    random.Random(seed).shuffle(products)
    k = min(folds, len(products))
    if k < 2:
        return CrossValidation(0, 0, 0, None, 0.0, 0)
    fold_of = {pid: i % k for i, pid in enumerate(products)}
    pooled = _Tally()
    refused = 0
    thresholds: list[float | None] = []
    for f in range(k):
        train = [p for p, g in zip(items, groups) if fold_of[g] != f]
        test = [p for p, g in zip(items, groups) if fold_of[g] == f]
        cal = select_threshold(train, min_precision, confidence=confidence)
        if not cal.reachable:
            refused += 1
            thresholds.append(None)
            continue
        thresholds.append(cal.threshold)
        for p in test:
            if p[0] >= cal.threshold:
                pooled.add(bool(p[1]), _weight(p))
    return CrossValidation(k, pooled.kept, pooled.correct, pooled.precision,
                           pooled.bound(confidence), refused, tuple(thresholds))


def calibrate(pairs: Iterable[Sequence[Any]], min_precision: float, n_gold: int | None = None,
              *, fallback: float = 1.0, source: str = "", confidence: float = 0.5,
              folds: int = DEFAULT_FOLDS, seed: int = 0, force: bool = False,
              evidence: str = HELD_OUT_EVIDENCE) -> Calibration:
    """`select_threshold`, then decide whether `min_precision` is backed (module docstring):
    the returned Calibration carries the cross-validation (`folds` < 2: not run), the
    precision it can back, `refused` (emit nothing) or, with `force`, `forced`, and a
    `warning` that says what it can back, at which threshold and with what recall."""
    items = list(pairs)
    cal = select_threshold(items, min_precision, n_gold, fallback, source, confidence,
                           evidence)
    cv = cross_validate(items, min_precision, folds, seed, confidence) \
        if folds >= 2 and items else None
    tol = 1e-12
    if cv is not None:
        cal = replace(cal, cv_precision=cv.precision, cv_precision_bound=cv.precision_bound,
                      cv_kept=cv.kept, cv_correct=cv.correct, cv_folds=cv.folds,
                      cv_refused_folds=cv.refused_folds)
    # what it can back: the best bound in sample; where that reaches P, the lower of it and the
    # cross-validated bound (when P is out of reach the folds refuse too: their 0 says nothing
    # about the best threshold)
    if not items:
        backed = 0.0
    elif cal.reachable and cv is not None:
        backed = min(cal.precision_bound or 0.0, cv.precision_bound)
    else:
        backed = cal.precision_bound
    if not items:
        why = f"no {evidence} suggestion to judge a threshold on"
    elif not cal.reachable:
        why = f"no threshold's precision bound reaches it on the {evidence} values"
    elif cv is not None and cv.folds == 0:
        why = (f"the {evidence} suggestions come from one product: nothing shows the threshold "
               "transfers to other products")
    elif cv is not None and cv.precision_bound < min_precision - tol:
        why = (f"the threshold does not transfer across products (cross-validated over "
               f"{cv.folds} folds of products, the precision bound is {cv.precision_bound:.3f})")
    else:
        return replace(cal, backed_precision=backed)
    cal = replace(cal, backed_precision=backed, refused=not force, forced=force)
    return replace(cal, warning=refusal_message(cal, why))


def refusal_message(cal: Calibration, why: str) -> str:
    """What a Calibration that cannot back its requested precision can back, in one line."""
    src = f" on {cal.source}" if cal.source else ""
    head = f"precision {cal.requested:g} cannot be backed{src}: {why}"
    if cal.precision is None:
        return f"{head}; it can back no precision (threshold {cal.threshold:.4f})"
    cv_binds = (cal.reachable and cal.cv_precision_bound is not None
                and cal.cv_precision_bound < (cal.precision_bound or 0.0))
    if cv_binds:
        est = "-" if cal.cv_precision is None else f"{cal.cv_precision:.3f}"
        what = f"cross-validated over products; estimate {est}"
    else:
        what = f"estimate {cal.precision:.3f}"
    bound = ("lower bound" if cal.confidence <= 0.5 else
             f"lower bound at {cal.confidence:g} confidence")
    rec = "-" if cal.recall is None else f"{cal.recall:.3f}"
    gold = "" if cal.n_gold is None else f"; {cal.n_gold} {cal.gold_values}"
    return (f"{head}; it can back precision {cal.backed_precision:.3f} ({bound}, {what}) at "
            f"threshold {cal.threshold:.4f}, with recall {rec} there ({cal.correct} of the "
            f"{cal.kept} {cal.evidence} suggestions it keeps are correct{gold})")


def fixed_threshold(pairs: Iterable[Sequence[Any]], threshold: float,
                    n_gold: int | None = None, source: str = "",
                    evidence: str = HELD_OUT_EVIDENCE) -> Calibration:
    """What a given threshold reaches on held-out values (no selection; `requested` None)."""
    items = list(pairs)
    _, r, kept, correct = precision_recall_at(items, threshold, n_gold)
    tally = _Tally()
    for p in items:
        if p[0] >= threshold:
            tally.add(bool(p[1]), _weight(p))
    return Calibration(None, float(threshold), tally.precision, r, True, kept, correct,
                       len(items), n_gold, source, evidence=evidence,
                       weighted=any(_weight(p) != 1.0 for p in items))


__all__ = ["Calibration", "CrossValidation", "DEFAULT_FOLDS", "HELD_OUT_EVIDENCE", "Judged",
           "calibrate", "cross_validate", "fixed_threshold", "precision_lower_bound",
           "precision_recall_at", "refusal_message", "select_threshold", "wilson_lower_bound"]
