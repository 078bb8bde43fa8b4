"""Statsig Console API payloads as the watcher reads them, and their normalization.

Edge models accept what the Console API spec (20240601) documents and what Statsig's own
examples show: Pulse metrics in the schema's camelCase or in the example's snake_case (`value`,
`percent_change`, `p_value`, ...), without `metricName`, `directionality` or `ds`, and with or
without the `{lower, upper}` interval objects of newer docs. Unknown fields are ignored.

Units: Statsig's percent fields are in percent (2.5 = +2.5 %); the domain's relative changes
and intervals are fractions. Pulse's `testStd` / `controlStd` are standard errors of the mean
(far smaller than any per-unit spread of the metrics they describe), so the per-unit standard
deviation kept is std * sqrt(units). The platform verdict: significant when the interval on the
relative change excludes 0 (the sequential-testing interval when the experiment uses sequential
testing and reports a non-negative one), else when the p-value is below 1 - confidence; won
when the change goes the metric's desired direction, lost otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from store import (
    Decision,
    Experiment,
    HealthStatus,
    MetricResult,
    MetricRole,
    PayloadError,
    Snapshot,
    Variation,
    VariationResult,
    Verdict,
    clip,
)
from store import HealthCheck as StoreHealthCheck

from .upstream import UpstreamId, check_ids, distinct

__all__ = [
    "ExperimentList",
    "ExperimentPayload",
    "ExperimentResponse",
    "ExposuresResponse",
    "Group",
    "PulseData",
    "PulseResponse",
    "metrics_of",
    "pair_groups",
    "to_experiment",
    "to_snapshot",
]

MAX_EPOCH_MS = 253_402_300_799_999
"""The last millisecond of year 9999: later epoch times are no times a datetime can hold."""


class _Model(BaseModel):
    # NaN and infinities (NaN / Infinity tokens, 1e400, "NaN" strings) are payload errors:
    # the store cannot keep them and no platform means them.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class Group(_Model):
    """One experiment group; `size` is its traffic share in percent."""

    name: str
    id: str | None = None
    size: float


class MetricRef(_Model):
    """A metric an experiment names (`name::type` is its Pulse metric id)."""

    name: str
    type: str
    direction: Literal["increase", "decrease"] | None = None


class HealthCheck(_Model):
    """One of `healthChecks` (status PASSED / WARNING / FAILED / WAITING)."""

    name: str
    status: str
    type: str | None = None
    metadata: dict[str, Any] | None = None


class ExperimentPayload(_Model):
    """The experiment object of the list and of GET one (`ExternalExperimentDto`)."""

    id: str
    name: str | None = None
    status: str
    groups: list[Group]
    controlGroupID: str | None = None
    lastModifiedTime: float | None = Field(default=None, ge=0, le=MAX_EPOCH_MS)
    startTime: Any = None
    endTime: Any = None
    """Epoch milliseconds, read only by a backfill (`started_on`): never a reason to refuse
    a payload the watcher can use."""
    sequentialTesting: bool = False
    defaultConfidenceInterval: str = "95"
    primaryMetrics: list[MetricRef] = []
    secondaryMetrics: list[MetricRef] = []
    otherMetrics: list[MetricRef] = []
    healthChecks: list[HealthCheck] = []
    healthCheckStatus: str | None = None
    tags: list[str] = []
    launchedGroupID: str | None = None

    @field_validator("groups")
    @classmethod
    def _distinct_groups(cls, groups: list[Group]) -> list[Group]:
        return distinct(groups, lambda g: g.id or g.name, "group")

    @property
    def metric_refs(self) -> list[MetricRef]:
        """Primary, secondary and other metrics."""
        return self.primaryMetrics + self.secondaryMetrics + self.otherMetrics


class Pagination(_Model):
    """`pagination` of list answers: more pages exist while `nextPage` is not null."""

    pageNumber: float
    nextPage: str | None
    totalItems: float | None = None
    """How many items the whole list holds (a later page counting fewer: it shrank)."""


class ExperimentList(_Model):
    """GET /console/v1/experiments."""

    data: list[ExperimentPayload]
    pagination: Pagination


class ExposureDay(_Model):
    date: date
    exposures: float


class GroupExposures(_Model):
    groupID: str | None = None
    groupName: str = ""
    results: list[ExposureDay]


class ExposuresResponse(_Model):
    """GET /console/v1/experiments/{id}/cumulative_exposures."""

    data: list[GroupExposures]


class ExperimentResponse(_Model):
    """GET /console/v1/experiments/{id}."""

    data: ExperimentPayload


class Bounds(_Model):
    """An interval object of newer docs, `{lower, upper}`."""

    lower: float
    upper: float


def _field(*names: str) -> Any:
    """An optional field read under any of `names` (camelCase first, then snake_case)."""
    return Field(default=None, validation_alias=AliasChoices(*names))


class PulseMetric(_Model):
    """One metric of Pulse for one (control, test) pair, in either spelling."""

    metricID: UpstreamId = Field(validation_alias=AliasChoices("metricID", "metric_id"))
    metricName: str | None = _field("metricName", "metric_name")
    directionality: Literal["increase", "decrease"] | None = _field("directionality")
    absoluteChange: float | None = _field("absoluteChange", "value", "absolute_change")
    confidenceIntervalDelta: float | None = _field(
        "confidenceIntervalDelta", "confidence_interval_delta"
    )
    percentChange: float | None = _field("percentChange", "percent_change")
    percentConfidenceIntervalDelta: float | None = _field(
        "percentConfidenceIntervalDelta", "percent_confidence_interval_delta"
    )
    percentSequentialTestingConfidenceIntervalDelta: float | None = _field(
        "percentSequentialTestingConfidenceIntervalDelta",
        "percent_sequential_testing_confidence_interval_delta",
    )
    percentConfidenceInterval: Bounds | None = _field(
        "percentConfidenceInterval", "percent_confidence_interval"
    )
    percentSequentialTestingConfidenceInterval: Bounds | None = _field(
        "percentSequentialTestingConfidenceInterval",
        "percent_sequential_testing_confidence_interval",
    )
    testMean: float | None = _field("testMean", "test_mean")
    controlMean: float | None = _field("controlMean", "control_mean")
    testStd: float | None = _field("testStd", "test_std")
    controlStd: float | None = _field("controlStd", "control_std")
    testUnits: float | None = _field("testUnits", "test_units")
    controlUnits: float | None = _field("controlUnits", "control_units")
    pValue: float | None = _field("pValue", "p_value")


class PulseData(_Model):
    """`data` of pulse_results; `ds` (the Pulse day) is missing in the snake_case example."""

    ds: str | None = None
    primaryMetrics: list[PulseMetric] = Field(
        validation_alias=AliasChoices("primaryMetrics", "primary_metrics")
    )
    secondaryMetrics: list[PulseMetric] = Field(
        validation_alias=AliasChoices("secondaryMetrics", "secondary_metrics")
    )
    otherMetrics: list[PulseMetric] = Field(
        default=[], validation_alias=AliasChoices("otherMetrics", "other_metrics")
    )

    @model_validator(mode="after")
    def _distinct_metrics(self) -> PulseData:
        distinct(
            self.primaryMetrics + self.secondaryMetrics + self.otherMetrics,
            lambda m: m.metricID,
            "metric",
        )
        return self


class PulseResponse(_Model):
    """GET /console/v1/experiments/{id}/pulse_results."""

    data: PulseData


def to_experiment(e: ExperimentPayload, *, source: str, ui_url: str | None) -> Experiment:
    """The domain experiment for a Statsig experiment object (list item or GET one); a
    PayloadError for it when an id the store would keep is too long (its own, a group's:
    groups are the variations of its results, or the launched group)."""
    control, _ = pair_groups(e)
    ordered = ([control] if control else []) + [g for g in e.groups if g is not control]
    decision = _decision(e)
    check_ids(
        {
            **{f"the id of group {clip(g.name, 60)!r}": g.id or g.name for g in ordered},
            "the launched group id": decision.variation_id if decision else None,
        },
        platform="Statsig",
        source=source,
        experiment_id=e.id,
    )
    modified = e.lastModifiedTime
    pulse_loaded = _pulse_load_time(e)
    version = None
    if modified is not None:
        version = f"{modified:.0f}" + (f"/pulse:{pulse_loaded:.0f}" if pulse_loaded else "")
    return Experiment(
        source=source,
        experiment_id=e.id,
        name=e.name or e.id,
        status=e.status,
        variations=tuple(
            Variation(variation_id=g.id or g.name, name=g.name, weight=g.size / 100.0)
            for g in ordered
        ),
        upstream_updated_at=_from_epoch_ms(modified),
        upstream_version=version,
        url=f"{ui_url}/experiments/{e.id}" if ui_url else None,
        tags=tuple(e.tags),
        detailed_status=e.healthCheckStatus,
        decision=decision,
    )


def _decision(e: ExperimentPayload) -> Decision | None:
    """Statsig's decision: a shipped group once `decision_made`, or the experiment abandoned."""
    if e.status == "decision_made":
        return Decision(outcome="launched", variation_id=e.launchedGroupID or None)
    if e.status == "abandoned":
        return Decision(outcome="abandoned")
    return None


