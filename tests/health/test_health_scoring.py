"""Health scoring: properties of the Wilson interval, the Bayesian average, Fisher's exact
test and the before/after comparison (hypothesis), plus the SVG chart and the diff."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from api.health.chart import ChartText, RevisionMark, health_chart_svg, nice_ceiling
from api.health.pages import text_diff
from kb.health.scores import Counts, DayPoint, HealthPolicy, site_baseline
from kb.health.statistics import (
    bayesian_average,
    compare_proportions,
    fisher_exact,
    proportion,
    two_proportion_z,
    wilson_interval,
)


@st.composite
def trials(draw: st.DrawFn, max_n: int = 5000) -> tuple[int, int]:
    n = draw(st.integers(min_value=1, max_value=max_n))
    return draw(st.integers(min_value=0, max_value=n)), n


@settings(deadline=None)  # no timing assertions: the machine is shared
@given(trials())
def test_wilson_bounds_contain_the_ratio_and_stay_in_0_1(kn: tuple[int, int]) -> None:
    k, n = kn
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0
    assert high - low > 0


@settings(deadline=None)  # no timing assertions: the machine is shared
@given(trials())
def test_wilson_is_symmetric(kn: tuple[int, int]) -> None:
    k, n = kn
    low, high = wilson_interval(k, n)
    flipped_low, flipped_high = wilson_interval(n - k, n)
    assert math.isclose(low, 1 - flipped_high, abs_tol=1e-12)
    assert math.isclose(high, 1 - flipped_low, abs_tol=1e-12)


@settings(deadline=None)  # no timing assertions: the machine is shared
@given(trials(max_n=2000), st.integers(min_value=2, max_value=50))
def test_wilson_narrows_as_n_grows_at_the_same_ratio(kn: tuple[int, int], factor: int) -> None:
    k, n = kn
    low, high = wilson_interval(k, n)
    low2, high2 = wilson_interval(k * factor, n * factor)
    assert high2 - low2 < high - low


@settings(deadline=None)  # no timing assertions: the machine is shared
@given(trials(max_n=2000))
def test_wilson_moves_up_with_more_successes(kn: tuple[int, int]) -> None:
    k, n = kn
    assume(k < n)
    low, high = wilson_interval(k, n)
    low2, high2 = wilson_interval(k + 1, n)
    assert low2 > low and high2 > high


@settings(deadline=None)  # no timing assertions: the machine is shared
@given(trials(), st.floats(min_value=1.0, max_value=3.5))
def test_wider_confidence_gives_a_wider_interval(kn: tuple[int, int], z: float) -> None:
    k, n = kn
    low, high = wilson_interval(k, n, z=z)
    low2, high2 = wilson_interval(k, n, z=z + 0.5)
    assert low2 <= low and high2 >= high


def test_wilson_without_trials_says_nothing_and_rejects_nonsense() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)
    # A textbook value: 8 of 10 → (0.490, 0.943) at 95 %.
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)


@settings(deadline=None)  # no timing assertions: the machine is shared
@given(
    trials(),
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(min_value=0.0, max_value=1000.0, allow_subnormal=False),
)
def test_bayesian_average_lies_between_ratio_and_prior(
    kn: tuple[int, int], prior: float, weight: float
) -> None:
    k, n = kn
    value = bayesian_average(k, n, prior, weight)
    lo, hi = sorted((k / n, prior))
    assert lo - 1e-12 <= value <= hi + 1e-12
    assert bayesian_average(k, n, prior, 0) == pytest.approx(k / n)
    assert bayesian_average(0, 0, prior, weight) == pytest.approx(prior)


@settings(deadline=None)  # no timing assertions: the machine is shared
@given(trials(max_n=500), st.floats(min_value=0.05, max_value=0.95))
def test_bayesian_average_approaches_the_ratio_with_more_data(
    kn: tuple[int, int], prior: float
) -> None:
    k, n = kn
    near = abs(bayesian_average(k * 10, n * 10, prior, 10) - k / n)
    far = abs(bayesian_average(k, n, prior, 10) - k / n)
    assert near <= far + 1e-12


tables = st.tuples(*(st.integers(min_value=0, max_value=60) for _ in range(4)))


@settings(deadline=None)  # no timing assertions: the machine is shared
@given(tables)
def test_fisher_p_is_a_probability_and_symmetric(t: tuple[int, int, int, int]) -> None:
    a, b, c, d = t
    p = fisher_exact(a, b, c, d)
    assert 0.0 <= p <= 1.0
    assert math.isclose(p, fisher_exact(c, d, a, b), rel_tol=1e-9)  # rows swapped
    assert math.isclose(p, fisher_exact(b, a, d, c), rel_tol=1e-9)  # columns swapped
    assert math.isclose(p, fisher_exact(a, c, b, d), rel_tol=1e-9)  # transposed


def test_fisher_known_values() -> None:
    # Fisher's lady tasting tea: 3 of 4 cups right each way, p = 34/70.
    assert fisher_exact(3, 1, 1, 3) == pytest.approx(34 / 70)
    assert fisher_exact(0, 0, 0, 0) == 1.0
    assert fisher_exact(10, 0, 0, 10) < 1e-4


@settings(deadline=None)  # no timing assertions: the machine is shared
@given(trials(max_n=400), trials(max_n=400))
def test_comparison_direction_and_significance_agree(
    before: tuple[int, int], after: tuple[int, int]
) -> None:
    b = proportion(*before, prior_mean=0.5, prior_weight=10)
    a = proportion(*after, prior_mean=0.5, prior_weight=10)
    cmp = compare_proportions(b, a, alpha=0.05)
    assert cmp.significant == (cmp.p_value < 0.05)
    assert cmp.difference == pytest.approx(after[0] / after[1] - before[0] / before[1])
    if cmp.improved:
        assert cmp.significant and cmp.difference is not None and cmp.difference > 0
    z = two_proportion_z(*before, *after)
    if z is not None and cmp.difference:
        assert math.copysign(1, z) == math.copysign(1, cmp.difference)


def test_a_big_improvement_is_significant_and_a_small_sample_is_not() -> None:
    big = compare_proportions(
        proportion(30, 100, prior_mean=0.7, prior_weight=10),
        proportion(80, 100, prior_mean=0.7, prior_weight=10),
        alpha=0.05,
    )
    assert big.significant and big.improved and big.p_value < 1e-6
    small = compare_proportions(
        proportion(1, 3, prior_mean=0.7, prior_weight=10),
        proportion(3, 3, prior_mean=0.7, prior_weight=10),
        alpha=0.05,
    )
    assert not small.significant and not small.improved


def test_site_baseline_uses_the_median_of_judged_articles() -> None:
    policy = HealthPolicy(min_votes=20)
    good = [Counts(helpful=h, not_helpful=40 - h) for h in (32, 33, 34, 35, 36)]
    bad = Counts(helpful=2, not_helpful=98)  # many votes, all bad: pulls the pooled ratio
    tiny = Counts(helpful=0, not_helpful=3)  # too few votes to count in the median
    base = site_baseline([*good, bad, tiny], policy)
    assert base.helpful_typical == pytest.approx(33.5 / 40)  # median of the six judged
    assert base.helpful_articles == 6
    pooled = (32 + 33 + 34 + 35 + 36 + 2) / (5 * 40 + 100 + 3)
    assert base.helpful_prior == pytest.approx(pooled)
    # Fewer than five judged articles: the pooled ratio is the bar.
    few = site_baseline(good[:2], policy)
    assert few.helpful_typical == pytest.approx(few.helpful_prior)


# -- chart and diff ----------------------------------------------------------------------

TEXT = ChartText(title="Views <&> helpful", views="views", helpful="helpful", no_data="none")


def _svg(points: list[DayPoint], marks: list[RevisionMark]) -> ET.Element:
    return ET.fromstring(health_chart_svg(points, marks, TEXT))


@settings(deadline=None)  # no timing assertions: the machine is shared
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=800),
            st.sampled_from([1, 2]),
            st.integers(min_value=0, max_value=500),
            st.integers(min_value=0, max_value=30),
            st.integers(min_value=0, max_value=30),
        ),
        max_size=60,
    )
)
def test_chart_is_well_formed_svg_for_any_series(
    rows: list[tuple[int, int, int, int, int]],
) -> None:
    start = date(2026, 1, 1)
    points = [DayPoint(start + timedelta(days=d), r, v, y, n) for d, r, v, y, n in rows]
    marks = [RevisionMark(1, "r1", start), RevisionMark(2, "r2", start + timedelta(days=400))]
    root = _svg(points, marks)
    assert root.tag.endswith("svg")
    ns = "{http://www.w3.org/2000/svg}"
    assert root.find(f"{ns}title") is not None
    for el in root.iter():
        assert not el.tag.endswith("script")
        assert "style" not in el.attrib and not any(k.startswith("on") for k in el.attrib)


def test_chart_draws_bars_per_revision_points_and_the_rewrite_line() -> None:
    start = date(2026, 3, 1)
    points = [DayPoint(start + timedelta(days=d), 1, 10, 2, 8) for d in range(10)]
    points += [DayPoint(start + timedelta(days=d), 2, 12, 9, 1) for d in range(10, 20)]
    marks = [RevisionMark(1, "r1", start), RevisionMark(2, "r2", start + timedelta(days=10))]
    root = _svg(points, marks)
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r for r in root.iter(f"{ns}rect") if r.find(f"{ns}title") is not None]
    assert len(bars) == 20
    assert {b.get("fill") for b in bars[:10]} != {b.get("fill") for b in bars[10:]}
    # The ratio is drawn per week: r1 has days 0-9 (weeks 1, 2), r2 days 10-19 (weeks 2, 3);
    # each day brings 10 votes (r1: 2 helpful, r2: 9).
    points = [c for c in root.iter(f"{ns}circle") if c.find(f"{ns}title") is not None]
    tips = sorted(t.text or "" for c in points for t in c.iter(f"{ns}title"))
    assert tips == [f"r1: {2 * 7}/70", f"r1: {2 * 3}/30", f"r2: {9 * 4}/40", f"r2: {9 * 6}/60"]
    assert len(list(root.iter(f"{ns}polyline"))) == 2  # one ratio line per revision
    dashed = [ln for ln in root.iter(f"{ns}line") if ln.get("stroke-dasharray")]
    assert len(dashed) == 2
    rewrite_x = float(dashed[1].get("x1") or 0)
    for c in points:  # each revision's points sit on its own side of the rewrite
        tip = "".join(t.text or "" for t in c.iter(f"{ns}title"))
        assert (float(c.get("cx") or 0) > rewrite_x) == tip.startswith("r2")
    assert "Views <&> helpful" in "".join(root.itertext())  # escaped, then parsed back
    empty = _svg([], [])
    assert "none" in "".join(empty.itertext())


def test_nice_ceiling() -> None:
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 11, 260, 999)] == [1, 1, 5, 10, 20, 500, 1000]


def test_text_diff_marks_removed_and_added_lines() -> None:
    old = "手順1\n手順2\n<b>古い</b>"
    new = "手順1\n手順2（新）\n<b>古い</b>\n追加"
    lines = [(d.op, d.text) for d in text_diff(old, new)]
    assert lines == [
        (" ", "手順1"),
        ("-", "手順2"),
        ("+", "手順2（新）"),
        (" ", "<b>古い</b>"),
        ("+", "追加"),
    ]
