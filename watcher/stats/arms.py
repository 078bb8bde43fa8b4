"""Per-arm summaries: what one variation's numbers say about one metric.

Platforms report an arm in one of a few shapes — conversion counts, sums and sums of squares,
or a mean with its standard deviation and the number of units. Each constructor below turns
one shape into an `ArmSummary` (units, mean and per-unit variance), the only input the effect
and verdict functions need. A constructor returns None when its numbers cannot describe an arm
(no units, non-finite values, conversions outside 0..units), so nothing downstream ever sees
NaN or infinity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class MetricKind(StrEnum):
    """How a metric's per-unit values are distributed, which decides its variance formula."""

    PROPORTION = "proportion"
    """Each unit converts or not; variance p(1 - p) (GrowthBook `ProportionStatistic`)."""
    MEAN = "mean"
    """Any per-unit value (revenue, counts, durations); sample variance with n - 1."""


@dataclass(frozen=True, slots=True)
class ArmSummary:
    """One arm's sufficient statistics for one metric.

    `variance` is the variance of a single unit's value (not of the mean). `conversions` is set
    for proportions only. Construction checks that every number is finite, `units` positive and
    `variance` non-negative; use the `arm_from_*` constructors to get None instead of an error.
    """

    units: float
    mean: float
    variance: float
    kind: MetricKind = MetricKind.MEAN
    conversions: float | None = None

    def __post_init__(self) -> None:
        numbers = (self.units, self.mean, self.variance, self.conversions or 0.0)
        if not all(math.isfinite(x) for x in numbers):
            raise ValueError(f"an arm's numbers must be finite, got {self!r}")
        if self.units <= 0 or self.variance < 0:
            raise ValueError(f"an arm needs units > 0 and variance >= 0, got {self!r}")
        if (self.kind is MetricKind.PROPORTION) != (self.conversions is not None):
            raise ValueError("conversions are given for proportions, and only for them")

    @property
    def variance_of_mean(self) -> float:
        """The squared standard error of the arm's mean."""
        return self.variance / self.units

    @property
    def non_conversions(self) -> float | None:
        """Units that did not convert (proportions only)."""
        return None if self.conversions is None else self.units - self.conversions


def _all_finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def arm_from_conversions(*, units: float, conversions: float) -> ArmSummary | None:
    """An arm of a proportion metric from its units and how many of them converted."""
    if not _all_finite(units, conversions) or units <= 0 or not 0 <= conversions <= units:
        return None
    rate = conversions / units
    return ArmSummary(
        units=units,
        mean=rate,
        variance=max(rate * (1.0 - rate), 0.0),
        kind=MetricKind.PROPORTION,
        conversions=conversions,
    )


def arm_from_sums(*, units: float, total: float, sum_of_squares: float) -> ArmSummary | None:
    """An arm of a mean metric from the sum and the sum of squares of its per-unit values.

    The variance is the unbiased sample variance (SS - S²/n) / (n - 1); rounding can make it
    slightly negative, which is read as zero. With a single unit the variance is zero.
    """
    if not _all_finite(units, total, sum_of_squares) or units <= 0:
        return None
    mean = total / units
    variance = 0.0 if units <= 1 else (sum_of_squares - total * mean) / (units - 1)
    if not _all_finite(mean, variance):
        return None
    return ArmSummary(units=units, mean=mean, variance=max(variance, 0.0))


def arm_from_mean(*, units: float, mean: float, stddev: float) -> ArmSummary | None:
    """An arm of a mean metric from its mean, the standard deviation of a unit's value and units."""
    if not _all_finite(units, mean, stddev) or units <= 0 or stddev < 0:
        return None
    variance = stddev * stddev
    if not math.isfinite(variance):
        return None
    return ArmSummary(units=units, mean=mean, variance=variance)
