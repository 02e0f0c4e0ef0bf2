"""The verdict's statistics: percentiles as numpy has them, and the one-sided Mann-Whitney U
test held to scipy's `mannwhitneyu` (exact and asymptotic, with and without ties)."""

from __future__ import annotations

import random

import pytest
from scipy import stats as scipy_stats

from reconciler.stats import mann_whitney_greater, percentile


def test_percentiles_interpolate_between_order_statistics() -> None:
    """p0, p50, p95 and p100 interpolate as numpy's default does."""
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 9.0
    assert percentile(values, 50) == pytest.approx(3.5)
    assert percentile(values, 95) == pytest.approx(7.95)
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


@pytest.mark.parametrize("seed", range(40))
def test_p_values_are_scipys(seed: int) -> None:
    """On random samples of 1 to 300 values (integers, so ties happen), the U statistic, the
    one-sided p-value and the method (exact at most 8 values and no ties) are scipy's own."""
    rng = random.Random(seed)
    n1, n2 = rng.choice([1, 3, 5, 8, 9, 20, 300]), rng.choice([1, 2, 5, 8, 12, 200])
    spread = rng.choice([3, 50, 10_000])
    shift = rng.choice([0, 1, 5])
    x = [float(rng.randrange(spread) + shift) for _ in range(n1)]
    y = [float(rng.randrange(spread)) for _ in range(n2)]
    ours = mann_whitney_greater(x, y)
    theirs = scipy_stats.mannwhitneyu(x, y, alternative="greater", method="auto")
    assert ours.u == pytest.approx(float(theirs.statistic))
    assert ours.p_value == pytest.approx(float(theirs.pvalue), rel=1e-9, abs=1e-12)
    tied = len(set(x + y)) < len(x + y)
    assert ours.method == ("exact" if min(n1, n2) <= 8 and not tied else "asymptotic")


def test_a_clear_shift_is_significant_and_no_shift_is_not() -> None:
    """200 latencies 200 ms slower give a p-value far under 0.01; the same distribution twice
    gives none under 0.01 in 50 draws."""
    rng = random.Random(7)
    fast = [rng.gauss(0.010, 0.002) for _ in range(200)]
    slow = [rng.gauss(0.210, 0.002) for _ in range(200)]
    assert mann_whitney_greater(slow, fast).p_value < 1e-50
    assert mann_whitney_greater(fast, slow).p_value > 0.99
    draws = [
        mann_whitney_greater(
            [rng.gauss(0.01, 0.002) for _ in range(200)],
            [rng.gauss(0.01, 0.002) for _ in range(200)],
        ).p_value
        for _ in range(50)
    ]
    assert sum(p < 0.01 for p in draws) <= 2, sorted(draws)[:5]


def test_five_against_five_all_larger_is_the_least_p_exact() -> None:
    """Five samples each, every one of x larger: p is 1 / C(10, 5), the least there can be."""
    result = mann_whitney_greater([10.0, 11, 12, 13, 14], [1.0, 2, 3, 4, 5])
    assert (result.u, result.method) == (25.0, "exact")
    assert result.p_value == pytest.approx(1 / 252)


def test_all_equal_values_are_no_evidence() -> None:
    """Identical samples (every value tied) give p = 1, not a division by zero."""
    assert mann_whitney_greater([5.0] * 20, [5.0] * 20).p_value == 1.0


def test_empty_samples_are_refused() -> None:
    """A test needs a value in each sample."""
    with pytest.raises(ValueError, match="at least one value"):
        mann_whitney_greater([], [1.0])
