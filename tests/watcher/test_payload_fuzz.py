"""Upstream payloads fuzzed: whatever JSON GrowthBook or Statsig answer, a source returns valid
records or raises PayloadError saying what is wrong, and the poller records a source error for
that one experiment while the others are recorded and the breaker does not count it.

Bodies are arbitrary JSON, or real simulator payloads changed by a drawn recipe (sub-trees
replaced, keys or items deleted, items duplicated, values retyped or set to extremes). Every
draw happens in `@given`, never inside the event loop: hypothesis ends an example by raising
`StopTest`, a BaseException that anyio's test runner does not survive. One simulator, store
and supervisor serve all the examples of a test; `--long` runs the long variants.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from simulator import (
    DriftFault,
    Faults,
    build_growthbook_app,
    build_statsig_app,
    default_scenario,
    default_statsig_scenario,
)
from store import (
    Event,
    EventKind,
    Experiment,
    ExperimentNotFound,
    PayloadError,
    Snapshot,
    SourceError,
    SourceRejected,
    Store,
    sqlite_url,
)
from tests.helpers import ManualClock
from watcher import CircuitState, GrowthBookSource, SourcePolicy, StatsigSource, Supervisor

pytestmark = pytest.mark.anyio

GB_KEY = "secret_gb_fuzz_key_1618"
SG_KEY = "console-fuzzWatcherKey1618"
GB_BASE = "http://gb.test"
SG_BASE = "http://statsig.test"
REFRESH_SECONDS = 60.0
REFRESH = 9
"""By this refresh every running experiment of both simulators has results."""
GB_TARGET = "exp_checkout_redesign"
SG_TARGET = "checkout_redesign"
SG_EXPERIMENT = f"/console/v1/experiments/{SG_TARGET}"
REQUEST_LIMIT = 50
"""More requests than this to the fuzzed address in one read is a runaway loop."""
FEW_REQUESTS = 12
"""A couple of readings of a few pages: a list that loops must be noticed within these."""
WAIT_SECONDS = 10.0
"""Bound on one read or one poll cycle: generous, since reaching it only means a hang."""

FUZZ = settings(
    deadline=None,
    print_blob=True,
    # One simulator, store and supervisor per test serve every example, on purpose.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DIRECT = settings(FUZZ, max_examples=40)
POLLER = settings(FUZZ, max_examples=40)
LONG = settings(FUZZ, max_examples=400)
LONG_TIMEOUT = pytest.mark.timeout(900)

# -- strategies ----------------------------------------------------------------------------------

PAYLOAD_KEYS = (
    # GrowthBook REST v1: experiments, results, the portfolio, metric definitions, pages.
    *("experiments", "experiment", "result", "experimentResults", "hasMore", "nextOffset"),
    *("total", "id", "name", "status", "archived", "project", "tags", "dateUpdated"),
    *("variations", "variationId", "key", "phases", "trafficSplit", "weight", "settings"),
    *("statsEngine", "goals", "secondaryMetrics", "guardrails", "metricId", "resultSummary"),
    *("winner", "releasedVariationId", "enhancedStatus", "detailedStatus", "experimentId"),
    *("phase", "results", "dimension", "totalUsers", "checks", "srm", "metrics", "metricName"),
    *("variationName", "users", "analyses", "engine", "numerator", "denominator", "mean"),
    *("stddev", "percentChange", "ciLow", "ciHigh", "pValue", "risk", "chanceToBeatControl"),
    *("factMetrics", "inverse", "behavior", "goal"),
    # Statsig Console API: experiments, groups, health checks, Pulse, exposures, pages.
    *("data", "pagination", "pageNumber", "nextPage", "groups", "size", "controlGroupID"),
    *("lastModifiedTime", "sequentialTesting", "defaultConfidenceInterval", "primaryMetrics"),
    *("otherMetrics", "type", "direction", "healthChecks", "healthCheckStatus", "metadata"),
    *("lastPulseLoadTime", "launchedGroupID", "ds", "metricID", "directionality", "value"),
    *("absoluteChange", "confidenceIntervalDelta", "percentConfidenceIntervalDelta"),
    *("percentSequentialTestingConfidenceIntervalDelta", "percentConfidenceInterval"),
    *("lower", "upper", "testMean", "controlMean", "testStd", "controlStd", "testUnits"),
    *("controlUnits", "groupID", "groupName", "date", "exposures"),
)
SPECIAL_STRINGS = (
    "",
    " ",
    "NaN",
    "-Infinity",
    "1e400",
    "null",
    "2026-13-45T25:61:00Z",
    "../../etc/passwd",
    "%2F..%2F",
    "' OR 1=1 --",
    "\x00",
    "\u202e\u0301",
    "🙂🙂",
    "x" * 2000,
)
EXTREME_NUMBERS: tuple[int | float, ...] = (
    0,
    -1,
    -0.0,
    1,
    2**63,
    -(2**63) - 1,
    10**30,
    10**400,
    1e308,
    -1e308,
    5e-324,
)
NON_FINITE = (math.nan, math.inf, -math.inf)


def scalars(*, finite: bool) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from(EXTREME_NUMBERS),
        st.floats(allow_nan=not finite, allow_infinity=not finite),
        st.text(max_size=20),
        st.sampled_from(SPECIAL_STRINGS),
    )


def json_values(*, finite: bool) -> st.SearchStrategy[Any]:
    """Any JSON value; object keys are arbitrary text or keys the platforms' payloads use.
    With `finite`, no NaN or infinite floats (which JSON cannot carry)."""
    key = st.one_of(st.sampled_from(PAYLOAD_KEYS), st.text(max_size=8))
    return st.recursive(
        scalars(finite=finite),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(key, inner, max_size=6)
        ),
        max_leaves=30,
    )


@dataclass(frozen=True)
class Change:
    """One change to a payload: `how` applied at the `where`-th address (modulo their
    count), with `value` for a replacement or an extreme and `as_type` for a retype. (An
    object's value cannot be listed twice: "duplicate" sets it to `value`, null.)"""

    how: str
    where: int
    value: Any = None
    as_type: int = 0


def changes(*, finite: bool) -> st.SearchStrategy[list[Change]]:
    """Recipes of one to three changes, drawn without knowing the payload they change."""
    where = st.integers(min_value=0, max_value=10**6)
    extremes = [*EXTREME_NUMBERS, *SPECIAL_STRINGS, [], {}, *(() if finite else NON_FINITE)]
    change = st.one_of(
        st.builds(Change, st.just("replace"), where, json_values(finite=finite)),
        st.builds(Change, st.just("delete"), where),
        st.builds(Change, st.just("duplicate"), where),
        st.builds(Change, st.just("retype"), where, as_type=st.integers(0, 4)),
        st.builds(Change, st.just("extreme"), where, st.sampled_from(extremes)),
    )
    return st.lists(change, min_size=1, max_size=3)


Address = tuple[str | int, ...]


def addresses(node: Any, prefix: Address = ()) -> Iterator[Address]:
    """The address of every value below `node` (object keys and list indexes), in order."""
    items: Iterator[tuple[str | int, Any]]
    if isinstance(node, dict):
        items = iter(node.items())
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from addresses(child, (*prefix, key))


def retyped(value: Any) -> list[Any]:
    """`value` as other JSON types."""
    return [
        None,
        str(value) if not isinstance(value, str) else len(value),
        [value],
        {"value": value},
        not value if isinstance(value, bool) else True,
    ]


def changed(body: Any, recipe: list[Change]) -> Any:
    """A copy of `body` with the recipe's changes applied, one after another."""
    body = copy.deepcopy(body)
    for change in recipe:
        found = list(addresses(body))
        if not found:
            break
        where = found[change.where % len(found)]
        parent = body
        for key in where[:-1]:
            parent = parent[key]
        key = where[-1]
        if change.how == "delete":
            del parent[key]
        elif change.how == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif change.how == "retype":
            parent[key] = retyped(parent[key])[change.as_type]
        else:
            parent[key] = copy.deepcopy(change.value)
    return body


def assert_valid(record: Experiment | Snapshot) -> None:
    """A record the store can keep and read back unambiguously: finite numbers only (JSON
    has no NaN, PostgreSQL's JSONB refuses it, a snapshot's content hash cannot be computed),
    and no variation or metric twice (which of two rows would be the real one?)."""
    json.dumps(record.model_dump(mode="json"), allow_nan=False)
    if isinstance(record, Experiment):
        assert_distinct([v.variation_id for v in record.variations], record)
        return
    record.content_hash()
    for metrics in [record.metrics, *(s.metrics for s in record.slices)]:
        assert_distinct([m.metric_id for m in metrics], record)
        for metric in metrics:
            assert_distinct([v.variation_id for v in metric.variations], metric)


def assert_distinct(ids: list[str], where: object) -> None:
    assert len(set(ids)) == len(ids), f"{ids} repeat in {where!r}"


def assert_explains(exc: SourceError) -> None:
    """An error a user can act on: which source, what is wrong; never a key."""
    message = str(exc)
    assert exc.source in ("gb", "sg") and message.strip(), repr(exc)
    assert GB_KEY not in message and SG_KEY not in message
    assert "Traceback" not in message


# -- the parsers, over a simulator with one fuzzed address ----------------------------------------


class RunawayReadError(AssertionError):
    """The source kept asking for the fuzzed address: it would never stop."""


class FuzzedPlatform(httpx.AsyncBaseTransport):
    """A simulator in-process, except that the address `fuzz` names answers 200 with the
    given raw JSON bytes (NaN and Infinity included: a lenient parser accepts them)."""

    def __init__(self, app: Starlette) -> None:
        self._app = httpx.ASGITransport(app=app)
        self.path: str | None = None
        self.body = b""
        self.hits = 0

    def fuzz(self, path: str | None, body: bytes = b"") -> None:
        self.path, self.body, self.hits = path, body, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != self.path:
            return await self._app.handle_async_request(request)
        self.hits += 1
        if self.hits > REQUEST_LIMIT:
            raise RunawayReadError(f"more than {REQUEST_LIMIT} requests for {self.path}")
        return httpx.Response(200, content=self.body, headers={"Content-Type": "application/json"})


class ShortRepr:
    """A failing example shows its fixtures field by field (hypothesis pretty-prints
    dataclasses); these show their short repr instead of whole payloads."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


@dataclass(repr=False)
class Upstream(ShortRepr):
    """Both simulators behind fuzzable transports; the real bodies of every address the
    sources read (what the recipes change) and the experiments listed."""

    gb: FuzzedPlatform
    sg: FuzzedPlatform
    client: httpx.AsyncClient
    bodies: dict[str, Any] = field(default_factory=dict)
    listed: dict[str, Experiment] = field(default_factory=dict)

    def platform(self, path: str) -> FuzzedPlatform:
        return self.sg if path.startswith("/console/") else self.gb

    def __repr__(self) -> str:
        return f"Upstream(bodies of {sorted(self.bodies)})"


Records = list[Experiment | Snapshot]


@dataclass(frozen=True)
class EntryPoint:
    """A source's read whose answer at `path` is fuzzed; `read` returns the records made."""

    name: str
    path: str
    read: Callable[[httpx.AsyncClient, Upstream], Awaitable[Records]]


def gb_source(client: httpx.AsyncClient) -> GrowthBookSource:
    return GrowthBookSource(name="gb", base_url=GB_BASE, api_key=GB_KEY, client=client)


def sg_source(client: httpx.AsyncClient) -> StatsigSource:
    return StatsigSource(name="sg", api_key=SG_KEY, client=client, base_url=SG_BASE)


async def gb_list(client: httpx.AsyncClient, upstream: Upstream) -> Records:
    return list(await gb_source(client).list_experiments())


async def gb_one(client: httpx.AsyncClient, upstream: Upstream) -> Records:
    return [await gb_source(client).get_experiment(GB_TARGET)]


async def gb_results(client: httpx.AsyncClient, upstream: Upstream) -> Records:
    current, snapshot = await gb_source(client).fetch_results(upstream.listed[GB_TARGET])
    return [current] if snapshot is None else [current, snapshot]


async def gb_portfolio(client: httpx.AsyncClient, upstream: Upstream) -> Records:
    """Every snapshot of the portfolio; an item's PayloadError must explain itself."""
    records: Records = []
    pages_out, pages_in = anyio.create_memory_object_stream[dict[str, Snapshot | PayloadError]]()
    failures: list[PayloadError] = []

    async def read() -> None:
        try:
            await gb_source(client).read_portfolio(upstream.listed, pages_out)
        except PayloadError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tg, pages_in:
        tg.start_soon(read)
        async for page in pages_in:
            for found in page.values():
                if isinstance(found, PayloadError):
                    assert_explains(found)
                else:
                    records.append(found)
    if failures:
        raise failures[0]
    return records


async def sg_list(client: httpx.AsyncClient, upstream: Upstream) -> Records:
    return list(await sg_source(client).list_experiments())


async def sg_results(client: httpx.AsyncClient, upstream: Upstream) -> Records:
    current, snapshot = await sg_source(client).fetch_results(upstream.listed[SG_TARGET])
    return [current] if snapshot is None else [current, snapshot]


async def sg_exposures(client: httpx.AsyncClient, upstream: Upstream) -> Records:
    exposures = await sg_source(client).fetch_exposures(upstream.listed[SG_TARGET])
    for days in exposures.values():
        assert all(math.isfinite(units) for _, units in days), exposures
    return []


ENTRY_POINTS = [
    EntryPoint("growthbook-list", "/api/v1/experiments", gb_list),
    EntryPoint("growthbook-experiment", f"/api/v1/experiments/{GB_TARGET}", gb_one),
    EntryPoint("growthbook-results", f"/api/v1/experiments/{GB_TARGET}/results", gb_results),
    EntryPoint("growthbook-metric-definitions", "/api/v1/metrics", gb_results),
    EntryPoint("growthbook-portfolio", "/api/v1/experiments/results", gb_portfolio),
    EntryPoint("statsig-list", "/console/v1/experiments", sg_list),
    EntryPoint("statsig-experiment", SG_EXPERIMENT, sg_results),
    EntryPoint("statsig-pulse", f"{SG_EXPERIMENT}/pulse_results", sg_results),
    EntryPoint("statsig-exposures", f"{SG_EXPERIMENT}/cumulative_exposures", sg_exposures),
]
SERVED = ENTRY_POINTS
"""The entry points whose address the simulator serves: all of them, so each has a real body
to change."""


def entry_point_name(entry: EntryPoint) -> str:
    return entry.name


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[Upstream]:
    """Both simulators at refresh 9; their real bodies, read once through the sources."""
    clock = ManualClock()
    start = clock.now()
    clock.advance(REFRESH * REFRESH_SECONDS + 1)
    gb_app = build_growthbook_app(
        default_scenario(start=start, refresh_seconds=REFRESH_SECONDS),
        api_key=GB_KEY,
        clock=clock.now,
        rate_limit_per_minute=10**9,
    )
    sg_app = build_statsig_app(
        default_statsig_scenario(start=start, refresh_seconds=REFRESH_SECONDS),
        api_key=SG_KEY,
        clock=clock.now,
    )
    gb, sg = FuzzedPlatform(gb_app), FuzzedPlatform(sg_app)
    mounts: dict[str, httpx.AsyncBaseTransport] = {GB_BASE: gb, SG_BASE: sg}
    async with httpx.AsyncClient(mounts=mounts) as client:
        found = Upstream(gb, sg, client)

        async def keep(response: httpx.Response) -> None:
            await response.aread()
            if response.status_code == 200:
                found.bodies.setdefault(response.url.path, response.json())

        async with httpx.AsyncClient(mounts=mounts, event_hooks={"response": [keep]}) as reading:
            for source in (gb_source(reading), sg_source(reading)):
                found.listed.update((e.experiment_id, e) for e in await source.list_experiments())
            for entry in ENTRY_POINTS:
                await entry.read(reading, found)
        assert {e.path for e in SERVED} <= set(found.bodies)
        yield found


async def read_fuzzed(upstream: Upstream, entry: EntryPoint, body: Any) -> None:
    """Serve `body` at the entry point's address: the read returns valid records or raises a
    PayloadError that explains, in bounded time and requests. (Or SourceRejected: the
    simulator refusing a request built from the payload, as Statsig's Pulse refuses a group
    id that a drifted experiment names. Never SourceUnavailable, which would count against
    the source.)"""
    platform = upstream.platform(entry.path)
    platform.fuzz(entry.path, json.dumps(body, allow_nan=True).encode())
    try:
        with anyio.fail_after(WAIT_SECONDS):
            records = await entry.read(upstream.client, upstream)
    except (PayloadError, SourceRejected) as exc:
        assert_explains(exc)
    else:
        for record in records:
            assert_valid(record)
    finally:
        hits = platform.hits
        platform.fuzz(None)
    assert hits >= 1, f"{entry.path} was never asked for: the example tested nothing"


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=entry_point_name)
@DIRECT
@given(body=json_values(finite=False))
async def test_arbitrary_json_is_parsed_or_a_payload_error(
    upstream: Upstream, entry: EntryPoint, body: Any
) -> None:
    """Any JSON at all, NaN and Infinity included, makes valid records or a PayloadError."""
    await read_fuzzed(upstream, entry, body)


