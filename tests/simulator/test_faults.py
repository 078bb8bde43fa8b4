"""Fault injection and the request log of both simulated platforms, end to end through httpx."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from expwatch.serving import serve_asgi
from simulator import (
    ConnectionDroppedError,
    DriftFault,
    DripFault,
    Faults,
    HangFault,
    LatencyFault,
    LoggedRequest,
    MalformedBodyFault,
    PageLoopFault,
    RateLimitFault,
    RequestLog,
    ResetFault,
    StatusFault,
    VanishFault,
    build_growthbook_app,
    build_statsig_app,
    default_scenario,
    default_statsig_scenario,
    on_item,
    remove_field,
    set_field,
)
from tests.helpers import ManualClock

pytestmark = pytest.mark.anyio

START = datetime(2026, 1, 1, tzinfo=UTC)
REFRESH_SECONDS = 60.0
NOW = START + timedelta(seconds=3 * REFRESH_SECONDS + 30)  # refresh 3: results everywhere
GB_KEY = "secret_test_key"
STATSIG_KEY = "console-secretTestKey123"
GB_RESULTS = "/api/v1/experiments/exp_checkout_redesign/results"
STATSIG_EXPERIMENT = "/console/v1/experiments/checkout_redesign"
Json = dict[str, Any]


@dataclass(frozen=True)
class Platform:
    """How a test reaches one simulated platform and what its error answers look like."""

    name: str
    build: Callable[..., Starlette]
    headers: dict[str, str]
    path: str
    """A read that answers 200 at `NOW`."""
    missing_path: str
    """A read of an unknown experiment: an error answer."""
    error_body: Callable[[int, str], Json]
    too_many_requests_body: Json


def build_growthbook(clock: ManualClock, **options: Any) -> Starlette:
    scenario = default_scenario(start=START, refresh_seconds=REFRESH_SECONDS)
    return build_growthbook_app(scenario, api_key=GB_KEY, clock=clock.now, **options)


def build_statsig(clock: ManualClock, **options: Any) -> Starlette:
    scenario = default_statsig_scenario(start=START, refresh_seconds=REFRESH_SECONDS)
    return build_statsig_app(scenario, api_key=STATSIG_KEY, clock=clock.now, **options)


GROWTHBOOK = Platform(
    name="growthbook",
    build=build_growthbook,
    headers={"Authorization": f"Bearer {GB_KEY}"},
    path=GB_RESULTS,
    missing_path="/api/v1/experiments/exp_nope/results",
    error_body=lambda code, message: {"message": message},
    too_many_requests_body={"message": "Too many requests, limit to 60 per minute"},
)
STATSIG = Platform(
    name="statsig",
    build=build_statsig,
    headers={"STATSIG-API-KEY": STATSIG_KEY, "STATSIG-API-VERSION": "20240601"},
    path=STATSIG_EXPERIMENT,
    missing_path="/console/v1/experiments/nope",
    error_body=lambda code, message: {"status": code, "message": message},
    too_many_requests_body={
        "status": 429,
        "message": "Too many requests. Please slow down and try again later.",
    },
)
both_platforms = pytest.mark.parametrize("platform", [GROWTHBOOK, STATSIG], ids=lambda p: p.name)


@asynccontextmanager
async def connect(
    app: Starlette, platform: Platform, *, is_authenticated: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    headers = platform.headers if is_authenticated else {}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://platform.test", headers=headers
    ) as client:
        yield client


async def get_json(client: httpx.AsyncClient, path: str) -> Json:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


# -- status faults ---------------------------------------------------------------------------


@both_platforms
async def test_a_503_burst_answers_three_times_then_the_platform_answers(
    platform: Platform,
) -> None:
    """A `times=3` 503 rule answers the next three requests in the platform's error shape."""
    faults = Faults()
    rule = faults.add(StatusFault(503), times=3)
    async with connect(platform.build(ManualClock(NOW), faults=faults), platform) as client:
        burst = [await client.get(platform.path) for _ in range(3)]
        after = await client.get(platform.path)
    assert [r.status_code for r in burst] == [503, 503, 503]
    assert burst[0].json() == platform.error_body(503, "Service Unavailable")
    assert after.status_code == 200
    assert rule.hits == 3


