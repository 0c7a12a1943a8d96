"""Reviewers' decisions as calibration data for `mjave complete --reviews DB` (issue #33).

No held-out value can judge a `new_attribute` suggestion (`mjave.completion.kinds`), so its
precision can only be backed by people: each suggestion decided in `mjave review` is a judged
pair like a held-out one. `read_review_file` turns the effective decisions of a review database
into one verdict per (product, attribute, normalised value), the key `mjave complete` groups its
rows by; the command then gives each verdict the score and the kind of the *current* run (the
model or the table may have changed since the review), so each kind is calibrated on what the
new run would write.

`per_attribute` reports precision per attribute over every judged pair (held-out and reviewed),
so one failing attribute is shown rather than averaged away; `reviews_needed` says how many more
judged suggestions a kind whose promise cannot be backed yet would need.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping

from mjave.completion.calibrate import Calibration, Judged, precision_lower_bound
from mjave.data.errors import DataError
from mjave.data.normalize import collapse_punctuation
from mjave.review.db import read_review_state

HELD_OUT, REVIEW = "held_out", "review"
"""Where a judged pair's verdict comes from."""

MAX_REVIEWS_NEEDED = 10**9
"""Beyond this many more judged suggestions `reviews_needed` gives up (None)."""


@dataclass(frozen=True)
class Review:
    """The verdict of one decided suggestion, keyed as `mjave complete` keys its rows."""

    product_id: str
    attribute: str
    normalized: str
    correct: bool
    action: str          # accept, reject or edit (the effective decision)
    fair: bool = False   # drawn in `random` queue order from the whole queue: a fair sample

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.product_id, self.attribute, self.normalized)


def verdict(action: str, normalized: str, edited_value: str | None,
            normalize: Callable[[str], str] = collapse_punctuation) -> bool | None:
    """Whether a decision says the suggested value is right: accept = correct, reject =
    incorrect, edit = incorrect *for the suggested value* (the reviewer replaced it), unless the
    edit normalises to the suggested value (a change of case or punctuation `complete` does not
    see); any other action (a conflict's) = None, not used."""
    if action == "accept":
        return True
    if action == "reject":
        return False
    if action == "edit":
        return bool(edited_value) and normalize(edited_value or "") == normalized
    return None


def read_review_file(path: str | os.PathLike,
                     normalize: Callable[[str], str] = collapse_punctuation
                     ) -> tuple[list[Review], int]:
    """The verdicts of the decided suggestions of the review database at `path` and how many
    suggestions drawn at random (the fair sample) were skipped and are still undecided, both from
    one read-only snapshot. Undecided or skipped items have no verdict; items whose values
    normalise alike (a "Red" and a "red" row) are one key, the latest decision wins, and a
    skipped key some other row's decision judges is not missing. Reviewers who skip the hard
    ones leave a fair sample that flatters the precision: the summary says how many are missing.
    A missing file or one that is no review database is a DataError."""
    try:
        rows, skips = read_review_state(path, "suggestion")
    except (OSError, sqlite3.Error) as e:
        raise DataError(f"cannot read the review database: {e}", path=os.fspath(path),
                        reason="unreadable review database") from None
    out: dict[tuple[str, str, str], Review] = {}
    for row in rows:   # oldest decision first: a later one replaces it
        norm = normalize(row["value"])
        correct = verdict(row["action"], norm, row.get("edited_value"), normalize)
        if correct is None or not norm:
            continue
        r = Review(str(row["product_id"]), str(row["attribute"]), norm, correct, row["action"],
                   bool(row.get("fair")))
        out.pop(r.key, None)
        out[r.key] = r
    skipped = {(str(r["product_id"]), str(r["attribute"]), normalize(r["value"])) for r in skips}
    return list(out.values()), len(skipped - out.keys())


def read_reviews(path: str | os.PathLike, normalize: Callable[[str], str] = collapse_punctuation
                 ) -> list[Review]:
    """The verdicts alone (`read_review_file`)."""
    return read_review_file(path, normalize)[0]