@pytest.mark.parametrize("entry", SERVED, ids=entry_point_name)
@DIRECT
@given(recipe=changes(finite=False))
async def test_changed_real_payloads_are_parsed_or_a_payload_error(
    upstream: Upstream, entry: EntryPoint, recipe: list[Change]
) -> None:
    """A real payload with parts replaced, deleted, duplicated, retyped or extreme makes
    valid records or a PayloadError."""
    await read_fuzzed(upstream, entry, changed(upstream.bodies[entry.path], recipe))


def at(body: Any, *where: str | int) -> Any:
    """The value at `where` in `body`."""
    for key in where:
        body = body[key]
    return body


def setting(*where: str | int, to: Any) -> Callable[[Any], None]:
    """A change that sets the value at `where`."""

    def change(body: Any) -> None:
        at(body, *where[:-1])[where[-1]] = to

    return change


def repeating(*where: str | int) -> Callable[[Any], None]:
    """A change that lists the first item of the list at `where` twice."""

    def change(body: Any) -> None:
        items = at(body, *where)
        items.insert(0, copy.deepcopy(items[0]))

    return change


GB_METRIC = ("result", "results", 0, "metrics", 0)
SG_PULSE_METRIC = ("data", "primaryMetrics", 0)
FOUND_CASES = [
    # Non-finite numbers: a "NaN" string, an integer past any float, NaN; each used to make a
    # snapshot the store cannot hash (poll_once raised ValueError), or an exposure of inf.
    ("growthbook-results", setting("result", "results", 0, "totalUsers", to="NaN"), "finite"),
    ("growthbook-results", setting(*GB_METRIC, "variations", 1, "users", to=10**400), "finite"),
    ("statsig-pulse", setting(*SG_PULSE_METRIC, "testMean", to=math.nan), "finite"),
    ("statsig-exposures", setting("data", 0, "results", 0, "exposures", to="Infinity"), "finite"),
    # Finite inputs whose conversion overflows (Pulse's standard error times sqrt(units)).
    ("statsig-pulse", setting(*SG_PULSE_METRIC, "testStd", to=1e308), "out of range"),
    # An epoch time past any datetime: OverflowError out of the listing, which ended the cycle.
    ("statsig-list", setting("data", 0, "lastModifiedTime", to=1e300), "lastModifiedTime"),
    ("statsig-experiment", setting("data", "lastModifiedTime", to=1e300), "lastModifiedTime"),
    # An answer about another experiment: recorded under that one's id (a phantom experiment).
    ("growthbook-experiment", setting("experiment", "id", to="exp_other"), "answered for"),
    ("growthbook-results", setting("experiment", "id", to="exp_other"), "answered for"),
    ("growthbook-results", setting("result", "experimentId", to="exp_other"), "answered for"),
    ("statsig-experiment", setting("data", "id", to="other"), "answered for"),
    # The same id twice: two rows for one (metric, variation), or Pulse of control vs control.
    ("growthbook-experiment", repeating("experiment", "variations"), "listed more than once"),
    ("growthbook-results", repeating(*GB_METRIC, "variations"), "listed more than once"),
    ("growthbook-results", repeating("result", "results", 0, "metrics"), "listed more than once"),
    ("statsig-experiment", repeating("data", "groups"), "listed more than once"),
    ("statsig-pulse", repeating("data", "primaryMetrics"), "listed more than once"),
]


