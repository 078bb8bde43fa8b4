"""Anytime-valid inference: the asymptotic confidence sequence of GrowthBook and Eppo.

With an effect estimate d̂, its standard error σ̂ and n = n_A + n_B units in the two arms, the
two-sided confidence sequence at level alpha (Waudby-Smith et al., arXiv 2103.06476v7, eq. 9
with the ρ of eq. 161, as GrowthBook computes it; Eppo's formula is the same one) is

    ρ² = (-2 ln α + ln(-2 ln α + 1)) / N*,          a = n ρ²
    d̂ ± σ̂ · sqrt((a + 1)/a · ln((a + 1)/α²))

where the tuning parameter N* (default 5000) is the total sample size at which the boundary
is tightest. Its always-valid p-value is min(1, 1/E) with the e-value
E = exp(a z² / (2(a + 1))) / sqrt(a + 1), z = d̂/σ̂ (eq. 155), so p <= α exactly when the
sequence excludes zero. The one-sided sequence (eq. 134, GrowthBook's Safe Rollouts) uses ρ
tuned at 2α and the half-width σ̂ · sqrt(2(a + 1)/a · ln(1 + sqrt(a + 1)/(2α))); inverting it in
α with ρ held fixed gives the one-sided p-value sqrt(a + 1) / (2 (exp(a z²/(2(a + 1))) - 1)).

A poll-by-poll watcher keeps the smallest p-value seen in a phase (`RunningMinimum`): the
chance that it ever falls to α under no effect is at most α, however often results are looked
at. The sequence assumes a fixed design, so a new phase, new traffic weights, or a different
level or tuning starts a new minimum (`SequenceDesign.continues`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .effects import DEFAULT_ALPHA, Alternative, Effect, Interval

DEFAULT_TUNING = 5000.0
"""N*, the total sample size (both arms) the sequence is tuned to (GrowthBook's default)."""

_MAX_UNITS = 1e200  # far beyond any experiment; keeps n ρ² and its products finite
_MAX_Z = 1e100  # |z| beyond this gives p = 0 anyway; keeps z² finite


def _check_level(alpha: float, tuning: float) -> None:
    if not (math.isfinite(alpha) and 0 < alpha < 0.5):
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if not (math.isfinite(tuning) and tuning > 0):
        raise ValueError(f"the tuning parameter N* must be positive, got {tuning}")


def mixing_variance(
    *, alpha: float = DEFAULT_ALPHA, tuning: float = DEFAULT_TUNING, one_sided: bool = False
) -> float:
    """ρ² of the confidence sequence (eq. 161), tuned at 2α for a one-sided sequence."""
    _check_level(alpha, tuning)
    tuned_at = 2 * alpha if one_sided else alpha
    log_term = -2 * math.log(tuned_at)
    return (log_term + math.log(log_term + 1)) / tuning


def boundary_multiplier(
    total_units: float,
    *,
    alpha: float = DEFAULT_ALPHA,
    tuning: float = DEFAULT_TUNING,
    alternative: Alternative = Alternative.TWO_SIDED,
) -> float | None:
    """How many standard errors the sequence reaches from the estimate after `total_units`.

    Compare 1.96 for a two-sided fixed-horizon interval at 95%. None when there are no units.
    """
    one_sided = alternative is not Alternative.TWO_SIDED
    rho2 = mixing_variance(alpha=alpha, tuning=tuning, one_sided=one_sided)
    if not (math.isfinite(total_units) and total_units > 0):
        return None
    a = min(total_units, _MAX_UNITS) * rho2
    if one_sided:
        squared = 2 * (a + 1) / a * math.log1p(math.sqrt(a + 1) / (2 * alpha))
    else:
        squared = (a + 1) / a * (math.log1p(a) - 2 * math.log(alpha))
    multiplier = math.sqrt(squared)
    return multiplier if math.isfinite(multiplier) else None


def confidence_sequence(
    effect: Effect,
    *,
    total_units: float,
    alpha: float = DEFAULT_ALPHA,
    tuning: float = DEFAULT_TUNING,
    alternative: Alternative = Alternative.TWO_SIDED,
) -> Interval | None:
    """The confidence sequence around `effect` at this look, or None if it cannot be formed.

    For `Alternative.GREATER` the interval is (low, open); for `Alternative.LESS` (open, high).
    """
    multiplier = boundary_multiplier(
        total_units, alpha=alpha, tuning=tuning, alternative=alternative
    )
    if multiplier is None:
        return None
    halfwidth = multiplier * effect.standard_error
    low, high = effect.estimate - halfwidth, effect.estimate + halfwidth
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return Interval(
        low=None if alternative is Alternative.LESS else low,
        high=None if alternative is Alternative.GREATER else high,
    )


def _log_expm1(u: NDArray[np.float64]) -> NDArray[np.float64]:
    """log(exp(u) - 1) for u > 0, without overflow."""
    small = np.minimum(u, 30.0)
    large = np.maximum(u, 30.0)
    return np.where(u < 30.0, np.log(np.expm1(small)), large + np.log1p(-np.exp(-large)))


def always_valid_p_values(
    z: ArrayLike,
    total_units: ArrayLike,
    *,
    alpha: float = DEFAULT_ALPHA,
    tuning: float = DEFAULT_TUNING,
    alternative: Alternative = Alternative.TWO_SIDED,
) -> NDArray[np.float64]:
    """Always-valid p-values for many looks at once (vectorized over z and total units).

    `z` is the estimate over its standard error; where z or the total units are not finite or
    the units not positive, the p-value is 1 (no evidence). Never returns NaN.
    """
    one_sided = alternative is not Alternative.TWO_SIDED
    rho2 = mixing_variance(alpha=alpha, tuning=tuning, one_sided=one_sided)
    z_arr, n_arr = np.broadcast_arrays(
        np.asarray(z, dtype=np.float64), np.asarray(total_units, dtype=np.float64)
    )
    valid = np.isfinite(z_arr) & np.isfinite(n_arr) & (n_arr > 0)
    if alternative is Alternative.GREATER:
        valid &= z_arr > 0
    elif alternative is Alternative.LESS:
        valid &= z_arr < 0
    z_safe = np.clip(np.where(valid, z_arr, 0.0), -_MAX_Z, _MAX_Z)
    a = np.where(valid, np.minimum(n_arr, _MAX_UNITS), 1.0) * rho2
    u = a / (a + 1) * (z_safe * z_safe) / 2
    if one_sided:
        positive = valid & (u > 0)
        log_p = 0.5 * np.log1p(a) - math.log(2.0) - _log_expm1(np.where(positive, u, 1.0))
        log_p = np.where(positive, log_p, 0.0)
    else:
        log_p = np.where(valid, 0.5 * np.log1p(a) - u, 0.0)
    result: NDArray[np.float64] = np.exp(np.minimum(log_p, 0.0))
    return result


def always_valid_p_value(
    effect: Effect,
    *,
    total_units: float,
    alpha: float = DEFAULT_ALPHA,
    tuning: float = DEFAULT_TUNING,
    alternative: Alternative = Alternative.TWO_SIDED,
) -> float:
    """The always-valid p-value of `effect` against no effect at this look.

    `alpha` and `tuning` shape ρ (where the sequence is tightest); the p-value can be compared
    with that alpha: p <= alpha exactly when `confidence_sequence` at alpha excludes zero.
    """
    p = always_valid_p_values(
        np.array([effect.z]),
        np.array([total_units]),
        alpha=alpha,
        tuning=tuning,
        alternative=alternative,
    )
    return float(p[0])


def _normalized(weights: Sequence[float]) -> tuple[float, ...]:
    total = math.fsum(weights)
    if not math.isfinite(total) or total <= 0:
        return tuple(weights)
    return tuple(w / total for w in weights)


def same_weights(first: Sequence[float], second: Sequence[float]) -> bool:
    """Whether two traffic splits are the same once normalized (up to rounding)."""
    if len(first) != len(second):
        return False
    return all(
        math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        for a, b in zip(_normalized(first), _normalized(second), strict=True)
    )


@dataclass(frozen=True, slots=True)
class SequenceDesign:
    """What one confidence sequence is built for; changing any of it starts a new sequence.

    `alpha` is the level the sequence is tuned to (after any Bonferroni split) and `tuning` its
    N*; `phase` and `weights` identify the experiment's design as the platform reports it.
    """

    phase: str = ""
    weights: tuple[float, ...] = ()
    alpha: float = DEFAULT_ALPHA
    tuning: float = DEFAULT_TUNING
    alternative: Alternative = Alternative.TWO_SIDED

    def continues(self, earlier: SequenceDesign) -> bool:
        """Whether a sequence built for `earlier` may go on under this design."""
        return (
            self.phase == earlier.phase
            and self.alternative is earlier.alternative
            and math.isclose(self.alpha, earlier.alpha, rel_tol=1e-12)
            and math.isclose(self.tuning, earlier.tuning, rel_tol=1e-12)
            and same_weights(self.weights, earlier.weights)
        )


@dataclass(frozen=True, slots=True)
class RunningMinimum:
    """The smallest always-valid p-value seen so far for one metric × variation in one design.

    Keep one per metric × variation between polls and pass it back; `observe` returns the next
    state and never raises the minimum.
    """

    design: SequenceDesign
    p_value: float = 1.0
    polls: int = 0
    """Looks that contributed a p-value."""
    estimate_sign: int = 0
    """Sign of the estimate at the look that set the minimum (0 before any evidence)."""

    def observe(self, p_value: float, *, estimate: float) -> RunningMinimum:
        """The state after one more look with this p-value and estimate."""
        if not math.isfinite(p_value):
            return replace(self, polls=self.polls + 1)
        p_value = min(max(p_value, 0.0), 1.0)
        if p_value < self.p_value:
            sign = (estimate > 0) - (estimate < 0)
            return RunningMinimum(self.design, p_value, self.polls + 1, sign)
        return replace(self, polls=self.polls + 1)

    def is_below(self, threshold: float) -> bool:
        """Whether the minimum has reached `threshold` (the sequence has crossed)."""
        return self.p_value <= threshold


def resume(previous: RunningMinimum | None, design: SequenceDesign) -> RunningMinimum:
    """`previous` if it was built for the same design, else a fresh minimum for `design`."""
    if previous is not None and design.continues(previous.design):
        return previous
    return RunningMinimum(design)
