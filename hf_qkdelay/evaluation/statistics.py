"""Summary statistics of the comparison table: mean, sample std, Welch t interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (n - 1 in the denominator) of `n` values."""

    mean: float
    std: float  # NaN when n == 1
    n: int


# Why a Welch interval is undefined (`Difference.undefined_reason`).
SINGLE_RUN = "single_run"  # a side has one value: no variance estimate
NO_SPREAD = "no_spread"  # both sides have std 0: the degrees of freedom are 0/0


@dataclass(frozen=True)
class Difference:
    """`mean(group) - mean(baseline)` with a two-sided Welch t confidence interval."""

    difference: float
    ci_low: float  # NaN when undefined: a single value on a side, or no spread on either
    ci_high: float
    degrees_of_freedom: float  # Welch-Satterthwaite; NaN when undefined
    undefined_reason: str | None = None  # SINGLE_RUN or NO_SPREAD when the interval is NaN


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        raise ValueError("`values` is empty: a summary needs at least one run.")
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return Summary(mean, math.nan, 1)
    variance = math.fsum((value - mean) ** 2 for value in values) / (n - 1)
    return Summary(mean, math.sqrt(variance), n)


def welch_interval(group: Summary, baseline: Summary, confidence: float = 0.95) -> Difference:
    """Welch's t interval for the difference of two means with unequal variances.

    se = sqrt(s_g^2/n_g + s_b^2/n_b); the degrees of freedom follow Welch-Satterthwaite:
    df = se^4 / ((s_g^2/n_g)^2/(n_g - 1) + (s_b^2/n_b)^2/(n_b - 1)). With one run on
    either side there is no variance estimate, so the interval is NaN. With zero spread on
    both sides the degrees of freedom are 0/0, so the interval is NaN as well: a width of
    zero would claim a certainty that a handful of identical runs does not give.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence`={confidence} must lie strictly between 0 and 1.")
    difference = group.mean - baseline.mean
    if group.n < 2 or baseline.n < 2:
        return Difference(difference, math.nan, math.nan, math.nan, SINGLE_RUN)
    group_term = group.std**2 / group.n
    baseline_term = baseline.std**2 / baseline.n
    standard_error = math.sqrt(group_term + baseline_term)
    if standard_error == 0:
        return Difference(difference, math.nan, math.nan, math.nan, NO_SPREAD)
    degrees_of_freedom = (group_term + baseline_term) ** 2 / (
        group_term**2 / (group.n - 1) + baseline_term**2 / (baseline.n - 1)
    )
    half_width = t_quantile(0.5 + confidence / 2, degrees_of_freedom) * standard_error
    return Difference(
        difference, difference - half_width, difference + half_width, degrees_of_freedom
    )


def t_quantile(probability: float, degrees_of_freedom: float) -> float:
    """Quantile of Student's t distribution (real-valued degrees of freedom allowed)."""
    from scipy.stats import t

    return float(t.ppf(probability, degrees_of_freedom))
