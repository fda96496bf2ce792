"""Fisher's exact test from SciPy against the hand-written one it replaced, and Z95.

The reference below is the former implementation, kept only here. On tables of up to a
hundred votes a cell the two agree within 1e-12; on larger ones the old log-gamma sums drift,
so SciPy is checked against the exact rational p-value instead.
"""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from kb.health.statistics import Z95, fisher_exact


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def reference_fisher_exact(a: int, b: int, c: int, d: int) -> float:
    row1, col1, total = a + b, a + c, a + b + c + d
    if total == 0 or row1 in (0, total) or col1 in (0, total):
        return 1.0
    lo, hi = max(0, row1 + col1 - total), min(row1, col1)
    base = _log_choose(total, row1)

    def log_p(x: int) -> float:
        return _log_choose(col1, x) + _log_choose(total - col1, row1 - x) - base

    cutoff = log_p(a) + math.log1p(1e-7)
    p = math.fsum(math.exp(lp) for x in range(lo, hi + 1) if (lp := log_p(x)) <= cutoff)
    return min(1.0, p)


def exact_fisher(a: int, b: int, c: int, d: int) -> float:
    """The two-sided p-value in rational arithmetic, ties within a relative 1e-7."""
    row1, col1, total = a + b, a + c, a + b + c + d
    lo, hi = max(0, row1 + col1 - total), min(row1, col1)
    weights = [math.comb(col1, lo) * math.comb(total - col1, row1 - lo)]
    for x in range(lo, hi):  # C(col1, x) C(total - col1, row1 - x), one step at a time
        step = (col1 - x) * (row1 - x), (x + 1) * (total - col1 - row1 + x + 1)
        weights.append(weights[-1] * step[0] // step[1])
    cutoff = weights[a - lo] * Fraction(10**7 + 1, 10**7)
    return float(Fraction(sum(w for w in weights if w <= cutoff), math.comb(total, row1)))


def cells(top: int) -> st.SearchStrategy[tuple[int, int, int, int]]:
    return st.tuples(*(st.integers(0, top) for _ in range(4)))


@settings(max_examples=2000, deadline=None)
@given(cells(100))
def test_same_p_value_as_the_reference(t: tuple[int, int, int, int]) -> None:
    assert abs(fisher_exact(*t) - reference_fisher_exact(*t)) <= 1e-12


@settings(max_examples=300, deadline=None)
@given(cells(12))
def test_same_p_value_on_small_tables(t: tuple[int, int, int, int]) -> None:
    # Small tables have many equally likely tables: where the tie rule matters.
    assert abs(fisher_exact(*t) - reference_fisher_exact(*t)) <= 1e-12


@settings(max_examples=200, deadline=None)
@given(cells(3000))
def test_large_tables_match_the_exact_p_value(t: tuple[int, int, int, int]) -> None:
    assert abs(fisher_exact(*t) - exact_fisher(*t)) <= 1e-12


def test_z95_is_the_normal_quantile() -> None:
    assert float(norm.ppf(0.975)) == Z95
