"""What a chart shows, taken from store records: no drawing here, so every renderer (PNG,
Vega-Lite) draws the same numbers.

- `Trajectory`: one metric for one treatment against the baseline, snapshot by snapshot — the
  platform's relative change with the platform's interval, and expwatch's anytime-valid
  confidence sequence, with the moments each verdict first became significant.
- `SrmSeries`: the sample-ratio tests over time (expwatch's sequential p-value, the platform's).
- `ExposureSeries`: users per variation over time, with the split the configuration expects.

Times are when the platform computed the results (`upstream_updated_at`), or when expwatch
fetched them when the platform does not say: the same clock events use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from store import (
    Experiment,
    MetricPoint,
    MetricResult,
    MetricRole,
    Snapshot,
    StoredSnapshot,
    Verdict,
)

__all__ = [
    "Crossing",
    "ExposurePoint",
    "ExposureSeries",
    "SrmPoint",
    "SrmSeries",
    "Trajectory",
    "TrajectoryPoint",
]


def _variation_names(experiment: Experiment) -> dict[str, str]:
    return {v.variation_id: v.name or v.variation_id for v in experiment.variations}


@dataclass(frozen=True)
class TrajectoryPoint:
    """One snapshot of a treatment against the baseline."""

    at: datetime
    snapshot_id: int
    users: float
    baseline_users: float | None
    baseline_mean: float | None
    relative_change: float | None
    """The platform's estimate of the relative change (0.05 = +5 %)."""
    platform_low: float | None
    platform_high: float | None
    """The platform's interval on the relative change."""
    our_absolute_change: float | None
    our_absolute_low: float | None
    our_absolute_high: float | None
    """expwatch's confidence sequence on the absolute difference (what its verdict decides on)."""
    platform_verdict: Verdict
    our_verdict: Verdict | None
    our_p_value: float | None

    @property
    def has_ours(self) -> bool:
        return self.our_absolute_change is not None

    def _relative(self, value: float | None, unbounded: float) -> float | None:
        """`value` as a share of the baseline mean; a missing bound of an interval we have is
        unbounded (a guardrail's one-sided sequence): ±inf."""
        mean = self.baseline_mean
        if not self.has_ours or mean is None or mean <= 0:
            return None
        return unbounded if value is None else value / mean

    @property
    def ours_low(self) -> float | None:
        """Our confidence sequence's lower bound as a share of the baseline mean (-inf when
        the sequence is one-sided; None when there is none)."""
        return self._relative(self.our_absolute_low, -math.inf)

    @property
    def ours_high(self) -> float | None:
        return self._relative(self.our_absolute_high, math.inf)

    @property
    def ours_absolute_low(self) -> float | None:
        """Our lower bound on the absolute difference (-inf when one-sided)."""
        if not self.has_ours:
            return None
        return -math.inf if self.our_absolute_low is None else self.our_absolute_low

    @property
    def ours_absolute_high(self) -> float | None:
        if not self.has_ours:
            return None
        return math.inf if self.our_absolute_high is None else self.our_absolute_high


@dataclass(frozen=True)
class Crossing:
    """The first snapshot at which a verdict became significant (won or lost)."""

    at: datetime
    verdict: Verdict
    by: str
    """"expwatch" or "platform"."""


def _first_significant(
    points: Sequence[TrajectoryPoint], verdict_of: str, by: str
) -> Crossing | None:
    """Where the verdict last crossed into significance (the start of the current run)."""
    crossing = None
    for point in points:
        verdict = getattr(point, verdict_of)
        if verdict is not None and verdict.is_significant:
            if crossing is None or crossing.verdict is not verdict:
                crossing = Crossing(at=point.at, verdict=verdict, by=by)
        else:
            crossing = None
    return crossing


