"""Fault injection and a request log for the simulated platforms.

A test builds a `Faults`, passes it to `build_growthbook_app` / `build_statsig_app` as
`faults=`, and adds or removes rules while the app serves:

    faults = Faults()
    burst = faults.add(StatusFault(503), path="*/results", times=3)
    storm = faults.add(RateLimitFault(retry_after_seconds=30), until=clock.now() + delta)
    faults.add(DriftFault(set_field("result.results.0.checks.srm", "0.5")))
    faults.remove(storm)

A rule matches a request by path (an `fnmatch` glob over the whole URL path, so `*` also
crosses `/`; or a compiled regular expression, searched) and HTTP method, and is active for
its first `times` matching requests, between `start` (inclusive) and `until` (exclusive) on
the app's clock, or both, or always until removed.

Order: a request reads the app's clock once, at arrival. The earliest-added active rule that
matches and is not a drift decides its fate *before* authentication and rate limiting; a
faulted request never reaches the platform, so it does not count against the platform's rate
limit (the 5xx or 429 of a proxy or load balancer in front of it would not either). A
`LatencyFault` delays the request and then lets it through. If the platform's answer is a
success, the earliest-added active drift rule that matches rewrites its JSON body; error
answers pass unchanged and do not use up a drift rule's `times`.

What a client sees of each fault:
- `StatusFault`, `RateLimitFault`: an HTTP answer in the platform's own error shape.
- `MalformedBodyFault`: a 200 `application/json` answer whose body is not JSON.
- `DriftFault`: the platform's answer with its body passed through a function.
- `LatencyFault`: the platform's answer, `delay_seconds` later (of the `Faults` sleep).
- `HangFault`: no answer; the request waits until the client disconnects (under uvicorn) or
  the request is cancelled (in-process under `httpx.ASGITransport`, where the app runs in the
  client's task: bound the request with `anyio.fail_after`).
- `DripFault`: the platform's answer, its body sent `chunk_bytes` at a time, `interval_seconds`
  (of the `Faults` sleep) apart: every gap can be well within a client's read timeout while
  the whole takes far longer than any sensible deadline. It stops when the client disconnects
  (under uvicorn) or gives up (in-process, where the app runs in the client's task).
- `ResetFault`: the connection drops mid-answer. The app sends a 200's status line and
  headers promising a body, then raises `ConnectionDroppedError` (an ASGI app cannot close a
  connection before answering: uvicorn turns a failure before the status line into a 500).
  Under uvicorn the server closes the connection, so httpx raises `httpx.RemoteProtocolError`
  ("peer closed connection without sending complete message body"; `client.stream` sees the
  200 first) and uvicorn logs the exception. Under `httpx.ASGITransport` the
  `ConnectionDroppedError` itself propagates out of the client's call (with
  `raise_app_exceptions=False` the client would instead get an empty 200): a test wanting a
  transport error maps it in its own transport.

Two faults change what the platform itself says rather than replacing its answer, so the apps
apply them (and they combine with every other fault; the request log does not name them):
- `VanishFault`: an experiment is gone, as if deleted: lists leave it out (their totals drop)
  and its own endpoints answer as for an unknown id. Every active matching rule applies.
- `PageLoopFault`: list pagination that loops: from an offset on, pages carry the items of an
  earlier offset while every page promises another, so reading to the end never ends. The
  earliest active matching rule applies, to the list endpoints only.
A vanish starting while a client pages through a list (its `start` between two page requests)
is a list that shrinks between pages: the items after the gone one shift down by one, and
the client skips one of them.

`RequestLog`, passed as `request_log=`, records every request the platform's routes receive
(method, path, query, the status answered or None, the clock at arrival, the fault applied),
faulted or not, once its outcome is settled: a hung request appears when it ends. One `Faults`
and one `RequestLog` may serve both apps at once.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import Any, TypeVar, assert_never

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

__all__ = [
    "ConnectionDroppedError",
    "DriftFault",
    "DripFault",
    "Fault",
    "Faults",
    "HangFault",
    "LatencyFault",
    "LoggedRequest",
    "MalformedBodyFault",
    "PageLoopFault",
    "RateLimitFault",
    "RequestGate",
    "RequestLog",
    "ResetFault",
    "Rule",
    "StatusFault",
    "VanishFault",
    "on_item",
    "remove_field",
    "set_field",
]

Json = dict[str, Any]
Sleep = Callable[[float], Awaitable[None]]

H = TypeVar("H")
"""An app's own handler type, passed through the gate untouched."""


class ConnectionDroppedError(Exception):
    """Raised by the app to drop a connection (`ResetFault`); a server closes it."""


@dataclass(frozen=True)
class StatusFault:
    """Answer `status_code`; by default with the platform's error body for it.

    A dict `body` is sent as JSON, bytes as they are (set `Content-Type` in `headers`).
    """

    status_code: int
    body: Json | bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 200 <= self.status_code <= 599:
            raise ValueError(f"status_code must be within 200..599, got {self.status_code}")


@dataclass(frozen=True)
class RateLimitFault:
    """Answer the platform's 429, with `Retry-After` only if `retry_after_seconds` is given.

    GrowthBook's 429 also carries `RateLimit-Limit` and `RateLimit-Remaining: 0`, and
    `RateLimit-Reset` only beside `Retry-After` (so without it the client has no hint at all).
    """

    retry_after_seconds: int | None = None

    def __post_init__(self) -> None:
        if self.retry_after_seconds is not None and self.retry_after_seconds < 0:
            raise ValueError(f"retry_after_seconds must be >= 0, got {self.retry_after_seconds}")


@dataclass(frozen=True)
class MalformedBodyFault:
    """Answer 200 `application/json` with `body`, which must not parse as JSON."""

    body: bytes = b'{"message": "truncat'

    def __post_init__(self) -> None:
        try:
            json.loads(self.body)
        except ValueError:
            return
        raise ValueError(f"a malformed body must not be valid JSON: {self.body!r}")


@dataclass(frozen=True)
class DriftFault:
    """Pass a successful answer's JSON body (freshly parsed, so free to change) to `mutate`."""

    mutate: Callable[[Json], Json]


@dataclass(frozen=True)
class LatencyFault:
    """Wait `delay_seconds` (with the `Faults` sleep), then let the request through."""

    delay_seconds: float

    def __post_init__(self) -> None:
        if not self.delay_seconds >= 0:
            raise ValueError(f"delay_seconds must be >= 0, got {self.delay_seconds}")


@dataclass(frozen=True)
class HangFault:
    """Never answer: wait until the client disconnects or the request is cancelled."""


@dataclass(frozen=True)
class ResetFault:
    """Drop the connection after the status line, before the body (see the module docs)."""


@dataclass(frozen=True)
class DripFault:
    """Send the platform's answer with its body `chunk_bytes` at a time, `interval_seconds`
    (of the `Faults` sleep) apart, starting with a gap: a slow drip that keeps a connection
    busy without ever tripping a per-read timeout."""

    chunk_bytes: int = 1
    interval_seconds: float = 0.05

    def __post_init__(self) -> None:
        if self.chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be at least 1, got {self.chunk_bytes}")
        if not self.interval_seconds >= 0:
            raise ValueError(f"interval_seconds must be >= 0, got {self.interval_seconds}")


@dataclass(frozen=True)
class VanishFault:
    """The experiment `experiment_id` is gone, as if deleted (applied by the platform app:
    left out of lists, unknown to its own endpoints)."""

    experiment_id: str


@dataclass(frozen=True)
class PageLoopFault:
    """List pagination that loops (applied by the platform app to its list endpoints): a page
    starting at `from_offset` or later (items counted from 0; Statsig's page p starts at
    (p - 1) × limit) carries the items at `to_offset` instead of its own, and every page
    promises another (`hasMore` with `nextOffset` advancing as usual; a `nextPage`), like a
    server whose paging broke. Read to the end, such a list never ends."""

    from_offset: int = 1
    to_offset: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.to_offset < self.from_offset:
            raise ValueError(
                f"a loop goes back: need 0 <= to_offset < from_offset, got "
                f"to_offset={self.to_offset}, from_offset={self.from_offset}"
            )

    def start_of(self, offset: int) -> int:
        """Where the items of the page requested at `offset` really start."""
        return self.to_offset if offset >= self.from_offset else offset


Fault = (
    StatusFault
    | RateLimitFault
    | MalformedBodyFault
    | DriftFault
    | LatencyFault
    | HangFault
    | ResetFault
    | DripFault
    | VanishFault
    | PageLoopFault
)
"""What a rule does to the requests it applies to."""

_APP_FAULTS = (VanishFault, PageLoopFault)
"""Faults the platform apps apply themselves (see the module docs)."""


def set_field(path: str, value: Any) -> Callable[[Json], Json]:
    """A drift that sets the existing field at dotted `path` (list items by index) to `value`.

    For example `set_field("result.results.0.checks.srm", "0.5")` turns a number into a string.
    """

    def mutate(body: Json) -> Json:
        parent, key = _parent_of(body, path)
        parent[key] = value
        return body

    return mutate


def remove_field(path: str) -> Callable[[Json], Json]:
    """A drift that removes the field (or list item) at dotted `path`."""

    def mutate(body: Json) -> Json:
        parent, key = _parent_of(body, path)
        del parent[key]
        return body

    return mutate


def on_item(
    list_path: str, where: Mapping[str, Any], mutate: Callable[[Json], Json]
) -> Callable[[Json], Json]:
    """A drift applying `mutate` to each item of the list at dotted `list_path` whose fields
    equal `where`; other items, and a page without such an item, are left as they are.

    For example `on_item("experimentResults", {"experimentId": "exp_a"},
    set_field("results.0.totalUsers", "many"))` breaks one experiment of a portfolio page.
    """

    def mutate_items(body: Json) -> Json:
        parent, key = _parent_of(body, list_path)
        items = parent[key]
        if not isinstance(items, list):
            raise LookupError(f"drift path {list_path!r} is not a list")
        parent[key] = [
            mutate(item)
            if isinstance(item, dict) and all(item.get(k) == v for k, v in where.items())
            else item
            for item in items
        ]
        return body

    return mutate_items


def _parent_of(body: Json, path: str) -> tuple[Any, Any]:
    """The container holding the last segment of `path`, and that segment as its key."""
    node: Any = body
    segments = path.split(".")
    keys: list[Any] = []
    for depth, segment in enumerate(segments):
        at = ".".join(segments[:depth]) or "the body"
        key: Any = segment
        if isinstance(node, list):
            if not segment.isdigit() or int(segment) >= len(node):
                raise LookupError(f"drift path {path!r}: no item {segment!r} in {at}")
            key = int(segment)
        elif not isinstance(node, dict) or segment not in node:
            raise LookupError(f"drift path {path!r}: no field {segment!r} in {at}")
        keys.append(key)
        if depth < len(segments) - 1:
            node = node[key]
    return node, keys[-1]


@dataclass(eq=False)
class Rule:
    """A fault, the requests it matches, and when it is active; made by `Faults.add`.

    `hits` counts the requests it has applied to.
    """

    fault: Fault
    path: str | re.Pattern[str] | None = None
    method: str | None = None
    times: int | None = None
    start: datetime | None = None
    until: datetime | None = None
    hits: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.times is not None and self.times < 1:
            raise ValueError(f"times must be at least 1, got {self.times}")
        for name, moment in (("start", self.start), ("until", self.until)):
            if moment is not None and moment.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
        if self.start is not None and self.until is not None and self.start >= self.until:
            raise ValueError(f"start ({self.start}) must be before until ({self.until})")

    def is_active(self, now: datetime) -> bool:
        """Whether the rule still applies at `now` of the app's clock."""
        return (
            (self.times is None or self.hits < self.times)
            and (self.start is None or self.start <= now)
            and (self.until is None or now < self.until)
        )

    def matches(self, method: str, path: str) -> bool:
        """Whether a request with `method` and URL `path` is one the rule is about."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is None:
            return True
        if isinstance(self.path, re.Pattern):
            return self.path.search(path) is not None
        return fnmatch.fnmatchcase(path, self.path)


class Faults:
    """The fault rules of one or more apps, changeable while they serve.

    `sleep` is what a `LatencyFault` waits with: `anyio.sleep` for real delays, or a test
    clock's sleep to make latency deterministic.
    """

    def __init__(self, *, sleep: Sleep = anyio.sleep) -> None:
        self.sleep = sleep
        self._rules: list[Rule] = []

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(self._rules)

    def add(
        self,
        fault: Fault,
        *,
        path: str | re.Pattern[str] | None = None,
        method: str | None = None,
        times: int | None = None,
        start: datetime | None = None,
        until: datetime | None = None,
    ) -> Rule:
        """Apply `fault` to matching requests (all by default) while active; the new rule."""
        rule = Rule(fault, path=path, method=method, times=times, start=start, until=until)
        self._rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        """Stop applying `rule`; a rule that is not (or no longer) here is a ValueError."""
        try:
            self._rules.remove(rule)
        except ValueError:
            raise ValueError(f"no such fault rule: {rule!r}") from None

    def clear(self) -> None:
        """Remove every rule."""
        self._rules.clear()

    def _take(self, request: Request, now: datetime, *, is_drift: bool) -> Rule | None:
        """The earliest active rule matching `request` (drifts or the others, never the app's
        own), counted a hit."""
        for rule in tuple(self._rules):
            if (
                not isinstance(rule.fault, _APP_FAULTS)
                and isinstance(rule.fault, DriftFault) == is_drift
                and rule.is_active(now)
                and rule.matches(request.method, request.url.path)
            ):
                rule.hits += 1
                return rule
        return None

    def _app_rules(self, request: Request, now: datetime, kind: type[Fault]) -> list[Rule]:
        """Every active rule of the app-applied `kind` matching `request`, each counted a hit."""
        taken = [
            rule
            for rule in tuple(self._rules)
            if isinstance(rule.fault, kind)
            and rule.is_active(now)
            and rule.matches(request.method, request.url.path)
        ]
        for rule in taken:
            rule.hits += 1
        return taken


@dataclass(frozen=True)
class LoggedRequest:
    """One request an app received; `status_code` is None when it got no HTTP answer."""

    method: str
    path: str
    query: str
    status_code: int | None
    at: datetime
    """The app's clock when the request arrived."""
    fault: Fault | None = None
    """The fault that shaped the answer, if any."""


class RequestLog:
    """Every request one or more apps received, in the order their outcomes were settled."""

    def __init__(self) -> None:
        self._entries: list[LoggedRequest] = []

    @property
    def entries(self) -> tuple[LoggedRequest, ...]:
        return tuple(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[LoggedRequest]:
        return iter(self.entries)

    def count(self, *, path_prefix: str = "", method: str | None = None) -> int:
        """How many requests had a path starting with `path_prefix` (and `method`, if given)."""
        return sum(
            1
            for entry in self._entries
            if entry.path.startswith(path_prefix)
            and (method is None or entry.method.upper() == method.upper())
        )

    def clear(self) -> None:
        self._entries.clear()

    def _record(self, entry: LoggedRequest) -> None:
        self._entries.append(entry)


class RequestGate:
    """Where an app's requests are logged and faults injected, around the platform's answer.

    `error(status_code, message)` and `too_many_requests(retry_after_seconds)` build the
    platform's own error and 429 answers (the gate adds `Retry-After`).
    """

    def __init__(
        self,
        *,
        faults: Faults | None,
        request_log: RequestLog | None,
        error: Callable[[int, str], Response],
        too_many_requests: Callable[[int | None], Response],
    ) -> None:
        self._faults = faults
        self._request_log = request_log
        self._error = error
        self._too_many_requests = too_many_requests

    def endpoint(
        self,
        handler: H,
        *,
        clock: Callable[[], datetime],
        answer: Callable[[Request, H, datetime], Response],
    ) -> Callable[[Request], Awaitable[Response]]:
        """A Starlette endpoint: read `clock` once per request, then `serve` it with
        `answer(request, handler, now)` as the platform's own answer."""

        async def endpoint(request: Request) -> Response:
            now = clock()
            return await self.serve(request, now=now, answer=lambda: answer(request, handler, now))

        return endpoint

    async def serve(
        self, request: Request, *, now: datetime, answer: Callable[[], Response]
    ) -> Response:
        """The answer to `request` arrived at `now`: a fault's, or `answer()` (maybe drifted)."""
        fault: Fault | None = None
        response: Response | None = None
        try:
            rule = self._take(request, now, is_drift=False)
            if rule is not None:
                fault = rule.fault
                response = await self._inject(rule.fault, request)
            if response is None:
                response = answer()
                if 200 <= response.status_code < 300 and isinstance(response, JSONResponse):
                    drift = self._take(request, now, is_drift=True)
                    if drift is not None and isinstance(drift.fault, DriftFault):
                        fault = fault if isinstance(fault, DripFault) else drift.fault
                        response = _drifted(response, drift.fault)
                if isinstance(fault, DripFault):
                    assert self._faults is not None  # a fault was taken from them
                    response = _Dripped(response, fault, self._faults.sleep)
            return response
        finally:
            if self._request_log is not None:
                self._request_log._record(
                    LoggedRequest(
                        method=request.method,
                        path=request.url.path,
                        query=request.url.query,
                        status_code=_status_of(response),
                        at=now,
                        fault=fault,
                    )
                )

    def _take(self, request: Request, now: datetime, *, is_drift: bool) -> Rule | None:
        if self._faults is None:
            return None
        return self._faults._take(request, now, is_drift=is_drift)

    def vanished(self, request: Request, now: datetime) -> frozenset[str]:
        """The experiments gone for `request` arriving at `now` (active `VanishFault`s)."""
        if self._faults is None:
            return frozenset()
        rules = self._faults._app_rules(request, now, VanishFault)
        return frozenset(r.fault.experiment_id for r in rules if isinstance(r.fault, VanishFault))

    def page_loop(self, request: Request, now: datetime) -> PageLoopFault | None:
        """The `PageLoopFault` of the earliest active rule matching `request`, for a list
        endpoint to apply; None when its pages are honest."""
        if self._faults is None:
            return None
        rules = self._faults._app_rules(request, now, PageLoopFault)
        return next((r.fault for r in rules if isinstance(r.fault, PageLoopFault)), None)

    async def _inject(self, fault: Fault, request: Request) -> Response | None:
        """The answer `fault` gives instead of the platform's, or None to let it through."""
        match fault:
            case StatusFault(status_code=code, body=body, headers=headers):
                if body is None:
                    response = self._error(code, _reason(code))
                elif isinstance(body, bytes):
                    response = Response(body, status_code=code)
                else:
                    response = JSONResponse(body, status_code=code)
                response.headers.update(headers)
                return response
            case RateLimitFault(retry_after_seconds=retry_after):
                response = self._too_many_requests(retry_after)
                if retry_after is not None:
                    response.headers["Retry-After"] = str(retry_after)
                return response
            case MalformedBodyFault(body=body):
                return Response(body, media_type="application/json")
            case LatencyFault(delay_seconds=delay):
                assert self._faults is not None  # a fault was taken from them
                await self._faults.sleep(delay)
                return None
            case HangFault():
                await _wait_for_disconnect(request)
                return _NoAnswer()
            case ResetFault():
                return _DroppedConnection()
            case DripFault():
                return None  # the platform answers; `serve` drips the body
            case DriftFault():  # pragma: no cover - drifts are taken after the answer
                raise AssertionError("a drift is applied to an answer, not instead of one")
            case VanishFault() | PageLoopFault():  # pragma: no cover - never taken
                raise AssertionError("the platform app applies this fault itself")
            case _:  # pragma: no cover - exhaustive
                assert_never(fault)


class _NoAnswer(Response):
    """Sends nothing: the client is gone (a hang ended by its disconnect)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


class _DroppedConnection(_NoAnswer):
    """Starts a 200 that promises a body, then makes the server drop the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"64")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise ConnectionDroppedError("simulated connection reset (ResetFault)")


class _Dripped(Response):
    """Sends `answer` with its body dripped: a chunk, `interval` later another, and so on,
    until the body is out or the client is gone."""

    def __init__(self, answer: Response, drip: DripFault, sleep: Sleep) -> None:
        self.status_code = answer.status_code
        self.raw_headers = answer.raw_headers
        self.background = None
        self._body = bytes(answer.body)
        self._drip = drip
        self._sleep = sleep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tg:

            async def drip() -> None:
                await send(
                    {
                        "type": "http.response.start",
                        "status": self.status_code,
                        "headers": self.raw_headers,
                    }
                )
                size = self._drip.chunk_bytes
                for start in range(0, len(self._body), size):
                    await self._sleep(self._drip.interval_seconds)
                    chunk = self._body[start : start + size]
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                tg.cancel_scope.cancel()

            tg.start_soon(drip)
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()  # the client is gone: stop dripping


async def _wait_for_disconnect(request: Request) -> None:
    """Return when the client disconnects; an in-process transport never says so."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _drifted(response: JSONResponse, drift: DriftFault) -> JSONResponse:
    body = drift.mutate(json.loads(bytes(response.body)))
    headers = {
        name: value
        for name, value in response.headers.items()
        if name not in ("content-length", "content-type")
    }
    return JSONResponse(body, status_code=response.status_code, headers=headers)


def _status_of(response: Response | None) -> int | None:
    """The status a client got, or None when it got no HTTP answer."""
    if response is None or isinstance(response, _NoAnswer):
        return None
    return response.status_code


def _reason(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return f"HTTP {status_code}"
