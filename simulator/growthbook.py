"""A GrowthBook-compatible REST API (`/api/v1`) serving a `Scenario`, as a Starlette app.

Faithful to GrowthBook where a client can tell (shapes per GrowthBook's OpenAPI spec 5.0.1):
- authentication as GrowthBook's API middleware: `Authorization: Bearer <key>` or HTTP Basic
  with the key as user name; a missing header or another scheme is HTTP 400, a wrong key 401;
- a fixed 60-second window of `rate_limit_per_minute` requests per API key on the injected
  clock, with draft-6 `RateLimit-*` headers on every authenticated response, and 429
  `{"message": "Too many requests, limit to N per minute"}` plus `Retry-After` beyond it;
- handler errors as HTTP 400 `{"message": ...}` ("Could not find experiment with that id",
  "No results found for that experiment", pagination errors), unknown paths 404;
- results serialised as GrowthBook's `toSnapshotApiInterface` does: fractions for
  percentChange/ciLow/ciHigh, zeros (never nulls) for the baseline and for fields an engine
  does not produce, `phase` as a string, `checks.srm` the SRM p-value (payloads in
  `simulator.growthbook_payloads`);
- the portfolio scan `GET /experiments/results`: the latest results of a page of experiments,
  leaving out those without results while paginating over the experiments;
- metric definitions, `GET /metrics` (listMetrics: sorted by id, paginated as the experiment
  list, filtered by `projectId` (a metric without projects belongs to all) and `datasourceId`,
  a query parameter it does not know a 400) and `GET /metrics/{id}` (getMetric; an unknown id
  a 400 "Could not find metric with that id"): every metric the scenario's experiments
  analyse, `behavior.goal` "decrease" for an inverse one (payloads in
  `simulator.growthbook_payloads`);
- opt-in (`bulk_results=True`, as a self-hosted server with EXPERIMENT_BULK_RESULTS_ENABLED),
  `GET /experiments/{id}/bulk-results`: every stored analysis generated in
  [dateStart, dateEnd], newest first, paginated over snapshots (limit 1..100, default 10),
  filtered by `phase` and `snapshotType`, behind its own per-key limit of 60 a minute; a query
  parameter it does not know, a malformed date or phase is a 400, an unknown experiment a 404.
  Off (the default) it answers 404 `{"message": "Unknown API endpoint"}`, like any unknown
  path. Items as `simulator.growthbook_payloads.bulk_result_json`.

Every request reads the clock once; the refresh index it maps to fixes all content. Requests
pass through one gate (`simulator.faults.RequestGate`), where faults are injected and
requests logged; the app itself applies a `VanishFault` (the experiment is left out of both
experiment lists and unknown to its endpoints; its metrics stay defined) and a
`PageLoopFault` (to the experiment lists and the metric list).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator.faults import Faults, PageLoopFault, RequestGate, RequestLog
from simulator.growthbook_payloads import (
    bulk_result_json,
    created_at,
    enhanced_status,
    experiment_json,
    metric_definitions,
    results_json,
)
from simulator.scenario import Scenario, ScriptedExperiment, ScriptedSnapshot
from simulator.timeline import FixedWindowLimiter

__all__ = ["build_growthbook_app"]

Json = dict[str, Any]
Clock = Callable[[], datetime]
Handler = Callable[[Request, int], Json]
_Item = TypeVar("_Item")

_RATE_LIMIT_WINDOW = timedelta(seconds=60)
_STATUSES = ("draft", "running", "stopped")
_UNKNOWN_EXPERIMENT = "Could not find experiment with that id"
_UNKNOWN_METRIC = "Could not find metric with that id"
_NO_RESULTS = "No results found for that experiment"
_UNKNOWN_ENDPOINT = "Unknown API endpoint"
_BULK_PARAMS = frozenset({"dateStart", "dateEnd", "phase", "snapshotType", "limit", "offset"})
_METRIC_LIST_PARAMS = frozenset({"limit", "offset", "projectId", "datasourceId"})
_SNAPSHOT_TYPES = ("standard", "exploratory", "report")


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def build_growthbook_app(
    scenario: Scenario,
    *,
    api_key: str,
    clock: Clock = _wall_clock,
    rate_limit_per_minute: int = 60,
    bulk_results: bool = False,
    bulk_results_rate_limit_per_minute: int = 60,
    faults: Faults | None = None,
    request_log: RequestLog | None = None,
) -> Starlette:
    """A Starlette app answering GrowthBook's REST API v1 for `scenario`.

    `clock` (timezone-aware UTC) is read once per request and decides the refresh index;
    `api_key` is the only secret key the app accepts; each key may make
    `rate_limit_per_minute` requests per fixed 60-second window of that clock.
    `bulk_results` serves the bulk-results endpoint (off by default, as on GrowthBook), each
    key making at most `bulk_results_rate_limit_per_minute` of those requests a window.
    `faults` injects faults before authentication (see `simulator.faults`; faulted requests
    do not count against the rate limit); `request_log` records every request under /api/v1.
    """
    for name, limit in (
        ("rate_limit_per_minute", rate_limit_per_minute),
        ("bulk_results_rate_limit_per_minute", bulk_results_rate_limit_per_minute),
    ):
        if limit < 1:
            raise ValueError(f"{name} must be at least 1, got {limit}")
    api = _GrowthBookApi(
        scenario,
        api_key=api_key,
        clock=clock,
        rate_limit_per_minute=rate_limit_per_minute,
        bulk_results_limiter=(
            FixedWindowLimiter(limit=bulk_results_rate_limit_per_minute, window=_RATE_LIMIT_WINDOW)
            if bulk_results
            else None
        ),
        faults=faults,
        request_log=request_log,
    )
    return Starlette(
        routes=[
            Route("/api/v1/", api.endpoint(api.index)),
            Route("/api/v1/experiments", api.endpoint(api.list_experiments)),
            # Before /experiments/{id}, which would otherwise take "results" for an id.
            Route("/api/v1/experiments/results", api.endpoint(api.list_experiment_results)),
            Route("/api/v1/experiments/{id}", api.endpoint(api.get_experiment)),
            Route("/api/v1/experiments/{id}/results", api.endpoint(api.get_results)),
            Route("/api/v1/experiments/{id}/bulk-results", api.endpoint(api.bulk_results)),
            Route("/api/v1/metrics", api.endpoint(api.list_metrics)),
            Route("/api/v1/metrics/{id}", api.endpoint(api.get_metric)),
            Route("/api/v1/{path:path}", api.endpoint(api.unknown_endpoint)),
        ]
    )


class _ApiError(Exception):
    """An error GrowthBook answers with `{"message": ...}` and an HTTP status."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class _GrowthBookApi:
    def __init__(
        self,
        scenario: Scenario,
        *,
        api_key: str,
        clock: Clock,
        rate_limit_per_minute: int,
        bulk_results_limiter: FixedWindowLimiter | None,
        faults: Faults | None,
        request_log: RequestLog | None,
    ) -> None:
        self._scenario = scenario
        self._metrics = metric_definitions(scenario)
        """Metric definitions by id, in id order: they do not change over the timeline."""
        self._api_key = api_key
        self._clock = clock
        self._limiter = FixedWindowLimiter(limit=rate_limit_per_minute, window=_RATE_LIMIT_WINDOW)
        self._bulk_limiter = bulk_results_limiter
        """None: the bulk-results endpoint is off."""
        self._gate = RequestGate(
            faults=faults,
            request_log=request_log,
            error=lambda status_code, message: _error(_ApiError(status_code, message)),
            too_many_requests=self._rate_limit_fault,
        )

    def endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A Starlette endpoint running `handler` behind the gate (faults, request log)."""
        return self._gate.endpoint(handler, clock=self._clock, answer=self._answer)

    def _answer(self, request: Request, handler: Handler, now: datetime) -> Response:
        """Authenticate, rate-limit, then answer with `handler` at the refresh of `now`."""
        try:
            key = _api_key_of(request)
        except _ApiError as error:
            return _error(error)
        if key != self._api_key:
            return _error(_ApiError(401, "Invalid API key"))
        is_exceeded, count, window_ends = self._limiter.hit(key, now)
        headers = _rate_limit_headers(self._limiter.limit, count, window_ends - now)
        if is_exceeded:
            headers["Retry-After"] = headers["RateLimit-Reset"]
            return self._too_many_requests(headers)
        request.state.vanished = self._gate.vanished(request, now)
        request.state.page_loop = self._gate.page_loop(request, now)
        request.state.api_key = key
        request.state.now = now
        try:
            body = handler(request, self._scenario.refresh_index(now))
        except _ApiError as error:
            return _error(error, headers=headers)
        return JSONResponse(body, headers=headers)

    def _too_many_requests(self, headers: dict[str, str]) -> JSONResponse:
        message = f"Too many requests, limit to {self._limiter.limit} per minute"
        return JSONResponse({"message": message}, status_code=429, headers=headers)

    def _rate_limit_fault(self, retry_after_seconds: int | None) -> JSONResponse:
        """A fault's 429: the limiter's, with `RateLimit-Reset` only beside a `Retry-After`."""
        headers = {"RateLimit-Limit": str(self._limiter.limit), "RateLimit-Remaining": "0"}
        if retry_after_seconds is not None:
            headers["RateLimit-Reset"] = str(retry_after_seconds)
        return self._too_many_requests(headers)

    # -- handlers: (request, refresh index) -> JSON body, or _ApiError ----------------------

    def index(self, request: Request, index: int) -> Json:
        return {
            "name": "GrowthBook API",
            "apiVersion": 1,
            "build": {"sha": "", "date": "", "lastVersion": "simulator"},
        }

    def list_experiments(self, request: Request, index: int) -> Json:
        page = _Page.of(request, loop=request.state.page_loop)
        matching = self._matching(request, index)
        experiments = page.slice(matching)
        return {
            "experiments": [self._experiment_json(e, index) for e in experiments],
            **page.fields(count=len(experiments), total=len(matching)),
        }

    def list_experiment_results(self, request: Request, index: int) -> Json:
        """Latest results of the current phase for a page of experiments (a portfolio scan).

        As GrowthBook's `listExperimentResults`: archived experiments included, oldest first;
        experiments without results are left out, so `count` may be below the page size (even
        0 with `hasMore`), while `total`, `hasMore` and `nextOffset` count experiments.
        Serialised exactly as the single-experiment results (zeros for the baseline): the spec
        types every analysis field as a plain number and GrowthBook uses the same serializer
        here. The nulls the research notes mention belong to the separate bulk-results
        endpoint (`/experiments/{id}/bulk-results`), which the fake does not serve.
        """
        page = _Page.of(request, loop=request.state.page_loop)
        matching = self._matching(request, index)
        results = [
            self._results_json(experiment, snapshot)
            for experiment in page.slice(matching)
            if (snapshot := experiment.snapshot_at(index)) is not None
        ]
        return {
            "experimentResults": results,
            **page.fields(count=len(results), total=len(matching)),
        }

    def get_experiment(self, request: Request, index: int) -> Json:
        experiment = self._find(request)
        body = self._experiment_json(experiment, index)
        body["enhancedStatus"] = enhanced_status(experiment, index)
        return {"experiment": body}

    def get_results(self, request: Request, index: int) -> Json:
        experiment = self._find(request)
        current = experiment.phase_at(index)
        phase = request.query_params.get("phase", str(current))
        dimension = request.query_params.get("dimension", "")
        phases = [str(p) for p in range(current + 1)]
        snapshot = (
            experiment.snapshot_at(index, phase=phases.index(phase))
            if phase in phases and not dimension
            else None
        )
        if snapshot is None:
            raise _ApiError(400, _NO_RESULTS)
        return {
            "experiment": self._experiment_json(experiment, index),
            "result": self._results_json(experiment, snapshot),
        }

    def bulk_results(self, request: Request, index: int) -> Json:
        """Every stored analysis of one experiment generated in [dateStart, dateEnd], newest
        first, a page of snapshots at a time; 404 while the endpoint is off."""
        if self._bulk_limiter is None:
            raise _ApiError(404, _UNKNOWN_ENDPOINT)
        if self._bulk_limiter.hit(request.state.api_key, request.state.now)[0]:
            limit = self._bulk_limiter.limit
            raise _ApiError(429, f"Too many requests, limit to {limit} per minute")
        query = request.query_params
        _refuse_unknown_params(query, _BULK_PARAMS)
        start, end = _date_param(query, "dateStart"), _date_param(query, "dateEnd")
        raw_phase = query.get("phase")
        phase = None if raw_phase is None else _phase_param(raw_phase)
        kind = query.get("snapshotType")
        if kind is not None and kind not in _SNAPSHOT_TYPES:
            expected = "|".join(f'"{t}"' for t in _SNAPSHOT_TYPES)
            raise _ApiError(
                400, f"Querystring: [snapshotType] Invalid option: expected one of {expected}"
            )
        page = _Page.of(request)
        experiment = self._scenario.experiment(request.path_params["id"])
        if experiment is None or experiment.id in request.state.vanished:
            raise _ApiError(404, _UNKNOWN_EXPERIMENT)
        stored = [
            snapshot
            for at in range(index, -1, -1)  # newest first
            if experiment.analysed_index(at) == at
            and (snapshot := experiment.snapshot_at(at)) is not None
            and snapshot.refresh_index == at
            and start <= self._scenario.refresh_time(at) <= end
            and phase in (None, snapshot.phase)
            and kind in (None, "standard")  # the fake stores only scheduled standard analyses
        ]
        on_page = stored[page.offset : page.offset + page.limit]
        return {
            "results": [bulk_result_json(self._scenario, experiment, s) for s in on_page],
            **page.fields(count=len(on_page), total=len(stored)),
        }

    def list_metrics(self, request: Request, index: int) -> Json:
        """A page of metric definitions, sorted by id (GrowthBook's `listMetrics`)."""
        query = request.query_params
        _refuse_unknown_params(query, _METRIC_LIST_PARAMS)
        page = _Page.of(request, loop=request.state.page_loop)
        project, datasource = query.get("projectId"), query.get("datasourceId")
        matching = [
            metric
            for metric in self._metrics.values()
            if (project is None or not metric["projects"] or project in metric["projects"])
            and datasource in (None, metric["datasourceId"])
        ]
        metrics = page.slice(matching)
        return {"metrics": metrics, **page.fields(count=len(metrics), total=len(matching))}

    def get_metric(self, request: Request, index: int) -> Json:
        """One metric definition (GrowthBook's `getMetric`), 400 for an id it does not know."""
        metric = self._metrics.get(request.path_params["id"])
        if metric is None:
            raise _ApiError(400, _UNKNOWN_METRIC)
        return {"metric": metric}

    def unknown_endpoint(self, request: Request, index: int) -> Json:
        raise _ApiError(404, _UNKNOWN_ENDPOINT)

    # -- finding experiments ------------------------------------------------------------------

    def _find(self, request: Request) -> ScriptedExperiment:
        experiment = self._scenario.experiment(request.path_params["id"])
        if experiment is None or experiment.id in request.state.vanished:
            raise _ApiError(400, _UNKNOWN_EXPERIMENT)
        return experiment

    def _matching(self, request: Request, index: int) -> list[ScriptedExperiment]:
        """The experiments passing the request's filters (and not vanished), oldest first."""
        query = request.query_params
        status = query.get("status")
        if status is not None and status not in _STATUSES:
            expected = "|".join(f'"{s}"' for s in _STATUSES)
            raise _ApiError(
                400, f"Querystring: [status] Invalid option: expected one of {expected}"
            )
        wanted = {name: query.get(name) for name in ("projectId", "datasourceId", "trackingKey")}
        return [
            e
            for e in sorted(self._scenario.experiments, key=self._created)
            if e.id not in request.state.vanished
            and (status is None or e.status_at(index) == status)
            and wanted["projectId"] in (None, e.project)
            and wanted["datasourceId"] in (None, e.datasource_id)
            and wanted["trackingKey"] in (None, e.tracking_key)
        ]

    def _created(self, experiment: ScriptedExperiment) -> datetime:
        return created_at(self._scenario, experiment)

    def _experiment_json(self, experiment: ScriptedExperiment, index: int) -> Json:
        return experiment_json(self._scenario, experiment, index)

    def _results_json(self, experiment: ScriptedExperiment, snapshot: ScriptedSnapshot) -> Json:
        return results_json(self._scenario, experiment, snapshot)


@dataclass(frozen=True, kw_only=True)
class _Page:
    """A page of a list: `limit` items from `offset`, described by GrowthBook's PaginationFields
    (or, under a `loop`, misdescribed: see `PageLoopFault`)."""

    limit: int
    offset: int
    loop: PageLoopFault | None = None

    @classmethod
    def of(cls, request: Request, *, loop: PageLoopFault | None = None) -> _Page:
        """The page a request asks for (limit 1..100, default 10; offset >= 0, default 0)."""
        query = request.query_params
        limit = _int_param(query.get("limit"), name="limit", default=10)
        offset = _int_param(query.get("offset"), name="offset", default=0)
        if not 1 <= limit <= 100:
            raise _ApiError(400, "Pagination limit must be between 1 and 100")
        if offset < 0:
            raise _ApiError(400, "Invalid pagination offset")
        return cls(limit=limit, offset=offset, loop=loop)

    def slice(self, items: list[_Item]) -> list[_Item]:
        """The page's share of `items`."""
        start = self.loop.start_of(self.offset) if self.loop else self.offset
        return items[start : start + self.limit]

    def fields(self, *, count: int, total: int) -> Json:
        """PaginationFields; `hasMore`/`nextOffset` advance over the `total` listed items
        (under a loop, every page has more)."""
        next_offset = self.offset + self.limit
        has_more = next_offset < total or self.loop is not None
        return {
            "limit": self.limit,
            "offset": self.offset,
            "count": count,
            "total": total,
            "hasMore": has_more,
            "nextOffset": next_offset if has_more else None,
        }


def _refuse_unknown_params(query: Any, known: frozenset[str]) -> None:
    """As GrowthBook's strict query validators: a parameter the endpoint does not know is a 400."""
    unknown = sorted(set(query) - known)
    if unknown:
        raise _ApiError(400, f"Querystring: Unrecognized key(s) in object: {unknown[0]!r}")


def _rate_limit_headers(limit: int, count: int, until_reset: timedelta) -> dict[str, str]:
    """express-rate-limit's draft-6 headers, as GrowthBook sends them on every answer."""
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(max(0, limit - count)),
        "RateLimit-Reset": str(max(0, math.ceil(until_reset.total_seconds()))),
    }


