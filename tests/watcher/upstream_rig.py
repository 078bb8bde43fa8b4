"""Both simulated platforms (served on loopback by uvicorn, or in-process), one supervisor
watching both, driven step by step on a manual clock; and what a run leaves behind, read back
as plain data for comparison with another run.

One step is one refresh of both scenarios: the clock moves to one second after refresh k and
the supervisor polls once. Whatever the supervisor waits for on the clock meanwhile (a 429's
Retry-After, its rate budget) passes in virtual time; real waits (an HTTP timeout, the
supervisor's own deadline) stay real.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
import anyio.lowlevel
import httpx
from sqlalchemy import select
from starlette.applications import Starlette

from expwatch.serving import serve_asgi
from simulator import (
    DriftFault,
    Fault,
    Faults,
    LoggedRequest,
    RequestLog,
    Scenario,
    StatsigScenario,
    VanishFault,
    build_growthbook_app,
    build_statsig_app,
    default_scenario,
    default_statsig_scenario,
)
from store import EventKind, Store, sqlite_url
from store.schema import experiments as experiments_table
from store.schema import snapshots as snapshots_table
from tests.helpers import HostRouter, ManualClock
from watcher import (
    CycleReport,
    GrowthBookSource,
    RateBudget,
    RetryPolicy,
    SourcePolicy,
    SourceStatus,
    StatsigSource,
    Supervisor,
    WatchRules,
)

REFRESH_SECONDS = 60.0
GB_KEY = "secret_gb_fault_matrix"
SS_KEY = "console-faultMatrixKey"
SOURCES = ("gb", "ss")
NOT_DETECTIONS = frozenset(
    {
        EventKind.SOURCE_ERROR,
        EventKind.SOURCE_RECOVERED,
        EventKind.SOURCE_UNAVAILABLE,
        EventKind.RESULTS_STALE,
    }
)
"""Events about the watcher's own view of a source, not about an experiment's results."""

EventKey = tuple[str, str | None, str | None, str | None, Any, Any]
"""(kind, experiment, metric, variation, before, after): an event without its timing."""


@dataclass
class Platforms:
    """Both simulators on one manual clock, each with its own fault rules and request log."""

    clock: ManualClock
    gb_scenario: Scenario
    ss_scenario: StatsigScenario
    faults: dict[str, Faults] = field(default_factory=lambda: {s: Faults() for s in SOURCES})
    logs: dict[str, RequestLog] = field(default_factory=lambda: {s: RequestLog() for s in SOURCES})

    @classmethod
    def new(cls) -> Platforms:
        clock = ManualClock()
        return cls(
            clock,
            default_scenario(start=clock.now(), refresh_seconds=REFRESH_SECONDS),
            default_statsig_scenario(start=clock.now(), refresh_seconds=REFRESH_SECONDS),
        )

    def apps(self) -> dict[str, Starlette]:
        return {
            "gb": build_growthbook_app(
                self.gb_scenario,
                api_key=GB_KEY,
                clock=self.clock.now,
                rate_limit_per_minute=100_000,
                faults=self.faults["gb"],
                request_log=self.logs["gb"],
            ),
            "ss": build_statsig_app(
                self.ss_scenario,
                api_key=SS_KEY,
                clock=self.clock.now,
                faults=self.faults["ss"],
                request_log=self.logs["ss"],
            ),
        }

    def refresh_time(self, index: int) -> datetime:
        return self.gb_scenario.refresh_time(index)

    def refresh_of(self, moment: datetime) -> int:
        return self.gb_scenario.refresh_index(moment)

    def step_time(self, step: int) -> datetime:
        """When step `step` polls: one second after refresh `step`."""
        return self.refresh_time(step) + timedelta(seconds=1)

    def add(
        self,
        source: str,
        fault: Fault,
        *,
        path: str | None = None,
        refreshes: range | None = None,
        start: datetime | None = None,
        until: datetime | None = None,
        times: int | None = None,
    ) -> None:
        """A fault rule on `source`'s app, active over `refreshes` (or from `start` to `until`)."""
        if refreshes is not None:
            start = self.refresh_time(refreshes.start)
            until = self.refresh_time(refreshes.stop)
        self.faults[source].add(fault, path=path, start=start, until=until, times=times)