@both_platforms
async def test_a_status_fault_answers_before_authentication(platform: Platform) -> None:
    """An unauthenticated request gets the fault's own body and headers, then the 4xx again."""
    faults = Faults()
    rule = faults.add(
        StatusFault(502, body=b"<html>Bad Gateway</html>", headers={"Content-Type": "text/html"})
    )
    app = platform.build(ManualClock(NOW), faults=faults)
    async with connect(app, platform, is_authenticated=False) as client:
        faulted = await client.get(platform.path)
        faults.remove(rule)
        refused = await client.get(platform.path)
    assert faulted.status_code == 502
    assert faulted.text == "<html>Bad Gateway</html>"
    assert faulted.headers["Content-Type"] == "text/html"
    assert refused.status_code in (400, 401)


@both_platforms
async def test_a_json_status_body_replaces_the_platforms_error(platform: Platform) -> None:
    """A dict body is served as JSON with the fault's status."""
    faults = Faults()
    faults.add(StatusFault(500, body={"error": "boom"}))
    async with connect(platform.build(ManualClock(NOW), faults=faults), platform) as client:
        response = await client.get(platform.path)
    assert (response.status_code, response.json()) == (500, {"error": "boom"})


async def test_an_unnamed_status_gets_a_generic_message() -> None:
    """A status without an HTTP reason phrase is still answered in the platform's shape."""
    faults = Faults()
    faults.add(StatusFault(599))
    async with connect(GROWTHBOOK.build(ManualClock(NOW), faults=faults), GROWTHBOOK) as client:
        response = await client.get(GB_RESULTS)
    assert (response.status_code, response.json()) == (599, {"message": "HTTP 599"})


# -- rate-limit storms -----------------------------------------------------------------------


@both_platforms
@pytest.mark.parametrize("retry_after_seconds", [None, 30], ids=["no-retry-after", "retry-after"])
async def test_a_429_storm_lasts_until_its_end_on_the_app_clock(
    platform: Platform, retry_after_seconds: int | None
) -> None:
    """Until `until` every request gets the platform's 429; after the clock passes it, 200."""
    clock = ManualClock(NOW)
    faults = Faults()
    faults.add(
        RateLimitFault(retry_after_seconds=retry_after_seconds),
        until=NOW + timedelta(seconds=30),
    )
    async with connect(platform.build(clock, faults=faults), platform) as client:
        storm = [await client.get(platform.path) for _ in range(3)]
        clock.advance(29.9)
        last = await client.get(platform.path)
        clock.advance(0.1)
        after = await client.get(platform.path)
    for response in [*storm, last]:
        assert response.status_code == 429
        assert response.json() == platform.too_many_requests_body
        expected = None if retry_after_seconds is None else str(retry_after_seconds)
        assert response.headers.get("Retry-After") == expected
    assert after.status_code == 200


@pytest.mark.parametrize("retry_after_seconds", [None, 30], ids=["no-retry-after", "retry-after"])
async def test_a_growthbook_429_storm_carries_ratelimit_headers(
    retry_after_seconds: int | None,
) -> None:
    """GrowthBook's storm says its limit and no remaining budget; a reset time only with one."""
    faults = Faults()
    faults.add(RateLimitFault(retry_after_seconds=retry_after_seconds))
    async with connect(GROWTHBOOK.build(ManualClock(NOW), faults=faults), GROWTHBOOK) as client:
        response = await client.get(GB_RESULTS)
    assert response.headers["RateLimit-Limit"] == "60"
    assert response.headers["RateLimit-Remaining"] == "0"
    expected = None if retry_after_seconds is None else str(retry_after_seconds)
    assert response.headers.get("RateLimit-Reset") == expected


@pytest.mark.parametrize(
    ("platform", "options"),
    [(GROWTHBOOK, {"rate_limit_per_minute": 2}), (STATSIG, {"rate_limit_per_window": 2})],
    ids=["growthbook", "statsig"],
)
async def test_faulted_requests_do_not_count_against_the_rate_limit(
    platform: Platform, options: dict[str, int]
) -> None:
    """After a storm of five faulted requests the platform still allows its own two."""
    faults = Faults()
    faults.add(RateLimitFault(), times=5)
    app = platform.build(ManualClock(NOW), faults=faults, **options)
    async with connect(app, platform) as client:
        codes = [(await client.get(platform.path)).status_code for _ in range(8)]
    assert codes == [429] * 5 + [200, 200, 429]