def _api_key_of(request: Request) -> str:
    """The API key of a request, as GrowthBook's `authenticateApiRequestMiddleware` reads it."""
    header = request.headers.get("authorization")
    if not header:
        raise _ApiError(400, "Missing Authorization header")
    scheme, _, value = header.partition(" ")
    if scheme not in ("Bearer", "Basic"):
        raise _ApiError(400, "Must use either a Bearer or Basic authentication scheme")
    value = value.strip()
    if not value:
        raise _ApiError(400, "Missing API key in Authorization header")
    if scheme == "Bearer":
        return value
    try:
        decoded = base64.b64decode(value, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise _ApiError(401, "Invalid API key") from None
    return decoded.partition(":")[0]


def _int_param(raw: str | None, *, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise _ApiError(400, f"Querystring: [{name}] Expected number, received {raw!r}") from None


def _date_param(query: Any, name: str) -> datetime:
    """A required ISO 8601 date-time of the query (without an offset: UTC, as JavaScript's
    Date reads a date-only string)."""
    raw = query.get(name)
    if not raw:
        raise _ApiError(400, f"Querystring: [{name}] Required")
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _ApiError(400, f"Querystring: [{name}] Invalid date: {raw!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _phase_param(raw: str) -> int:
    try:
        phase = int(raw)
    except ValueError:
        raise _ApiError(400, "Invalid phase") from None
    if phase < 0:
        raise _ApiError(400, "Invalid phase")
    return phase


def _error(error: _ApiError, *, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": error.message}, status_code=error.status_code, headers=headers)
