"""GrowthBook REST API v1 payloads as the watcher reads them, and their normalization.

Wire models for experiments, their results (GET /experiments/{id}/results and the portfolio's
GET /experiments/results), paginated lists and metric definitions: unknown fields are ignored,
NaN and infinities refused. The pure conversions turn them into the domain's `Experiment` and
`Snapshot`, with GrowthBook's own verdict rule (`verdict`). The bulk-results (history) payloads
live in `watcher.growthbook_history`; HTTP, paging and the metric-definition cache in
`watcher.growthbook`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from store import (
    Decision,
    DimensionSlice,
    Experiment,
    MetricResult,
    MetricRole,
    PayloadError,
    Snapshot,
    Variation,
    VariationResult,
    Verdict,
)

from .upstream import UpstreamId, check_ids, distinct

__all__ = [
    "CHANCE_TO_WIN_THRESHOLD",
    "P_VALUE_THRESHOLD",
    "GBDimensionResult",
    "GBExperiment",
    "GBExperimentList",
    "GBMetricList",
    "GBModel",
    "GBOneExperiment",
    "GBPage",
    "GBPortfolioPage",
    "GBResult",
    "GBResultsResponse",
    "GBSettings",
    "metric_ids",
    "to_experiment",
    "to_snapshot",
    "verdict",
]

PLATFORM = "GrowthBook"
CHANCE_TO_WIN_THRESHOLD = 0.95
P_VALUE_THRESHOLD = 0.05


class GBModel(BaseModel):
    # NaN and infinities (NaN / Infinity tokens, 1e400, "NaN" strings) are payload errors:
    # the store cannot keep them and no platform means them.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class GBVariation(GBModel):
    variationId: str
    key: str = ""
    name: str = ""


class GBTrafficSplit(GBModel):
    variationId: str
    weight: float


class GBPhase(GBModel):
    name: str = ""
    trafficSplit: list[GBTrafficSplit] = []
    dateStarted: Any = None
    dateEnded: Any = None
    """ISO date-times ("" while running), read only by a backfill: never a reason to refuse a
    payload the watcher can use."""


class GBMetricRef(GBModel):
    metricId: str


class GBSettings(GBModel):
    statsEngine: str = ""
    goals: list[GBMetricRef] = []
    secondaryMetrics: list[GBMetricRef] = []
    guardrails: list[GBMetricRef] = []


class GBResultSummary(GBModel):
    status: str = ""
    winner: str = ""
    releasedVariationId: str = ""


class GBEnhancedStatus(GBModel):
    status: str
    detailedStatus: str | None = None


class GBExperiment(GBModel):
    id: str
    name: str
    status: str
    archived: bool = False
    project: str = ""
    tags: list[str] = []
    dateUpdated: datetime
    variations: list[GBVariation]
    phases: list[GBPhase] = []
    settings: GBSettings = GBSettings()
    resultSummary: GBResultSummary | None = None
    enhancedStatus: GBEnhancedStatus | None = None

    @field_validator("variations")
    @classmethod
    def _distinct_variations(cls, variations: list[GBVariation]) -> list[GBVariation]:
        return distinct(variations, lambda v: v.variationId, "variation")


class GBPage(GBModel):
    hasMore: bool
    nextOffset: int | None = None
    total: int | None = None

    def item_ids(self) -> list[str]:
        """The ids of the page's items (to notice a list that loops)."""
        return []


class GBExperimentList(GBPage):
    experiments: list[GBExperiment]

    def item_ids(self) -> list[str]:
        return [e.id for e in self.experiments]


class GBOneExperiment(GBModel):
    experiment: GBExperiment


class GBAnalysis(GBModel):
    """One analysis. The per-experiment endpoint sends 0 for what is missing, the bulk one
    null: both are read as numbers or None."""

    engine: str
    numerator: float | None = None
    denominator: float | None = None
    mean: float | None = None
    stddev: float | None = None
    percentChange: float | None = None
    ciLow: float | None = None
    ciHigh: float | None = None
    pValue: float | None = None
    risk: float | None = None
    chanceToBeatControl: float | None = None


class GBVariationResult(GBModel):
    variationId: UpstreamId
    variationName: str = ""
    users: float | None = None
    analyses: list[GBAnalysis]


