"""GrowthBook REST API v1 source: list experiments, read results, normalize them.

Payloads are validated into typed models at the edge; anything that does not fit becomes a
PayloadError for that experiment. httpx errors become SourceUnavailable / SourceRejected.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
import httpx
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from store import (
    Decision,
    DimensionSlice,
    Experiment,
    HistoryUnavailable,
    MetricResult,
    MetricRole,
    PayloadError,
    Snapshot,
    SourceError,
    SourceRejected,
    Variation,
    VariationResult,
    Verdict,
)

from .backfill import ExperimentHistory
from .budget import RateBudget
from .upstream import (
    NO_RETRY,
    HttpSource,
    PagesRepeat,
    RetryPolicy,
    UpstreamId,
    check_ids,
    distinct,
    error_message,
    read_settled,
    status_error,
    summarize_validation,
)

logger = logging.getLogger(__name__)

NO_RESULTS_MESSAGE = "No results found"
UNKNOWN_ENDPOINT_MESSAGE = "Unknown API endpoint"
UNKNOWN_EXPERIMENT_MESSAGE = "Could not find experiment"
CHANCE_TO_WIN_THRESHOLD = 0.95
P_VALUE_THRESHOLD = 0.05
PAGE_LIMIT = 100
PAGES_IN_FLIGHT = 4


class _Model(BaseModel):
    # NaN and infinities (NaN / Infinity tokens, 1e400, "NaN" strings) are payload errors:
    # the store cannot keep them and no platform means them.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


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
    dateStarted: Any = None
    dateEnded: Any = None
    """ISO date-times ("" while running), read only by a backfill: never a reason to refuse a
    payload the watcher can use."""


class _GBMetricRef(_Model):
    metricId: str


class _GBSettings(_Model):
    statsEngine: str = ""
    goals: list[_GBMetricRef] = []
    secondaryMetrics: list[_GBMetricRef] = []
    guardrails: list[_GBMetricRef] = []


class _GBResultSummary(_Model):
    status: str = ""
    winner: str = ""
    releasedVariationId: str = ""


class _GBEnhancedStatus(_Model):
    status: str
    detailedStatus: str | None = None


class _GBExperiment(_Model):
    id: str
    name: str
    status: str
    archived: bool = False
    project: str = ""
    tags: list[str] = []
    dateUpdated: datetime
    variations: list[_GBVariation]
    phases: list[_GBPhase] = []
    settings: _GBSettings = _GBSettings()
    resultSummary: _GBResultSummary | None = None
    enhancedStatus: _GBEnhancedStatus | None = None

    @field_validator("variations")
    @classmethod
    def _distinct_variations(cls, variations: list[_GBVariation]) -> list[_GBVariation]:
        return distinct(variations, lambda v: v.variationId, "variation")


class _GBPage(_Model):
    hasMore: bool
    nextOffset: int | None = None
    total: int | None = None

    def item_ids(self) -> list[str]:
        """The ids of the page's items (to notice a list that loops)."""
        return []


class _GBExperimentList(_GBPage):
    experiments: list[_GBExperiment]

    def item_ids(self) -> list[str]:
        return [e.id for e in self.experiments]


class _GBOneExperiment(_Model):
    experiment: _GBExperiment


class _GBAnalysis(_Model):
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


class _GBVariationResult(_Model):
    variationId: UpstreamId
    variationName: str = ""
    users: float | None = None
    analyses: list[_GBAnalysis]


class _GBMetric(_Model):
    metricId: UpstreamId
    metricName: str = ""
    variations: list[_GBVariationResult]

    @field_validator("variations")
    @classmethod
    def _distinct_variations(cls, variations: list[_GBVariationResult]) -> list[_GBVariationResult]:
        return distinct(variations, lambda v: v.variationId, "variation")


class _GBDimensionResult(_Model):
    dimension: str
    totalUsers: float
    checks: dict[str, float | None]
    metrics: list[_GBMetric]

    @field_validator("metrics")
    @classmethod
    def _distinct_metrics(cls, metrics: list[_GBMetric]) -> list[_GBMetric]:
        return distinct(metrics, lambda m: m.metricId, "metric")


