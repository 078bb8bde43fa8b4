"""The statistics the fake Statsig reports, computed from raw per-group counts.

Pulse compares one test group with the control per metric: the absolute change with its
confidence-interval half-width, the relative change and its half-width in PERCENT units (the
delta method of `simulator.stats.relative_lift`), the two-sided p-value of the absolute change,
and each group's mean, standard error ("std" in Pulse; Statsig's own values are far smaller than
a per-unit standard deviation) and units. Sequential-testing half-widths are the fixed-horizon
ones times a factor the scenario supplies.

The exposure-balance health check follows Statsig's documented SRM rule: chi-square p < 0.001
with at least 0.1 % absolute deviation from the configured split fails; any other p < 0.01 warns.

`wobble` and `conversions_for_z` help scripts pick counts: they mirror the private helpers of
`simulator.scenario`, which this module leaves untouched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

from simulator.stats import BinomialArm, relative_lift, srm_p_value

__all__ = [
    "ExposureBalance",
    "PulseComparison",
    "compare_groups",
    "exposure_balance",
    "significance_threshold_z",
]

_STANDARD_NORMAL = NormalDist()
_FAILED_P = 0.001
_WARNING_P = 0.01
_FAILED_DEVIATION = 0.001


def significance_threshold_z(alpha: float) -> float:
    """|z| beyond which a two-sided interval at error rate `alpha` excludes 0."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    return _STANDARD_NORMAL.inv_cdf(1.0 - alpha / 2.0)


@dataclass(frozen=True, kw_only=True)
class PulseComparison:
    """One metric's Pulse numbers for one (control, test) pair; percent fields in percent."""

    absolute_change: float
    confidence_interval_delta: float
    percent_change: float
    percent_confidence_interval_delta: float
    sequential_testing_confidence_interval_delta: float
    percent_sequential_testing_confidence_interval_delta: float
    test_mean: float
    control_mean: float
    test_std: float
    control_std: float
    test_units: int
    control_units: int
    p_value: float


def _standard_error(arm: BinomialArm) -> float:
    return math.sqrt(arm.variance / arm.users) if arm.users > 0 else 0.0


def compare_groups(
    control: BinomialArm, test: BinomialArm, *, alpha: float, sequential_factor: float = 1.0
) -> PulseComparison:
    """Pulse's comparison of `test` with `control` for a conversion metric at error rate `alpha`.

    Without variance (or units) the changes and half-widths are 0 and the p-value is 1.
    """
    z = significance_threshold_z(alpha)
    se_control, se_test = _standard_error(control), _standard_error(test)
    se_absolute = math.hypot(se_control, se_test)
    difference = test.mean - control.mean
    lift = relative_lift(control, test)
    if se_absolute <= 0.0:
        p_value = 1.0
    else:
        p_value = math.erfc(abs(difference / se_absolute) / math.sqrt(2.0))
    delta = z * se_absolute
    percent_delta = 100.0 * z * lift.standard_error
    return PulseComparison(
        absolute_change=difference,
        confidence_interval_delta=delta,
        percent_change=100.0 * lift.estimate,
        percent_confidence_interval_delta=percent_delta,
        sequential_testing_confidence_interval_delta=delta * sequential_factor,
        percent_sequential_testing_confidence_interval_delta=percent_delta * sequential_factor,
        test_mean=test.mean,
        control_mean=control.mean,
        test_std=se_test,
        control_std=se_control,
        test_units=test.users,
        control_units=control.users,
        p_value=p_value,
    )


@dataclass(frozen=True, kw_only=True)
class ExposureBalance:
    """The exposure-balance (SRM) check on per-group units against the configured sizes."""

    status: Literal["PASSED", "WARNING", "FAILED"]
    p_value: float
    max_deviation: float
    """Largest |observed share - configured share| over the groups, as a fraction."""


def exposure_balance(units: Sequence[int], sizes: Sequence[float]) -> ExposureBalance:
    """Statsig's `has_balanced_exposures` verdict on `units` for groups of `sizes` (any scale)."""
    p_value = srm_p_value(units, sizes)
    total_units, total_size = sum(units), sum(sizes)
    deviation = (
        max(abs(n / total_units - s / total_size) for n, s in zip(units, sizes, strict=True))
        if total_units > 0 and total_size > 0
        else 0.0
    )
    if p_value < _FAILED_P and deviation >= _FAILED_DEVIATION:
        status: Literal["PASSED", "WARNING", "FAILED"] = "FAILED"
    elif p_value < _WARNING_P:
        status = "WARNING"
    else:
        status = "PASSED"
    return ExposureBalance(status=status, p_value=p_value, max_deviation=deviation)