@pytest.mark.parametrize(
    ("entry_name", "change", "expected"),
    FOUND_CASES,
    ids=[f"{name}-{expected.replace(' ', '-')}" for name, _, expected in FOUND_CASES],
)
async def test_what_the_fuzzing_found_is_a_payload_error_that_says_so(
    upstream: Upstream, entry_name: str, change: Callable[[Any], None], expected: str
) -> None:
    """Each input the fuzzing found: a PayloadError naming the problem, no longer a record
    the store cannot keep or an exception escaping the source."""
    [entry] = [e for e in ENTRY_POINTS if e.name == entry_name]
    body = copy.deepcopy(upstream.bodies[entry.path])
    change(body)
    platform = upstream.platform(entry.path)
    platform.fuzz(entry.path, json.dumps(body, allow_nan=True).encode())
    try:
        with pytest.raises(PayloadError) as caught:
            await entry.read(upstream.client, upstream)
    finally:
        platform.fuzz(None)
    assert expected in str(caught.value)
    assert_explains(caught.value)


async def test_a_statsig_list_that_always_names_a_next_page_is_a_payload_error(
    upstream: Upstream,
) -> None:
    """Every page the same, each naming a next page without a page number: the listing used
    to ask for page after page forever."""
    body = copy.deepcopy(upstream.bodies["/console/v1/experiments"])
    body["pagination"]["nextPage"] = "/console/v1/experiments?limit=100"
    upstream.sg.fuzz("/console/v1/experiments", json.dumps(body).encode())
    try:
        with pytest.raises(PayloadError, match="pagination did not advance"):
            await sg_source(upstream.client).list_experiments()
        assert upstream.sg.hits <= FEW_REQUESTS
    finally:
        upstream.sg.fuzz(None)


