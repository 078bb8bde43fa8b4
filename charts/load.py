"""Read what the charts of one experiment need from the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from store import Event, EventKind, Experiment, MetricResult, MetricRole, Store, Verdict

from .series import ExposureSeries, SrmSeries, Trajectory

__all__ = [
    "CHARTED_KINDS",
    "Chart",
    "ChartSet",
    "load_chart_set",
    "load_event_chart",
    "load_trajectory",
]

CHARTED_KINDS = frozenset(
    {EventKind.SIGNIFICANCE_CHANGED, EventKind.GUARDRAIL_REGRESSED, EventKind.SRM_DETECTED}
)
"""Events with a chart of their own (`load_event_chart`)."""

Chart = Trajectory | SrmSeries | ExposureSeries

_ROLE_ORDER = {MetricRole.GOAL: 0, MetricRole.GUARDRAIL: 1, MetricRole.SECONDARY: 2}


@dataclass(frozen=True)
class ChartSet:
    """Every chart of one experiment: each metric × treatment trajectory (goals first, then
    guardrails, then secondary metrics), SRM over time and users per variation."""

    experiment: Experiment
    trajectories: tuple[Trajectory, ...]
    srm: SrmSeries
    exposures: ExposureSeries

    @property
    def charts(self) -> list[Chart]:
        """SRM and exposures first, then the trajectories."""
        found: list[Chart] = []
        if self.srm.points:
            found.append(self.srm)
        if self.exposures.points and self.exposures.variations:
            found.append(self.exposures)
        found.extend(t for t in self.trajectories if t.points)
        return found


def _baseline_id(metric: MetricResult, experiment: Experiment) -> str | None:
    for v in metric.variations:
        if v.platform_verdict is Verdict.BASELINE:
            return v.variation_id
    if experiment.variations:
        return experiment.variations[0].variation_id
    return metric.variations[0].variation_id if metric.variations else None


async def load_trajectory(
    store: Store,
    experiment: Experiment,
    metric: MetricResult,
    variation_id: str,
    *,
    until_snapshot_id: int | None = None,
) -> Trajectory:
    """One metric's trajectory for `variation_id` against the baseline (up to and including
    snapshot `until_snapshot_id`, when given: what was known then)."""
    baseline_id = _baseline_id(metric, experiment) or variation_id
    experiment_id = experiment.experiment_id
    treatment = await store.metric_history(experiment_id, metric.metric_id, variation_id)
    baseline = await store.metric_history(experiment_id, metric.metric_id, baseline_id)
    if until_snapshot_id is not None:
        treatment = [p for p in treatment if p.snapshot_id <= until_snapshot_id]
    return Trajectory.of(
        experiment,
        metric,
        variation_id,
        treatment=treatment,
        baseline=baseline,
        baseline_id=baseline_id,
    )


async def load_chart_set(
    store: Store,
    experiment_id: str,
    *,
    metric_ids: Sequence[str] | None = None,
    until_snapshot_id: int | None = None,
) -> ChartSet:
    """The experiment's charts from its latest snapshot's metrics (or those of `metric_ids`),
    up to snapshot `until_snapshot_id` when given. Raises UnknownExperiment."""
    experiment, latest = await store.current(experiment_id)
    snapshots = await store.snapshot_history(experiment_id)
    if until_snapshot_id is not None:
        snapshots = [s for s in snapshots if s.id <= until_snapshot_id]
    metrics = list(latest.snapshot.metrics) if latest else []
    if metric_ids is not None:
        metrics = [m for m in metrics if m.metric_id in metric_ids]
    metrics.sort(key=lambda m: _ROLE_ORDER.get(m.role, 3))
    trajectories = []
    for metric in metrics:
        baseline_id = _baseline_id(metric, experiment)
        for v in metric.variations:
            if v.variation_id == baseline_id:
                continue
            trajectories.append(
                await load_trajectory(
                    store, experiment, metric, v.variation_id, until_snapshot_id=until_snapshot_id
                )
            )
    return ChartSet(
        experiment=experiment,
        trajectories=tuple(trajectories),
        srm=SrmSeries.of(experiment, snapshots),
        exposures=ExposureSeries.of(experiment, snapshots),
    )


async def load_event_chart(store: Store, event: Event) -> Chart | None:
    """The chart an event is about, as it was when the event happened (up to its snapshot):
    the metric's trajectory for a significance change or a guardrail regression, the SRM
    tests for a sample-ratio mismatch; None for other events or one without data.
    Raises UnknownExperiment when the experiment is not in the store."""
    if event.kind not in CHARTED_KINDS or event.experiment_id is None:
        return None
    experiment, latest = await store.current(event.experiment_id)
    if event.kind is EventKind.SRM_DETECTED:
        snapshots = await store.snapshot_history(event.experiment_id)
        if event.snapshot_id is not None:
            snapshots = [s for s in snapshots if s.id <= event.snapshot_id]
        srm = SrmSeries.of(experiment, snapshots)
        return srm if srm.points else None
    if event.metric_id is None or event.variation_id is None:
        return None
    metric = latest.snapshot.metric(event.metric_id) if latest else None
    if metric is None:  # removed since: draw it under the name the event gives
        name = str(event.details.get("metric_name") or event.metric_id)
        metric = MetricResult(metric_id=event.metric_id, metric_name=name)
    trajectory = await load_trajectory(
        store, experiment, metric, event.variation_id, until_snapshot_id=event.snapshot_id
    )
    return trajectory if trajectory.points else None