@dataclass(frozen=True)
class Evidence:
    """One judged suggestion of the current run: its attribute and kind, where the verdict
    comes from (`HELD_OUT` or `REVIEW`), the (score, correct, product) it is judged as, and
    whether the run itself would write it (`candidate`: a reviewed value the table still
    lacks; an accepted value now in the table, or a held-out pair, is not), and whether a
    review was drawn at random (`fair`: it may judge the rows nobody reviewed)."""

    attribute: str
    kind: str
    source: str
    judged: Judged
    candidate: bool = False
    fair: bool = False


@dataclass
class ReviewCounts:
    """What a review database contributed to one run."""

    path: str
    decided: Counter = field(default_factory=Counter)      # distinct keys, by action
    used: Counter = field(default_factory=Counter)         # judged pairs, by kind
    by_attribute: Counter = field(default_factory=Counter)  # judged pairs, by attribute
    fair: Counter = field(default_factory=Counter)         # judged pairs drawn at random, by kind
    not_predicted: int = 0   # the current run does not predict the value: no score to judge
    held_out: int = 0        # the (product, attribute) is judged by held-out values already
    fair_skipped: int = 0    # drawn at random, skipped, undecided: missing from the fair sample

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "decided": dict(self.decided),
                "decided_total": sum(self.decided.values()), "used": dict(self.used),
                "by_attribute": dict(self.by_attribute), "fair": dict(self.fair),
                "not_predicted": self.not_predicted,
                "held_out": self.held_out, "fair_skipped": self.fair_skipped}

    def line(self) -> str:
        """One line for the summary."""
        actions = ", ".join(f"{n} {a}" for a, n in sorted(self.decided.items())) or "none"
        used = ", ".join(f"{n} {k}" + (f" ({self.fair[k]} drawn at random)" if self.fair[k]
                                          else "")
                         for k, n in sorted(self.used.items())) or "none"
        skipped = f"; {self.skipped_note()}" if self.fair_skipped else ""
        return (f"reviews from {self.path}: {sum(self.decided.values())} decided suggestions "
                f"({actions}); judged pairs of this run: {used}; {self.not_predicted} no longer "
                f"predicted, {self.held_out} already judged by held-out values{skipped}")

    def skipped_note(self) -> str:
        """What the skipped suggestions of the fair sample mean for it."""
        return (f"{self.fair_skipped} suggestions drawn at random were skipped and are still "
                f"undecided: the random sample lacks them (if reviewers skip the hard ones, it "
                f"flatters the precision; decide them)")


@dataclass(frozen=True)
class AttributePrecision:
    """Precision of one attribute's judged suggestions (held-out and reviewed), at every score
    and at the threshold of each pair's kind (`kept`: what the run delivers or would)."""

    attribute: str
    judged: int
    held_out: int
    reviews: int
    correct: int
    precision: float
    precision_bound: float
    kept: int = 0
    kept_correct: int = 0
    excluded: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        off = ", excluded" if self.excluded else ""
        return (f"{self.attribute} {self.precision:.3f} (bound {self.precision_bound:.3f}; "
                f"{self.correct} of {self.judged} right: {self.held_out} held-out, "
                f"{self.reviews} reviews{off})")