async def test_a_growthbook_list_whose_total_lies_stops_early(upstream: Upstream) -> None:
    """A page naming the next offset 1 of a total of 1,000, every page the same: a
    PayloadError within a few requests (the source used to request every page up to the
    total, reading ahead, before checking any page's own next offset)."""
    body = copy.deepcopy(upstream.bodies["/api/v1/experiments"])
    body.update(hasMore=True, nextOffset=1, total=1000)
    upstream.gb.fuzz("/api/v1/experiments", json.dumps(body).encode())
    try:
        with pytest.raises(PayloadError):
            await gb_source(upstream.client).list_experiments()
        assert upstream.gb.hits <= FEW_REQUESTS
    finally:
        upstream.gb.fuzz(None)


@pytest.mark.parametrize("experiment_id", ["../metrics", "a/b", "x?status=all#y", "%2F..", " "])
async def test_an_experiment_id_reaches_the_platform_as_one_path_segment(
    experiment_id: str,
) -> None:
    """An id from a watch list (anything a client typed) cannot reach another endpoint or add
    query parameters: `..` used to be resolved away and `?` to start a query."""
    asked: list[httpx.URL] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url)
        return httpx.Response(404, json={"message": "Could not find experiment"})

    experiment = Experiment(source="gb", experiment_id=experiment_id, name="", status="")
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        gb, sg = gb_source(client), sg_source(client)
        for read in (
            lambda: gb.fetch_results(experiment),
            lambda: gb.get_experiment(experiment_id),
            lambda: sg.fetch_results(experiment),
            lambda: sg.fetch_exposures(experiment),
        ):
            with pytest.raises(ExperimentNotFound):
                await read()
    assert len(asked) == 4
    for url in asked:
        _, _, _, experiments, segment, *rest = url.raw_path.decode().split("/")
        assert experiments == "experiments" and unquote(segment) == experiment_id, url
        assert rest in ([], ["results"], ["cumulative_exposures"]) and url.query == b"", url


