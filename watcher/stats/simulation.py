"""Seeded A/A and A/B simulations of an experiment that is polled again and again.

The core of `bench/aa_simulation.py` and of its quick test. Each run is one experiment whose
cumulative per-arm statistics are looked at after every poll; a rule alerts at the first poll
where it calls the result significant. Two rules are compared on the same simulated data:

* naive: a fixed-horizon two-sided z test at p < alpha at every poll, for every metric;
* ours: the always-valid p-value of `watcher.stats.sequential` (absolute difference, running
  minimum over polls) at alpha / family size (Bonferroni across the family's metrics).

Both rules get the same guards as `watcher.stats.verdict.judge` (minimum units, minimum
conversions and non-conversions, no zero variance). The SRM simulation compares the chi-square
test at p < alpha at every poll with the sequential SRM test's running minimum at alpha.
Everything is vectorized over runs and processed in chunks to bound memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr

from .arms import MetricKind
from .effects import DEFAULT_ALPHA
from .sequential import DEFAULT_TUNING, always_valid_p_values
from .srm import (
    DEFAULT_SRM_ALPHA,
    DEFAULT_SRM_CONCENTRATION,
    log_srm_bayes_factors,
    srm_chi_square_p_values,
)
from .verdict import DEFAULT_MINIMUM_CONVERSIONS, DEFAULT_MINIMUM_UNITS

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_DRAWS_PER_CHUNK = 4_000_000  # individual values generated at once (revenue metrics)


class MetricModel(StrEnum):
    """How one unit's value is generated."""

    BERNOULLI = "bernoulli"
    """Converts with probability `BERNOULLI_RATE` (times 1 + lift in the treatment)."""
    REVENUE = "revenue"
    """90% zeros, else lognormal(3, 1.5) (scaled by 1 + lift in the treatment): heavy-tailed."""


BERNOULLI_RATE = 0.10
REVENUE_NONZERO_SHARE = 0.10
REVENUE_LOG_MEAN = 3.0
REVENUE_LOG_SD = 1.5


@dataclass(frozen=True, slots=True)
class SimulatedArms:
    """Cumulative per-arm statistics, arrays of shape (runs, metrics, polls, 2 arms)."""

    kind: MetricKind
    units: FloatArray
    totals: FloatArray
    sums_of_squares: FloatArray


@dataclass(frozen=True, slots=True)
class FirstAlerts:
    """Per run, the 0-based poll of a rule's first alert, or -1 when it never alerted."""

    naive: IntArray
    """A fixed-horizon test at p < alpha at every poll (what a naive watcher does)."""
    ours: IntArray
    """The running minimum of the always-valid p-value at or below alpha / family size."""
    final_only: IntArray
    """The fixed-horizon test looked at once, at the last poll, at alpha / family size: the
    valid but slow design a sequential rule is measured against."""


@dataclass(frozen=True, slots=True)
class RuleSummary:
    """How often a rule alerted over the simulated runs, and how soon."""

    alert_share: float
    """Share of runs with at least one alert (any metric of the family, any poll)."""
    median_polls: float | None
    """Median 1-based poll of the first alert among the runs that alerted."""
    runs: int

    @classmethod
    def of(cls, first_alerts: IntArray) -> RuleSummary:
        alerted = first_alerts[first_alerts >= 0]
        median = float(np.median(alerted + 1)) if alerted.size else None
        return cls(
            alert_share=alerted.size / first_alerts.size,
            median_polls=median,
            runs=int(first_alerts.size),
        )


