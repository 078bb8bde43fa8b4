"""GrowthBook REST API v1 payloads for the fake: experiments, status indicators, results and
metric definitions.

Shapes follow GrowthBook's OpenAPI spec 5.0.1 (`Experiment`, `ExperimentWithEnhancedStatus`,
`ExperimentResults`, `Metric`). Results are serialised as GrowthBook's `toSnapshotApiInterface`
does: fractions for percentChange/ciLow/ciHigh, zeros (never nulls) for the baseline and for
fields an engine does not produce, `phase` as a string, `checks.srm` the SRM p-value; for an
inverse metric the bayesian chanceToBeatControl and risk are those of a fall (as gbstats).

Metric definitions (`Metric`, as GrowthBook's `toMetricApiInterface` serialises a legacy SQL
metric) exist for every metric id an experiment of the scenario analyses: a binomial metric
whose `behavior.goal` is "decrease" when it is `inverse`, created with the oldest experiment
using it (whose owner and data source it takes), in the projects of the experiments using it,
with GrowthBook's default behaviour settings.

The bulk-results items (`ExperimentBulkResult`, outside the spec; GrowthBook's "Experiment
Bulk Results API" page) differ: one item per snapshot and dimension (`{snapshotId}:overall`),
`dateCreated`, `type`, `triggeredBy`, slices under `dimensionValue`, per variation its
`variationIndex` and `variationKey`, and analyses carrying `differenceType` and `effect`
(the relative change, as a fraction, for `relative`), with nulls (never zeros) for every
statistic that is missing: the baseline's comparisons and what the engine does not produce.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from simulator.scenario import Scenario, ScriptedExperiment, ScriptedMetric, ScriptedSnapshot
from simulator.stats import BASELINE_ANALYSIS, analyze_variation, srm_p_value

__all__ = [
    "bulk_result_json",
    "created_at",
    "enhanced_status",
    "experiment_json",
    "iso",
    "metric_definitions",
    "results_json",
    "snapshot_id",
]

Json = dict[str, Any]

_DETAILED_STOPPED_STATUS = {
    "won": "Won",
    "lost": "Lost",
    "inconclusive": "Inconclusive",
    "dnf": "Didn't finish",
}


def created_at(scenario: Scenario, experiment: ScriptedExperiment) -> datetime:
    """When the experiment was created (`dateCreated`), the order GrowthBook lists them in."""
    return scenario.start - timedelta(seconds=experiment.created_seconds_before_start)


def experiment_json(scenario: Scenario, experiment: ScriptedExperiment, index: int) -> Json:
    """The `Experiment` of `experiment` at refresh `index`."""
    created = created_at(scenario, experiment)
    status = experiment.status_at(index)
    is_archived = experiment.is_archived_at(index)
    changes = [experiment.analysed_index(index)] if status != "draft" else []
    if is_archived and experiment.archived_at is not None:
        changes.append(experiment.archived_at)
    updated = scenario.refresh_time(max(changes)) if changes else created
    variations = experiment.variations
    body: Json = {
        "id": experiment.id,
        "trackingKey": experiment.tracking_key,
        "dateCreated": iso(created),
        "dateUpdated": iso(updated),
        "name": experiment.name,
        "type": "standard",
        "project": experiment.project,
        "hypothesis": experiment.hypothesis,
        "description": "",
        "tags": list(experiment.tags),
        "owner": experiment.owner,
        "archived": is_archived,
        "status": status,
        "autoRefresh": True,
        "hashAttribute": "id",
        "hashVersion": 2,
        "variations": [
            {
                "variationId": v.id,
                "key": v.key,
                "name": v.name,
                "description": "",
                "screenshots": [],
            }
            for v in variations
        ],
        "phases": _phases_json(scenario, experiment, index),
        "settings": {
            **_analysis_settings(experiment, index),
            "regressionAdjustmentEnabled": False,
            "sequentialTestingEnabled": False,
            "sequentialTestingTuningParameter": 5000,
        },
        "shareLevel": "organization",
        "linkedFeatures": [],
        "hasVisualChangesets": False,
        "hasURLRedirects": False,
        "customFields": {},
    }
    if status == "stopped":
        won = experiment.verdict == "won"
        winner = variations[-1].id if won else variations[0].id
        body["resultSummary"] = {
            "status": experiment.verdict,
            "winner": winner,
            "conclusions": "",
            "releasedVariationId": winner if won else "",
            "excludeFromPayload": False,
        }
    return body


def enhanced_status(experiment: ScriptedExperiment, index: int) -> Json:
    """GrowthBook's status indicator, without its premium decision framework."""
    status = experiment.status_at(index)
    if experiment.is_archived_at(index):
        return {"status": "Archived"}
    if status == "draft":
        return {"status": "Draft"}
    if status == "stopped":
        return {"status": "Stopped", "detailedStatus": _DETAILED_STOPPED_STATUS[experiment.verdict]}
    if not experiment.has_results_at(index):
        return {"status": "Running", "detailedStatus": "No data"}
    if experiment.is_srm_at(index):
        return {"status": "Running", "detailedStatus": "Unhealthy"}
    return {"status": "Running"}