# -- the poller ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """Which answer carries the fuzzed results: one experiment's (or its portfolio item)."""

    name: str
    path: str
    portfolio: bool = False

    @property
    def is_statsig(self) -> bool:
        return self.path.startswith("/console/")


SETUPS = [
    Setup("growthbook-results", f"/api/v1/experiments/{GB_TARGET}/results"),
    Setup("growthbook-portfolio", "/api/v1/experiments/results", portfolio=True),
    Setup("statsig-experiment", SG_EXPERIMENT),
    Setup("statsig-pulse", f"{SG_EXPERIMENT}/pulse_results"),
]


@dataclass(repr=False)
class Poller(ShortRepr):
    """A supervisor polling a simulator into a real SQLite store, every running experiment
    every cycle; the simulator's answer at `setup.path` carries `body` for the target."""

    setup: Setup
    clock: ManualClock
    store: Store
    supervisor: Supervisor
    source: str
    target: str
    others: list[str]
    real: Any
    """The target's part of that answer as the simulator sends it."""
    body: Any = None

    def __repr__(self) -> str:
        return f"Poller({self.setup.name}, target={self.target})"

    def drift(self, answer: Any) -> Any:
        if not self.setup.portfolio:
            return self.body
        answer["experimentResults"] = [
            self.body if item.get("experimentId") == self.target else item
            for item in answer["experimentResults"]
        ]
        return answer