async def test_a_fault_window_opens_and_closes_on_the_app_clock() -> None:
    """A rule with `start` and `until` applies from `start` (inclusive) to `until` (exclusive)."""
    clock = ManualClock(NOW)
    faults = Faults()
    faults.add(
        StatusFault(503), start=NOW + timedelta(seconds=10), until=NOW + timedelta(seconds=20)
    )
    codes = []
    async with connect(STATSIG.build(clock, faults=faults), STATSIG) as client:
        for _ in range(3):
            codes.append((await client.get(STATSIG_EXPERIMENT)).status_code)
            clock.advance(10)
    assert codes == [200, 503, 200]


# -- malformed and drifted bodies ------------------------------------------------------------


@both_platforms
async def test_a_malformed_answer_is_a_200_whose_body_is_not_json(platform: Platform) -> None:
    """The answer claims JSON, but parsing its body fails."""
    faults = Faults()
    faults.add(MalformedBodyFault())
    async with connect(platform.build(ManualClock(NOW), faults=faults), platform) as client:
        response = await client.get(platform.path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_a_malformed_body_must_not_be_json() -> None:
    """A 'malformed' body that parses would make a test that cannot fail."""
    with pytest.raises(ValueError, match="must not be valid JSON"):
        MalformedBodyFault(b'{"ok": true}')


async def test_a_drift_sets_exactly_the_given_field() -> None:
    """`set_field` turns GrowthBook's SRM p-value into a string and changes nothing else."""
    faults = Faults()
    path = "result.results.0.checks.srm"
    app = GROWTHBOOK.build(ManualClock(NOW), faults=faults)
    async with connect(app, GROWTHBOOK) as client:
        honest = await get_json(client, GB_RESULTS)
        rule = faults.add(DriftFault(set_field(path, "0.5")), path="*/results")
        drifted = await get_json(client, GB_RESULTS)
    expected = copy.deepcopy(honest)
    expected["result"]["results"][0]["checks"]["srm"] = "0.5"
    assert isinstance(honest["result"]["results"][0]["checks"]["srm"], float)
    assert drifted == expected
    assert rule.hits == 1


async def test_a_drift_removes_exactly_the_given_field() -> None:
    """`remove_field` drops one key of Statsig's experiment and one item of a list."""
    faults = Faults()
    app = STATSIG.build(ManualClock(NOW), faults=faults)
    async with connect(app, STATSIG) as client:
        honest = await get_json(client, STATSIG_EXPERIMENT)
        faults.add(DriftFault(remove_field("data.hypothesis")))
        without_hypothesis = await get_json(client, STATSIG_EXPERIMENT)
        faults.clear()
        faults.add(DriftFault(remove_field("data.primaryMetrics.0")))
        without_metric = await get_json(client, STATSIG_EXPERIMENT)
    expected = copy.deepcopy(honest)
    del expected["data"]["hypothesis"]
    assert without_hypothesis == expected
    expected = copy.deepcopy(honest)
    del expected["data"]["primaryMetrics"][0]
    assert honest["data"]["primaryMetrics"]
    assert without_metric == expected


@both_platforms
async def test_a_drift_leaves_error_answers_alone(platform: Platform) -> None:
    """Only successful answers drift, and error answers do not use up a drift's `times`."""
    faults = Faults()
    rule = faults.add(DriftFault(set_field("message", "drifted")), times=1)
    app = platform.build(ManualClock(NOW), faults=faults)
    async with connect(app, platform) as client:
        missing = await client.get(platform.missing_path)
    async with connect(app, platform, is_authenticated=False) as client:
        refused = await client.get(platform.path)
    assert missing.json()["message"] != "drifted"
    assert refused.json()["message"] != "drifted"
    assert rule.hits == 0


def test_a_drift_path_that_does_not_exist_names_what_is_missing() -> None:
    """A typo in a drift path is an error naming the missing segment, not a silent no-op."""
    body: Json = {"result": {"results": [{"checks": {"srm": 0.4}}]}}
    with pytest.raises(LookupError, match=r"no field 'check' in result\.results\.0"):
        set_field("result.results.0.check.srm", 1)(body)
    with pytest.raises(LookupError, match=r"no item '1' in result\.results"):
        remove_field("result.results.1")(body)
    with pytest.raises(LookupError, match="no field 'results' in the body"):
        remove_field("results")(body)
    assert body == {"result": {"results": [{"checks": {"srm": 0.4}}]}}


# -- latency, hangs and resets --------------------------------------------------------------


async def test_latency_holds_the_answer_until_the_sleep_ends() -> None:
    """With a test clock's sleep, the answer comes only once the clock passes the delay."""
    clock = ManualClock(NOW)
    faults = Faults(sleep=clock.sleep)
    faults.add(LatencyFault(2.0))
    async with connect(GROWTHBOOK.build(ManualClock(NOW)), GROWTHBOOK) as client:
        honest = await get_json(client, GB_RESULTS)
    responses: list[httpx.Response] = []
    app = GROWTHBOOK.build(clock, faults=faults)
    async with connect(app, GROWTHBOOK) as client, anyio.create_task_group() as tg:

        async def fetch() -> None:
            responses.append(await client.get(GB_RESULTS))

        tg.start_soon(fetch)
        with anyio.fail_after(5):
            await clock.wait_for_sleep_calls(1)
        assert responses == []
        clock.advance(2.0)
    assert [r.status_code for r in responses] == [200]
    assert responses[0].json() == honest  # judged at its arrival


async def test_latency_sleeps_with_anyio_by_default_then_answers() -> None:
    """A zero delay goes through `anyio.sleep` and the answer is the platform's own."""
    faults = Faults()
    rule = faults.add(LatencyFault(0.0))
    async with connect(STATSIG.build(ManualClock(NOW)), STATSIG) as client:
        honest = await get_json(client, STATSIG_EXPERIMENT)
    async with connect(STATSIG.build(ManualClock(NOW), faults=faults), STATSIG) as client:
        delayed = await get_json(client, STATSIG_EXPERIMENT)
    assert delayed == honest
    assert rule.hits == 1


@both_platforms
async def test_a_hang_never_answers_until_the_client_gives_up(platform: Platform) -> None:
    """A hung request is cancelled by the client's bound; other paths and later requests answer."""
    faults = Faults()
    log = RequestLog()
    faults.add(HangFault(), path=platform.path)
    app = platform.build(ManualClock(NOW), faults=faults, request_log=log)
    async with connect(app, platform) as client:
        with pytest.raises(TimeoutError), anyio.fail_after(0.5):
            await client.get(platform.path)
        other = await client.get(platform.missing_path)
        faults.clear()
        after = await client.get(platform.path)
    assert other.status_code in (400, 404)
    assert after.status_code == 200
    hung = log.entries[0]
    assert (hung.path, hung.status_code, hung.fault) == (platform.path, None, HangFault())
    assert [e.status_code for e in log] == [None, other.status_code, 200]


async def test_a_hang_under_uvicorn_ends_when_the_client_disconnects() -> None:
    """Over loopback the hung request ends with the client's connection, not at shutdown.

    The server's grace period outlasts the test's timeout: had the hang outlived the client,
    shutting the server down would wait for it and fail the test.
    """
    faults = Faults()
    log = RequestLog()
    faults.add(HangFault())
    app = STATSIG.build(ManualClock(NOW), faults=faults, request_log=log)
    async with anyio.create_task_group() as tg:
        port = await tg.start(partial(serve_asgi, app, port=0, grace_seconds=120))
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=STATSIG.headers
        ) as client:
            with pytest.raises(TimeoutError), anyio.fail_after(0.5):
                await client.get(STATSIG_EXPERIMENT)
        tg.cancel_scope.cancel()
    assert [(e.status_code, e.fault) for e in log] == [(None, HangFault())]