def simulate_arms(
    rng: np.random.Generator,
    *,
    model: MetricModel,
    runs: int,
    metrics: int = 1,
    polls: int = 60,
    users_per_poll: int = 1000,
    lift: float = 0.0,
) -> SimulatedArms:
    """Cumulative statistics of `runs` experiments; `lift` applies to the first metric only.

    Each arm gains `users_per_poll` units at every poll. The remaining metrics are A/A.
    """
    shape = (runs, metrics, polls, 2)
    lifts = np.ones(shape)
    lifts[:, 0, :, 1] = 1.0 + lift
    units = np.broadcast_to(
        users_per_poll * np.arange(1, polls + 1, dtype=np.float64)[:, None], shape
    ).copy()
    if model is MetricModel.BERNOULLI:
        conversions = rng.binomial(users_per_poll, BERNOULLI_RATE * lifts).astype(np.float64)
        totals = np.cumsum(conversions, axis=2)
        return SimulatedArms(MetricKind.PROPORTION, units, totals, totals.copy())
    nonzero = rng.binomial(users_per_poll, REVENUE_NONZERO_SHARE, size=shape).ravel()
    values = rng.lognormal(REVENUE_LOG_MEAN, REVENUE_LOG_SD, size=int(nonzero.sum()))
    values *= np.repeat(lifts.ravel(), nonzero)
    # Sum each look's values: a trailing 0 lets every start index be valid for reduceat.
    starts = np.cumsum(nonzero) - nonzero
    has_values = nonzero > 0
    per_poll = np.where(has_values, np.add.reduceat(np.append(values, 0.0), starts), 0.0)
    squares = np.add.reduceat(np.append(values * values, 0.0), starts)
    per_poll_squares = np.where(has_values, squares, 0.0)
    return SimulatedArms(
        MetricKind.MEAN,
        units,
        np.cumsum(per_poll.reshape(shape), axis=2),
        np.cumsum(per_poll_squares.reshape(shape), axis=2),
    )


def effect_z_scores(
    arms: SimulatedArms,
    *,
    minimum_units: float = DEFAULT_MINIMUM_UNITS,
    minimum_conversions: float = DEFAULT_MINIMUM_CONVERSIONS,
) -> tuple[FloatArray, FloatArray]:
    """z = (m_B - m_A)/se of the absolute difference and the total units, per look.

    z is NaN where `judge` would find insufficient data (guards, zero variance).
    """
    n = arms.units
    mean = arms.totals / n
    if arms.kind is MetricKind.PROPORTION:
        variance = mean * (1.0 - mean)
        fewest = np.minimum(arms.totals, n - arms.totals)
        guarded = np.all(fewest >= minimum_conversions, axis=-1)
    else:
        spread = np.maximum(arms.sums_of_squares - arms.totals * mean, 0.0)
        variance = spread / np.maximum(n - 1, 1.0)
        guarded = np.ones(n.shape[:-1], dtype=bool)
    valid = guarded & np.all(n >= minimum_units, axis=-1) & np.all(variance > 0, axis=-1)
    se = np.sqrt(np.sum(variance / n, axis=-1))
    estimate = mean[..., 1] - mean[..., 0]
    z = np.full(estimate.shape, np.nan)
    np.divide(estimate, se, out=z, where=valid & (se > 0))
    return z, n.sum(axis=-1)


def _first(hits: NDArray[np.bool_]) -> IntArray:
    """Index of the first True along the last axis, -1 if none."""
    first: IntArray = np.where(hits.any(axis=-1), hits.argmax(axis=-1), -1).astype(np.int64)
    return first


def _first_in_family(hits: NDArray[np.bool_]) -> IntArray:
    """hits: (runs, metrics, polls) → the first poll where any metric alerted, per run."""
    return _first(np.asarray(hits.any(axis=1), dtype=np.bool_))


def effect_first_alerts(
    z: FloatArray,
    total_units: FloatArray,
    *,
    alpha: float = DEFAULT_ALPHA,
    tuning: float = DEFAULT_TUNING,
    family_size: int | None = None,
    only_metric: int | None = None,
    direction: int = 0,
) -> FirstAlerts:
    """First alerts of both rules over a family of metrics (axis 1), polls on the last axis.

    Ours holds each metric to alpha / `family_size` (default: the number of metrics given).
    With `only_metric` only that metric's alerts count (power on the metric with an effect);
    with `direction` +1 or -1 only alerts whose estimate has that sign count.
    """
    level = alpha / (family_size or z.shape[1])
    sign = np.sign(np.nan_to_num(z))
    naive_p = np.where(np.isfinite(z), 2.0 * ndtr(-np.abs(np.nan_to_num(z))), 1.0)
    running = np.minimum.accumulate(
        always_valid_p_values(z, total_units, alpha=level, tuning=tuning), axis=-1
    )
    naive_hits = naive_p < alpha
    final_hits = np.zeros_like(naive_hits)
    final_hits[..., -1] = naive_p[..., -1] < level
    ours_hits = running <= level  # once true, true for the rest of the run
    if direction:
        naive_hits &= sign == direction
        final_hits &= sign == direction
        crossing = np.maximum(_first(ours_hits), 0)[..., None]
        crossing_sign = np.take_along_axis(sign, crossing, axis=-1)
        ours_hits &= crossing_sign == direction
    if only_metric is not None:
        naive_hits = naive_hits[:, only_metric : only_metric + 1]
        final_hits = final_hits[:, only_metric : only_metric + 1]
        ours_hits = ours_hits[:, only_metric : only_metric + 1]
    return FirstAlerts(
        naive=_first_in_family(naive_hits),
        ours=_first_in_family(ours_hits),
        final_only=_first_in_family(final_hits),
    )