class _GBResult(_Model):
    id: str
    dateUpdated: datetime
    experimentId: UpstreamId
    phase: str
    settings: _GBSettings | None = None
    results: list[_GBDimensionResult]


class _GBResultsResponse(_Model):
    experiment: _GBExperiment
    result: _GBResult


class _GBPortfolioPage(_GBPage):
    """GET /experiments/results: items are validated one by one, so that one experiment's
    bad payload does not hide the others'."""

    experimentResults: list[dict[str, Any]]

    def item_ids(self) -> list[str]:
        return [
            str(r.get("experimentId", "")) for r in self.experimentResults if isinstance(r, dict)
        ]


class _GBBulkAnalysis(_Model):
    """One analysis of a bulk-results variation: nulls for what is missing; `effect` in the
    units of `differenceType` (a fraction for "relative")."""

    engine: str
    differenceType: str = "relative"
    numerator: float | None = None
    denominator: float | None = None
    mean: float | None = None
    stddev: float | None = None
    effect: float | None = None
    ciLow: float | None = None
    ciHigh: float | None = None
    pValue: float | None = None
    chanceToBeatControl: float | None = None


class _GBBulkVariation(_Model):
    variationIndex: int | None = None
    """The authoritative join key (the position in the snapshot's variations)."""
    variationKey: str = ""
    variationId: str | None = None
    """Best-effort display metadata: may be absent."""
    variationName: str | None = None
    users: float | None = None
    analyses: list[_GBBulkAnalysis]


class _GBBulkMetric(_Model):
    metricId: str
    metricName: str | None = None
    variations: list[_GBBulkVariation]


class _GBBulkSlice(_Model):
    dimensionValue: str = ""
    totalUsers: float | None = None
    checks: dict[str, float | None] = {}
    metrics: list[_GBBulkMetric]


class _GBBulkDimension(_Model):
    type: str = "none"


class _GBBulkItem(_Model):
    """One item of GET /experiments/{id}/bulk-results: one dimension of one snapshot."""

    snapshotId: str
    experimentId: str
    phase: str
    dateCreated: datetime
    dimension: _GBBulkDimension = _GBBulkDimension()
    settings: _GBSettings | None = None
    results: list[_GBBulkSlice]


class _GBBulkPage(_GBPage):
    """A page of bulk results: pagination counts snapshots, not items."""

    results: list[_GBBulkItem]


class _GBMetricDefinition(_Model):
    id: str
    inverse: bool | None = None
    behavior: dict[str, Any] | None = None

    @property
    def higher_is_better(self) -> bool:
        if self.inverse is not None:
            return not self.inverse
        return (self.behavior or {}).get("goal") != "decrease"


class _GBMetricList(_GBPage):
    metrics: list[_GBMetricDefinition] = []
    factMetrics: list[_GBMetricDefinition] = []

    def item_ids(self) -> list[str]:
        return [m.id for m in self.metrics + self.factMetrics]


_P = TypeVar("_P", bound=_GBPage)
_T = TypeVar("_T")