async def test_a_reset_in_process_raises_connection_dropped_into_the_client() -> None:
    """Under `httpx.ASGITransport` the app's `ConnectionDroppedError` reaches the caller."""
    faults = Faults()
    log = RequestLog()
    faults.add(ResetFault(), times=1)
    app = GROWTHBOOK.build(ManualClock(NOW), faults=faults, request_log=log)
    async with connect(app, GROWTHBOOK) as client:
        with pytest.raises(ConnectionDroppedError):
            await client.get(GB_RESULTS)
        after = await client.get(GB_RESULTS)
    assert after.status_code == 200
    assert [e.status_code for e in log] == [None, 200]


async def test_a_reset_under_uvicorn_is_a_transport_error() -> None:
    """Over loopback the server closes the connection mid-answer: httpx's RemoteProtocolError."""
    faults = Faults()
    faults.add(ResetFault(), times=1)
    app = STATSIG.build(ManualClock(NOW), faults=faults)
    async with anyio.create_task_group() as tg:
        port = await tg.start(partial(serve_asgi, app, port=0))
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=STATSIG.headers
        ) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(STATSIG_EXPERIMENT)
            after = await client.get(STATSIG_EXPERIMENT)
        tg.cancel_scope.cancel()
    assert after.status_code == 200


# -- rules -----------------------------------------------------------------------------------


