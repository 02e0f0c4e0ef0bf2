"""The statistics of the verdict: percentiles, and the one-sided Mann-Whitney U test.

A canary regresses on a metric when its samples are both larger than the baseline's by more
than the state allows (the effect) and larger with confidence (the test), as Kayenta judges a
canary: `mann_whitney_greater(canary, baseline)` gives the probability of samples at least so
much larger under the hypothesis that both come from one distribution.

The test is written here rather than imported from scipy: scipy and numpy are about 190 MB
installed and 1.3 s to import on the reference machine, for one function of some 50 lines.
tests/test_stats.py holds its p-values to scipy's `mannwhitneyu` (a test-only
dependency) on exact and asymptotic cases, with and without ties.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["EXACT_AT_MOST", "MannWhitney", "mann_whitney_greater", "percentile"]

# As scipy's `method="auto"`: the exact distribution when the smaller sample has at most this
# many values and no value is tied; the normal approximation, corrected for ties, otherwise.
EXACT_AT_MOST = 8


@dataclass(frozen=True)
class MannWhitney:
    """The test's outcome: U of the first sample, the one-sided p-value, and how it was had."""

    u: float
    p_value: float
    method: Literal["exact", "asymptotic"]


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct` percentile of `values`, interpolated linearly between order statistics (the
    default of numpy and of Python's `statistics.quantiles(method="inclusive")`)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * pct / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mann_whitney_greater(x: Sequence[float], y: Sequence[float]) -> MannWhitney:
    """One-sided Mann-Whitney U test that `x` tends to be larger than `y`.

    U counts the pairs (a of x, b of y) with a > b, a tie counting one half. The p-value is the
    probability, were x and y drawn from one distribution, of a U at least this large.
    """
    n1, n2 = len(x), len(y)
    if not n1 or not n2:
        raise ValueError("each sample needs at least one value")
    ranks, tie_sizes = _ranks([*x, *y])
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    if min(n1, n2) <= EXACT_AT_MOST and not tie_sizes:
        return MannWhitney(u, _exact_greater(round(u), n1, n2), "exact")
    n = n1 + n2
    ties = sum(t**3 - t for t in tie_sizes)
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:  # every value equal: no evidence either way
        return MannWhitney(u, 1.0, "asymptotic")
    z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(variance)  # with the continuity correction
    return MannWhitney(u, min(1.0, max(0.0, 0.5 * math.erfc(z / math.sqrt(2)))), "asymptotic")


def _ranks(values: list[float]) -> tuple[list[float], list[int]]:
    """1-based ranks of `values` (tied values share their average rank), and the size of each
    group of ties."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    tie_sizes = []
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for index in order[start : end + 1]:
            ranks[index] = (start + end) / 2 + 1
        if end > start:
            tie_sizes.append(end - start + 1)
        start = end + 1
    return ranks, tie_sizes


def _exact_greater(u: int, n1: int, n2: int) -> float:
    """P(U >= u) under the null hypothesis, from U's exact distribution: the number of
    arrangements with each U is a coefficient of the Gaussian binomial [n1+n2 choose m]_q
    (m the smaller size), built as the product over i of (1 - q^(n+i)) / (1 - q^i)."""
    m, n = min(n1, n2), max(n1, n2)
    degree = m * n
    counts = [1] + [0] * degree
    for i in range(1, m + 1):
        for k in range(degree, n + i - 1, -1):  # times (1 - q^(n+i))
            counts[k] -= counts[k - n - i]
        for k in range(i, degree + 1):  # divided by (1 - q^i): a running sum with stride i
            counts[k] += counts[k - i]
    total = math.comb(n1 + n2, n1)
    return min(1.0, sum(counts[max(u, 0) :]) / total)
