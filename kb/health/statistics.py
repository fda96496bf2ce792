"""The statistics of content health: intervals, Bayesian averages and proportion tests."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Two-sided 95 %: the normal quantile Φ⁻¹(0.975), scipy.stats.norm.ppf(0.975).
Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when there are no trials.

    Unlike the normal ("Wald") interval it stays inside [0, 1] and is sensible at 0 or n
    successes and for small n, which is exactly where new revisions live.
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n (got {successes} of {n})")
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    # Rounding must not push the bounds past the observed ratio (p = 0 or 1 exactly).
    return min(low, p), max(high, p)


def bayesian_average(successes: int, n: int, prior_mean: float, prior_weight: float) -> float:
    """The ratio after adding `prior_weight` imaginary trials at the site's `prior_mean`."""
    if prior_weight < 0 or n < 0:
        raise ValueError("n and prior_weight must not be negative")
    if n + prior_weight == 0:
        return prior_mean
    return (successes + prior_mean * prior_weight) / (n + prior_weight)


def fisher_exact(a: int, b: int, c: int, d: int) -> float:
    """Two-sided p-value of Fisher's exact test for the 2×2 table [[a, b], [c, d]] (SciPy's).

    It sums the probabilities (hypergeometric, margins fixed) of every table at most as
    likely as the observed one; 1.0 when a row or column is empty.
    """
    if min(a, b, c, d) < 0:
        raise ValueError("cell counts must not be negative")
    from scipy import stats  # slow to import, and only comparisons need it

    return float(stats.fisher_exact([[a, b], [c, d]], alternative="two-sided").pvalue)


def two_proportion_z(s1: int, n1: int, s2: int, n2: int) -> float | None:
    """Pooled two-proportion z statistic of p2 − p1 (None when undefined)."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None
    return (s2 / n2 - s1 / n1) / se


@dataclass(frozen=True)
class Proportion:
    """A ratio with its Wilson interval and its Bayesian average."""

    successes: int
    n: int
    low: float
    high: float
    bayesian: float

    @property
    def ratio(self) -> float | None:
        return self.successes / self.n if self.n else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures (rounded to 4 places)."""
        return {
            "successes": self.successes,
            "n": self.n,
            "ratio": None if self.ratio is None else round(self.ratio, 4),
            "wilson_low": round(self.low, 4),
            "wilson_high": round(self.high, 4),
            "bayesian": round(self.bayesian, 4),
        }


def proportion(
    successes: int, n: int, *, prior_mean: float, prior_weight: float, z: float = Z95
) -> Proportion:
    """Wilson interval and Bayesian average of `successes` out of `n`."""
    low, high = wilson_interval(successes, n, z)
    return Proportion(
        successes, n, low, high, bayesian_average(successes, n, prior_mean, prior_weight)
    )


@dataclass(frozen=True)
class Comparison:
    """Before/after of a rewrite: the two helpful ratios and whether they differ.

    The test is Fisher's exact test (two-sided): revisions are often judged on tens of
    votes, where the two-proportion z-test's normal approximation is unreliable (it wants
    about five expected votes in every cell); Fisher's test is exact at any size. The z
    statistic is reported beside it as an effect size in standard errors.
    """

    before: Proportion
    after: Proportion
    difference: float | None
    z: float | None
    p_value: float
    significant: bool
    improved: bool
    test: str = "fisher_exact_two_sided"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "difference": None if self.difference is None else round(self.difference, 4),
            "z": None if self.z is None else round(self.z, 3),
            "p_value": float(f"{self.p_value:.3g}"),  # three significant digits
            "significant": self.significant,
            "improved": self.improved,
            "test": self.test,
        }


def compare_proportions(before: Proportion, after: Proportion, *, alpha: float) -> Comparison:
    """Compare two ratios with Fisher's exact test at significance level `alpha`."""
    p = fisher_exact(
        before.successes,
        before.n - before.successes,
        after.successes,
        after.n - after.successes,
    )
    diff = (
        after.ratio - before.ratio if after.ratio is not None and before.ratio is not None else None
    )
    significant = p < alpha and diff is not None
    return Comparison(
        before=before,
        after=after,
        difference=diff,
        z=two_proportion_z(before.successes, before.n, after.successes, after.n),
        p_value=p,
        significant=significant,
        improved=significant and diff is not None and diff > 0,
    )