@dataclass(frozen=True, kw_only=True)
class SourceOptions:
    """How the sources and the supervisor are configured for a run."""

    page_size: dict[str, int] = field(default_factory=dict)
    request_timeout_seconds: dict[str, float] = field(default_factory=dict)
    rate_per_minute: dict[str, float] = field(default_factory=dict)
    include: dict[str, frozenset[str]] = field(default_factory=dict)
    poll_timeout_seconds: float = 30.0
    failure_threshold: int = 3
    cooldown_seconds: float = 60.0


@dataclass
class Step:
    """What one step of a run did and showed."""

    index: int
    report: CycleReport
    status: dict[str, SourceStatus]
    recorded: dict[str, set[str]]
    """By source: the experiments recorded (checked) in this step."""
    latest: dict[str, str]
    """By experiment: the content hash of its newest snapshot after this step."""


@dataclass
class RunResult:
    """A finished run, as plain data (comparable across runs and event loops)."""

    steps: list[Step]
    served: dict[str, set[int]]
    """By experiment: the refreshes at which the platform served its results (see `served`)."""
    hashes: dict[str, list[str]]
    """By experiment: the content hash of every snapshot recorded, oldest first."""
    events: list[EventKey]
    source_events: list[tuple[int, str, str, str | None, Any]]
    """(step, kind, source, experiment, text) of every source_error / _recovered /
    _unavailable event, in order."""

    def detections(self, experiment_id: str) -> list[EventKey]:
        return [e for e in self.events if e[1] == experiment_id]

    def recorded_steps(self, experiment_id: str) -> set[int]:
        return {s.index for s in self.steps if any(experiment_id in r for r in s.recorded.values())}

    def state_at(self, experiment_id: str, step: int) -> str | None:
        """The hash of the experiment's newest snapshot after `step` (None: no results)."""
        return self.steps[step].latest.get(experiment_id)


def source_list(
    client: httpx.AsyncClient,
    clock: ManualClock,
    urls: Mapping[str, str],
    options: SourceOptions,
) -> list[GrowthBookSource | StatsigSource]:
    def budget(source: str) -> RateBudget:
        return RateBudget(options.rate_per_minute.get(source), clock=clock)

    return [
        GrowthBookSource(
            name="gb",
            base_url=urls["gb"],
            api_key=GB_KEY,
            client=client,
            page_size=options.page_size.get("gb", 100),
            request_timeout_seconds=options.request_timeout_seconds.get("gb", 30.0),
            budget=budget("gb"),
            retry=RetryPolicy(attempts=3),
        ),
        StatsigSource(
            name="ss",
            base_url=urls["ss"],
            api_key=SS_KEY,
            client=client,
            page_size=options.page_size.get("ss", 100),
            request_timeout_seconds=options.request_timeout_seconds.get("ss", 30.0),
            budget=budget("ss"),
            retry=RetryPolicy(attempts=3),
        ),
    ]


def supervisor_for(
    store: Store,
    sources: list[GrowthBookSource | StatsigSource],
    clock: ManualClock,
    options: SourceOptions,
    *,
    exclude: Mapping[str, frozenset[str]] | None = None,
) -> Supervisor:
    return Supervisor(
        store,
        sources,
        clock=clock,
        poll_interval_seconds=REFRESH_SECONDS,  # for `run`: one cycle per refresh
        jitter=0,
        poll_timeout_seconds=options.poll_timeout_seconds,
        source_policies={
            s: SourcePolicy(
                rules=WatchRules(
                    include=options.include.get(s, frozenset()),
                    exclude=(exclude or {}).get(s, frozenset()),
                ),
                failure_threshold=options.failure_threshold,
                cooldown_seconds=options.cooldown_seconds,
                max_cooldown_seconds=10 * options.cooldown_seconds,
            )
            for s in SOURCES
        },
    )