@pytest.fixture(params=SETUPS, ids=lambda setup: setup.name)
async def poller(
    request: pytest.FixtureRequest, tmp_path: Path, upstream: Upstream
) -> AsyncIterator[Poller]:
    """A poller after one clean cycle, its drift in place."""
    setup: Setup = request.param
    clock = ManualClock()
    start = clock.now()
    clock.advance(REFRESH * REFRESH_SECONDS + 1)
    faults = Faults()
    if setup.is_statsig:
        app = build_statsig_app(
            default_statsig_scenario(start=start, refresh_seconds=REFRESH_SECONDS),
            api_key=SG_KEY,
            clock=clock.now,
            faults=faults,
        )
    else:
        app = build_growthbook_app(
            default_scenario(start=start, refresh_seconds=REFRESH_SECONDS),
            api_key=GB_KEY,
            clock=clock.now,
            rate_limit_per_minute=10**9,
            faults=faults,
        )
    store = await Store.open(sqlite_url(tmp_path / "fuzz.db"), clock=clock.now)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            source = sg_source(client) if setup.is_statsig else gb_source(client)
            target = SG_TARGET if setup.is_statsig else GB_TARGET
            supervisor = Supervisor(
                store,
                [source],
                clock=clock,
                refresh_unchanged_seconds=0.0,  # every running experiment is due every cycle
                source_policies={source.name: SourcePolicy(use_portfolio=setup.portfolio)},
            )
            report = await supervisor.poll_once()
            assert report.errors == [] and report.fetched >= 2, report.summary()
            others = sorted(set(await store.watch_states(source.name)) - {target})
            real = upstream.bodies[setup.path]
            if setup.portfolio:
                [real] = [r for r in real["experimentResults"] if r["experimentId"] == target]
            found = Poller(setup, clock, store, supervisor, source.name, target, others, real)
            faults.add(DriftFault(found.drift), path=setup.path)
            yield found
    finally:
        await store.aclose()