def to_snapshot(
    e: ExperimentPayload,
    control: Group,
    pulses: Sequence[tuple[Group, PulseData]],
    *,
    source: str,
    day: date | None,
) -> Snapshot:
    """One snapshot merging Pulse of every (control, test) pair: control first as baseline.

    `day` is the Pulse day asked for (None: the latest).
    """
    directions = {_metric_id(m): m.direction for m in e.metric_refs}
    alpha = 1.0 - _confidence(e.defaultConfidenceInterval) / 100.0
    merged: dict[str, tuple[PulseMetric, MetricRole, list[VariationResult]]] = {}
    units: dict[str, float] = {}
    for test, data in pulses:
        for role, metrics in metrics_of(data):
            for m in metrics:
                if m.metricID not in merged:
                    baseline = _baseline(control, m)
                    merged[m.metricID] = (m, role, [baseline])
                higher = (m.directionality or directions.get(m.metricID)) != "decrease"
                result = _test_result(
                    test, m, sequential=e.sequentialTesting, alpha=alpha, higher=higher
                )
                merged[m.metricID][2].append(result)
                for v in (merged[m.metricID][2][0], result):
                    units[v.variation_id] = max(units.get(v.variation_id, 0.0), v.users)
    metrics_out = tuple(
        MetricResult(
            metric_id=metric_id,
            metric_name=first.metricName or metric_id.split("::")[0],
            role=role,
            higher_is_better=(first.directionality or directions.get(metric_id)) != "decrease",
            variations=tuple(variations),
        )
        for metric_id, (first, role, variations) in merged.items()
    )
    days = sorted(data.ds for _, data in pulses if data.ds)
    ds = days[0] if days else (day.isoformat() if day else None)
    loaded = _from_epoch_ms(_pulse_load_time(e))
    if day is not None or loaded is None:
        loaded = _end_of(ds)
    snapshot = Snapshot(
        source=source,
        experiment_id=e.id,
        upstream_snapshot_id=ds,
        upstream_updated_at=loaded,
        engine="frequentist-sequential" if e.sequentialTesting else "frequentist",
        total_users=sum(units.values()),
        srm_p_value=None,  # Statsig reports exposure balance as a health check, not a p-value
        health_checks=health_checks(e),
        metrics=metrics_out,
    )
    wrong = _out_of_range(snapshot)
    if wrong is not None:
        raise PayloadError(
            f"Statsig Pulse of experiment {e.id!r} has a number out of range ({wrong})",
            source=source,
            experiment_id=e.id,
        )
    return snapshot


_COMPUTED = ("users", "mean", "stddev", "relative_change", "ci_low", "ci_high", "p_value")
"""The numbers converted from Statsig's units, which can overflow however finite the inputs."""


def _out_of_range(snapshot: Snapshot) -> str | None:
    """Where `snapshot` holds a number that is not finite, if anywhere."""
    if not math.isfinite(snapshot.total_users):
        return "total users"
    for metric in snapshot.metrics:
        for variation in metric.variations:
            for name in _COMPUTED:
                value = getattr(variation, name)
                if value is not None and not math.isfinite(value):
                    return f"{name} of {metric.metric_id} for group {variation.variation_id}"
    return None


def health_checks(e: ExperimentPayload) -> tuple[StoreHealthCheck, ...]:
    """The experiment's health checks; a status Statsig adds later reads as waiting."""
    known = {status.value for status in HealthStatus}
    return tuple(
        StoreHealthCheck(
            name=check.name,
            status=HealthStatus(check.status.lower())
            if check.status.lower() in known
            else HealthStatus.WAITING,
            check_type=check.type or "",
        )
        for check in e.healthChecks
    )


def pair_groups(e: ExperimentPayload) -> tuple[Group | None, list[Group]]:
    """The control group and the test groups Pulse can compare with it (those with ids)."""
    by_id = {g.id: g for g in e.groups if g.id}
    control = by_id.get(e.controlGroupID) if e.controlGroupID else None
    if control is None:
        control = e.groups[0] if e.groups else None
    tests = [g for g in e.groups if g is not control and g.id]
    return control, (tests if control is not None and control.id else [])