class GrowthBookSource(HttpSource):
    """One GrowthBook organisation reached with one API key."""

    kind = "growthbook"
    platform = "GrowthBook"

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
        pages_in_flight: int = PAGES_IN_FLIGHT,
        request_timeout_seconds: float = 30.0,
        budget: RateBudget | None = None,
        retry: RetryPolicy = NO_RETRY,
    ) -> None:
        api = base_url.rstrip("/").removesuffix("/api") + "/api/v1"
        super().__init__(
            name=name,
            client=client,
            api=api,
            where=api,
            headers={"Authorization": f"Bearer {api_key}"},
            request_timeout_seconds=request_timeout_seconds,
            budget=budget,
            retry=retry,
        )
        self._status = status
        self._project = project
        self._ui_url = ui_url.rstrip("/") if ui_url else None
        self._page_size = page_size
        self._pages_in_flight = max(1, pages_in_flight)
        self._directions: dict[str, bool] = {}
        self._directions_tried: set[str] = set()

    # -- reading ----------------------------------------------------------------------------

    async def _list_once(self) -> tuple[dict[str, Experiment], bool]:
        """One reading of the list, and whether it shrank meanwhile (a later page's `total`
        below the first's)."""
        found: dict[str, Experiment] = {}

        async def read(page: _GBExperimentList) -> list[Experiment]:
            listed = (self._listed(e, self._experiment) for e in page.experiments)
            return [e for e in listed if e is not None]

        async def keep(experiments: list[Experiment]) -> None:
            for experiment in experiments:
                found.setdefault(experiment.experiment_id, experiment)

        shrank = await self._read_pages("/experiments", _GBExperimentList, read, keep)
        return found, shrank

    async def get_experiment(self, experiment_id: str) -> Experiment:
        """One experiment, with GrowthBook's `enhancedStatus` as its detailed status."""
        path = f"/experiments/{quote(experiment_id, safe='')}"
        response = await self._get(path, _GBOneExperiment, experiment_id=experiment_id)
        self._check_answer_is_for(experiment_id, path, response.experiment.id)
        return self._experiment(response.experiment)

    async def history(self, experiment_id: str) -> ExperimentHistory:
        """The history of the experiment's current phase, from the bulk-results endpoint:
        every standard snapshot GrowthBook stored, one day per request (paginated).
        GrowthBook serves it only when the self-hosted server enables it; otherwise the
        first day read raises HistoryUnavailable."""
        path = f"/experiments/{quote(experiment_id, safe='')}"
        response = await self._get(path, _GBOneExperiment, experiment_id=experiment_id)
        self._check_answer_is_for(experiment_id, path, response.experiment.id)
        payload = response.experiment
        experiment = self._experiment(payload)
        phase = len(payload.phases) - 1
        current = payload.phases[-1] if payload.phases else None

        async def read_day(day: date) -> list[Snapshot]:
            return await self._snapshots_of_day(experiment, max(phase, 0), day)

        return ExperimentHistory(
            experiment=experiment,
            started_on=(
                _day_of(current.dateStarted)
                if current is not None and payload.status != "draft"
                else None
            ),
            ended_on=_day_of(current.dateEnded) if current is not None else None,
            read_day=read_day,
        )

    async def _snapshots_of_day(
        self, experiment: Experiment, phase: int, day: date
    ) -> list[Snapshot]:
        """The standard snapshots of `phase` GrowthBook generated on `day`, oldest first."""
        experiment_id = experiment.experiment_id
        path = f"/experiments/{quote(experiment_id, safe='')}/bulk-results"
        start = datetime.combine(day, time(0), UTC)
        window: dict[str, str | int] = {
            "dateStart": _iso(start),
            "dateEnd": _iso(start + timedelta(days=1) - timedelta(milliseconds=1)),
            "phase": phase,
            "snapshotType": "standard",
            "limit": self._page_size,
        }
        found: dict[str, Snapshot] = {}
        offset: int | None = 0
        while offset is not None:
            page = await self._get(
                path, _GBBulkPage, params={**window, "offset": offset}, experiment_id=experiment_id
            )
            self._check_answer_is_for(experiment_id, path, *(i.experimentId for i in page.results))
            for item in page.results:
                if item.dimension.type == "none" and item.snapshotId not in found:
                    found[item.snapshotId] = await self._bulk_snapshot(item, experiment, path)
            offset = self._next_offset(path, page, offset)
        return sorted(found.values(), key=lambda s: s.upstream_updated_at or start)

    async def _bulk_snapshot(
        self, item: _GBBulkItem, experiment: Experiment, path: str
    ) -> Snapshot:
        """A bulk-results item read as the results endpoint's snapshot: the relative analysis
        of each variation, variations joined by their index to the experiment's."""
        ids = [v.variation_id for v in experiment.variations]

        def variation(v: _GBBulkVariation) -> dict[str, Any]:
            index = v.variationIndex
            known = index is not None and 0 <= index < len(ids)
            relative = next((a for a in v.analyses if a.differenceType == "relative"), None)
            analyses = [relative or v.analyses[0]] if v.analyses else []
            return {
                "variationId": ids[index]
                if known and index is not None
                else v.variationId or v.variationKey,
                "variationName": v.variationName or "",
                "users": v.users,
                "analyses": [
                    {
                        **a.model_dump(exclude={"differenceType", "effect"}),
                        # Another difference type's effect is in other units: no relative change.
                        **(
                            {"percentChange": a.effect}
                            if a is relative
                            else {"ciLow": None, "ciHigh": None}
                        ),
                    }
                    for a in analyses
                ],
            }

        raw = {
            "id": item.snapshotId,
            "dateUpdated": item.dateCreated,
            "experimentId": item.experimentId,
            "phase": item.phase,
            "settings": item.settings,
            "results": [
                {
                    "dimension": r.dimensionValue or "All",
                    "totalUsers": r.totalUsers or 0.0,
                    "checks": r.checks,
                    "metrics": [
                        {
                            "metricId": m.metricId,
                            "metricName": m.metricName or "",
                            "variations": [variation(v) for v in m.variations],
                        }
                        for m in r.metrics
                    ],
                }
                for r in item.results
            ],
        }
        try:
            result = _GBResult.model_validate(raw)
        except ValidationError as exc:
            raise PayloadError(
                f"GrowthBook GET {path} returned an unexpected payload: "
                f"{summarize_validation(exc)}",
                source=self.name,
                experiment_id=experiment.experiment_id,
            ) from exc
        return await self._snapshot(result, result.settings or _GBSettings(), experiment)

    async def fetch_results(
        self, experiment: Experiment, *, dimension: str | None = None
    ) -> tuple[Experiment, Snapshot | None]:
        """The experiment as the results endpoint describes it and its latest results.

        The snapshot is None while GrowthBook has no results for the experiment yet. With
        `dimension`, the rows of that dimension's values are kept in `Snapshot.slices`.
        """
        params: dict[str, str | int] | None = {"dimension": dimension} if dimension else None
        path = f"/experiments/{quote(experiment.experiment_id, safe='')}/results"
        try:
            response = await self._get(
                path, _GBResultsResponse, params=params, experiment_id=experiment.experiment_id
            )
        except _NoResultsYet:
            return experiment, None
        self._check_answer_is_for(
            experiment.experiment_id, path, response.experiment.id, response.result.experimentId
        )
        current = self._experiment(response.experiment)
        settings = response.result.settings or response.experiment.settings
        snapshot = await self._snapshot(response.result, settings, current)
        return current, snapshot

    async def read_portfolio(
        self,
        experiments: Mapping[str, Experiment],
        pages: MemoryObjectSendStream[dict[str, Snapshot | PayloadError]],
    ) -> None:
        """Send the latest results of every experiment matching the source's filters to
        `pages`, in order, then close it: a page of a hundred experiments per request
        (GET /experiments/results), at most `pages_in_flight` requested ahead of the pages
        taken (so memory holds a few pages, whatever the size of the portfolio).

        Experiments without results are absent. An experiment whose results do not have the
        documented shape maps to its PayloadError, and the others are still read.
        `experiments` (by id, as listed) supplies the variation order; an experiment missing
        from it is read with its first reported variation as the baseline. When the list
        shrank or repeated itself while it was read, it is read once more (`read_settled`):
        an experiment may then come twice, and its first reading counts.
        """

        async def read(page: _GBPortfolioPage) -> dict[str, Snapshot | PayloadError]:
            return await self._portfolio_page(page, experiments)

        async def read_once() -> tuple[None, bool]:
            path = "/experiments/results"
            return None, await self._read_pages(path, _GBPortfolioPage, read, pages.send)

        async with pages:
            await read_settled(read_once, source=self.name, what="portfolio")

    async def _portfolio_page(
        self, page: _GBPortfolioPage, experiments: Mapping[str, Experiment]
    ) -> dict[str, Snapshot | PayloadError]:
        found: dict[str, Snapshot | PayloadError] = {}
        for raw in page.experimentResults:
            experiment_id = str(raw.get("experimentId", "")) if isinstance(raw, dict) else ""
            try:
                result = _GBResult.model_validate(raw)
            except ValidationError as exc:
                error = PayloadError(
                    "GrowthBook GET /experiments/results returned an unexpected payload "
                    f"for this experiment: {summarize_validation(exc)}",
                    source=self.name,
                    experiment_id=experiment_id or None,
                )
                if experiment_id:
                    found[experiment_id] = error
                    continue
                raise error from exc
            experiment = experiments.get(result.experimentId) or Experiment(
                source=self.name,
                experiment_id=result.experimentId,
                name=result.experimentId,
                status="",
            )
            try:
                found[result.experimentId] = await self._snapshot(
                    result, result.settings or _GBSettings(), experiment
                )
            except PayloadError as error:
                found[result.experimentId] = error
        return found

    # -- HTTP -----------------------------------------------------------------------------

    async def _pages(
        self,
        path: str,
        model: type[_P],
        *,
        offset: int | None = 0,
        paging: _Paging | None = None,
    ) -> AsyncIterator[_P]:
        """Every page of a paginated list endpoint from `offset`, with the source's filters,
        one after another, each checked by `paging` (one reading of the list)."""
        paging = paging or _Paging(self.name, path)
        while offset is not None:
            page = await self._get(path, model, params=self._page_params(path, offset))
            paging.check(page, offset)
            yield page
            offset = self._next_offset(path, page, offset)

    async def _read_pages(
        self,
        path: str,
        model: type[_P],
        read: Callable[[_P], Awaitable[_T]],
        deliver: Callable[[_T], Awaitable[None]],
    ) -> bool:
        """Every page of a paginated list endpoint, each `read` as it arrives and handed to
        `deliver` in order; returns whether the list shrank while it was read.

        The first page says how many items there are (`total`) and how far a page reaches
        (`nextOffset`); the pages after it are then requested `pages_in_flight` at a time,
        never more than that many ahead of `deliver`. Without a `total`, or past it (the list
        grew meanwhile), page after page. The first failure propagates, once the other
        requests are cancelled.

        A page holding only items of earlier pages ends the reading with `PagesRepeat`: the
        list loops (a server ignoring the offset, or promising pages for ever), or it shifted
        by a whole page. A page counting fewer items than the first (its `total`) means items
        were removed while the list was read: those after a removed one moved up a place, so
        one may have been skipped. Either way the caller reads it again (`read_settled`).
        """
        paging = _Paging(self.name, path)
        first = await self._get(path, model, params=self._page_params(path, 0))
        paging.check(first, 0)
        await deliver(await read(first))
        offset = self._next_offset(path, first, 0)
        if offset is not None and first.total is not None:
            offset = await self._read_ahead(
                path, model, read, deliver, range(offset, first.total, offset), paging
            )
        async for page in self._pages(path, model, offset=offset, paging=paging):
            await deliver(await read(page))
        return paging.shrank

    async def _read_ahead(
        self,
        path: str,
        model: type[_P],
        read: Callable[[_P], Awaitable[_T]],
        deliver: Callable[[_T], Awaitable[None]],
        offsets: range,
        paging: _Paging,
    ) -> int | None:
        """The pages at `offsets`, requested concurrently and delivered in order; returns
        where the page after the last one starts (None: there is none)."""
        if not offsets:
            return offsets.start
        read_pages: dict[int, _T] = {}
        arrived = [anyio.Event() for _ in offsets]
        window = anyio.Semaphore(self._pages_in_flight)
        failures: list[SourceError] = []
        after_last: int | None = None

        async def fetch(index: int, scope: anyio.CancelScope) -> None:
            nonlocal after_last
            try:
                page = await self._get(path, model, params=self._page_params(path, offsets[index]))
                paging.check(page, offsets[index])
                read_pages[index] = await read(page)
                if index == len(offsets) - 1:
                    after_last = self._next_offset(path, page, offsets[index])
            except SourceError as exc:
                failures.append(exc)  # raised below, once every request is stopped
                scope.cancel()
            arrived[index].set()

        async def start_requests(tg: TaskGroup) -> None:
            for index in range(len(offsets)):
                await window.acquire()  # released as each page is delivered
                tg.start_soon(fetch, index, tg.cancel_scope)

        async with anyio.create_task_group() as tg:
            tg.start_soon(start_requests, tg)
            for index in range(len(offsets)):
                await arrived[index].wait()
                if index not in read_pages:
                    break  # its request failed, and every other one is being cancelled
                await deliver(read_pages.pop(index))
                window.release()
        if failures:
            raise failures[0]
        return after_last

    def _page_params(self, path: str, offset: int) -> dict[str, str | int]:
        params: dict[str, str | int] = {"limit": self._page_size, "offset": offset}
        if self._status and path != "/metrics" and path != "/fact-metrics":
            params["status"] = self._status
        if self._project:
            params["projectId"] = self._project
        return params

    def _next_offset(self, path: str, page: _GBPage, offset: int) -> int | None:
        """Where the page after `page` (read at `offset`) starts; None after the last."""
        next_offset = page.nextOffset if page.hasMore else None
        if next_offset is not None and next_offset <= offset:
            raise PayloadError(
                f"GrowthBook pagination of {path} did not advance "
                f"(offset {offset} → {next_offset})",
                source=self.name,
            )
        return next_offset

    def _raise_for_status(
        self, response: httpx.Response, path: str, experiment_id: str | None
    ) -> None:
        if response.status_code < 400:
            return
        message = error_message(response)
        if response.status_code == 400 and NO_RESULTS_MESSAGE.lower() in message.lower():
            raise _NoResultsYet
        if (
            response.status_code == 404
            and path.endswith("/bulk-results")
            and UNKNOWN_ENDPOINT_MESSAGE.lower() in message.lower()
        ):
            raise HistoryUnavailable(
                f"GrowthBook does not serve experiment history to source {self.name!r}: "
                f"GET {path} → HTTP 404 {message}. GrowthBook's REST API gives only the latest "
                "results; past snapshots come from its bulk-results endpoint, which is off "
                "unless the self-hosted GrowthBook server sets "
                "EXPERIMENT_BULK_RESULTS_ENABLED=true. Until then, expwatch's history of "
                "this experiment starts with its first poll.",
                source=self.name,
                experiment_id=experiment_id,
                status_code=404,
            )
        raise status_error(
            response,
            message,
            platform="GrowthBook",
            source=self.name,
            path=path,
            experiment_id=experiment_id,
            guidance={
                401: f"check the api_key of source {self.name!r}",
                403: (
                    f"the API key of source {self.name!r} lacks a permission this needs; use a "
                    "secret key or personal access token with read access to experiments and "
                    "metrics"
                ),
            },
            # GrowthBook answers an unknown id with a 400 "Could not find experiment".
            is_not_found=response.status_code == 404
            or UNKNOWN_EXPERIMENT_MESSAGE.lower() in message.lower(),
            known_ids=self._known_ids,
        )

    async def _higher_is_better(self, metric_ids: set[str]) -> dict[str, bool]:
        """Each metric's direction (GrowthBook metric `behavior.goal` / fact metric `inverse`).

        The definitions are read when a metric id is first seen, so a new metric costs one
        pass over the metric list. If the key may not read them, every metric counts as
        higher-is-better.
        """
        for path in ("/metrics", "/fact-metrics"):
            unseen = {
                m
                for m in metric_ids - self._directions_tried
                if m.startswith("fact__") == (path == "/fact-metrics")
            }
            if not unseen:
                continue
            try:
                async for page in self._pages(path, _GBMetricList):
                    for definition in page.metrics + page.factMetrics:
                        self._directions[definition.id] = definition.higher_is_better
            except SourceRejected as exc:
                logger.warning(
                    "source %s: cannot read metric definitions (%s); "
                    "treating these metrics as higher-is-better",
                    self.name,
                    exc,
                )
            self._directions_tried |= unseen
        return {m: self._directions.get(m, True) for m in metric_ids}

    # -- normalization --------------------------------------------------------------------

    def _experiment(self, e: _GBExperiment) -> Experiment:
        """The domain experiment; a PayloadError for it when an id it stores is too long."""
        phase = e.phases[-1] if e.phases else _GBPhase()
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
            platform=self.platform,
            source=self.name,
            experiment_id=e.id,
        )
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
            upstream_version=e.dateUpdated.isoformat(),
            url=f"{self._ui_url}/experiment/{e.id}" if self._ui_url else None,
            tags=tuple(e.tags),
            detailed_status=e.enhancedStatus.detailedStatus if e.enhancedStatus else None,
            decision=decision,
        )

    async def _snapshot(
        self, result: _GBResult, settings: _GBSettings, experiment: Experiment
    ) -> Snapshot:
        overall_rows = [r for r in result.results if r.dimension in ("All", "")]
        if not overall_rows and len(result.results) == 1:
            overall_rows = result.results
        overall = overall_rows[0] if overall_rows else None
        roles = {m.metricId: MetricRole.GOAL for m in settings.goals}
        roles.update({m.metricId: MetricRole.SECONDARY for m in settings.secondaryMetrics})
        roles.update({m.metricId: MetricRole.GUARDRAIL for m in settings.guardrails})
        directions = await self._higher_is_better(
            {m.metricId for row in result.results for m in row.metrics}
        )
        baseline = experiment.variations[0].variation_id if experiment.variations else None
        engines = {
            a.engine
            for row in result.results
            for m in row.metrics
            for v in m.variations
            for a in v.analyses[:1]
        }
        engine = next(iter(engines)) if len(engines) == 1 else settings.statsEngine

        def metrics_of(row: _GBDimensionResult) -> tuple[MetricResult, ...]:
            return tuple(
                self._metric(m, experiment, baseline, roles, directions) for m in row.metrics
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

    def _metric(
        self,
        metric: _GBMetric,
        experiment: Experiment,
        baseline: str | None,
        roles: Mapping[str, MetricRole],
        directions: Mapping[str, bool],
    ) -> MetricResult:
        higher_is_better = directions.get(metric.metricId, True)
        baseline = baseline or (metric.variations[0].variationId if metric.variations else None)
        variations = []
        for v in metric.variations:
            if not v.analyses:
                raise PayloadError(
                    f"metric {metric.metricId} variation {v.variationId} has no analysis",
                    source=self.name,
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
                        Verdict.BASELINE if is_baseline else _verdict(a, higher_is_better)
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


class _Paging:
    """What the pages of one reading of a list have shown: the first page's `total`, the
    ids of the items seen, and whether a later page counted fewer items (the list shrank)."""

    def __init__(self, source: str, path: str) -> None:
        self._source = source
        self._path = path
        self._seen: set[str] = set()
        self._pages = 0
        self._first_total: int | None = None
        self.shrank = False

    def check(self, page: _GBPage, offset: int) -> None:
        """Take in the page read at `offset`; `PagesRepeat` if it brings nothing new: only
        items of earlier pages, or none while promising more past the first page's total
        (within it, a portfolio page may hold none: experiments without results are left out)."""
        ids = page.item_ids()
        if self._pages == 0:
            self._first_total = page.total
        else:
            past_the_end = self._first_total is None or offset >= self._first_total
            if self._seen.issuperset(ids) and (ids or (page.hasMore and past_the_end)):
                raise PagesRepeat(
                    f"GrowthBook pagination of {self._path} did not advance: the page at "
                    f"offset {offset} brings nothing earlier pages did not (the list loops)",
                    source=self._source,
                )
            if (
                page.total is not None
                and self._first_total is not None
                and page.total < self._first_total
            ):
                self.shrank = True
        self._seen.update(ids)
        self._pages += 1


class _NoResultsYet(Exception):
    """GrowthBook's HTTP 400 'No results found for that experiment': a state, not an error."""


def _first_number(*values: float | None) -> float:
    return next((v for v in values if v is not None), 0.0)


def _verdict(a: _GBAnalysis, higher_is_better: bool) -> Verdict:
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


def _day_of(value: object) -> date | None:
    """The UTC day of a GrowthBook ISO date-time (None for "" or anything else)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).date()


def _iso(moment: datetime) -> str:
    """An ISO date-time as GrowthBook's examples write them: UTC, milliseconds, a Z."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )
