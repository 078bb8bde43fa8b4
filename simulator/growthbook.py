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
  does not produce, `phase` as a string, `checks.srm` the SRM p-value.

Every request reads the clock once; the refresh index it maps to fixes all content. Requests
pass through one gate (`_GrowthBookApi.serve`), the place for fault injection to hook in.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator.scenario import Scenario, ScriptedExperiment, ScriptedMetric, ScriptedSnapshot
from simulator.stats import BASELINE_ANALYSIS, analyze_variation, srm_p_value

__all__ = ["build_growthbook_app"]

Json = dict[str, Any]
Clock = Callable[[], datetime]
Handler = Callable[[Request, int], Json]

_RATE_LIMIT_WINDOW = timedelta(seconds=60)
_STATUSES = ("draft", "running", "stopped")
_DETAILED_STOPPED_STATUS = {
    "won": "Won",
    "lost": "Lost",
    "inconclusive": "Inconclusive",
    "dnf": "Didn't finish",
}
_UNKNOWN_EXPERIMENT = "Could not find experiment with that id"
_NO_RESULTS = "No results found for that experiment"


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def build_growthbook_app(
    scenario: Scenario,
    *,
    api_key: str,
    clock: Clock = _wall_clock,
    rate_limit_per_minute: int = 60,
) -> Starlette:
    """A Starlette app answering GrowthBook's REST API v1 for `scenario`.

    `clock` (timezone-aware UTC) is read once per request and decides the refresh index;
    `api_key` is the only secret key the app accepts; each key may make
    `rate_limit_per_minute` requests per fixed 60-second window of that clock.
    """
    if rate_limit_per_minute < 1:
        raise ValueError(f"rate_limit_per_minute must be at least 1, got {rate_limit_per_minute}")
    api = _GrowthBookApi(
        scenario, api_key=api_key, clock=clock, rate_limit_per_minute=rate_limit_per_minute
    )
    return Starlette(
        routes=[
            Route("/api/v1/", api.endpoint(api.index)),
            Route("/api/v1/experiments", api.endpoint(api.list_experiments)),
            Route("/api/v1/experiments/{id}", api.endpoint(api.get_experiment)),
            Route("/api/v1/experiments/{id}/results", api.endpoint(api.get_results)),
            Route("/api/v1/{path:path}", api.endpoint(api.unknown_endpoint)),
        ]
    )


class _ApiError(Exception):
    """An error GrowthBook answers with `{"message": ...}` and an HTTP status."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class _RateLimiter:
    """Fixed windows per key: a window opens at a key's first request and lasts 60 s."""

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        self._windows: dict[str, tuple[datetime, int]] = {}

    def hit(self, key: str, now: datetime) -> tuple[bool, dict[str, str]]:
        """Count a request: whether it exceeds the limit, and the draft-6 RateLimit headers."""
        started, count = self._windows.get(key, (now, 0))
        if now >= started + _RATE_LIMIT_WINDOW:
            started, count = now, 0
        count += 1
        self._windows[key] = (started, count)
        reset_seconds = math.ceil((started + _RATE_LIMIT_WINDOW - now).total_seconds())
        return count > self.limit, {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(0, self.limit - count)),
            "RateLimit-Reset": str(max(0, reset_seconds)),
        }


