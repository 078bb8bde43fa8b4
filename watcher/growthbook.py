"""GrowthBook REST API v1 source: list experiments, read results, normalize them.

Payloads are validated into typed models at the edge; anything that does not fit becomes a
PayloadError for that experiment. httpx errors become SourceUnavailable / SourceRejected.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TypeVar

import httpx
from pydantic import BaseModel, ConfigDict

from store import (
    Experiment,
    MetricResult,
    MetricRole,
    PayloadError,
    Snapshot,
    SourceRejected,
    SourceUnavailable,
    Variation,
    VariationResult,
    Verdict,
)

from .upstream import error_message, get_model, retry_after_seconds

logger = logging.getLogger(__name__)

NO_RESULTS_MESSAGE = "No results found"
CHANCE_TO_WIN_THRESHOLD = 0.95
P_VALUE_THRESHOLD = 0.05
PAGE_LIMIT = 100


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _GBVariation(_Model):
    variationId: str
    key: str = ""
    name: str = ""


class _GBTrafficSplit(_Model):
    variationId: str
    weight: float


class _GBPhase(_Model):
    name: str = ""
    trafficSplit: list[_GBTrafficSplit] = []


class _GBMetricRef(_Model):
    metricId: str


class _GBSettings(_Model):
    statsEngine: str = ""
    goals: list[_GBMetricRef] = []
    secondaryMetrics: list[_GBMetricRef] = []
    guardrails: list[_GBMetricRef] = []


class _GBExperiment(_Model):
    id: str
    name: str
    status: str
    archived: bool = False
    project: str = ""
    dateUpdated: datetime
    variations: list[_GBVariation]
    phases: list[_GBPhase] = []
    settings: _GBSettings = _GBSettings()


class _GBExperimentList(_Model):
    experiments: list[_GBExperiment]
    hasMore: bool
    nextOffset: int | None = None


class _GBAnalysis(_Model):
    engine: str
    numerator: float
    denominator: float
    mean: float
    stddev: float
    percentChange: float
    ciLow: float
    ciHigh: float
    pValue: float | None = None
    risk: float | None = None
    chanceToBeatControl: float | None = None


class _GBVariationResult(_Model):
    variationId: str
    variationName: str = ""
    users: float | None = None
    analyses: list[_GBAnalysis]


class _GBMetric(_Model):
    metricId: str
    metricName: str = ""
    variations: list[_GBVariationResult]


class _GBDimensionResult(_Model):
    dimension: str
    totalUsers: float
    checks: dict[str, float]
    metrics: list[_GBMetric]


class _GBResult(_Model):
    id: str
    dateUpdated: datetime
    experimentId: str
    phase: str
    results: list[_GBDimensionResult]


class _GBResultsResponse(_Model):
    experiment: _GBExperiment
    result: _GBResult


_M = TypeVar("_M", bound=BaseModel)


class GrowthBookSource:
    """One GrowthBook organisation reached with one API key."""

    kind = "growthbook"

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str,
        client: httpx.AsyncClient,
        status: str | None = "running",
        project: str | None = None,
        ui_url: str | None = None,
        page_size: int = PAGE_LIMIT,
        request_timeout_seconds: float = 30.0,
    ) -> None:
        self.name = name
        self.request_timeout_seconds = request_timeout_seconds
        self._api = base_url.rstrip("/").removesuffix("/api") + "/api/v1"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._client = client
        self._status = status
        self._project = project
        self._ui_url = ui_url.rstrip("/") if ui_url else None
        self._page_size = page_size

    async def list_experiments(self) -> list[Experiment]:
        """Every experiment matching the source's filters, following pagination."""
        found: list[Experiment] = []
        offset: int | None = 0
        while offset is not None:
            params: dict[str, str | int] = {"limit": self._page_size, "offset": offset}
            if self._status:
                params["status"] = self._status
            if self._project:
                params["projectId"] = self._project
            page = await self._get("/experiments", _GBExperimentList, params=params)
            found.extend(self._experiment(e) for e in page.experiments)
            next_offset = page.nextOffset if page.hasMore else None
            if next_offset is not None and next_offset <= offset:
                raise PayloadError(
                    f"GrowthBook pagination did not advance (offset {offset} → {next_offset})",
                    source=self.name,
                )
            offset = next_offset
        return found

    async def fetch_results(self, experiment: Experiment) -> tuple[Experiment, Snapshot | None]:
        """The experiment as the results endpoint describes it and its latest results.

        The snapshot is None while GrowthBook has no results for the experiment yet.
        """
        try:
            response = await self._get(
                f"/experiments/{experiment.experiment_id}/results",
                _GBResultsResponse,
                experiment_id=experiment.experiment_id,
            )
        except _NoResultsYet:
            return experiment, None
        current = self._experiment(response.experiment)
        return current, self._snapshot(response, current)

    # -- HTTP -----------------------------------------------------------------------------

    async def _get(
        self,
        path: str,
        model: type[_M],
        *,
        params: dict[str, str | int] | None = None,
        experiment_id: str | None = None,
    ) -> _M:
        return await get_model(
            self._client,
            self._api + path,
            model,
            platform="GrowthBook",
            source=self.name,
            path=path,
            where=self._api,
            headers=self._headers,
            check=lambda response: self._raise_for_status(response, path, experiment_id),
            params=params,
            experiment_id=experiment_id,
            timeout_seconds=self.request_timeout_seconds,
        )

    def _raise_for_status(
        self, response: httpx.Response, path: str, experiment_id: str | None
    ) -> None:
        status = response.status_code
        if status < 400:
            return
        message = error_message(response)
        where = f"GrowthBook GET {path} → HTTP {status}: {message}"
        if status == 400 and NO_RESULTS_MESSAGE.lower() in message.lower():
            raise _NoResultsYet
        if status == 429 or status >= 500:
            raise SourceUnavailable(
                where,
                source=self.name,
                experiment_id=experiment_id,
                status_code=status,
                retry_after_seconds=retry_after_seconds(response),
            )
        if status in (401, 403):
            where += f" — check the api_key of source {self.name!r}"
        raise SourceRejected(
            where, source=self.name, experiment_id=experiment_id, status_code=status
        )

    # -- normalization --------------------------------------------------------------------

    def _experiment(self, e: _GBExperiment) -> Experiment:
        phase = e.phases[-1] if e.phases else _GBPhase()
        weights = {s.variationId: s.weight for s in phase.trafficSplit}
        return Experiment(
            source=self.name,
            experiment_id=e.id,
            name=e.name,
            status="archived" if e.archived else e.status,
            project=e.project,
            phase=str(len(e.phases) - 1) if e.phases else "",
            variations=tuple(
                Variation(
                    variation_id=v.variationId, name=v.name, weight=weights.get(v.variationId)
                )
                for v in e.variations
            ),
            upstream_updated_at=e.dateUpdated,
            url=f"{self._ui_url}/experiment/{e.id}" if self._ui_url else None,
        )

    def _snapshot(self, response: _GBResultsResponse, experiment: Experiment) -> Snapshot:
        result = response.result
        overall = next((r for r in result.results if r.dimension in ("All", "")), None)
        if overall is None and result.results:
            overall = result.results[0]
        settings = response.experiment.settings
        roles = {m.metricId: MetricRole.GOAL for m in settings.goals}
        roles.update({m.metricId: MetricRole.SECONDARY for m in settings.secondaryMetrics})
        roles.update({m.metricId: MetricRole.GUARDRAIL for m in settings.guardrails})
        baseline = experiment.variations[0].variation_id if experiment.variations else None
        metrics: list[MetricResult] = []
        engine = settings.statsEngine
        for metric in overall.metrics if overall else []:
            variations = []
            for v in metric.variations:
                if not v.analyses:
                    raise PayloadError(
                        f"metric {metric.metricId} variation {v.variationId} has no analysis",
                        source=self.name,
                        experiment_id=experiment.experiment_id,
                    )
                a = v.analyses[0]
                engine = a.engine or engine
                is_baseline = v.variationId == baseline
                # GrowthBook sends 0 for what the engine does not compute: keep only
                # the engine's own probability.
                bayesian = a.engine == "bayesian"
                variations.append(
                    VariationResult(
                        variation_id=v.variationId,
                        variation_name=v.variationName,
                        users=v.users if v.users is not None else a.denominator,
                        numerator=a.numerator,
                        denominator=a.denominator,
                        mean=a.mean,
                        stddev=a.stddev,
                        relative_change=None if is_baseline else a.percentChange,
                        ci_low=None if is_baseline else a.ciLow,
                        ci_high=None if is_baseline else a.ciHigh,
                        p_value=None if is_baseline or bayesian else a.pValue,
                        chance_to_win=(
                            a.chanceToBeatControl if bayesian and not is_baseline else None
                        ),
                        platform_verdict=Verdict.BASELINE if is_baseline else _verdict(a),
                    )
                )
            metrics.append(
                MetricResult(
                    metric_id=metric.metricId,
                    metric_name=metric.metricName or metric.metricId,
                    role=roles.get(metric.metricId, MetricRole.SECONDARY),
                    variations=tuple(variations),
                )
            )
        return Snapshot(
            source=self.name,
            experiment_id=experiment.experiment_id,
            upstream_snapshot_id=result.id,
            upstream_updated_at=result.dateUpdated,
            phase=result.phase,
            engine=engine,
            total_users=overall.totalUsers if overall else 0.0,
            srm_p_value=overall.checks.get("srm") if overall else None,
            metrics=tuple(metrics),
        )


class _NoResultsYet(Exception):
    """GrowthBook's HTTP 400 'No results found for that experiment': a state, not an error."""


def _verdict(a: _GBAnalysis) -> Verdict:
    """GrowthBook's own rule, as its UI applies it (without metric inversion)."""
    if a.engine == "bayesian" and a.chanceToBeatControl is not None:
        if a.chanceToBeatControl > CHANCE_TO_WIN_THRESHOLD:
            return Verdict.WON
        if a.chanceToBeatControl < 1 - CHANCE_TO_WIN_THRESHOLD:
            return Verdict.LOST
        return Verdict.INCONCLUSIVE
    if a.pValue is not None and a.pValue < P_VALUE_THRESHOLD:
        return Verdict.WON if a.percentChange > 0 else Verdict.LOST
    return Verdict.INCONCLUSIVE