def metrics_of(data: PulseData) -> list[tuple[MetricRole, list[PulseMetric]]]:
    """Pulse's non-empty metric lists with the role each stands for."""
    found = [
        (MetricRole.GOAL, data.primaryMetrics),
        (MetricRole.SECONDARY, data.secondaryMetrics),
        (MetricRole.SECONDARY, data.otherMetrics),  # Statsig has no guardrail role in Pulse
    ]
    return [(role, metrics) for role, metrics in found if metrics]


def _baseline(control: Group, m: PulseMetric) -> VariationResult:
    return VariationResult(
        variation_id=control.id or control.name,
        variation_name=control.name,
        users=m.controlUnits or 0.0,
        mean=m.controlMean,
        stddev=_per_unit_sd(m.controlStd, m.controlUnits),
        platform_verdict=Verdict.BASELINE,
    )


def _test_result(
    test: Group, m: PulseMetric, *, sequential: bool, alpha: float, higher: bool
) -> VariationResult:
    change, low, high = _relative_interval(m, sequential=sequential)
    if low is not None and high is not None:
        significant = low > 0 or high < 0
    else:
        significant = m.pValue is not None and m.pValue < alpha
    verdict = Verdict.INCONCLUSIVE
    if significant and change is not None and change != 0:
        verdict = Verdict.WON if (change > 0) == higher else Verdict.LOST
    return VariationResult(
        variation_id=test.id or test.name,
        variation_name=test.name,
        users=m.testUnits or 0.0,
        mean=m.testMean,
        stddev=_per_unit_sd(m.testStd, m.testUnits),
        relative_change=change,
        ci_low=low,
        ci_high=high,
        p_value=m.pValue,
        platform_verdict=verdict,
    )


def _relative_interval(
    m: PulseMetric, *, sequential: bool
) -> tuple[float | None, float | None, float | None]:
    """Relative change and its interval as fractions, from Statsig's percent units.

    The interval is the first usable of: with sequential testing on, the sequential half-width
    or interval; the fixed-horizon half-width or interval; the absolute half-width relative to
    the control mean. A negative half-width (Statsig's own example carries some) is unusable.
    """
    percent = m.percentChange
    if percent is None and m.testMean is not None and m.controlMean:
        percent = 100.0 * (m.testMean - m.controlMean) / m.controlMean
    if percent is None:
        return None, None, None
    candidates: list[tuple[float | None, Bounds | None]] = [
        (m.percentConfidenceIntervalDelta, m.percentConfidenceInterval)
    ]
    if sequential:
        sequential_pair = (
            m.percentSequentialTestingConfidenceIntervalDelta,
            m.percentSequentialTestingConfidenceInterval,
        )
        candidates.insert(0, sequential_pair)
    if m.confidenceIntervalDelta is not None and m.controlMean:
        candidates.append((100.0 * m.confidenceIntervalDelta / abs(m.controlMean), None))
    for delta, bounds in candidates:
        if delta is not None and math.isfinite(delta) and delta >= 0:
            return percent / 100.0, (percent - delta) / 100.0, (percent + delta) / 100.0
        if bounds is not None and bounds.lower <= bounds.upper:
            return percent / 100.0, bounds.lower / 100.0, bounds.upper / 100.0
    return percent / 100.0, None, None


def _per_unit_sd(standard_error: float | None, units: float | None) -> float | None:
    if standard_error is None or units is None or units <= 0:
        return None
    return standard_error * math.sqrt(units)


def _metric_id(ref: MetricRef) -> str:
    return f"{ref.name}::{ref.type}"


def _confidence(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        return 95.0
    return value if 0.0 < value < 100.0 else 95.0


def _pulse_load_time(e: ExperimentPayload) -> float | None:
    for check in e.healthChecks:
        value = (check.metadata or {}).get("lastPulseLoadTime")
        if isinstance(value, int | float) and not isinstance(value, bool):
            # Metadata is free-form: a time past any datetime (or NaN) is no time at all.
            return float(value) if 0 <= value <= MAX_EPOCH_MS else None
    return None


def _from_epoch_ms(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000.0, tz=UTC)


def _end_of(ds: str | None) -> datetime | None:
    """When a Pulse day's data is complete: the following midnight, UTC."""
    try:
        day = date.fromisoformat(ds) if ds else None
    except ValueError:
        return None
    return datetime.combine(day, time(0), UTC) + timedelta(days=1) if day else None