def per_attribute(evidence: Iterable[Evidence], confidence: float,
                  thresholds: Mapping[str, float | None] | None = None,
                  excluded: Iterable[str] = ()) -> list[AttributePrecision]:
    """Precision per attribute with at least one judged pair, the lowest bound first; `kept`
    counts the pairs scoring >= the threshold of their kind (`thresholds`: kind -> threshold,
    None or absent: the kind writes nothing inside a promise)."""
    thresholds = thresholds or {}
    off = set(excluded)
    counts: dict[str, Counter] = {}
    for e in evidence:
        c = counts.setdefault(e.attribute, Counter())
        c[e.source] += 1
        c["correct"] += bool(e.judged.correct)
        t = thresholds.get(e.kind)
        if t is not None and e.judged.score >= t:
            c["kept"] += 1
            c["kept_correct"] += bool(e.judged.correct)
    out = []
    for attribute, c in counts.items():
        n = c[HELD_OUT] + c[REVIEW]
        out.append(AttributePrecision(attribute, n, c[HELD_OUT], c[REVIEW], c["correct"],
                                      c["correct"] / n,
                                      precision_lower_bound(c["correct"], n, confidence),
                                      c["kept"], c["kept_correct"], attribute in off))
    out.sort(key=lambda a: (a.precision_bound, a.attribute))
    return out


def reviews_needed(correct: float, judged: int, min_precision: float, confidence: float,
                   limit: int = MAX_REVIEWS_NEEDED) -> int | None:
    """How many more judged suggestions would back `min_precision` if the observed precision
    `correct / judged` held: the smallest n whose Wilson lower bound at `confidence` over
    `judged + n` suggestions reaches it (0: it already does). None when no n can: the observed
    precision is not above `min_precision` (the bound stays below the estimate), or more than
    `limit` would be needed. With nothing judged yet, every one is assumed right: the least
    number that could back it."""
    p = correct / judged if judged else 1.0

    def reaches(n: int) -> bool:
        return n > 0 and precision_lower_bound(p * n, n, confidence) >= min_precision - 1e-12

    if reaches(judged):
        return 0
    if p <= min_precision or not reaches(judged + limit):
        return None
    lo, hi = judged, judged + 1          # the bound grows with n at a fixed precision
    while not reaches(hi):
        lo, hi = hi, min(judged + limit, judged + 2 * (hi - judged))
    while hi - lo > 1:                   # reaches(hi), not reaches(lo)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return hi - judged


def needs_statement(kind: str, cal: Calibration | None, min_precision: float,
                    confidence: float) -> str | None:
    """What a kind still needs before `min_precision` can be backed, in words (None: backed).

    Counted where the kind's calibration stands: the judged suggestions scoring >= its best
    threshold, or, when those reach the bound but the check across products does not, the
    cross-validated ones."""
    if cal is not None and cal.backed:
        return None
    if cal is None or cal.precision is None:
        n = reviews_needed(0, 0, min_precision, confidence)
        return (f"{kind}: nothing judged yet; at least {n} judged suggestions (if every one "
                f"is right) before precision {min_precision:g} can be backed")
    if cal.reachable and cal.cv_precision_bound is not None:
        if cal.cv_folds == 0 or not cal.cv_kept:
            return (f"{kind}: the judged suggestions come from too few products to show the "
                    f"threshold transfers; review suggestions of more products")
        correct, judged, where = cal.cv_correct, cal.cv_kept, "cross-validated over products"
        observed = cal.cv_precision if cal.cv_precision is not None else correct / judged
    else:
        correct, judged = cal.correct, cal.kept
        where = f"scoring >= {cal.threshold:.4f}"
        observed = cal.precision
    # weighted pairs (`mjave.completion.stratify`): the weighted precision, on the pair count
    n = reviews_needed(observed * judged, judged, min_precision, confidence)
    if n is None:
        return (f"{kind}: cannot be backed at the observed precision {observed:.3f} ({correct} "
                f"of {judged} judged {where} right; precision {min_precision:g} asked)")
    return (f"{kind}: about {n} more judged suggestions {where} before precision "
            f"{min_precision:g} can be backed, if the observed precision {observed:.3f} holds "
            f"({correct} of {judged} right)")


__all__ = ["AttributePrecision", "Evidence", "HELD_OUT", "MAX_REVIEWS_NEEDED", "REVIEW",
           "Review", "ReviewCounts", "needs_statement", "per_attribute",
           "read_review_file", "read_reviews", "reviews_needed", "verdict"]