def results_json(
    scenario: Scenario, experiment: ScriptedExperiment, snapshot: ScriptedSnapshot
) -> Json:
    """The `ExperimentResults` of one analysis (a snapshot of one phase, no dimension)."""
    at = snapshot.refresh_index
    refreshed = iso(scenario.refresh_time(at))
    suffix = experiment.id.removeprefix("exp_")
    weights = experiment.phase_weights(snapshot.phase)
    return {
        "id": snapshot_id(experiment, snapshot),
        "dateUpdated": refreshed,
        "experimentId": experiment.id,
        "phase": str(snapshot.phase),
        "dateStart": iso(_phase_started(scenario, experiment, snapshot.phase)),
        "dateEnd": refreshed,
        "dimension": {"type": "none"},
        "settings": _analysis_settings(experiment, at),
        "queryIds": [f"qry_{suffix}_{at}_users", f"qry_{suffix}_{at}_metrics"],
        "results": [
            {
                "dimension": "All",
                "totalUsers": sum(snapshot.users),
                "checks": {"srm": srm_p_value(snapshot.users, weights)},
                "metrics": [
                    _metric_json(experiment, snapshot, m) for m in experiment.metrics_at(at)
                ],
            }
        ],
    }


def metric_definitions(scenario: Scenario) -> dict[str, Json]:
    """The `Metric` of every metric the scenario's experiments analyse, by id, in id order
    (GrowthBook lists metrics sorted by id)."""
    uses: dict[str, list[tuple[ScriptedMetric, ScriptedExperiment]]] = {}
    for experiment in sorted(scenario.experiments, key=lambda e: created_at(scenario, e)):
        for metric in experiment.metrics:
            uses.setdefault(metric.id, []).append((metric, experiment))
    return {metric_id: _metric_definition(scenario, uses[metric_id]) for metric_id in sorted(uses)}


def _metric_definition(
    scenario: Scenario, uses: list[tuple[ScriptedMetric, ScriptedExperiment]]
) -> Json:
    """One metric's `Metric`, from the experiments using it (oldest first); the scenario
    guarantees they agree on its name and direction."""
    metric, oldest = uses[0]
    created = iso(created_at(scenario, oldest))
    return {
        "id": metric.id,
        "managedBy": "",
        "dateCreated": created,
        "dateUpdated": created,
        "owner": oldest.owner,
        "datasourceId": oldest.datasource_id,
        "name": metric.name,
        "description": "",
        "type": "binomial",
        "tags": [],
        "projects": sorted({e.project for _, e in uses if e.project}),
        "archived": False,
        "behavior": {
            "goal": "decrease" if metric.inverse else "increase",
            "cappingSettings": {"type": "none", "value": 0},
            "windowSettings": {
                "type": "none",
                "delayValue": 0,
                "delayUnit": "hours",
                "windowValue": 72,
                "windowUnit": "hours",
            },
            "riskThresholdSuccess": 0.0025,
            "riskThresholdDanger": 0.0125,
            "minPercentChange": 0.005,
            "maxPercentChange": 0.5,
            "minSampleSize": 150,
            "targetMDE": 0.1,
        },
        "sql": {
            "identifierTypes": ["user_id"],
            "conversionSQL": (
                "SELECT user_id, timestamp FROM events "
                f"WHERE event = '{metric.id.removeprefix('met_')}'"
            ),
            "userAggregationSQL": "SUM(value)",
            "denominatorMetricId": "",
        },
    }


def snapshot_id(experiment: ScriptedExperiment, snapshot: ScriptedSnapshot) -> str:
    """The id of the snapshot GrowthBook stored for one analysis."""
    return f"snp_{experiment.id.removeprefix('exp_')}_{snapshot.refresh_index}"


def bulk_result_json(
    scenario: Scenario, experiment: ScriptedExperiment, snapshot: ScriptedSnapshot
) -> Json:
    """The bulk-results item of one stored analysis (its overall slice; the fake runs no
    dimension analyses)."""
    at = snapshot.refresh_index
    created = iso(scenario.refresh_time(at))
    stored_id = snapshot_id(experiment, snapshot)
    settings = _analysis_settings(experiment, at)
    for role in ("goals", "secondaryMetrics", "guardrails"):
        settings[role] = [{"metricId": ref["metricId"]} for ref in settings[role]]
    return {
        "id": f"{stored_id}:overall",
        "snapshotId": stored_id,
        "experimentId": experiment.id,
        "phase": str(snapshot.phase),
        "type": "standard",
        "triggeredBy": "schedule",
        "dateCreated": created,
        "dateStart": iso(_phase_started(scenario, experiment, snapshot.phase)),
        "dateEnd": created,
        "dimension": {"type": "none", "precomputed": False},
        "settings": settings,
        "results": [
            {
                "dimensionValue": "",
                "totalUsers": sum(snapshot.users),
                "checks": {
                    "srm": srm_p_value(snapshot.users, experiment.phase_weights(snapshot.phase))
                },
                "metrics": [
                    _bulk_metric_json(experiment, snapshot, m) for m in experiment.metrics_at(at)
                ],
            }
        ],
    }