async def test_rules_match_by_method_and_regular_expression() -> None:
    """A HEAD-only rule on paths ending in /results leaves GETs and other paths alone."""
    faults = Faults()
    faults.add(StatusFault(503), method="head", path=re.compile(r"/results$"))
    async with connect(GROWTHBOOK.build(ManualClock(NOW), faults=faults), GROWTHBOOK) as client:
        get = await client.get(GB_RESULTS)
        head = await client.head(GB_RESULTS)
        other = await client.head("/api/v1/experiments")
    assert (get.status_code, head.status_code, other.status_code) == (200, 503, 200)


async def test_a_glob_matches_the_whole_path() -> None:
    """`*` crosses slashes, but a glob without one must match the path exactly."""
    faults = Faults()
    faults.add(StatusFault(503), path="*/exp_checkout_redesign/*")
    faults.add(StatusFault(502), path="/api/v1/experiments")
    async with connect(GROWTHBOOK.build(ManualClock(NOW), faults=faults), GROWTHBOOK) as client:
        results = await client.get(GB_RESULTS)
        listing = await client.get("/api/v1/experiments")
        experiment = await client.get("/api/v1/experiments/exp_checkout_redesign")
    assert (results.status_code, listing.status_code, experiment.status_code) == (503, 502, 200)


async def test_the_earliest_added_rule_wins() -> None:
    """Of two matching rules the first added applies; removing it lets the second apply."""
    faults = Faults()
    first = faults.add(StatusFault(503))
    second = faults.add(StatusFault(500))
    async with connect(STATSIG.build(ManualClock(NOW), faults=faults), STATSIG) as client:
        before = await client.get(STATSIG_EXPERIMENT)
        faults.remove(first)
        after = await client.get(STATSIG_EXPERIMENT)
    assert (before.status_code, after.status_code) == (503, 500)
    assert faults.rules == (second,)


async def test_latency_and_drift_apply_to_the_same_request() -> None:
    """A delayed request still reaches the platform, so its successful answer can drift."""
    faults = Faults()
    faults.add(LatencyFault(0.0))
    faults.add(DriftFault(set_field("data.status", 7)))
    async with connect(STATSIG.build(ManualClock(NOW), faults=faults), STATSIG) as client:
        body = await get_json(client, STATSIG_EXPERIMENT)
    assert body["data"]["status"] == 7


def test_removing_a_rule_twice_is_refused() -> None:
    """A rule that is no longer there cannot be removed again (likely a mix-up in a test)."""
    faults = Faults()
    rule = faults.add(HangFault())
    faults.remove(rule)
    with pytest.raises(ValueError, match="no such fault rule"):
        faults.remove(rule)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Faults().add(HangFault(), times=0), "times must be at least 1"),
        (lambda: Faults().add(HangFault(), start=datetime(2026, 1, 1)), "timezone-aware"),
        (lambda: Faults().add(HangFault(), until=NOW, start=NOW), "must be before until"),
        (lambda: StatusFault(99), "within 200..599"),
        (lambda: LatencyFault(-1.0), "delay_seconds must be >= 0"),
        (lambda: RateLimitFault(retry_after_seconds=-1), "retry_after_seconds must be >= 0"),
    ],
    ids=["times", "naive", "empty-window", "status", "latency", "retry-after"],
)
def test_invalid_faults_and_rules_are_refused(make: Callable[[], object], message: str) -> None:
    """Nonsense fault settings fail where they are written, saying which one."""
    with pytest.raises(ValueError, match=message):
        make()


