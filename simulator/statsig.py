"""A Statsig Console API-compatible app (`/console/v1`) serving a `StatsigScenario`.

Faithful to Statsig where a client can tell (shapes per the Console API OpenAPI spec
20240601.0.0):
- authentication by the `STATSIG-API-KEY` header; anything but the app's key is HTTP 401
  `{"status": 401, "message": "This endpoint only accepts an active CONSOLE key, but an invalid
  key was sent. Key: <the key sent>"}`; `STATSIG-API-VERSION` is accepted (20240601 is the only
  version; another value is a 400);
- errors as `{"status": <code>, "message": ...}`: 400 "Invalid request. Please check the
  request input and try again." for bad parameters, 404 "Not Found. The requested resource
  could not be found." for unknown experiments and paths;
- list pagination by `page` / `limit` with the `pagination` object (`nextPage` a relative path
  while more pages exist, else null), filtered by one or more `status` values;
- Pulse per (control, test) group pair, percent fields in percent units, `date` for the
  cumulative results of an earlier Pulse day, and before an experiment's first results a 400
  saying Pulse is not yet available (the exact answer is undocumented);
- optionally the snake_case spelling of Statsig's own pulse example (no `metricName`,
  `directionality` or `ds`), and the `{lower, upper}` interval objects of newer docs.
Rate limiting is undocumented for reads: off unless `rate_limit_per_window` is given, then a
fixed window per key answered with a 429 `{status, message}` and no headers.

Every request reads the clock once; the refresh index it maps to fixes all content. The app
applies a `VanishFault` itself (the experiment is left out of the list and unknown to its
endpoints, 404) and a `PageLoopFault` to the list (page p starting at item (p - 1) × limit).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator.faults import Faults, PageLoopFault, RequestGate, RequestLog
from simulator.statsig_experiment import STATSIG_STATUSES, StatsigExperiment, StatsigMetric
from simulator.statsig_payloads import (
    PulseSpelling,
    experiment_json,
    pulse_metric_json,
)
from simulator.statsig_scenario import StatsigScenario
from simulator.timeline import FixedWindowLimiter

__all__ = ["API_VERSION", "PulseSpelling", "build_statsig_app"]

Json = dict[str, Any]
Clock = Callable[[], datetime]
Handler = Callable[[Request, int], Json]

API_VERSION = "20240601"
"""The only Console API version; clients send it as `STATSIG-API-VERSION`."""

_BASE = "/console/v1"
_DEFAULT_PAGE_SIZE = 100
_INVALID_REQUEST = "Invalid request. Please check the request input and try again."
_NOT_FOUND = "Not Found. The requested resource could not be found."
_INVALID_KEY = "This endpoint only accepts an active CONSOLE key, but an invalid key was sent."
_PULSE_NOT_AVAILABLE = (
    "Pulse results are not yet available for this experiment. "
    "Statsig computes Pulse results on a daily basis."
)
_TOO_MANY_REQUESTS = "Too many requests. Please slow down and try again later."
_BOOLEAN_FLAGS = (
    "cuped",
    "applyBonferroniPerVariant",
    "applyBonferroniPerMetric",
    "applyBenjaminiHochbergPerMetric",
    "applyBenjaminiHochbergPerVariant",
)


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def build_statsig_app(
    scenario: StatsigScenario,
    *,
    api_key: str,
    clock: Clock = _wall_clock,
    rate_limit_per_window: int | None = None,
    rate_limit_window_seconds: float = 10.0,
    pulse_spelling: PulseSpelling = "camelCase",
    pulse_interval_bounds: bool = False,
    faults: Faults | None = None,
    request_log: RequestLog | None = None,
) -> Starlette:
    """A Starlette app answering Statsig's Console API experiment reads for `scenario`.

    `clock` (timezone-aware) is read once per request and decides the refresh index;
    `api_key` is the only Console API key accepted. With `rate_limit_per_window`, each key may
    make that many requests per fixed window of `rate_limit_window_seconds`.
    `pulse_spelling="snake_case"` serves pulse metrics as Statsig's own example spells them;
    `pulse_interval_bounds` adds the `{lower, upper}` interval objects of newer docs (which the
    20240601 schema does not allow).
    `faults` injects faults before authentication (see `simulator.faults`; faulted requests
    do not count against the rate limit); `request_log` records every request under
    /console/v1.
    """
    if rate_limit_per_window is not None and rate_limit_per_window < 1:
        raise ValueError(f"rate_limit_per_window must be at least 1, got {rate_limit_per_window}")
    if not rate_limit_window_seconds > 0:
        raise ValueError(f"rate_limit_window_seconds must be positive: {rate_limit_window_seconds}")
    api = _StatsigApi(
        scenario,
        api_key=api_key,
        clock=clock,
        limiter=(
            FixedWindowLimiter(
                limit=rate_limit_per_window,
                window=timedelta(seconds=rate_limit_window_seconds),
            )
            if rate_limit_per_window is not None
            else None
        ),
        pulse_spelling=pulse_spelling,
        pulse_interval_bounds=pulse_interval_bounds,
        faults=faults,
        request_log=request_log,
    )
    return Starlette(
        routes=[
            Route(f"{_BASE}/experiments", api.endpoint(api.list_experiments)),
            Route(f"{_BASE}/experiments/{{id}}", api.endpoint(api.get_experiment)),
            Route(f"{_BASE}/experiments/{{id}}/pulse_results", api.endpoint(api.pulse_results)),
            Route(
                f"{_BASE}/experiments/{{id}}/cumulative_exposures",
                api.endpoint(api.cumulative_exposures),
            ),
            Route(f"{_BASE}/{{path:path}}", api.endpoint(api.unknown_endpoint)),
        ]
    )


class _ApiError(Exception):
    """An error Statsig answers with `{"status": code, "message": ...}`."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class _StatsigApi:
    def __init__(
        self,
        scenario: StatsigScenario,
        *,
        api_key: str,
        clock: Clock,
        limiter: FixedWindowLimiter | None,
        pulse_spelling: PulseSpelling,
        pulse_interval_bounds: bool,
        faults: Faults | None,
        request_log: RequestLog | None,
    ) -> None:
        self._scenario = scenario
        self._api_key = api_key
        self._clock = clock
        self._limiter = limiter
        self._pulse_spelling = pulse_spelling
        self._pulse_interval_bounds = pulse_interval_bounds
        self._gate = RequestGate(
            faults=faults,
            request_log=request_log,
            error=lambda status_code, message: _error(_ApiError(status_code, message)),
            too_many_requests=lambda _retry_after_seconds: _error(
                _ApiError(429, _TOO_MANY_REQUESTS)
            ),
        )

    def endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A Starlette endpoint running `handler` behind the gate (faults, request log)."""
        return self._gate.endpoint(handler, clock=self._clock, answer=self._answer)

    def _answer(self, request: Request, handler: Handler, now: datetime) -> Response:
        """Authenticate, rate-limit, then answer with `handler` at the refresh of `now`."""
        key = request.headers.get("STATSIG-API-KEY")
        if key != self._api_key:
            return _error(_ApiError(401, f"{_INVALID_KEY} Key: {key or 'undefined'}"))
        if self._limiter is not None and self._limiter.hit(key, now)[0]:
            return _error(_ApiError(429, _TOO_MANY_REQUESTS))
        request.state.vanished = self._gate.vanished(request, now)
        request.state.page_loop = self._gate.page_loop(request, now)
        try:
            version = request.headers.get("STATSIG-API-VERSION")
            if version is not None and version != API_VERSION:
                raise _ApiError(
                    400, f"Unsupported STATSIG-API-VERSION {version!r}; use {API_VERSION}."
                )
            body = handler(request, self._scenario.refresh_index(now))
        except _ApiError as error:
            return _error(error)
        return JSONResponse(body)

    # -- handlers: (request, refresh index) -> JSON body, or _ApiError ----------------------

    def list_experiments(self, request: Request, index: int) -> Json:
        query = request.query_params
        page = _positive_int(query.get("page"), default=1)
        limit = _positive_int(query.get("limit"), default=_DEFAULT_PAGE_SIZE)
        statuses = query.getlist("status")
        if any(s not in STATSIG_STATUSES for s in statuses):
            raise _ApiError(400, _INVALID_REQUEST)
        matching = [
            e
            for e in sorted(self._scenario.experiments, key=self._created)
            if e.id not in request.state.vanished
            and (not statuses or e.status_at(index) in statuses)
        ]
        start = (page - 1) * limit
        loop: PageLoopFault | None = request.state.page_loop
        items_from = loop.start_of(start) if loop else start
        page_items = matching[items_from : items_from + limit]
        filters = [("status", s) for s in statuses]

        def page_path(number: int) -> str:
            query = urlencode([*filters, ("page", number), ("limit", limit)])
            return f"{_BASE}/experiments?{query}"

        return {
            "message": "Experiments listed successfully.",
            "data": [experiment_json(self._scenario, e, index) for e in page_items],
            "pagination": {
                "itemsPerPage": limit,
                "pageNumber": page,
                "totalItems": len(matching),
                "nextPage": (
                    page_path(page + 1) if start + limit < len(matching) or loop else None
                ),
                "previousPage": page_path(page - 1) if page > 1 else None,
                "all": f"{_BASE}/experiments" + (f"?{urlencode(filters)}" if filters else ""),
            },
        }

    def get_experiment(self, request: Request, index: int) -> Json:
        experiment = self._find(request)
        return {
            "message": "Experiments listed successfully.",
            "data": experiment_json(self._scenario, experiment, index),
        }

    def pulse_results(self, request: Request, index: int) -> Json:
        experiment = self._find(request)
        query = request.query_params
        group_ids = [g.id for g in experiment.groups]
        control, test = query.get("control"), query.get("test")
        if control not in group_ids or test not in group_ids or control == test:
            raise _ApiError(400, _INVALID_REQUEST)
        flags = {name: _boolean(query.get(name)) for name in _BOOLEAN_FLAGS}
        confidence = _confidence(query.get("confidence"))
        _number(query.get("bonferroniPrimaryMetricWeight"))
        at = experiment.analysed_index(index)
        raw_date = query.get("date")
        if raw_date is not None:
            day = _date(raw_date)
            at = self._scenario.index_of_date(day)
            if at > experiment.analysed_index(index):
                raise _ApiError(400, _PULSE_NOT_AVAILABLE)
        snapshot = experiment.snapshot_at(at) if at >= 0 else None
        if snapshot is None:
            raise _ApiError(400, _PULSE_NOT_AVAILABLE)
        alpha = experiment.alpha(
            confidence=confidence,
            per_variant=flags["applyBonferroniPerVariant"],
            per_metric=flags["applyBonferroniPerMetric"],
        )
        pair = (group_ids.index(control), group_ids.index(test))

        def metrics(group: tuple[StatsigMetric, ...]) -> list[Json]:
            return [
                pulse_metric_json(
                    experiment,
                    snapshot,
                    m,
                    pair,
                    alpha=alpha,
                    spelling=self._pulse_spelling,
                    interval_bounds=self._pulse_interval_bounds,
                )
                for m in group
            ]

        data: Json = {} if self._pulse_spelling == "snake_case" else {"ds": self._ds(at)}
        data["primaryMetrics"] = metrics(experiment.primary_metrics)
        data["secondaryMetrics"] = metrics(experiment.secondary_metrics)
        data["otherMetrics"] = metrics(experiment.other_metrics)
        return {"message": "Successfully loaded Pulse Results", "data": data}

    def cumulative_exposures(self, request: Request, index: int) -> Json:
        experiment = self._find(request)
        days = []
        if experiment.has_results_at(index):
            last = experiment.analysed_index(index)
            for at in range(experiment.first_results_at, last + 1):
                snapshot = experiment.snapshot_at(at)
                assert snapshot is not None  # every refresh from the first results has some
                days.append((self._ds(at), snapshot.units))
        return {
            "message": "Successfully loaded Cumulative Exposures",
            "data": [
                {
                    "groupID": group.id,
                    "groupName": group.name,
                    "results": [{"date": ds, "exposures": units[j]} for ds, units in days],
                }
                for j, group in enumerate(experiment.groups)
            ],
        }

    def unknown_endpoint(self, request: Request, index: int) -> Json:
        raise _ApiError(404, _NOT_FOUND)

    # -- serialisation ------------------------------------------------------------------------

    def _find(self, request: Request) -> StatsigExperiment:
        experiment = self._scenario.experiment(request.path_params["id"])
        if experiment is None or experiment.id in request.state.vanished:
            raise _ApiError(404, _NOT_FOUND)
        return experiment

    def _created(self, experiment: StatsigExperiment) -> datetime:
        return self._scenario.start - timedelta(seconds=experiment.created_seconds_before_start)

    def _ds(self, index: int) -> str:
        return self._scenario.pulse_date(index).isoformat()


def _positive_int(raw: str | None, *, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _ApiError(400, _INVALID_REQUEST) from None
    if value < 1:
        raise _ApiError(400, _INVALID_REQUEST)
    return value


def _boolean(raw: str | None) -> bool | None:
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise _ApiError(400, _INVALID_REQUEST)
    return raw == "true"


def _number(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise _ApiError(400, _INVALID_REQUEST) from None
    if not math.isfinite(value):
        raise _ApiError(400, _INVALID_REQUEST)
    return value


def _confidence(raw: str | None) -> float | None:
    value = _number(raw)
    if value is not None and not 0.0 < value < 100.0:
        raise _ApiError(400, _INVALID_REQUEST)
    return value


def _date(raw: str) -> date:
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise _ApiError(400, _INVALID_REQUEST) from None


def _error(error: _ApiError) -> JSONResponse:
    return JSONResponse(
        {"status": error.status_code, "message": error.message}, status_code=error.status_code
    )