@dataclass(frozen=True)
class Trajectory:
    """A metric's trajectory for one treatment against the baseline.

    The platform reports a relative change with its interval; expwatch decides on the absolute
    difference with a confidence sequence. To show both on one honest scale, our bounds are
    divided by the baseline's mean at the same snapshot (`TrajectoryPoint.ours_low/high`):
    the result is the decision interval in units of the baseline, and it excludes zero exactly
    when expwatch's verdict is significant. It is not a relative confidence sequence (the
    baseline mean's own sampling error is left out), and charts label it so. When a baseline
    mean is missing or not positive the division means nothing: `is_relative_scale` is False
    and renderers draw our interval on its own, absolute, axis.
    """

    experiment_id: str
    experiment_name: str
    metric_id: str
    metric_name: str
    role: MetricRole
    higher_is_better: bool
    variation_id: str
    variation_name: str
    baseline_name: str
    points: tuple[TrajectoryPoint, ...]

    @property
    def name(self) -> str:
        """A file-name-safe identifier: `trajectory-<metric>-<variation>`."""
        return _safe(f"trajectory-{self.metric_id}-{self.variation_id}")

    @property
    def title(self) -> str:
        return (
            f"{self.metric_name}: {self.variation_name} vs {self.baseline_name} "
            f"— {self.experiment_name}"
        )

    @property
    def our_crossing(self) -> Crossing | None:
        return _first_significant(self.points, "our_verdict", "expwatch")

    @property
    def platform_crossing(self) -> Crossing | None:
        return _first_significant(self.points, "platform_verdict", "platform")

    @property
    def is_relative_scale(self) -> bool:
        """Whether our bounds can be shown as a share of the baseline mean at every snapshot
        that has them."""
        ours = [p for p in self.points if p.has_ours]
        return all(p.baseline_mean is not None and p.baseline_mean > 0 for p in ours)

    @property
    def is_one_sided(self) -> bool:
        """Whether our sequence is unbounded on one side somewhere (a guardrail's test)."""
        return any(
            p.has_ours and (p.our_absolute_low is None or p.our_absolute_high is None)
            for p in self.points
        )

    @classmethod
    def of(
        cls,
        experiment: Experiment,
        metric: MetricResult,
        variation_id: str,
        *,
        treatment: Sequence[MetricPoint],
        baseline: Sequence[MetricPoint],
        baseline_id: str,
    ) -> Trajectory:
        """From `metric_history` of the treatment and of the baseline (paired by snapshot)."""
        names = _variation_names(experiment)
        for v in metric.variations:
            names.setdefault(v.variation_id, v.variation_name or v.variation_id)
        by_snapshot = {p.snapshot_id: p for p in baseline}
        points = []
        for p in treatment:
            base = by_snapshot.get(p.snapshot_id)
            points.append(
                TrajectoryPoint(
                    at=p.upstream_updated_at or p.fetched_at,
                    snapshot_id=p.snapshot_id,
                    users=p.users,
                    baseline_users=base.users if base else None,
                    baseline_mean=base.mean if base else None,
                    relative_change=p.relative_change,
                    platform_low=p.ci_low,
                    platform_high=p.ci_high,
                    our_absolute_change=p.absolute_change,
                    our_absolute_low=p.absolute_ci_low,
                    our_absolute_high=p.absolute_ci_high,
                    platform_verdict=p.platform_verdict,
                    our_verdict=p.our_verdict,
                    our_p_value=p.our_p_value,
                )
            )
        return cls(
            experiment_id=experiment.experiment_id,
            experiment_name=experiment.name or experiment.experiment_id,
            metric_id=metric.metric_id,
            metric_name=metric.metric_name or metric.metric_id,
            role=metric.role,
            higher_is_better=metric.higher_is_better,
            variation_id=variation_id,
            variation_name=names.get(variation_id, variation_id),
            baseline_name=names.get(baseline_id, baseline_id),
            points=tuple(points),
        )


@dataclass(frozen=True)
class SrmPoint:
    at: datetime
    our_p_value: float | None
    """expwatch's sequential SRM p-value: the running minimum of the phase."""
    platform_p_value: float | None
    """The platform's own SRM p-value (a fixed-horizon chi-square), when it reports one."""
    chi_square_p_value: float | None
    """expwatch's fixed-horizon chi-square, for platforms that report none."""
    alpha: float | None