# -- the request log -------------------------------------------------------------------------


async def test_the_request_log_records_every_request_of_both_apps() -> None:
    """One log sees each request's method, path, query, status, arrival time and fault."""
    clock = ManualClock(NOW)
    log = RequestLog()
    faults = Faults()
    burst = StatusFault(503)
    faults.add(burst, path="/console/*", times=1)
    gb = GROWTHBOOK.build(clock, faults=faults, request_log=log)
    statsig = STATSIG.build(clock, faults=faults, request_log=log)
    async with connect(gb, GROWTHBOOK) as client:
        await client.get(GB_RESULTS, params={"phase": "0"})
        clock.advance(1)
        await client.head("/api/v1/experiments")
    async with connect(gb, GROWTHBOOK, is_authenticated=False) as client:
        await client.get(GB_RESULTS)
    async with connect(statsig, STATSIG) as client:
        await client.get(STATSIG_EXPERIMENT)
        await client.get(STATSIG_EXPERIMENT)
    later = NOW + timedelta(seconds=1)
    assert log.entries == (
        LoggedRequest("GET", GB_RESULTS, "phase=0", 200, NOW),
        LoggedRequest("HEAD", "/api/v1/experiments", "", 200, later),
        LoggedRequest("GET", GB_RESULTS, "", 400, later),
        LoggedRequest("GET", STATSIG_EXPERIMENT, "", 503, later, burst),
        LoggedRequest("GET", STATSIG_EXPERIMENT, "", 200, later),
    )
    assert log.count(path_prefix="/api/v1") == 3
    assert log.count(path_prefix="/api/v1", method="get") == 2
    assert log.count(path_prefix="/console/v1/experiments/") == 2
    assert len(log) == log.count() == 5
    log.clear()
    assert len(log) == 0
    assert list(log) == []


# -- slow drips ------------------------------------------------------------------------------


async def test_a_drip_sends_the_platforms_answer_chunk_by_chunk_on_the_faults_sleep() -> None:
    """With a test clock's sleep nothing of the body arrives before the clock moves; once it
    has moved far enough, the whole answer is the platform's own."""
    clock = ManualClock(NOW)
    async with connect(GROWTHBOOK.build(ManualClock(NOW)), GROWTHBOOK) as client:
        honest = await get_json(client, GB_RESULTS)
    faults = Faults(sleep=clock.sleep)
    log = RequestLog()
    rule = faults.add(DripFault(chunk_bytes=100, interval_seconds=1.0), path=GB_RESULTS)
    app = GROWTHBOOK.build(clock, faults=faults, request_log=log)
    responses: list[httpx.Response] = []
    async with connect(app, GROWTHBOOK) as client, anyio.create_task_group() as tg:

        async def fetch() -> None:
            responses.append(await client.get(GB_RESULTS))

        tg.start_soon(fetch)
        with anyio.fail_after(5):
            await clock.wait_for_sleep_calls(1)
            assert responses == []
            chunks = -(-len(json.dumps(honest, separators=(",", ":"))) // 100)
            for _ in range(chunks + 1):
                await anyio.wait_all_tasks_blocked()
                clock.advance(1.0)
    assert [r.status_code for r in responses] == [200]
    assert responses[0].json() == honest
    assert clock.sleep_calls >= 2  # dripped, not sent at once
    assert rule.hits == 1 and [(e.status_code, e.fault) for e in log] == [(200, rule.fault)]


async def test_a_drip_under_uvicorn_never_trips_a_read_timeout_longer_than_its_gaps() -> None:
    """Over loopback each chunk arrives within httpx's read timeout, so a client bounded only
    per read gets the whole answer, however long it took in all."""
    async with connect(STATSIG.build(ManualClock(NOW)), STATSIG) as client:
        honest = await get_json(client, STATSIG_EXPERIMENT)
    faults = Faults()
    faults.add(DripFault(chunk_bytes=64, interval_seconds=0.01))
    app = STATSIG.build(ManualClock(NOW), faults=faults)
    async with anyio.create_task_group() as tg:
        port = await tg.start(partial(serve_asgi, app, port=0))
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=STATSIG.headers, timeout=5.0
        ) as client:
            with anyio.fail_after(30):
                response = await client.get(STATSIG_EXPERIMENT)
        tg.cancel_scope.cancel()
    assert response.status_code == 200 and response.json() == honest
    assert len(response.content) > 64  # more than one chunk went over the wire