@asynccontextmanager
async def connected(
    platforms: Platforms, *, loopback: bool
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """An httpx client reaching both platforms: served on loopback by uvicorn (real sockets,
    so resets, timeouts and drips behave as in production), or in-process."""
    apps = platforms.apps()
    if not loopback:
        async with httpx.AsyncClient(
            transport=HostRouter({f"{s}.test": apps[s] for s in apps})
        ) as c:
            yield c, {s: f"http://{s}.test" for s in apps}
        return
    async with anyio.create_task_group() as tg:
        urls = {}
        for name, app in apps.items():
            port = await tg.start(partial(serve_asgi, app, port=0, grace_seconds=1))
            urls[name] = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as client:
            yield client, urls
        tg.cancel_scope.cancel()


async def poll(supervisor: Supervisor, clock: ManualClock) -> CycleReport:
    """One `poll_once`, with the clock jumping to each wake-up the supervisor waits for on it
    as soon as one is asked for (virtual time); a real wait (a socket, a deadline) is waited.

    Within `poll_once` only the sources' rate budgets sleep on the clock (a 429's pause, the
    spacing of requests), and every such wait is meant to pass, so there is no need to wait
    for everything else to block first (`anyio.wait_all_tasks_blocked` never settles beside
    uvicorn's own periodic tasks anyway)."""
    reports: list[CycleReport] = []
    done = anyio.Event()

    async def run() -> None:
        reports.append(await supervisor.poll_once())
        done.set()

    async def first_of(*waits: Callable[[], Awaitable[None]]) -> None:
        async with anyio.create_task_group() as tg:

            async def one(wait: Callable[[], Awaitable[None]]) -> None:
                await wait()
                tg.cancel_scope.cancel()

            for wait in waits:
                tg.start_soon(one, wait)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        while not done.is_set():
            wake = clock.next_wake_at
            if wake is not None:
                if wake > clock.now():
                    clock.advance((wake - clock.now()).total_seconds())
                await anyio.lowlevel.checkpoint()  # the sleeper wakes and leaves the list
                continue
            calls = clock.sleep_calls
            await first_of(done.wait, partial(clock.wait_for_sleep_calls, calls + 1))
    return reports[0]


async def run_steps(
    platforms: Platforms,
    store: Store,
    client: httpx.AsyncClient,
    urls: Mapping[str, str],
    options: SourceOptions,
    steps: int,
    *,
    exclude_at: Callable[[int], Mapping[str, frozenset[str]]] | None = None,
    only: str | None = None,
    step_timeout_seconds: float = 30.0,
) -> list[Step]:
    """Poll once per refresh for `steps` refreshes. With `exclude_at`, a new supervisor each
    step leaves out the experiments it names (a replay); else one supervisor runs throughout.
    With `only`, the supervisor watches that source alone."""
    clock = platforms.clock
    sources = [s for s in source_list(client, clock, urls, options) if only in (None, s.name)]
    supervisor = supervisor_for(store, sources, clock, options)
    done: list[Step] = []
    checked: dict[str, dict[str, datetime | None]] = {s.name: {} for s in sources}
    for index in range(steps):
        target = platforms.step_time(index)
        assert clock.now() <= target, f"step {index - 1} ran into refresh {index}"
        clock.advance((target - clock.now()).total_seconds())
        if exclude_at is not None:
            supervisor = supervisor_for(store, sources, clock, options, exclude=exclude_at(index))
        with anyio.fail_after(step_timeout_seconds):
            report = await poll(supervisor, clock)
        recorded: dict[str, set[str]] = {}
        for source in (s.name for s in sources):
            states = await store.watch_states(source)
            now_checked = {x: s.last_checked_at for x, s in states.items()}
            recorded[source] = {x for x, at in now_checked.items() if at != checked[source].get(x)}
            checked[source] = now_checked
        status = {s.name: s for s in supervisor.status()}
        done.append(Step(index, report, status, recorded, await latest_hashes(store)))
    return done


async def latest_hashes(store: Store) -> dict[str, str]:
    """By experiment: the content hash of its newest snapshot."""
    x, s = experiments_table, snapshots_table
    query = select(x.c.experiment_id, s.c.content_hash).join(s, s.c.id == x.c.latest_snapshot_id)
    async with store.database.read() as conn:
        return {r.experiment_id: r.content_hash for r in await conn.execute(query)}


def served(
    platforms: Platforms, broken: Mapping[str, frozenset[str]] | None = None
) -> dict[str, set[int]]:
    """By experiment: the refreshes at which the platform served its results, i.e. answered
    every results request of one fetch with its own 200 (no fault shaped the answer, or only a
    drift aimed at another experiment of a portfolio page; `broken` names, by source, the
    experiments a case's drifts break).

    GrowthBook: GET /experiments/{id}/results, or a portfolio page holding the experiment.
    Statsig: GET /experiments/{id} and pulse_results for every (control, test) pair.
    """
    broken = broken or {}
    found: dict[str, set[int]] = {}

    def is_clean(entry: LoggedRequest, source: str, experiment_id: str) -> bool:
        if entry.status_code != 200:
            return False
        return entry.fault is None or (
            isinstance(entry.fault, DriftFault)
            and experiment_id not in broken.get(source, frozenset())
        )

    for entry in platforms.logs["gb"]:
        refresh = platforms.refresh_of(entry.at)
        if entry.path == "/api/v1/experiments/results":
            ids = _portfolio_page(platforms, entry)
        elif entry.path.endswith("/results"):
            ids = [entry.path.split("/")[-2]]
        else:
            continue
        for experiment_id in ids:
            if is_clean(entry, "gb", experiment_id):
                found.setdefault(experiment_id, set()).add(refresh)
    pulses: dict[tuple[str, int], set[str]] = {}
    fetched: set[tuple[str, int]] = set()
    for entry in platforms.logs["ss"]:
        parts = entry.path.split("/")  # "", console, v1, experiments, id[, pulse_results]
        if len(parts) < 5 or parts[3] != "experiments":
            continue
        experiment_id, refresh = parts[4], platforms.refresh_of(entry.at)
        if not is_clean(entry, "ss", experiment_id):
            continue
        if len(parts) == 5:
            fetched.add((experiment_id, refresh))
        elif parts[5] == "pulse_results":
            pulses.setdefault((experiment_id, refresh), set()).update(
                parse_qs(entry.query).get("test", [])
            )
    for (experiment_id, refresh), tests in pulses.items():
        scripted = platforms.ss_scenario.experiment(experiment_id)
        assert scripted is not None
        if (experiment_id, refresh) in fetched and len(tests) == len(scripted.groups) - 1:
            found.setdefault(experiment_id, set()).add(refresh)
    return found


def _portfolio_page(platforms: Platforms, entry: LoggedRequest) -> list[str]:
    """The experiments a GrowthBook portfolio page held: the running ones not vanished at
    the time, oldest first, sliced as the request asked."""
    query = {k: v[0] for k, v in parse_qs(entry.query).items()}
    refresh = platforms.refresh_of(entry.at)
    vanished = {
        r.fault.experiment_id
        for r in platforms.faults["gb"].rules
        if isinstance(r.fault, VanishFault) and r.is_active(entry.at)
    }
    scenario = platforms.gb_scenario
    matching = [
        e.id
        for e in sorted(scenario.experiments, key=lambda e: -e.created_seconds_before_start)
        if e.id not in vanished
        and ("status" not in query or e.status_at(refresh) == query["status"])
    ]
    offset, limit = int(query.get("offset", 0)), int(query.get("limit", 10))
    return matching[offset : offset + limit]


async def collect(
    platforms: Platforms,
    store: Store,
    steps: list[Step],
    *,
    broken: Mapping[str, frozenset[str]] | None = None,
) -> RunResult:
    """Read back what a run recorded."""
    hashes: dict[str, list[str]] = {}
    x, s = experiments_table, snapshots_table
    query = select(x.c.experiment_id, s.c.content_hash).join(s).order_by(s.c.id)
    async with store.database.read() as conn:
        for row in await conn.execute(query):
            hashes.setdefault(row.experiment_id, []).append(row.content_hash)
    events = await store.events_after(0, limit=100_000)
    return RunResult(
        steps=steps,
        served=served(platforms, broken),
        hashes=hashes,
        events=[
            (e.kind.value, e.experiment_id, e.metric_id, e.variation_id, e.before, e.after)
            for e in events
            if e.kind not in NOT_DETECTIONS
        ],
        source_events=[
            (
                platforms.refresh_of(e.occurred_at),
                e.kind.value,
                e.source,
                e.experiment_id,
                e.after if e.kind is EventKind.SOURCE_ERROR else e.before,
            )
            for e in events
            if e.kind in NOT_DETECTIONS - {EventKind.RESULTS_STALE}
        ],
    )


def dedup(items: Iterable[str | None]) -> list[str]:
    """`items` without Nones and without an item equal to the one before it."""
    out: list[str] = []
    for item in items:
        if item is not None and (not out or out[-1] != item):
            out.append(item)
    return out


async def open_store(path: Path, clock: ManualClock) -> Store:
    return await Store.open(sqlite_url(path), clock=clock.now)