EXPERIMENTS_OWN_ERRORS = {e.__name__ for e in (PayloadError, SourceRejected, ExperimentNotFound)}
"""What a bad payload may end in (see `read_fuzzed`)."""


async def poll_fuzzed(poller: Poller, body: Any) -> None:
    """One cycle with `body` as the target's results: the cycle ends; the target is either
    recorded or has a PayloadError as its current source error; every other experiment is
    recorded; the source itself is not failing and its breaker counted nothing."""
    poller.body = body
    poller.clock.advance(0.01)
    with anyio.fail_after(WAIT_SECONDS):
        await poller.supervisor.poll_once()
    now = poller.clock.now()
    checked = {
        experiment_id: state.last_checked_at
        for experiment_id, state in (await poller.store.watch_states(poller.source)).items()
    }
    latest = await poller.store.latest_events(
        [EventKind.SOURCE_ERROR, EventKind.SOURCE_RECOVERED], source=poller.source
    )

    def error_of(experiment_id: str | None) -> Event | None:
        event = latest.get((poller.source, experiment_id))
        return event if event is not None and event.kind is EventKind.SOURCE_ERROR else None

    error = error_of(poller.target)
    if error is None:
        assert checked[poller.target] == now, "neither recorded nor a source error"
    else:
        assert error.details["error"] in EXPERIMENTS_OWN_ERRORS, error
        reason = str(error.after)
        assert reason.strip() and GB_KEY not in reason and SG_KEY not in reason, reason
        assert "Traceback" not in reason
        assert checked[poller.target] < now
    for other in poller.others:
        assert error_of(other) is None, error_of(other)
        assert checked[other] == now, f"{other} was not recorded"
    assert error_of(None) is None
    [status] = poller.supervisor.status()
    assert status.breaker.state is CircuitState.CLOSED, status.breaker
    assert status.breaker.consecutive_failures == 0, status.breaker