async def test_a_drip_under_uvicorn_stops_when_the_client_gives_up() -> None:
    """A client's own deadline ends the drip: the server is not left dripping to nobody (its
    grace period outlasts the test's timeout, so a drip outliving the client would fail it)."""
    faults = Faults()
    faults.add(DripFault(chunk_bytes=1, interval_seconds=0.05))
    app = GROWTHBOOK.build(ManualClock(NOW), faults=faults)
    async with anyio.create_task_group() as tg:
        port = await tg.start(partial(serve_asgi, app, port=0, grace_seconds=120))
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=GROWTHBOOK.headers, timeout=5.0
        ) as client:
            with pytest.raises(TimeoutError), anyio.fail_after(0.3):
                await client.get(GB_RESULTS)
        tg.cancel_scope.cancel()


# -- vanishing experiments and looping pages -------------------------------------------------


async def test_a_vanished_growthbook_experiment_is_left_out_and_unknown_until_it_returns() -> None:
    """While the rule is active both lists leave it out (their totals drop) and its own
    endpoints answer GrowthBook's unknown-id 400; after `until` it is back."""
    clock = ManualClock(NOW)
    faults = Faults()
    rule = faults.add(
        VanishFault("exp_checkout_redesign"), start=NOW, until=NOW + timedelta(seconds=10)
    )
    app = GROWTHBOOK.build(clock, faults=faults)
    async with connect(app, GROWTHBOOK) as client:
        listed = await get_json(client, "/api/v1/experiments")
        portfolio = await get_json(client, "/api/v1/experiments/results")
        results = await client.get(GB_RESULTS)
        one = await client.get("/api/v1/experiments/exp_checkout_redesign")
        clock.advance(10)
        back = await get_json(client, "/api/v1/experiments")
    ids = [e["id"] for e in listed["experiments"]]
    assert "exp_checkout_redesign" not in ids and len(ids) == listed["total"] == 3
    assert "exp_checkout_redesign" not in {
        r["experimentId"] for r in portfolio["experimentResults"]
    }
    assert portfolio["total"] == 3
    assert (results.status_code, one.status_code) == (400, 400)
    assert results.json() == {"message": "Could not find experiment with that id"}
    assert back["total"] == 4
    assert rule.hits == 4  # every request while active, none after


async def test_a_vanished_statsig_experiment_is_left_out_and_not_found() -> None:
    """Statsig's list leaves it out (totalItems drops) and its endpoints answer 404."""
    faults = Faults()
    faults.add(VanishFault("checkout_redesign"))
    app = STATSIG.build(ManualClock(NOW), faults=faults)
    async with connect(app, STATSIG) as client:
        listed = await get_json(client, "/console/v1/experiments")
        one = await client.get(STATSIG_EXPERIMENT)
        pulse = await client.get(f"{STATSIG_EXPERIMENT}/pulse_results")
    assert "checkout_redesign" not in [e["id"] for e in listed["data"]]
    assert listed["pagination"]["totalItems"] == 3
    assert (one.status_code, pulse.status_code) == (404, 404)


async def test_a_vanish_between_two_pages_shrinks_the_list_and_skips_an_item() -> None:
    """An experiment gone after the first page was read: the second page's total drops and
    the item that moved into the first page's range is never shown to an offset reader."""
    clock = ManualClock(NOW)
    faults = Faults()
    app = GROWTHBOOK.build(clock, faults=faults)
    async with connect(app, GROWTHBOOK) as client:
        first = await get_json(client, "/api/v1/experiments?limit=1&offset=0")
        faults.add(VanishFault(first["experiments"][0]["id"]), start=NOW + timedelta(seconds=1))
        clock.advance(1)
        rest = [
            await get_json(client, f"/api/v1/experiments?limit=1&offset={offset}")
            for offset in (1, 2, 3)
        ]
        faults.clear()
        everything = await get_json(client, "/api/v1/experiments?limit=4")
    assert (first["total"], [p["total"] for p in rest]) == (4, [3, 3, 3])
    seen = [e["id"] for page in [first, *rest] for e in page["experiments"]]
    missed = [e["id"] for e in everything["experiments"] if e["id"] not in seen]
    assert len(seen) == 3 and len(missed) == 1
    assert missed[0] == everything["experiments"][1]["id"]  # shifted into offset 0's place