def _bulk_metric_json(
    experiment: ScriptedExperiment, snapshot: ScriptedSnapshot, metric: ScriptedMetric
) -> Json:
    control = snapshot.arm(metric.id, 0)
    bayesian = experiment.engine == "bayesian"
    variations = []
    for j, variation in enumerate(experiment.variations):
        arm = snapshot.arm(metric.id, j)
        compared = (
            None
            if j == 0
            else analyze_variation(control, arm, engine=experiment.engine, inverse=metric.inverse)
        )
        analysis = {
            "engine": experiment.engine,
            "differenceType": "relative",
            "numerator": arm.conversions,
            "denominator": arm.users,
            "mean": arm.mean,
            "stddev": arm.stddev,
            "effect": compared.percent_change if compared else None,
            "ciLow": compared.ci_low if compared else None,
            "ciHigh": compared.ci_high if compared else None,
            "pValue": compared.p_value if compared and not bayesian else None,
            "chanceToBeatControl": compared.chance_to_beat_control
            if compared and bayesian
            else None,
        }
        variations.append(
            {
                "variationIndex": j,
                "variationKey": variation.key,
                "variationId": variation.id,
                "variationName": variation.name,
                "users": arm.users,
                "analyses": [analysis],
            }
        )
    return {"metricId": metric.id, "metricName": metric.name, "variations": variations}


def iso(moment: datetime) -> str:
    """JavaScript's `Date.toISOString()`: UTC, milliseconds, a trailing Z."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _phase_started(scenario: Scenario, experiment: ScriptedExperiment, phase: int) -> datetime:
    if phase > 0 and experiment.new_phase_at is not None:
        return scenario.refresh_time(experiment.new_phase_at)
    if experiment.starts_at is not None:
        return scenario.refresh_time(experiment.starts_at)
    return created_at(scenario, experiment)


def _phases_json(scenario: Scenario, experiment: ScriptedExperiment, index: int) -> list[Json]:
    """`phases[]`: the first ("Main") and, from `new_phase_at`, the restarted one."""
    current = experiment.phase_at(index)
    is_stopped = experiment.status_at(index) == "stopped"
    phases = []
    for phase in range(current + 1):
        if phase < current and experiment.new_phase_at is not None:
            ended = iso(scenario.refresh_time(experiment.new_phase_at))
        elif is_stopped and experiment.stops_at is not None:
            ended = iso(scenario.refresh_time(experiment.stops_at))
        else:
            ended = ""
        weights = experiment.phase_weights(phase)
        phases.append(
            {
                "name": "Main" if phase == 0 else f"Phase {phase + 1}",
                "dateStarted": iso(_phase_started(scenario, experiment, phase)),
                "dateEnded": ended,
                "reasonForStopping": "",
                "seed": experiment.tracking_key,
                "coverage": 1,
                "trafficSplit": [
                    {"variationId": v.id, "weight": w}
                    for v, w in zip(experiment.variations, weights, strict=True)
                ],
                "targetingCondition": "",
            }
        )
    return phases


def _metric_json(
    experiment: ScriptedExperiment, snapshot: ScriptedSnapshot, metric: ScriptedMetric
) -> Json:
    control = snapshot.arm(metric.id, 0)
    variations = []
    for j, variation in enumerate(experiment.variations):
        arm = snapshot.arm(metric.id, j)
        stats = (
            BASELINE_ANALYSIS
            if j == 0
            else analyze_variation(control, arm, engine=experiment.engine, inverse=metric.inverse)
        )
        analysis = {
            "engine": experiment.engine,
            "numerator": arm.conversions,
            "denominator": arm.users,
            "mean": arm.mean,
            "stddev": arm.stddev,
            "percentChange": stats.percent_change,
            "ciLow": stats.ci_low,
            "ciHigh": stats.ci_high,
            "pValue": stats.p_value,
            "risk": stats.risk,
            "chanceToBeatControl": stats.chance_to_beat_control,
        }
        variations.append(
            {
                "variationId": variation.id,
                "variationName": variation.name,
                "users": arm.users,
                "analyses": [analysis],
            }
        )
    return {"metricId": metric.id, "metricName": metric.name, "variations": variations}


def _analysis_settings(experiment: ScriptedExperiment, index: int) -> Json:
    """`ExperimentAnalysisSettings` with the metrics analysed at refresh `index`."""
    analysed = {m.id for m in experiment.metrics_at(index)}

    def refs(metrics: tuple[ScriptedMetric, ...]) -> list[Json]:
        return [{"metricId": m.id, "overrides": {}} for m in metrics if m.id in analysed]

    return {
        "datasourceId": experiment.datasource_id,
        "assignmentQueryId": "user_id",
        "experimentId": experiment.tracking_key,
        "segmentId": "",
        "queryFilter": "",
        "inProgressConversions": "include",
        "attributionModel": "firstExposure",
        "statsEngine": experiment.engine,
        "goals": refs(experiment.goals),
        "secondaryMetrics": refs(experiment.secondary_metrics),
        "guardrails": refs(experiment.guardrails),
    }