class GBMetric(GBModel):
    metricId: UpstreamId
    metricName: str = ""
    variations: list[GBVariationResult]

    @field_validator("variations")
    @classmethod
    def _distinct_variations(cls, variations: list[GBVariationResult]) -> list[GBVariationResult]:
        return distinct(variations, lambda v: v.variationId, "variation")


class GBDimensionResult(GBModel):
    dimension: str
    totalUsers: float
    checks: dict[str, float | None]
    metrics: list[GBMetric]

    @field_validator("metrics")
    @classmethod
    def _distinct_metrics(cls, metrics: list[GBMetric]) -> list[GBMetric]:
        return distinct(metrics, lambda m: m.metricId, "metric")


class GBResult(GBModel):
    id: str
    dateUpdated: datetime
    experimentId: UpstreamId
    phase: str
    settings: GBSettings | None = None
    results: list[GBDimensionResult]


class GBResultsResponse(GBModel):
    experiment: GBExperiment
    result: GBResult


class GBPortfolioPage(GBPage):
    """GET /experiments/results: items are validated one by one, so that one experiment's
    bad payload does not hide the others'."""

    experimentResults: list[dict[str, Any]]

    def item_ids(self) -> list[str]:
        return [
            str(r.get("experimentId", "")) for r in self.experimentResults if isinstance(r, dict)
        ]


class GBMetricDefinition(GBModel):
    id: str
    inverse: bool | None = None
    behavior: dict[str, Any] | None = None

    @property
    def higher_is_better(self) -> bool:
        if self.inverse is not None:
            return not self.inverse
        return (self.behavior or {}).get("goal") != "decrease"


class GBMetricList(GBPage):
    metrics: list[GBMetricDefinition] = []
    factMetrics: list[GBMetricDefinition] = []

    def item_ids(self) -> list[str]:
        return [m.id for m in self.metrics + self.factMetrics]


def to_experiment(e: GBExperiment, *, source: str, ui_url: str | None) -> Experiment:
    """The domain experiment as source `source` (whose UI, if known, is at `ui_url`) sees
    it; a PayloadError for it when an id it stores is too long."""
    phase = e.phases[-1] if e.phases else GBPhase()
    weights = {s.variationId: s.weight for s in phase.trafficSplit}
    summary = e.resultSummary
    decision = (
        Decision(
            outcome=summary.status,
            variation_id=summary.releasedVariationId or summary.winner or None,
        )
        if summary is not None and summary.status
        else None
    )
    check_ids(
        {"the decision's variation id": decision.variation_id if decision else None},
        platform=PLATFORM,
        source=source,
        experiment_id=e.id,
    )
    return Experiment(
        source=source,
        experiment_id=e.id,
        name=e.name,
        status="archived" if e.archived else e.status,
        project=e.project,
        phase=str(len(e.phases) - 1) if e.phases else "",
        variations=tuple(
            Variation(variation_id=v.variationId, name=v.name, weight=weights.get(v.variationId))
            for v in e.variations
        ),
        upstream_updated_at=e.dateUpdated,
        upstream_version=e.dateUpdated.isoformat(),
        url=f"{ui_url}/experiment/{e.id}" if ui_url else None,
        tags=tuple(e.tags),
        detailed_status=e.enhancedStatus.detailedStatus if e.enhancedStatus else None,
        decision=decision,
    )


def metric_ids(result: GBResult) -> set[str]:
    """The ids of the metrics a result reports, in any of its rows."""
    return {m.metricId for row in result.results for m in row.metrics}