class _GrowthBookApi:
    def __init__(
        self, scenario: Scenario, *, api_key: str, clock: Clock, rate_limit_per_minute: int
    ) -> None:
        self._scenario = scenario
        self._api_key = api_key
        self._clock = clock
        self._limiter = _RateLimiter(limit=rate_limit_per_minute)

    def endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A Starlette endpoint running `handler` behind the gate."""

        async def endpoint(request: Request) -> Response:
            return self.serve(request, handler)

        return endpoint

    def serve(self, request: Request, handler: Handler) -> Response:
        """Authenticate, rate-limit, then answer with `handler` at the current refresh."""
        now = self._clock()
        try:
            key = _api_key_of(request)
        except _ApiError as error:
            return _error(error)
        if key != self._api_key:
            return _error(_ApiError(401, "Invalid API key"))
        is_exceeded, headers = self._limiter.hit(key, now)
        if is_exceeded:
            message = f"Too many requests, limit to {self._limiter.limit} per minute"
            headers["Retry-After"] = headers["RateLimit-Reset"]
            return JSONResponse({"message": message}, status_code=429, headers=headers)
        try:
            body = handler(request, self._scenario.refresh_index(now))
        except _ApiError as error:
            return _error(error, headers=headers)
        return JSONResponse(body, headers=headers)

    # -- handlers: (request, refresh index) -> JSON body, or _ApiError ----------------------

    def index(self, request: Request, index: int) -> Json:
        return {
            "name": "GrowthBook API",
            "apiVersion": 1,
            "build": {"sha": "", "date": "", "lastVersion": "simulator"},
        }

    def list_experiments(self, request: Request, index: int) -> Json:
        query = request.query_params
        limit = _int_param(query.get("limit"), name="limit", default=10)
        offset = _int_param(query.get("offset"), name="offset", default=0)
        status = query.get("status")
        if status is not None and status not in _STATUSES:
            expected = "|".join(f'"{s}"' for s in _STATUSES)
            raise _ApiError(
                400, f"Querystring: [status] Invalid option: expected one of {expected}"
            )
        if not 1 <= limit <= 100:
            raise _ApiError(400, "Pagination limit must be between 1 and 100")
        if offset < 0:
            raise _ApiError(400, "Invalid pagination offset")
        project = query.get("projectId")
        matching = [
            e
            for e in sorted(self._scenario.experiments, key=self._created)
            if (status is None or e.status_at(index) == status)
            and (project is None or e.project == project)
        ]
        page = matching[offset : offset + limit]
        next_offset = offset + limit
        has_more = next_offset < len(matching)
        return {
            "experiments": [self._experiment_json(e, index) for e in page],
            "limit": limit,
            "offset": offset,
            "count": len(page),
            "total": len(matching),
            "hasMore": has_more,
            "nextOffset": next_offset if has_more else None,
        }

    def get_experiment(self, request: Request, index: int) -> Json:
        experiment = self._find(request)
        body = self._experiment_json(experiment, index)
        body["enhancedStatus"] = _enhanced_status(experiment, index)
        return {"experiment": body}

    def get_results(self, request: Request, index: int) -> Json:
        experiment = self._find(request)
        phase = request.query_params.get("phase", "0")
        dimension = request.query_params.get("dimension", "")
        snapshot = experiment.snapshot_at(index)
        if snapshot is None or phase != "0" or dimension:
            raise _ApiError(400, _NO_RESULTS)
        return {
            "experiment": self._experiment_json(experiment, index),
            "result": self._results_json(experiment, snapshot),
        }

    def unknown_endpoint(self, request: Request, index: int) -> Json:
        raise _ApiError(404, "Unknown API endpoint")

    # -- serialisation ------------------------------------------------------------------------

    def _find(self, request: Request) -> ScriptedExperiment:
        experiment = self._scenario.experiment(request.path_params["id"])
        if experiment is None:
            raise _ApiError(400, _UNKNOWN_EXPERIMENT)
        return experiment

    def _created(self, experiment: ScriptedExperiment) -> datetime:
        return self._scenario.start - timedelta(seconds=experiment.created_seconds_before_start)

    def _experiment_json(self, experiment: ScriptedExperiment, index: int) -> Json:
        created = self._created(experiment)
        status = experiment.status_at(index)
        analysed = experiment.analysed_index(index)
        updated = created if status == "draft" else self._scenario.refresh_time(analysed)
        ended = _iso(updated) if status == "stopped" else ""
        variations = experiment.variations
        body: Json = {
            "id": experiment.id,
            "trackingKey": experiment.tracking_key,
            "dateCreated": _iso(created),
            "dateUpdated": _iso(updated),
            "name": experiment.name,
            "type": "standard",
            "project": experiment.project,
            "hypothesis": experiment.hypothesis,
            "description": "",
            "tags": list(experiment.tags),
            "owner": experiment.owner,
            "archived": False,
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
            "phases": [
                {
                    "name": "Main",
                    "dateStarted": _iso(created),
                    "dateEnded": ended,
                    "reasonForStopping": "",
                    "seed": experiment.tracking_key,
                    "coverage": 1,
                    "trafficSplit": [
                        {"variationId": v.id, "weight": w}
                        for v, w in zip(variations, experiment.weights, strict=True)
                    ],
                    "targetingCondition": "",
                }
            ],
            "settings": {
                **_analysis_settings(experiment),
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

    def _results_json(self, experiment: ScriptedExperiment, snapshot: ScriptedSnapshot) -> Json:
        at = snapshot.refresh_index
        refreshed = _iso(self._scenario.refresh_time(at))
        suffix = experiment.id.removeprefix("exp_")
        return {
            "id": f"snp_{suffix}_{at}",
            "dateUpdated": refreshed,
            "experimentId": experiment.id,
            "phase": "0",
            "dateStart": _iso(self._created(experiment)),
            "dateEnd": refreshed,
            "dimension": {"type": "none"},
            "settings": _analysis_settings(experiment),
            "queryIds": [f"qry_{suffix}_{at}_users", f"qry_{suffix}_{at}_metrics"],
            "results": [
                {
                    "dimension": "All",
                    "totalUsers": sum(snapshot.users),
                    "checks": {"srm": srm_p_value(snapshot.users, experiment.weights)},
                    "metrics": [
                        _metric_json(experiment, snapshot, m.id, m.name) for m in experiment.metrics
                    ],
                }
            ],
        }


def _metric_json(
    experiment: ScriptedExperiment, snapshot: ScriptedSnapshot, metric_id: str, name: str
) -> Json:
    control = snapshot.arm(metric_id, 0)
    variations = []
    for j, variation in enumerate(experiment.variations):
        arm = snapshot.arm(metric_id, j)
        stats = (
            BASELINE_ANALYSIS
            if j == 0
            else analyze_variation(control, arm, engine=experiment.engine)
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
    return {"metricId": metric_id, "metricName": name, "variations": variations}


def _analysis_settings(experiment: ScriptedExperiment) -> Json:
    def refs(metrics: tuple[ScriptedMetric, ...]) -> list[Json]:
        return [{"metricId": m.id, "overrides": {}} for m in metrics]

    return {
        "datasourceId": "ds_warehouse",
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


def _enhanced_status(experiment: ScriptedExperiment, index: int) -> Json:
    """GrowthBook's status indicator, without its premium decision framework."""
    status = experiment.status_at(index)
    if status == "draft":
        return {"status": "Draft"}
    if status == "stopped":
        return {"status": "Stopped", "detailedStatus": _DETAILED_STOPPED_STATUS[experiment.verdict]}
    if not experiment.has_results_at(index):
        return {"status": "Running", "detailedStatus": "No data"}
    if experiment.is_srm_at(index):
        return {"status": "Running", "detailedStatus": "Unhealthy"}
    return {"status": "Running"}


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


def _error(error: _ApiError, *, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": error.message}, status_code=error.status_code, headers=headers)


def _iso(moment: datetime) -> str:
    """JavaScript's `Date.toISOString()`: UTC, milliseconds, a trailing Z."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
