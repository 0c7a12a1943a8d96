"""Statistics of the experiments: instance-level F1, paired tests and Fisher's method.

The paper's significance claims (Table 3: paired t-test; section 4.3: one paired test per image
permutation, the K p-values combined with Fisher's method) all work on *per-instance* scores, so
everything here takes aligned arrays of per-text F1 values. Corpus-level micro F1 stays in
`mjave.evaluation.metrics`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Hashable, Iterable, Literal, Sequence

import numpy as np

Alternative = Literal["two-sided", "greater", "less"]
TestName = Literal["ttest", "wilcoxon"]


def instance_f1(gold: Iterable[Hashable], pred: Iterable[Hashable]) -> float:
    """F1 of one text's predicted set against its gold set (set semantics, duplicates once).

    Defined as 1.0 when both sets are empty (nothing to find, nothing claimed: a perfect
    answer) and 0.0 when exactly one is empty, so that every text has a score and the
    per-instance awareness of Eq. 15-16 is defined on texts without values too.
    """
    g, p = set(gold), set(pred)
    if not g and not p:
        return 1.0
    tp = len(g & p)
    return 2.0 * tp / (len(g) + len(p))


def instance_f1s(gold: Sequence[Iterable[Hashable]], pred: Sequence[Iterable[Hashable]]
                 ) -> np.ndarray:
    """`instance_f1` of every aligned (gold, pred) pair, as a float array."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold instances but {len(pred)} predicted ones")
    return np.array([instance_f1(g, p) for g, p in zip(gold, pred)], dtype=np.float64)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value), as Table 9 reports
    the spread of three random samples."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def mean_std_present(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """`mean_std` of the values that are not None (a seed that measured nothing, e.g. a
    threshold that kept no suggestion); (None, None) when none is."""
    present = [v for v in values if v is not None]
    return mean_std(present) if present else (None, None)


def over_seeds(name: str, values: Sequence[float | None]) -> dict[str, Any]:
    """One score over seeds as results.json holds it: `name` (mean), `name_std` (sample std)
    and `name_per_seed` (the values), mean and std of the values that are not None."""
    mean, std = mean_std_present(values)
    return {name: mean, f"{name}_std": std, f"{name}_per_seed": list(values)}


@dataclass
class PairedTest:
    """One paired test of a against b (`mean_diff` = mean(a - b))."""

    test: str
    alternative: str
    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    statistic: float
    p_value: float
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _degenerate(diff: np.ndarray, alternative: Alternative) -> tuple[float, float, str] | None:
    """Constant differences make both tests undefined (zero variance, all-zero ranks): answer
    what the data says instead of NaN or an exception."""
    if diff.size and not np.all(diff == diff[0]):
        return None
    d = float(diff[0]) if diff.size else 0.0
    if d == 0.0:
        return 0.0, 1.0, "all differences are zero"
    direction_ok = {"two-sided": True, "greater": d > 0, "less": d < 0}[alternative]
    return (math.copysign(math.inf, d), 0.0 if direction_ok else 1.0,
            "all differences are equal (zero variance)")


def paired_test(a: Sequence[float], b: Sequence[float], test: TestName = "ttest",
                alternative: Alternative = "two-sided") -> PairedTest:
    """Paired t-test (`scipy.stats.ttest_rel`) or Wilcoxon signed-rank test of a against b.

    `alternative="greater"` asks whether a is larger (e.g. congruent minus incongruent image).
    """
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired samples must be 1-d and aligned, got {x.shape} and {y.shape}")
    if x.size < 2:
        raise ValueError("a paired test needs at least two instances")
    diff = x - y
    base = dict(test=test, alternative=alternative, n=int(x.size), mean_a=float(x.mean()),
                mean_b=float(y.mean()), mean_diff=float(diff.mean()))
    degenerate = _degenerate(diff, alternative)
    if degenerate is not None:
        statistic, p, note = degenerate
        return PairedTest(**base, statistic=statistic, p_value=p, note=note)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if test == "ttest":
            r = stats.ttest_rel(x, y, alternative=alternative)
        elif test == "wilcoxon":
            r = stats.wilcoxon(x, y, alternative=alternative, zero_method="wilcox")
        else:
            raise ValueError(f"test must be 'ttest' or 'wilcoxon', not {test!r}")
    return PairedTest(**base, statistic=float(r.statistic), p_value=float(r.pvalue))


@dataclass
class FisherResult:
    """Fisher's method: X^2 = -2 sum ln p_i, chi-square with 2k degrees of freedom under H0."""

    statistic: float
    dof: int
    p_value: float

    def to_dict(self) -> dict:
        return asdict(self)


def chi2_sf_even(x: float, dof: int) -> float:
    """Survival function of the chi-square distribution with an even number of degrees of
    freedom, in closed form: exp(-x/2) sum_{i<dof/2} (x/2)^i / i! (summed in log space)."""
    if dof <= 0 or dof % 2:
        raise ValueError(f"dof must be a positive even number, got {dof}")
    if x <= 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    half = x / 2.0
    terms = [i * math.log(half) - math.lgamma(i + 1) for i in range(dof // 2)]
    top = max(terms)
    return min(1.0, math.exp(top - half) * sum(math.exp(t - top) for t in terms))


def fisher_combine(p_values: Sequence[float]) -> FisherResult:
    """Combine independent p-values (one per image permutation) with Fisher's method.

    Equals `scipy.stats.combine_pvalues(p, method="fisher")`; written out so the statistic the
    paper reports (X^2 = 6790.80 for K = 8) is explicit. A p-value of 0 gives X^2 = inf, p = 0.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        raise ValueError("no p-values to combine")
    if np.any((p < 0) | (p > 1)) or np.any(np.isnan(p)):
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    with np.errstate(divide="ignore"):
        statistic = float(-2.0 * np.log(p).sum())
    dof = 2 * int(p.size)
    return FisherResult(statistic, dof, chi2_sf_even(statistic, dof))