def to_snapshot(
    result: GBResult,
    settings: GBSettings,
    experiment: Experiment,
    *,
    source: str,
    directions: Mapping[str, bool],
) -> Snapshot:
    """The domain snapshot of `result` for `experiment` (whose first variation is the
    baseline), each metric's direction from `directions` (higher-is-better when absent); a
    PayloadError for the experiment when a variation has no analysis."""
    overall_rows = [r for r in result.results if r.dimension in ("All", "")]
    if not overall_rows and len(result.results) == 1:
        overall_rows = result.results
    overall = overall_rows[0] if overall_rows else None
    roles = {m.metricId: MetricRole.GOAL for m in settings.goals}
    roles.update({m.metricId: MetricRole.SECONDARY for m in settings.secondaryMetrics})
    roles.update({m.metricId: MetricRole.GUARDRAIL for m in settings.guardrails})
    baseline = experiment.variations[0].variation_id if experiment.variations else None
    engines = {
        a.engine
        for row in result.results
        for m in row.metrics
        for v in m.variations
        for a in v.analyses[:1]
    }
    engine = next(iter(engines)) if len(engines) == 1 else settings.statsEngine

    def metrics_of(row: GBDimensionResult) -> tuple[MetricResult, ...]:
        return tuple(
            _metric_result(m, experiment, baseline, roles, directions, source=source)
            for m in row.metrics
        )

    return Snapshot(
        source=source,
        experiment_id=experiment.experiment_id,
        upstream_snapshot_id=result.id,
        upstream_updated_at=result.dateUpdated,
        phase=result.phase,
        engine=engine,
        total_users=overall.totalUsers if overall else 0.0,
        srm_p_value=overall.checks.get("srm") if overall else None,
        metrics=metrics_of(overall) if overall else (),
        slices=tuple(
            DimensionSlice(
                dimension=row.dimension,
                total_users=row.totalUsers,
                srm_p_value=row.checks.get("srm"),
                metrics=metrics_of(row),
            )
            for row in result.results
            if row is not overall
        ),
    )


def _metric_result(
    metric: GBMetric,
    experiment: Experiment,
    baseline: str | None,
    roles: Mapping[str, MetricRole],
    directions: Mapping[str, bool],
    *,
    source: str,
) -> MetricResult:
    higher_is_better = directions.get(metric.metricId, True)
    baseline = baseline or (metric.variations[0].variationId if metric.variations else None)
    variations = []
    for v in metric.variations:
        if not v.analyses:
            raise PayloadError(
                f"metric {metric.metricId} variation {v.variationId} has no analysis",
                source=source,
                experiment_id=experiment.experiment_id,
            )
        a = v.analyses[0]
        is_baseline = v.variationId == baseline
        # GrowthBook sends 0 (or null) for what the engine does not compute: keep only
        # the engine's own probability.
        bayesian = a.engine == "bayesian"
        variations.append(
            VariationResult(
                variation_id=v.variationId,
                variation_name=v.variationName,
                users=_first_number(v.users, a.denominator),
                numerator=a.numerator,
                denominator=a.denominator,
                mean=a.mean,
                stddev=a.stddev,
                relative_change=None if is_baseline else a.percentChange,
                ci_low=None if is_baseline else a.ciLow,
                ci_high=None if is_baseline else a.ciHigh,
                p_value=None if is_baseline or bayesian else a.pValue,
                chance_to_win=(a.chanceToBeatControl if bayesian and not is_baseline else None),
                risk=a.risk if bayesian and not is_baseline else None,
                platform_verdict=(
                    Verdict.BASELINE if is_baseline else verdict(a, higher_is_better)
                ),
            )
        )
    return MetricResult(
        metric_id=metric.metricId,
        metric_name=metric.metricName or metric.metricId,
        role=roles.get(metric.metricId, MetricRole.SECONDARY),
        higher_is_better=higher_is_better,
        variations=tuple(variations),
    )


def _first_number(*values: float | None) -> float:
    return next((v for v in values if v is not None), 0.0)


def verdict(a: GBAnalysis, higher_is_better: bool) -> Verdict:
    """GrowthBook's own rule, as its UI applies it: the engine's threshold, and the metric's
    direction deciding whether a significant change is a win or a loss.

    The Bayesian engine has applied the direction already: for a lower-is-better metric its
    `chanceToBeatControl` is the chance of a fall (gbstats returns 1 - P(rise) for inverse
    metrics), so it is the chance of being better either way."""
    if a.engine == "bayesian":
        if a.chanceToBeatControl is None:
            return Verdict.INCONCLUSIVE
        if a.chanceToBeatControl > CHANCE_TO_WIN_THRESHOLD:
            return Verdict.WON
        if a.chanceToBeatControl < 1 - CHANCE_TO_WIN_THRESHOLD:
            return Verdict.LOST
        return Verdict.INCONCLUSIVE
    if a.pValue is not None and a.pValue < P_VALUE_THRESHOLD and a.percentChange:
        rose = a.percentChange > 0
    else:
        return Verdict.INCONCLUSIVE
    return Verdict.WON if rose == higher_is_better else Verdict.LOST
