"""The statistics the fake GrowthBook reports, computed from raw per-arm counts.

Only what GrowthBook's default analysis of a binomial (conversion) metric needs: the relative
lift with its delta-method standard error, the Bayesian chance to beat control and risk under
GrowthBook's default flat prior, the frequentist two-sided p-value, and the chi-square
goodness-of-fit p-value GrowthBook calls `checks.srm`. Pure functions over the stdlib.

Simplification: the frequentist p-value and interval use the normal distribution where
GrowthBook uses Student's t with Welch-Satterthwaite degrees of freedom; with the thousands of
users per arm the scenarios produce, the two agree to several decimals.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

__all__ = [
    "BASELINE_ANALYSIS",
    "BAYESIAN_SIGNIFICANCE_Z",
    "FREQUENTIST_SIGNIFICANCE_Z",
    "BinomialArm",
    "RelativeLift",
    "StatsEngine",
    "VariationAnalysis",
    "analyze_variation",
    "chi2_isf",
    "chi2_sf",
    "relative_lift",
    "significance_z",
    "srm_p_value",
]

StatsEngine = Literal["bayesian", "frequentist"]

_STANDARD_NORMAL = NormalDist()
_CI_Z = _STANDARD_NORMAL.inv_cdf(0.975)

BAYESIAN_SIGNIFICANCE_Z = _STANDARD_NORMAL.inv_cdf(0.95)
"""z above which chanceToBeatControl exceeds 0.95 (GrowthBook's default `ciUpper`)."""

FREQUENTIST_SIGNIFICANCE_Z = _STANDARD_NORMAL.inv_cdf(0.975)
"""|z| above which the two-sided p-value falls below 0.05 (GrowthBook's default threshold)."""


def significance_z(engine: StatsEngine) -> float:
    """The z-score at which a positive lift becomes significant under `engine`'s default rule."""
    return BAYESIAN_SIGNIFICANCE_Z if engine == "bayesian" else FREQUENTIST_SIGNIFICANCE_Z


@dataclass(frozen=True, kw_only=True)
class BinomialArm:
    """One variation's cumulative users and conversions for a conversion metric."""

    users: int
    conversions: int

    @property
    def mean(self) -> float:
        """Conversion rate (GrowthBook's `mean`); 0 for an arm without users."""
        return self.conversions / self.users if self.users > 0 else 0.0

    @property
    def variance(self) -> float:
        """Per-user variance p(1-p) of a proportion (GrowthBook's `ProportionStatistic`)."""
        p = self.mean
        return p * (1.0 - p)

    @property
    def stddev(self) -> float:
        """Per-user standard deviation, sqrt(p(1-p))."""
        return math.sqrt(self.variance)


@dataclass(frozen=True, kw_only=True)
class RelativeLift:
    """Relative change (treatment - control) / control with its delta-method standard error."""

    estimate: float
    standard_error: float

    @property
    def z(self) -> float:
        """estimate / standard_error; 0 when the standard error is 0 (no information)."""
        if self.standard_error <= 0.0:
            return 0.0
        return self.estimate / self.standard_error


def relative_lift(control: BinomialArm, variation: BinomialArm) -> RelativeLift:
    """The relative lift of `variation` over `control` (GrowthBook's `frequentist_diff`).

    Variance by the delta method: s_B^2 / (n_B m_A^2) + s_A^2 m_B^2 / (n_A m_A^4).
    A zero control mean or an arm without users yields a zero lift with zero standard error.
    """
    m_a, m_b = control.mean, variation.mean
    if m_a <= 0.0 or control.users <= 0 or variation.users <= 0:
        return RelativeLift(estimate=0.0, standard_error=0.0)
    variance = variation.variance / (variation.users * m_a**2) + (
        control.variance * m_b**2 / (control.users * m_a**4)
    )
    return RelativeLift(estimate=(m_b - m_a) / m_a, standard_error=math.sqrt(variance))


@dataclass(frozen=True, kw_only=True)
class VariationAnalysis:
    """The per-variation numbers GrowthBook's REST results expose besides counts and means.

    Fields an engine does not produce are 0, as GrowthBook's serializer emits them.
    """

    percent_change: float
    ci_low: float
    ci_high: float
    p_value: float
    risk: float
    chance_to_beat_control: float


BASELINE_ANALYSIS = VariationAnalysis(
    percent_change=0.0, ci_low=0.0, ci_high=0.0, p_value=0.0, risk=0.0, chance_to_beat_control=0.0
)
"""What GrowthBook reports for the baseline variation: zeros, not nulls."""


def analyze_variation(
    control: BinomialArm, variation: BinomialArm, *, engine: StatsEngine, inverse: bool = False
) -> VariationAnalysis:
    """GrowthBook's analysis of `variation` against `control` for a conversion metric.

    Bayesian (flat prior): chanceToBeatControl = Phi(d / se), a 95% credible interval, and
    risk = E[max(0, -lift)], the expected relative loss of shipping the variation; pValue 0.
    For an `inverse` (lower-is-better) metric GrowthBook's `chance_to_win` is the chance of a
    fall, 1 - Phi(d / se), and the loss a rise: risk = E[max(0, lift)].
    Frequentist: two-sided pValue and 95% confidence interval; chanceToBeatControl and risk 0.
    With no variance (GrowthBook's ZERO_NEGATIVE_VARIANCE case) the lift and interval are 0 and
    the chance to beat control is 0.5.
    """
    lift = relative_lift(control, variation)
    d, se = lift.estimate, lift.standard_error
    if se <= 0.0:
        chance = 0.5 if engine == "bayesian" else 0.0
        p_value = 1.0 if engine == "frequentist" else 0.0
        return VariationAnalysis(
            percent_change=0.0,
            ci_low=0.0,
            ci_high=0.0,
            p_value=p_value,
            risk=0.0,
            chance_to_beat_control=chance,
        )
    z = d / se
    ci_low, ci_high = d - _CI_Z * se, d + _CI_Z * se
    if engine == "bayesian":
        gain = -z if inverse else z  # z of the change in the metric's better direction
        chance = 0.5 * math.erfc(-gain / math.sqrt(2.0))
        risk = se * (_STANDARD_NORMAL.pdf(gain) - gain * 0.5 * math.erfc(gain / math.sqrt(2.0)))
        return VariationAnalysis(
            percent_change=d,
            ci_low=ci_low,
            ci_high=ci_high,
            p_value=0.0,
            risk=max(0.0, risk),
            chance_to_beat_control=chance,
        )
    return VariationAnalysis(
        percent_change=d,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=math.erfc(abs(z) / math.sqrt(2.0)),
        risk=0.0,
        chance_to_beat_control=0.0,
    )


def chi2_sf(x: float, df: int) -> float:
    """Survival function P(X > x) of the chi-square distribution with `df` degrees of freedom.

    The regularized upper incomplete gamma Q(df/2, x/2), exact for integer `df` by the
    recurrence Q(a + 1, y) = Q(a, y) + y^a e^-y / Gamma(a + 1), started from
    Q(1/2, y) = erfc(sqrt(y)) (odd df) or Q(1, y) = e^-y (even df).
    """
    if df < 1:
        raise ValueError(f"chi-square degrees of freedom must be >= 1, got {df}")
    if x <= 0.0:
        return 1.0
    y = x / 2.0
    if df % 2:
        a, q = 0.5, math.erfc(math.sqrt(y))
    else:
        a, q = 1.0, math.exp(-y)
    log_y = math.log(y)
    for _ in range((df - 1) // 2):
        q += math.exp(a * log_y - y - math.lgamma(a + 1.0))
        a += 1.0
    return min(1.0, q)


def chi2_isf(p: float, df: int) -> float:
    """The x with chi2_sf(x, df) == p (inverse survival function), by bisection."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a tail probability must lie strictly between 0 and 1, got {p}")
    low, high = 0.0, 1.0
    while chi2_sf(high, df) > p:
        low, high = high, high * 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if chi2_sf(middle, df) > p:
            low = middle
        else:
            high = middle
        if high - low <= 1e-12 * high:
            break
    return (low + high) / 2.0


def srm_p_value(users: Sequence[int], weights: Sequence[float]) -> float:
    """Sample-ratio-mismatch p-value: chi-square goodness of fit of users to the weights.

    As GrowthBook's `checkSrm`: arms with a non-positive weight are dropped, and with fewer than
    two arms left or no users at all the answer is 1.
    """
    if len(users) != len(weights):
        raise ValueError(f"{len(users)} user counts for {len(weights)} weights")
    arms = [(n, w) for n, w in zip(users, weights, strict=True) if w > 0.0]
    total_users = sum(n for n, _ in arms)
    total_weight = sum(w for _, w in arms)
    if len(arms) < 2 or total_users <= 0:
        return 1.0
    statistic = 0.0
    for observed, weight in arms:
        expected = total_users * weight / total_weight
        statistic += (observed - expected) ** 2 / expected
    return chi2_sf(statistic, len(arms) - 1)


def wobble(key: str, index: int) -> float:
    """A deterministic value in [-1, 1] that drifts with the refresh index."""
    phase = zlib.crc32(key.encode()) / 2**32 * 2.0 * math.pi
    return math.sin(0.9 * index + phase)


def conversions_for_z(control: BinomialArm, users: int, target_z: float, *, at_least: bool) -> int:
    """Conversions of an arm with `users` whose relative lift over `control` has z near
    `target_z`.

    at_least=True: the fewest conversions with z >= target; else the most with z <= target.
    The z-score of the relative lift increases with the conversion count.
    """

    def z_of(conversions: int) -> float:
        return relative_lift(control, BinomialArm(users=users, conversions=conversions)).z

    low, high = 1, users - 1
    while low < high:
        if at_least:
            middle = (low + high) // 2
            if z_of(middle) >= target_z:
                high = middle
            else:
                low = middle + 1
        else:
            middle = (low + high + 1) // 2
            if z_of(middle) <= target_z:
                low = middle
            else:
                high = middle - 1
    return low