@pytest.mark.parametrize("poller", SETUPS[:2], ids=lambda setup: setup.name, indirect=True)
async def test_a_nan_in_one_experiments_results_fails_only_that_experiment(
    poller: Poller,
) -> None:
    """A "NaN" where GrowthBook sends the number of users: that experiment's source error
    (the cycle used to end in a ValueError, its snapshot unhashable), the others recorded."""
    body = copy.deepcopy(poller.real)
    overall = body["result"] if not poller.setup.portfolio else body
    overall["results"][0]["totalUsers"] = "NaN"
    await poll_fuzzed(poller, body)
    latest = await poller.store.latest_events([EventKind.SOURCE_ERROR], source="gb")
    error = latest[("gb", poller.target)]
    assert "results.0.totalUsers: Input should be a finite number" in str(error.after)


@POLLER
@given(body=json_values(finite=True))
async def test_arbitrary_json_as_one_experiments_results_fails_only_that_experiment(
    poller: Poller, body: Any
) -> None:
    """Any JSON as one experiment's results: a source error for it alone, never a crash."""
    await poll_fuzzed(poller, body)


@POLLER
@given(recipe=changes(finite=True))
async def test_changed_results_of_one_experiment_are_recorded_or_fail_only_it(
    poller: Poller, recipe: list[Change]
) -> None:
    """Its real results with parts replaced, deleted, duplicated, retyped or extreme:
    recorded when still valid, else a source error for it alone."""
    await poll_fuzzed(poller, changed(poller.real, recipe))


# -- long variants ---------------------------------------------------------------------------------


@pytest.mark.long
@LONG_TIMEOUT
@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=entry_point_name)
@LONG
@given(body=json_values(finite=False), recipe=changes(finite=False), arbitrary=st.booleans())
async def test_long_fuzzed_payloads_are_parsed_or_a_payload_error(
    upstream: Upstream, entry: EntryPoint, body: Any, recipe: list[Change], arbitrary: bool
) -> None:
    """The parser properties, with many more examples."""
    real = upstream.bodies.get(entry.path)
    await read_fuzzed(upstream, entry, body if arbitrary or real is None else changed(real, recipe))


@pytest.mark.long
@LONG_TIMEOUT
@settings(LONG, max_examples=250)
@given(body=json_values(finite=True), recipe=changes(finite=True), arbitrary=st.booleans())
async def test_long_fuzzed_results_fail_only_their_experiment(
    poller: Poller, body: Any, recipe: list[Change], arbitrary: bool
) -> None:
    """The poller properties, with many more examples."""
    await poll_fuzzed(poller, body if arbitrary else changed(poller.real, recipe))
