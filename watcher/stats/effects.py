"""Treatment effects between two arms: differences, fixed-horizon tests, chance to win.

The absolute difference is m_B - m_A with variance v_A/n_A + v_B/n_B. The relative lift is
(m_B - m_A)/|m_A| with the delta-method variance v_B/(n_B m_A²) + v_A m_B²/(n_A m_A⁴)
(GrowthBook `frequentist_variance`, docs eqs. 1-2). Like GrowthBook, an effect is not computed
when either arm's variance is zero (or the combined variance is not positive), and a relative
lift is not computed against a zero control mean; the functions then return None.

The fixed-horizon tests (Welch t, z) and the Bayesian chance to win are for display and for
cross-checking the platforms. They are not valid when results are looked at repeatedly; the
watcher decides with `watcher.stats.sequential` instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from scipy.special import ndtr, ndtri, stdtr, stdtrit

from .arms import ArmSummary

DEFAULT_ALPHA = 0.05
"""The significance level used when none is given (GrowthBook `DEFAULT_P_VALUE_THRESHOLD`)."""


class Difference(StrEnum):
    """Which difference between treatment and control an effect measures."""

    ABSOLUTE = "absolute"
    RELATIVE = "relative"


class Alternative(StrEnum):
    """The alternative hypothesis about treatment minus control."""

    TWO_SIDED = "two-sided"
    GREATER = "greater"
    """The treatment's mean is greater than the control's."""
    LESS = "less"
    """The treatment's mean is less than the control's."""


@dataclass(frozen=True, slots=True)
class Effect:
    """A difference between treatment and control with its (positive) standard error."""

    estimate: float
    standard_error: float

    @property
    def z(self) -> float:
        """The estimate in standard errors."""
        return self.estimate / self.standard_error


@dataclass(frozen=True, slots=True)
class Interval:
    """A confidence (or credible) interval; None marks the open end of a one-sided interval."""

    low: float | None
    high: float | None

    def contains(self, value: float) -> bool:
        """Whether `value` lies in the interval (ends included)."""
        return (self.low is None or self.low <= value) and (self.high is None or value <= self.high)

    def excludes(self, value: float) -> bool:
        """Whether `value` lies outside the interval."""
        return not self.contains(value)


@dataclass(frozen=True, slots=True)
class FixedHorizonTest:
    """The result of a Welch t or z test on one effect, valid at a single, planned look."""

    effect: Effect
    interval: Interval
    p_value: float
    degrees_of_freedom: float | None
    """Welch-Satterthwaite degrees of freedom; None for a z test."""


@dataclass(frozen=True, slots=True)
class NormalPrior:
    """A proper normal prior on the relative lift (GrowthBook's prior scale).

    For an absolute difference it is rescaled by the control mean (mean x |m_A|, variance x
    m_A²), as GrowthBook does. The default is GrowthBook's app default, sd 0.3.
    """

    mean: float = 0.0
    variance: float = 0.09


@dataclass(frozen=True, slots=True)
class BayesianResult:
    """GrowthBook's Bayesian effect: normal posterior, chance to win, credible interval."""

    posterior: Effect
    """Posterior mean (`estimate`) and standard deviation (`standard_error`) of the effect."""
    chance_to_win: float
    """Posterior probability that the treatment is better than the control."""
    credible_interval: Interval


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def _has_zero_variance(control: ArmSummary, treatment: ArmSummary) -> bool:
    return control.variance <= 0 or treatment.variance <= 0


def absolute_difference(control: ArmSummary, treatment: ArmSummary) -> Effect | None:
    """m_B - m_A and its standard error, or None when either arm has no variance."""
    if _has_zero_variance(control, treatment):
        return None
    estimate = treatment.mean - control.mean
    variance = control.variance_of_mean + treatment.variance_of_mean
    if not _finite(estimate, variance) or variance <= 0:
        return None
    return Effect(estimate=estimate, standard_error=math.sqrt(variance))


def relative_lift(control: ArmSummary, treatment: ArmSummary) -> Effect | None:
    """(m_B - m_A)/|m_A| and its delta-method standard error, or None if it is undefined."""
    if _has_zero_variance(control, treatment) or control.mean == 0:
        return None
    m_a, m_b = control.mean, treatment.mean
    scale = abs(m_a)
    estimate = (m_b - m_a) / scale
    ratio = m_b / m_a
    # divided by |m_A| twice rather than by m_A², which can underflow to zero
    variance = (treatment.variance_of_mean + control.variance_of_mean * ratio * ratio) / scale
    variance /= scale
    if not _finite(estimate, variance) or variance <= 0:
        return None
    return Effect(estimate=estimate, standard_error=math.sqrt(variance))


def effect_between(
    control: ArmSummary, treatment: ArmSummary, *, difference: Difference = Difference.ABSOLUTE
) -> Effect | None:
    """The absolute difference or the relative lift, as `difference` says."""
    if difference is Difference.RELATIVE:
        return relative_lift(control, treatment)
    return absolute_difference(control, treatment)


def welch_degrees_of_freedom(control: ArmSummary, treatment: ArmSummary) -> float | None:
    """The Welch-Satterthwaite degrees of freedom, or None with fewer than two units in an arm."""
    if control.units <= 1 or treatment.units <= 1:
        return None
    a, b = control.variance_of_mean, treatment.variance_of_mean
    denominator = a * a / (control.units - 1) + b * b / (treatment.units - 1)
    if not _finite(denominator) or denominator <= 0:
        return None
    dof = (a + b) * (a + b) / denominator
    return dof if _finite(dof) and dof > 0 else None


def _cdf(x: float, dof: float | None) -> float:
    """The standard normal (dof None) or Student t distribution function. scipy.special
    rather than scipy.stats: the same functions, without ~50 MB of imports per process."""
    return float(ndtr(x) if dof is None else stdtr(dof, x))


def _isf(q: float, dof: float | None) -> float:
    """The upper-tail quantile: the x with P(X > x) = q (both distributions are symmetric)."""
    return float(-ndtri(q) if dof is None else -stdtrit(dof, q))


def _p_value(statistic: float, alternative: Alternative, dof: float | None) -> float:
    if alternative is Alternative.GREATER:
        p = _cdf(-statistic, dof)
    elif alternative is Alternative.LESS:
        p = _cdf(statistic, dof)
    else:
        p = 2.0 * _cdf(-abs(statistic), dof)
    return min(max(p, 0.0), 1.0)


def _interval(effect: Effect, multiplier: float, alternative: Alternative) -> Interval | None:
    halfwidth = multiplier * effect.standard_error
    low, high = effect.estimate - halfwidth, effect.estimate + halfwidth
    if not _finite(low, high):
        return None
    if alternative is Alternative.GREATER:
        return Interval(low=low, high=None)
    if alternative is Alternative.LESS:
        return Interval(low=None, high=high)
    return Interval(low=low, high=high)


def _fixed_horizon_test(
    effect: Effect | None, dof: float | None, *, alpha: float, alternative: Alternative
) -> FixedHorizonTest | None:
    if effect is None or not 0 < alpha < 1:
        return None
    tail = alpha if alternative is not Alternative.TWO_SIDED else alpha / 2
    interval = _interval(effect, _isf(tail, dof), alternative)
    if interval is None:
        return None
    return FixedHorizonTest(
        effect=effect,
        interval=interval,
        p_value=_p_value(effect.z, alternative, dof),
        degrees_of_freedom=dof,
    )


def welch_t_test(
    control: ArmSummary,
    treatment: ArmSummary,
    *,
    difference: Difference = Difference.ABSOLUTE,
    alpha: float = DEFAULT_ALPHA,
    alternative: Alternative = Alternative.TWO_SIDED,
) -> FixedHorizonTest | None:
    """Welch's unequal-variance t test, as GrowthBook's frequentist engine computes it.

    The degrees of freedom come from the arms' variances whatever the difference type; the
    interval is estimate ± t(1 - alpha/2, dof) x standard error.
    """
    dof = welch_degrees_of_freedom(control, treatment)
    if dof is None:
        return None
    effect = effect_between(control, treatment, difference=difference)
    return _fixed_horizon_test(effect, dof, alpha=alpha, alternative=alternative)


def z_test(
    control: ArmSummary,
    treatment: ArmSummary,
    *,
    difference: Difference = Difference.ABSOLUTE,
    alpha: float = DEFAULT_ALPHA,
    alternative: Alternative = Alternative.TWO_SIDED,
) -> FixedHorizonTest | None:
    """The large-sample z test on the effect (what Statsig reports when dof >= 100)."""
    effect = effect_between(control, treatment, difference=difference)
    return _fixed_horizon_test(effect, None, alpha=alpha, alternative=alternative)


def chance_to_win(
    control: ArmSummary,
    treatment: ArmSummary,
    *,
    difference: Difference = Difference.RELATIVE,
    prior: NormalPrior | None = None,
    higher_is_better: bool = True,
    alpha: float = DEFAULT_ALPHA,
) -> BayesianResult | None:
    """GrowthBook's Bayesian chance to win (`EffectBayesianABTest`).

    The effect's likelihood is normal around the estimate with its standard error. Without a
    prior (GrowthBook's default, improper flat) the posterior is that likelihood, so the chance
    to win is Φ(estimate / standard error). With a proper normal prior the posterior precision
    is 1/se² + 1/σ0² and its mean the precision-weighted average. For metrics where lower is
    better the chance to win is P(effect < 0). The credible interval holds 1 - alpha.
    """
    if not 0 < alpha < 1:
        return None
    effect = effect_between(control, treatment, difference=difference)
    if effect is None:
        return None
    mean, sd = effect.estimate, effect.standard_error
    if prior is not None:
        prior_mean, prior_variance = prior.mean, prior.variance
        if difference is Difference.ABSOLUTE:
            scale = abs(control.mean)
            prior_mean, prior_variance = prior_mean * scale, prior_variance * scale * scale
        data_variance = sd * sd
        if not _finite(prior_mean, prior_variance) or prior_variance <= 0 or data_variance <= 0:
            return None
        precision = 1.0 / data_variance + 1.0 / prior_variance
        mean = (mean / data_variance + prior_mean / prior_variance) / precision
        sd = math.sqrt(1.0 / precision)
        if not _finite(mean, sd) or sd <= 0:
            return None
    z = mean / sd
    win = _cdf(z, None) if higher_is_better else _cdf(-z, None)
    quantile = _isf(alpha / 2, None)
    low, high = mean - quantile * sd, mean + quantile * sd
    if not _finite(z, low, high):
        return None
    return BayesianResult(
        posterior=Effect(estimate=mean, standard_error=sd),
        chance_to_win=min(max(win, 0.0), 1.0),
        credible_interval=Interval(low=low, high=high),
    )