@dataclass(frozen=True)
class SrmSeries:
    """The sample-ratio tests of an experiment over time (the snapshots that had one)."""

    experiment_id: str
    experiment_name: str
    points: tuple[SrmPoint, ...]

    name = "srm"

    @property
    def title(self) -> str:
        return f"Sample-ratio mismatch test over time — {self.experiment_name}"

    @property
    def alpha(self) -> float:
        """The threshold of our test (the newest one recorded; 0.001 by default)."""
        return next((p.alpha for p in reversed(self.points) if p.alpha is not None), 0.001)

    @property
    def detected_at(self) -> datetime | None:
        """When our sequential test last crossed the threshold (None: no mismatch now)."""
        at = None
        for p in self.points:
            mismatch = p.our_p_value is not None and p.our_p_value <= (p.alpha or self.alpha)
            if mismatch and at is None:
                at = p.at
            elif not mismatch:
                at = None
        return at

    @property
    def shows_platform(self) -> bool:
        return any(p.platform_p_value is not None for p in self.points)

    @classmethod
    def of(cls, experiment: Experiment, snapshots: Sequence[StoredSnapshot]) -> SrmSeries:
        points = []
        for stored in snapshots:
            s = stored.snapshot
            ours = s.our_srm
            if ours is None and s.srm_p_value is None:
                continue  # no test ran on this snapshot (too few users, no split known)
            points.append(
                SrmPoint(
                    at=s.upstream_updated_at or stored.fetched_at,
                    our_p_value=ours.p_value if ours else None,
                    platform_p_value=s.srm_p_value,
                    chi_square_p_value=ours.chi_square_p_value if ours else None,
                    alpha=ours.alpha if ours else None,
                )
            )
        return cls(
            experiment_id=experiment.experiment_id,
            experiment_name=experiment.name or experiment.experiment_id,
            points=tuple(points),
        )


@dataclass(frozen=True)
class ExposurePoint:
    at: datetime
    users: dict[str, float]
    """Users per variation id."""


@dataclass(frozen=True)
class ExposureSeries:
    """Users per variation over time, and the split the experiment's weights expect."""

    experiment_id: str
    experiment_name: str
    variations: tuple[tuple[str, str], ...]
    """(variation id, name), baseline first."""
    weights: dict[str, float] | None
    """Each variation's expected share of users (None when the platform gives no weights)."""
    points: tuple[ExposurePoint, ...]

    name = "exposures"

    @property
    def title(self) -> str:
        return f"Users per variation — {self.experiment_name}"

    def expected(self, point: ExposurePoint, variation_id: str) -> float | None:
        """The users `variation_id` would have at `point` if the split were as configured."""
        if self.weights is None or variation_id not in self.weights:
            return None
        return sum(point.users.values()) * self.weights[variation_id]

    @classmethod
    def of(cls, experiment: Experiment, snapshots: Sequence[StoredSnapshot]) -> ExposureSeries:
        names = _variation_names(experiment)
        points = []
        for stored in snapshots:
            users = _users_by_variation(stored.snapshot)
            if not users:
                continue  # no results in this snapshot
            for metric in stored.snapshot.metrics:
                for v in metric.variations:
                    names.setdefault(v.variation_id, v.variation_name or v.variation_id)
            points.append(
                ExposurePoint(
                    at=stored.snapshot.upstream_updated_at or stored.fetched_at, users=users
                )
            )
        seen = [v for v in names if any(v in p.users for p in points)]
        weights = None
        raw = {v.variation_id: v.weight for v in experiment.variations}
        if seen and all(raw.get(v) for v in seen):
            total = sum(raw[v] or 0.0 for v in seen)
            weights = {v: (raw[v] or 0.0) / total for v in seen}
        return cls(
            experiment_id=experiment.experiment_id,
            experiment_name=experiment.name or experiment.experiment_id,
            variations=tuple((v, names[v]) for v in seen),
            weights=weights,
            points=tuple(points),
        )


def _users_by_variation(snapshot: Snapshot) -> dict[str, float]:
    """Users per variation: from the first metric that reports every variation (the platforms
    count exposed users per variation, the same for every metric of the overall row)."""
    best: dict[str, float] = {}
    for metric in snapshot.metrics:
        users = {v.variation_id: v.users for v in metric.variations}
        if len(users) > len(best):
            best = users
    return best


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