async def test_a_growthbook_page_loop_repeats_earlier_items_and_never_ends() -> None:
    """From offset 2 each page carries the items at offset 0 and promises another, its
    nextOffset advancing: following nextOffset never reaches an end."""
    faults = Faults()
    faults.add(PageLoopFault(from_offset=2, to_offset=0), path="/api/v1/experiments")
    app = GROWTHBOOK.build(ManualClock(NOW), faults=faults)
    pages: list[Json] = []
    async with connect(app, GROWTHBOOK) as client:
        offset: int | None = 0
        while offset is not None and len(pages) < 10:
            page = await get_json(client, f"/api/v1/experiments?limit=2&offset={offset}")
            pages.append(page)
            offset = page["nextOffset"] if page["hasMore"] else None
        portfolio = await get_json(client, "/api/v1/experiments/results?limit=2&offset=2")
    assert len(pages) == 10 and all(p["hasMore"] for p in pages)
    assert [p["offset"] for p in pages] == list(range(0, 20, 2))
    first_ids = [e["id"] for e in pages[0]["experiments"]]
    assert all([e["id"] for e in p["experiments"]] == first_ids for p in pages[1:])
    assert portfolio["offset"] == 2  # the rule's path leaves the portfolio scan honest
    assert {r["experimentId"] for r in portfolio["experimentResults"]}.isdisjoint(first_ids)


async def test_a_statsig_page_loop_repeats_the_first_page_with_a_next_page_forever() -> None:
    """Statsig's page 3 of one item carries page 1's item and still names a next page."""
    faults = Faults()
    faults.add(PageLoopFault(from_offset=2, to_offset=0))
    app = STATSIG.build(ManualClock(NOW), faults=faults)
    async with connect(app, STATSIG) as client:
        first = await get_json(client, "/console/v1/experiments?limit=1&page=1")
        second = await get_json(client, "/console/v1/experiments?limit=1&page=2")
        far = await get_json(client, "/console/v1/experiments?limit=1&page=9")
    assert far["data"] == first["data"] != second["data"]
    assert far["pagination"]["nextPage"] is not None
    assert far["pagination"]["pageNumber"] == 9


def test_a_page_loop_must_go_back() -> None:
    """A loop to a later offset would be ordinary paging: refused where it is written."""
    with pytest.raises(ValueError, match="a loop goes back"):
        PageLoopFault(from_offset=2, to_offset=2)
    with pytest.raises(ValueError, match="chunk_bytes must be at least 1"):
        DripFault(chunk_bytes=0)
    with pytest.raises(ValueError, match="interval_seconds must be >= 0"):
        DripFault(interval_seconds=-1)


async def test_a_drift_on_one_item_of_a_list_leaves_the_others_alone() -> None:
    """`on_item` breaks one experiment of a portfolio page and no other; a page without it
    passes unchanged."""
    faults = Faults()
    app = GROWTHBOOK.build(ManualClock(NOW), faults=faults)
    async with connect(app, GROWTHBOOK) as client:
        honest = await get_json(client, "/api/v1/experiments/results")
        faults.add(
            DriftFault(
                on_item(
                    "experimentResults",
                    {"experimentId": "exp_pricing_page"},
                    set_field("results.0.totalUsers", "many"),
                )
            )
        )
        drifted = await get_json(client, "/api/v1/experiments/results")
    expected = copy.deepcopy(honest)
    for item in expected["experimentResults"]:
        if item["experimentId"] == "exp_pricing_page":
            item["results"][0]["totalUsers"] = "many"
    assert drifted == expected != honest
    with pytest.raises(LookupError, match="no field 'results'"):
        on_item("results", {}, set_field("x", 1))({"experimentResults": []})
