"""What a run writes, judged as a finite set: reviewed rows as themselves, the rest from a fair
sample (issue #33).

Why: reviews are not a random sample of a run's suggestions. The review queue hands them out by
score (the surest first) or by uncertainty, a reviewer's accepted values join the table (so the
next run no longer suggests them), and the queue was ranked by an earlier model. Pooling
reviews with the held-out pairs and reading the precision over "every judged pair scoring
>= t" therefore describes the rows people reviewed, not the rows the run writes. Measured on
WDC-PAVE (docs/completion.md, review rounds): after 400 score-ordered reviews the pooled pairs
backed 0.901 for `fills_known_gap` and the rows written delivered 0.682; re-weighting all judged
pairs by score bin alone still delivered 0.720, because most reviewed pairs were accepted values
the run no longer writes.

So the rows a run writes at a threshold t, W(t), are split in two:

- **known**: candidates of this run that a reviewer decided. Each stands for itself (weight 1).
  Reviewed values that are no longer candidates (accepted and now in the table) describe no row
  of W(t) and are left out of the calibration (the per-attribute report still shows them).
- **unjudged**: the other candidates. Their precision is read from a *fair* sample, one chosen
  without looking at the model: the held-out pairs (`fills_known_gap` only). The candidates'
  scores are cut into `bins` quantile bins; a fair pair in bin b stands for U_b / F_b
  candidates (U_b unjudged candidates and F_b fair pairs in b).

`mjave.completion.calibrate` turns the weights into a precision of W(t) and a Wilson bound on
the effective number of pairs. A bin with unjudged candidates and no fair pair leaves their
precision unknown, so no threshold may reach them: every pair at or below the best score among
them is left out (the threshold cannot go lower) and `floor` says where that is. With no fair
sample at all (`new_attribute`, whose only evidence is reviews) only thresholds above every
unjudged candidate remain: reviews chosen by the queue vouch for the rows they decided and for
nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mjave.completion.calibrate import Judged

DEFAULT_BINS = 10
"""Quantile bins of the unjudged candidates' scores: fine enough to follow where the model's
precision changes, coarse enough that a few hundred held-out pairs fill every bin."""


@dataclass(frozen=True)
class Stratified:
    """The judged pairs with their weights, and what was left out."""

    pairs: list[Judged]
    bins: int = 0                  # score bins holding unjudged candidates (0: none)
    floor: float | None = None     # thresholds must lie above it (the best unjudgeable score)
    unjudged: int = 0              # unjudged candidates in bins without a fair pair
    dropped: int = 0               # judged pairs left out (at or below the floor, or in no bin)

    def note(self) -> str | None:
        """One line for the summary when something was left out."""
        if self.floor is None and not self.dropped:
            return None
        if self.floor is None:
            where = ""
        else:
            where = (f"{self.unjudged} unreviewed candidates lie in score bins no held-out value "
                     f"covers, so no threshold at or below {self.floor:.4f} (the best of them) "
                     f"can be judged; ")
        return f"{where}{self.dropped} judged suggestions left out"


def stratify(fair: Sequence[Judged], known: Sequence[Judged], unjudged: Sequence[float],
             bins: int = DEFAULT_BINS) -> Stratified:
    """The pairs that judge a run's written rows (module docstring): `known` (reviewed
    candidates) at weight 1, `fair` (held-out pairs) weighted to the scores of the `unjudged`
    candidates."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, not {bins}")
    known_pairs = [Judged(p.score, p.correct, p.product, 1.0) for p in known]
    if not len(unjudged):
        return Stratified(known_pairs, dropped=len(fair))
    scores = np.asarray(unjudged, dtype=float)
    # bin b holds the scores in (edges[b], edges[b + 1]] (the first from -inf, the last to
    # +inf); tied quantiles give empty bins, which weigh nothing
    edges = np.quantile(scores, np.linspace(0.0, 1.0, bins + 1))
    inner = edges[1:-1]
    population = np.bincount(np.searchsorted(inner, scores, side="left"), minlength=bins)
    where = np.searchsorted(inner, np.asarray([p.score for p in fair], dtype=float),
                            side="left")
    counts = np.bincount(where, minlength=bins)
    empty = [b for b in range(bins) if population[b] > 0 and counts[b] == 0]
    of = np.searchsorted(inner, scores, side="left")
    floor = float(scores[np.isin(of, empty)].max()) if empty else None
    out = []
    for p, b in zip(fair, where):
        if population[b] > 0 and (floor is None or p.score > floor):
            out.append(Judged(p.score, p.correct, p.product, float(population[b] / counts[b])))
    out += [p for p in known_pairs if floor is None or p.score > floor]
    return Stratified(out, int(np.count_nonzero(population)), floor,
                      int(sum(population[b] for b in empty)),
                      len(fair) + len(known) - len(out))


__all__ = ["DEFAULT_BINS", "Stratified", "stratify"]