def _in_chunks(
    runs: int, per_run_draws: float, simulate: Callable[[int], FirstAlerts]
) -> FirstAlerts:
    chunk = max(1, min(runs, int(_DRAWS_PER_CHUNK / max(per_run_draws, 1.0))))
    parts = [simulate(min(chunk, runs - start)) for start in range(0, runs, chunk)]
    return FirstAlerts(
        naive=np.concatenate([p.naive for p in parts]),
        ours=np.concatenate([p.ours for p in parts]),
        final_only=np.concatenate([p.final_only for p in parts]),
    )


def simulate_effect_alerts(
    rng: np.random.Generator,
    *,
    model: MetricModel,
    runs: int,
    metrics: int = 1,
    polls: int = 60,
    users_per_poll: int = 1000,
    lift: float = 0.0,
    family_size: int | None = None,
    alpha: float = DEFAULT_ALPHA,
    tuning: float = DEFAULT_TUNING,
) -> FirstAlerts:
    """First alerts of both rules in `runs` simulated experiments with `metrics` goal metrics.

    With `lift` 0 any alert is false (A/A). Otherwise the first metric has the lift and only
    its alerts in the lift's direction count (A/B power). Ours splits alpha over
    `family_size` tests (default `metrics`), so power can be measured on one simulated metric
    of a larger family.
    """
    cells = metrics * polls * 2
    draws = cells * (users_per_poll * REVENUE_NONZERO_SHARE if model is MetricModel.REVENUE else 1)

    def chunk(size: int) -> FirstAlerts:
        arms = simulate_arms(
            rng,
            model=model,
            runs=size,
            metrics=metrics,
            polls=polls,
            users_per_poll=users_per_poll,
            lift=lift,
        )
        z, total_units = effect_z_scores(arms)
        if lift == 0:
            return effect_first_alerts(
                z, total_units, alpha=alpha, tuning=tuning, family_size=family_size
            )
        return effect_first_alerts(
            z,
            total_units,
            alpha=alpha,
            tuning=tuning,
            family_size=family_size,
            only_metric=0,
            direction=1 if lift > 0 else -1,
        )

    return _in_chunks(runs, draws, chunk)


def simulate_srm_alerts(
    rng: np.random.Generator,
    *,
    runs: int,
    polls: int = 60,
    users_per_poll: int = 2000,
    control_share: float = 0.5,
    alpha: float = DEFAULT_SRM_ALPHA,
    concentration: float = DEFAULT_SRM_CONCENTRATION,
) -> FirstAlerts:
    """First SRM alerts in a 50/50 experiment whose true control share is `control_share`.

    naive: chi-square p < alpha at any poll; ours: running minimum of the sequential test's
    1/BF at or below alpha.
    """
    if not math.isfinite(control_share) or not 0 < control_share < 1:
        raise ValueError(f"the control's share must be in (0, 1), got {control_share}")
    weights = (0.5, 0.5)

    def chunk(size: int) -> FirstAlerts:
        control = np.cumsum(rng.binomial(users_per_poll, control_share, size=(size, polls)), axis=1)
        total = users_per_poll * np.arange(1, polls + 1)
        counts = np.stack([control, total - control], axis=-1).astype(np.float64)
        chi_square = srm_chi_square_p_values(counts, weights)
        log_bf = log_srm_bayes_factors(counts, weights, concentration=concentration)
        running = np.minimum.accumulate(np.exp(-np.maximum(log_bf, 0.0)), axis=-1)
        final_only = np.where(chi_square[:, -1] < alpha, polls - 1, -1).astype(np.int64)
        return FirstAlerts(
            naive=_first(chi_square < alpha), ours=_first(running <= alpha), final_only=final_only
        )

    return _in_chunks(runs, polls * 2, chunk)
