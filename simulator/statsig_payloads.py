"""Statsig Console API payloads for the fake: experiments, health checks and Pulse metrics.

Shapes follow the Console API OpenAPI spec 20240601.0.0 (`ExternalExperimentDto`,
`ExperimentPulseResultsDto`); Pulse metrics can also be spelled as Statsig's own snake_case
example spells them, and carry the `{lower, upper}` interval objects of newer docs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from simulator.statsig_experiment import StatsigExperiment, StatsigMetric, StatsigSnapshot
from simulator.statsig_scenario import StatsigScenario
from simulator.statsig_stats import PulseComparison, compare_groups

__all__ = ["PulseSpelling", "epoch_ms", "experiment_json", "pulse_metric_json"]

Json = dict[str, Any]
PulseSpelling = Literal["camelCase", "snake_case"]

_NEGATIVE_SEQUENTIAL_RATIO = -0.75  # the oddity: Statsig's example reports such negatives


def experiment_json(scenario: StatsigScenario, e: StatsigExperiment, index: int) -> Json:
    """The `ExternalExperimentDto` of `e` at refresh `index`."""
    status = e.status_at(index)
    created = scenario.start - timedelta(seconds=e.created_seconds_before_start)
    started = (
        scenario.refresh_time(e.started_at)
        if e.started_at is not None and status != "setup"
        else None
    )
    ended = (
        scenario.refresh_time(e.ends_at)
        if e.ends_at is not None and status not in ("setup", "active")
        else None
    )
    decided = ended if status == "decision_made" else None
    launched = (
        e.groups[e.launched_group_index].id
        if decided is not None and e.launched_group_index is not None
        else None
    )
    owner_id = _user_id(e.owner_name)
    email = e.owner_name.split()[0].lower() + "@example.com"
    return {
        "id": e.id,
        "name": e.name,
        "description": e.description,
        "idType": e.id_type,
        "lastModifierID": owner_id,
        "lastModifiedTime": epoch_ms(ended or started or created),
        "lastModifierEmail": email,
        "lastModifierName": e.owner_name,
        "creatorID": owner_id,
        "createdTime": epoch_ms(created),
        "creatorName": e.owner_name,
        "creatorEmail": email,
        "targetApps": [],
        "holdoutIDs": [],
        "tags": list(e.tags),
        "status": status,
        "launchedGroupID": launched,
        "startTime": epoch_ms(started) if started else None,
        "endTime": epoch_ms(ended) if ended else None,
        "layerID": None,
        "hypothesis": e.hypothesis,
        "primaryMetrics": [_metric_ref(m) for m in e.primary_metrics],
        "primaryMetricTags": [],
        "secondaryMetrics": [_metric_ref(m) for m in e.secondary_metrics],
        "secondaryMetricTags": [],
        "otherMetrics": [_metric_ref(m) for m in e.other_metrics],
        "groups": [
            {
                "name": g.name,
                "id": g.id,
                "size": g.size,
                "parameterValues": {"variant": g.name.lower().replace(" ", "_")},
                "description": "",
            }
            for g in e.groups
        ],
        "controlGroupID": e.control.id,
        "allocation": 100,
        "duration": e.duration_days,
        "targetingGateID": "",
        "sequentialTesting": e.sequential_testing,
        "bonferroniCorrection": e.bonferroni_correction,
        "bonferroniCorrectionPerMetric": e.bonferroni_correction_per_metric,
        "benjaminiHochbergPerVariant": e.benjamini_hochberg_per_variant,
        "benjaminiHochbergPerMetric": e.benjamini_hochberg_per_metric,
        "benjaminiPrimaryMetricsOnly": e.benjamini_primary_metrics_only,
        "defaultConfidenceInterval": e.default_confidence_interval,
        "decisionReason": e.decision_reason if decided else None,
        "decisionTime": epoch_ms(decided) if decided else None,
        "healthChecks": _health_checks_json(scenario, e, index),
        "healthCheckStatus": e.health_check_status_at(index),
        "owner": {
            "ownerID": owner_id,
            "ownerType": "USER",
            "ownerName": e.owner_name,
            "ownerEmail": email,
        },
        "inlineTargetingRulesJSON": "{}",
    }


def _health_checks_json(scenario: StatsigScenario, e: StatsigExperiment, index: int) -> list[Json]:
    checks: list[Json] = []
    for check in e.health_checks_at(index):
        body: Json = {
            "name": check.name,
            "description": check.description,
            "status": check.status,
            "type": check.type,
        }
        if check.type == "has_pulse_metrics" and check.status == "PASSED":
            loaded = scenario.refresh_time(e.analysed_index(index))
            body["metadata"] = {
                "type": check.type,
                "primary_id_type": e.id_type,
                "lastPulseLoadTime": epoch_ms(loaded),
            }
        checks.append(body)
    return checks


def pulse_metric_json(
    e: StatsigExperiment,
    snapshot: StatsigSnapshot,
    metric: StatsigMetric,
    pair: tuple[int, int],
    *,
    alpha: float,
    spelling: PulseSpelling,
    interval_bounds: bool,
) -> Json:
    """One metric of Pulse for the (control, test) group indexes `pair`, spelled `spelling`."""
    c = compare_groups(
        snapshot.arm(metric.id, pair[0]),
        snapshot.arm(metric.id, pair[1]),
        alpha=alpha,
        sequential_factor=e.sequential_factor(snapshot.refresh_index),
    )
    fields: dict[str, float] = {
        "absoluteChange": c.absolute_change,
        "confidenceIntervalDelta": c.confidence_interval_delta,
        "percentChange": c.percent_change,
        "percentConfidenceIntervalDelta": c.percent_confidence_interval_delta,
    }
    if e.sequential_testing:
        fields["sequentialTestingConfidenceIntervalDelta"] = (
            c.sequential_testing_confidence_interval_delta
        )
        fields["percentSequentialTestingConfidenceIntervalDelta"] = (
            c.percent_sequential_testing_confidence_interval_delta
        )
    if metric.has_negative_sequential_delta:
        fields["percentSequentialTestingConfidenceIntervalDelta"] = (
            _NEGATIVE_SEQUENTIAL_RATIO * c.percent_confidence_interval_delta
        )
    fields.update(
        testMean=c.test_mean,
        controlMean=c.control_mean,
        testStd=c.test_std,
        controlStd=c.control_std,
        testUnits=c.test_units,
        controlUnits=c.control_units,
        pValue=c.p_value,
    )
    if spelling == "snake_case":
        return {"metricID": metric.id, **{_SNAKE_CASE[k]: v for k, v in fields.items()}}
    body: Json = {
        "metricID": metric.id,
        "metricName": metric.name,
        "directionality": metric.direction,
        **fields,
    }
    if interval_bounds:
        body.update(_interval_bounds(c, sequential=e.sequential_testing))
    return body


_SNAKE_CASE = {
    "absoluteChange": "value",
    "confidenceIntervalDelta": "confidence_interval_delta",
    "percentChange": "percent_change",
    "percentConfidenceIntervalDelta": "percent_confidence_interval_delta",
    "sequentialTestingConfidenceIntervalDelta": "sequential_testing_confidence_interval_delta",
    "percentSequentialTestingConfidenceIntervalDelta": (
        "percent_sequential_testing_confidence_interval_delta"
    ),
    "testMean": "test_mean",
    "controlMean": "control_mean",
    "testStd": "test_std",
    "controlStd": "control_std",
    "testUnits": "test_units",
    "controlUnits": "control_units",
    "pValue": "p_value",
}


def _interval_bounds(c: PulseComparison, *, sequential: bool) -> Json:
    def bounds(center: float, delta: float) -> Json:
        return {"lower": center - delta, "upper": center + delta}

    body = {
        "confidenceInterval": bounds(c.absolute_change, c.confidence_interval_delta),
        "percentConfidenceInterval": bounds(c.percent_change, c.percent_confidence_interval_delta),
    }
    if sequential:
        body["sequentialTestingConfidenceInterval"] = bounds(
            c.absolute_change, c.sequential_testing_confidence_interval_delta
        )
        body["percentSequentialTestingConfidenceInterval"] = bounds(
            c.percent_change, c.percent_sequential_testing_confidence_interval_delta
        )
    return body


def _metric_ref(metric: StatsigMetric) -> Json:
    return {"name": metric.name, "type": metric.type, "direction": metric.direction}


def _user_id(name: str) -> str:
    return "user_" + "".join(ch for ch in name.lower() if ch.isalnum())


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, as Statsig's timestamps."""
    return round(moment.timestamp() * 1000)
