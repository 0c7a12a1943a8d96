"""Judged pairs weighted to the run's suggestions (mjave.completion.stratify, issue #33): a
review queue that hands out the surest suggestions first must not make the promise read better
than the rows written deliver."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mjave.completion.calibrate import (Judged, calibrate, cross_validate, precision_lower_bound,
                                        select_threshold, wilson_lower_bound)
from mjave.completion.stratify import stratify


def _after_a_round(seed: int, n: int = 2000):
    """A review round as the review queue runs it: candidates whose true precision is
    sqrt(score); the top 300 of an earlier model's ranking (which ranked right values higher)
    reviewed, the accepted ones now in the table (no longer candidates), the rejected ones still
    suggested; 150 held-out pairs drawn at random from the same scores."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 1, n)
    truth = rng.uniform(0, 1, n) < np.sqrt(scores)
    earlier = scores + 0.4 * truth * rng.uniform(0, 1, n)
    reviewed = np.zeros(n, bool)
    reviewed[np.argsort(-earlier)[:300]] = True
    judged = [Judged(float(scores[i]), bool(truth[i]), f"p{i}") for i in np.where(reviewed)[0]]
    known = [p for p in judged if not p.correct]               # rejected: still written
    hs = rng.uniform(0, 1, 150)
    ht = rng.uniform(0, 1, 150) < np.sqrt(hs)
    held = [Judged(float(s), bool(t), f"h{i}") for i, (s, t) in enumerate(zip(hs, ht))]
    written = ~(reviewed & truth)                               # what the next run writes
    return scores, truth, written, reviewed, held, judged, known


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_queue_ordered_reviews_cannot_back_the_rows_nobody_reviewed(seed):
    scores, truth, written, reviewed, held, judged, known = _after_a_round(seed)

    def delivered(threshold: float) -> float:
        kept = written & (scores >= threshold)
        return float(truth[kept].mean())

    # the failure this fixes: every judged pair pooled backs 0.9, the written rows deliver ~0.65
    pooled = calibrate(held + judged, 0.9, confidence=0.9, folds=5)
    assert not pooled.refused and delivered(pooled.threshold) < 0.7
    strata = stratify(held, known, scores[written & ~reviewed])
    fair = calibrate(strata.pairs, 0.9, confidence=0.9, folds=5)
    assert fair.weighted
    assert fair.refused or delivered(fair.threshold) >= 0.9 - 0.03


def test_fair_pairs_stand_for_the_unjudged_candidates_of_their_bin_known_rows_for_themselves():
    unjudged = [0.1] * 6 + [0.9] * 2          # two bins: 0.1 (6 candidates), 0.9 (2)
    fair = [Judged(0.1, True, "a"), Judged(0.1, False, "b"), Judged(0.9, True, "c"),
            Judged(0.9, True, "d")]
    known = [Judged(0.95, False, "k")]          # a reviewed row the run still writes
    out = stratify(fair, known, unjudged, bins=2)
    assert [p.weight for p in out.pairs] == [3.0, 3.0, 1.0, 1.0, 1.0]
    assert out.floor is None and out.dropped == 0 and out.note() is None
    # at threshold 0.1: (3 + 1 + 1 + 0) right of 3 + 3 + 1 + 1 + 1 = 9
    cal = select_threshold(out.pairs, 0.0, confidence=0.9)   # every threshold reaches 0: lowest
    assert cal.threshold == 0.1 and cal.precision == pytest.approx(5 / 9)
    assert (cal.kept, cal.correct) == (5, 3)
    # the bound is taken on Kish's effective number: 9^2 / (9 + 9 + 1 + 1 + 1)
    assert cal.precision_bound == pytest.approx(wilson_lower_bound(5 / 9, 81 / 21, 0.9))
    # nothing unjudged: the known rows are all there is, the fair sample judges nothing
    alone = stratify(fair, known, [])
    assert alone.pairs == [Judged(0.95, False, "k", 1.0)] and alone.dropped == 4


def test_unjudged_candidates_no_fair_pair_covers_set_a_floor():
    unjudged = [0.1] * 5 + [0.5] * 5 + [0.9] * 5
    fair = [Judged(0.1, False, "a"), Judged(0.15, False, "b"), Judged(0.9, True, "c"),
            Judged(0.95, True, "d")]
    known = [Judged(0.4, True, "k1"), Judged(0.6, True, "k2")]
    out = stratify(fair, known, unjudged, bins=3)
    assert out.floor == 0.5                       # the 0.5 bin: nobody fair judged it
    assert out.unjudged == 5 and out.dropped == 3
    assert sorted(p.score for p in out.pairs) == [0.6, 0.9, 0.95]
    assert "at or below 0.5000" in (out.note() or "")
    # no fair sample at all (new_attribute): only rows above every unjudged one can be judged
    reviews_only = stratify([], [Judged(0.99, True, "k"), Judged(0.6, True, "j")], [0.5, 0.7])
    assert reviews_only.floor == 0.7 and reviews_only.pairs == [Judged(0.99, True, "k", 1.0)]


def test_unit_weights_give_the_unweighted_figures():
    pairs = [(0.9, True, "a"), (0.8, True, "b"), (0.7, False, "c"), (0.6, True, "d"),
             (0.5, True, "e"), (0.4, False, "f")]
    plain = select_threshold(pairs, 0.75, confidence=0.9)
    ones = select_threshold([Judged(s, c, p, 1.0) for s, c, p in pairs], 0.75, confidence=0.9)
    assert plain == ones
    assert plain.precision_bound == precision_lower_bound(plain.correct, plain.kept, 0.9)
    assert cross_validate(pairs, 0.5, folds=3) == cross_validate(
        [Judged(s, c, p) for s, c, p in pairs], 0.5, folds=3)


def test_non_positive_weights_are_refused():
    with pytest.raises(ValueError, match="weight"):
        select_threshold([Judged(0.5, True, "a", 0.0)], 0.5)
