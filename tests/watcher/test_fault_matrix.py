"""The upstream fault matrix: every kind of upstream fault, injected into one of two sources
(GrowthBook and Statsig, served on loopback by uvicorn, watched by one supervisor into one
store on one manual clock) while both scenarios keep changing, one poll per refresh.

For every fault kind and source the matrix checks that
1. the supervisor keeps cycling: every step's `poll_once` returns (within a bound), nothing
   escapes;
2. the other source, and the experiments the fault does not touch, are recorded exactly as in
   a reference run of the same scenario and clock steps without any fault (the same results
   served at the same refreshes, the same snapshots, the same events);
3. the breaker behaves as specified: a source-level fault that outlasts the retries opens it
   after `failure_threshold` failed cycles, with one `source_unavailable`; while it is open
   nothing is asked of the platform; after each cooldown one probe; the first probe after the
   fault closes it, with one `source_recovered`. A fault that retries or waits absorb (a short
   5xx burst, a 429 storm shorter than its Retry-After waits, a drip on one endpoint with a
   fallback) says nothing and counts nothing; a payload fault of one experiment, of the
   listing's pagination, or an experiment that vanished never counts (those cases run with
   `failure_threshold=1`, so a single counted failure would open the breaker);
4. the failure is visible: one `source_error` when it starts, its text naming the cause
   (the status code, "timed out", "malformed", the field, "did not advance", "not found"),
   `supervisor.status()` showing it (`failing`, and the breaker's `last_error` for what it
   counts) while it lasts, one `source_recovered` when it ends, nothing repeated cycle after
   cycle; and a 429's pause is honoured (no request to that source before it is over);
5. nothing is lost and nothing recorded twice once the fault clears.

What "recorded once" means here. The platforms serve only their current results: a state the
platform computed while the source was unreachable (or the experiment's payload broken, or the
experiment gone) and replaced before expwatch could read it again was never observable, so it
cannot be recorded. Everything observable must be: for each experiment, the snapshots in the
store are exactly one per distinct state among the refreshes at which the platform served that
experiment's results successfully (read from the simulator's request log, not from what the
supervisor says it did), in order, with no duplicate, so the state current when the fault
clears is recorded exactly once. The detection events (significance, SRM, platform verdicts,
health checks...) are exactly those a fault-free supervisor records from the same
observations: a replay on clean platforms that polls each experiment only at the steps the
faulted run recorded it. So a change that happened during an outage appears once, at the
first observation after it (Statsig's exposure balance going passed → warning → failed while
unreachable is one passed → failed event), never twice, and nothing appears that the
observations do not imply (no `metric_removed` for an experiment that merely vanished).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio
import pytest

from simulator import (
    DriftFault,
    DripFault,
    Fault,
    HangFault,
    MalformedBodyFault,
    PageLoopFault,
    RateLimitFault,
    ResetFault,
    StatusFault,
    VanishFault,
    on_item,
    remove_field,
    set_field,
)
from store import EventKind
from tests.watcher.upstream_rig import (
    REFRESH_SECONDS,
    SOURCES,
    Platforms,
    RunResult,
    SourceOptions,
    collect,
    connected,
    dedup,
    open_store,
    run_steps,
    source_list,
    supervisor_for,
)
from tests.watcher.upstream_rig import served as served_by
from watcher import CycleReport, RetryPolicy

pytestmark = pytest.mark.anyio

STEPS = 10
LONG_STEPS = 24
FAULT_FROM = 3
"""The first refresh of every fault."""
THRESHOLD = 2
"""The breaker's `failure_threshold` where it must open."""
STORY = {"gb": "exp_checkout_redesign", "ss": "checkout_redesign"}
"""The experiment whose story (platform verdict, SRM, health checks, our significance) a fault
of one experiment breaks."""
STORY_PAGE = {"gb": 0, "ss": 1}
"""Where the story experiment is listed, with one experiment per page (oldest first)."""
LIST_PATH = {"gb": "/api/v1/experiments", "ss": "/console/v1/experiments"}
PORTFOLIO_PATH = "/api/v1/experiments/results"
RATE_LIMIT_PAUSE_SECONDS = RetryPolicy().wait_max
"""How long a 429 without Retry-After pauses a source."""

V = TypeVar("V")
Inject = Callable[[Platforms, str, range], None]
"""Adds a case's fault rules to `source`'s app for the refreshes of a window."""


@dataclass(frozen=True, kw_only=True)
class Case:
    """One fault kind: how it is injected and what the supervisor must make of it."""

    kind: str
    inject: Inject
    scope: Literal["source", "experiment"]
    """What the fault breaks: the whole source, or the story experiment only."""
    error: str | None
    """Text the one `source_error` must contain; None: the fault must say nothing."""
    opens_breaker: bool = False
    absorbed: bool = False
    """Retries or waits absorb it: nothing lost, nothing to see."""
    breaks_story_payload: bool = False
    """Its drifts break the story experiment's entries of otherwise good answers."""
    polls_story_while_gone: bool = True
    """False: the story experiment is gone from the listing, and is asked for once only (a
    running experiment that leaves the listing may have stopped): its "not found" is
    reported, and it is left alone until it is listed again."""
    sources: tuple[str, ...] = SOURCES
    refreshes: int = 4
    """How many refreshes the fault covers (from `FAULT_FROM`)."""
    page_size: int | None = None
    request_timeout_seconds: float | None = None
    rate_per_minute: float | None = None
    poll_timeout_seconds: float = 30.0
    watches_story: bool = False
    """The story experiment is watched explicitly (by id, whatever the listing shows)."""
    failure_threshold: int | None = None
    """The breaker's; by default `THRESHOLD` where it must open, else 1 (so that a single
    failure counted by mistake would open it)."""
    loopback: bool = False
    """Serve the platforms on loopback (uvicorn): for faults only a real connection shows
    (a reset, a hang that only a client timeout ends, a drip under httpx's read timeout);
    the others are served in-process, which is faster and answers the same."""

    def options_for(self, source: str) -> SourceOptions:
        """The run's settings, the case's own applying to the faulted `source`; with
        `failure_threshold=1` where the breaker must not count anything."""

        def mine(value: V | None) -> dict[str, V]:
            return {} if value is None else {source: value}

        return SourceOptions(
            page_size=mine(self.page_size),
            request_timeout_seconds=mine(self.request_timeout_seconds),
            rate_per_minute=mine(self.rate_per_minute),
            include=mine(frozenset({STORY[source]}) if self.watches_story else None),
            poll_timeout_seconds=self.poll_timeout_seconds,
            failure_threshold=self.failure_threshold or (THRESHOLD if self.opens_breaker else 1),
        )


def everywhere(fault: Fault) -> Inject:
    def inject(platforms: Platforms, source: str, window: range) -> None:
        platforms.add(source, fault, refreshes=window)

    return inject


def story_results(gb_own: Fault, gb_portfolio: Fault, ss_pulse: Fault) -> Inject:
    """Faults on where the story experiment's results are read: GrowthBook's own results and
    the portfolio pages; Statsig's Pulse."""

    def inject(platforms: Platforms, source: str, window: range) -> None:
        if source == "gb":
            own = f"/api/v1/experiments/{STORY['gb']}/results"
            platforms.add(source, gb_own, path=own, refreshes=window)
            platforms.add(source, gb_portfolio, path=PORTFOLIO_PATH, refreshes=window)
        else:
            pulse = f"/console/v1/experiments/{STORY['ss']}/pulse_results"
            platforms.add(source, ss_pulse, path=pulse, refreshes=window)

    return inject


Json = dict[str, Any]


def drift_story(
    gb_path: str, ss_path: str, change: Callable[[str], Callable[[Json], Json]]
) -> Inject:
    """One field of the story experiment's results changed by `change(path)` (in GrowthBook's
    portfolio, in the story experiment's item only)."""
    in_portfolio = on_item(
        "experimentResults", {"experimentId": STORY["gb"]}, change(gb_path.removeprefix("result."))
    )
    return story_results(
        DriftFault(change(gb_path)), DriftFault(in_portfolio), DriftFault(change(ss_path))
    )


def short_burst(platforms: Platforms, source: str, window: range) -> None:
    """Two 503s at the start of the window: the third attempt of the listing gets through."""
    platforms.add(source, StatusFault(503), start=platforms.refresh_time(window.start), times=2)


def short_storm(platforms: Platforms, source: str, window: range) -> None:
    """429s with Retry-After 5 for the first ten seconds of the window: the third attempt,
    after two waits, gets through."""
    start = platforms.refresh_time(window.start)
    platforms.add(
        source,
        RateLimitFault(retry_after_seconds=5),
        start=start,
        until=start + timedelta(seconds=10),
    )


def drip_portfolio(platforms: Platforms, source: str, window: range) -> None:
    """GrowthBook's portfolio scan drips: only the request deadline can cut it off (the
    supervisor bounds the listing and each experiment's fetch, not the portfolio read)."""
    platforms.add(
        source,
        DripFault(chunk_bytes=1, interval_seconds=0.02),
        path=PORTFOLIO_PATH,
        refreshes=window,
    )


def vanish_story(platforms: Platforms, source: str, window: range) -> None:
    platforms.add(source, VanishFault(STORY[source]), refreshes=window)


def vanish_while_paging(platforms: Platforms, source: str, window: range) -> None:
    """The story experiment is deleted right after the page listing it was read (the
    source's requests are spaced 0.1 s apart by its budget): the pages after it shift."""
    listed_at = platforms.step_time(window.start) + timedelta(seconds=0.1 * STORY_PAGE[source])
    platforms.add(
        source,
        VanishFault(STORY[source]),
        start=listed_at + timedelta(seconds=0.05),
        until=platforms.refresh_time(window.stop),
    )


def loop_pages(platforms: Platforms, source: str, window: range) -> None:
    platforms.add(source, PageLoopFault(from_offset=1), path=LIST_PATH[source], refreshes=window)


CASES = [
    Case(kind="5xx-short-burst", inject=short_burst, scope="source", error=None, absorbed=True),
    Case(
        kind="5xx-burst",
        inject=everywhere(StatusFault(503)),
        scope="source",
        error="HTTP 503",
        opens_breaker=True,
    ),
    Case(
        kind="connection-reset",
        inject=everywhere(ResetFault()),
        scope="source",
        error="connection was dropped",
        opens_breaker=True,
        loopback=True,
    ),
    Case(
        kind="timeout",
        inject=everywhere(HangFault()),
        scope="source",
        error="timed out",
        opens_breaker=True,
        loopback=True,
        request_timeout_seconds=0.3,
        refreshes=2,  # real waits: two cycles open the breaker, the probe finds the fault over
    ),
    Case(kind="429-waited-out", inject=short_storm, scope="source", error=None, absorbed=True),
    Case(
        kind="429-storm-retry-after",
        inject=everywhere(RateLimitFault(retry_after_seconds=5)),
        scope="source",
        error="HTTP 429",
        opens_breaker=True,
    ),
    Case(
        kind="429-storm",
        inject=everywhere(RateLimitFault()),
        scope="source",
        error="HTTP 429",
        opens_breaker=True,
    ),
    Case(
        kind="slow-drip",
        inject=everywhere(DripFault(chunk_bytes=1, interval_seconds=0.02)),
        scope="source",
        error="timed out",
        opens_breaker=True,
        loopback=True,
        # Each request's own deadline cuts the drip (httpx's per-read timeouts never would).
        request_timeout_seconds=0.8,
        refreshes=2,
    ),
    Case(
        kind="slow-drip-portfolio",
        inject=drip_portfolio,
        scope="source",
        error=None,
        absorbed=True,
        loopback=True,
        request_timeout_seconds=0.3,
        failure_threshold=THRESHOLD,  # the failed portfolio read counts, the fallback's reads too
        sources=("gb",),
        refreshes=1,
    ),
    Case(
        kind="malformed-json",
        inject=story_results(MalformedBodyFault(), MalformedBodyFault(), MalformedBodyFault()),
        scope="experiment",
        error="malformed JSON",
    ),
    Case(
        kind="wrong-shape",
        inject=drift_story("result.results", "data.primaryMetrics", remove_field),
        scope="experiment",
        error="Field required",
        breaks_story_payload=True,
    ),
    Case(
        kind="type-change",
        inject=drift_story(
            "result.results.0.totalUsers",
            "data.primaryMetrics.0.percentChange",
            lambda path: set_field(path, "many"),
        ),
        scope="experiment",
        error="should be a valid number",
        breaks_story_payload=True,
    ),
    Case(
        kind="pagination-loop",
        inject=loop_pages,
        scope="source",
        error="did not advance",
        page_size=1,
        poll_timeout_seconds=5.0,
    ),
    Case(
        kind="pagination-shrink",
        inject=vanish_while_paging,
        scope="experiment",
        error="not found",
        polls_story_while_gone=False,
        page_size=1,
        rate_per_minute=600,
    ),
    Case(
        kind="vanish",
        inject=vanish_story,
        scope="experiment",
        error="not found",
        polls_story_while_gone=False,
    ),
    Case(
        kind="vanish-watched",
        inject=vanish_story,
        scope="experiment",
        error="not found",
        watches_story=True,
    ),
]
"""Every fault kind, each tried on both sources (where the platform has what it breaks)."""


def matrix() -> Iterator[object]:
    for case in CASES:
        for source in case.sources:
            yield pytest.param(case, source, id=f"{case.kind}-{source}")


@pytest.mark.parametrize(("case", "source"), list(matrix()))
async def test_an_upstream_fault_is_survived_isolated_reported_once_and_recovered(
    tmp_path: Path, case: Case, source: str
) -> None:
    """One fault kind on one source, over ten refreshes (see the module docstring)."""
    await check_case(tmp_path, case, source, steps=STEPS)


@pytest.mark.long
@pytest.mark.parametrize(("case", "source"), list(matrix()))
async def test_a_longer_upstream_fault_is_survived_isolated_reported_once_and_recovered(
    tmp_path: Path, case: Case, source: str
) -> None:
    """The same over 24 refreshes, with faults twice as long (the breaker's cooldown grows
    over several failed probes)."""
    longer = case if case.absorbed else replace(case, refreshes=2 * case.refreshes)
    await check_case(tmp_path, longer, source, steps=LONG_STEPS)


# -- runs -----------------------------------------------------------------------------------

_REFERENCE: dict[int, RunResult] = {}


async def reference_run(tmp_path: Path, steps: int) -> RunResult:
    """The scenarios without any fault (computed once per module and step count)."""
    if steps not in _REFERENCE:
        platforms = Platforms.new()
        store = await open_store(tmp_path / "reference.db", platforms.clock)
        try:
            async with connected(platforms, loopback=False) as (client, urls):
                done = await run_steps(platforms, store, client, urls, SourceOptions(), steps)
            _REFERENCE[steps] = await collect(platforms, store, done)
        finally:
            await store.aclose()
    return _REFERENCE[steps]


async def faulted_run(
    tmp_path: Path, case: Case, source: str, steps: int
) -> tuple[RunResult, Platforms]:
    platforms = Platforms.new()
    case.inject(platforms, source, window_of(case))
    store = await open_store(tmp_path / "faulted.db", platforms.clock)
    try:
        async with connected(platforms, loopback=case.loopback) as (client, urls):
            done = await run_steps(platforms, store, client, urls, case.options_for(source), steps)
        broken = {source: frozenset({STORY[source]})} if case.breaks_story_payload else {}
        return await collect(platforms, store, done, broken=broken), platforms
    finally:
        await store.aclose()


async def replay_run(
    tmp_path: Path, faulted: RunResult, steps: int, source: str, touched: set[str]
) -> RunResult:
    """Clean platforms and a fresh supervisor each step, watching `source` and leaving out
    every experiment but the `touched` ones the faulted run recorded at that step: the faulted
    run's observations of them, without its faults."""
    platforms = Platforms.new()
    known = {x for step in faulted.steps for r in step.recorded.values() for x in r}
    store = await open_store(tmp_path / "replay.db", platforms.clock)

    def exclude_at(index: int) -> dict[str, frozenset[str]]:
        recorded = faulted.steps[index].recorded.get(source, set())
        return {source: frozenset(known - (recorded & touched))}

    try:
        async with connected(platforms, loopback=False) as (client, urls):
            done = await run_steps(
                platforms,
                store,
                client,
                urls,
                SourceOptions(),
                steps,
                exclude_at=exclude_at,
                only=source,
            )
        return await collect(platforms, store, done)
    finally:
        await store.aclose()


def window_of(case: Case) -> range:
    return range(FAULT_FROM, FAULT_FROM + case.refreshes)


def experiments_of(run: RunResult, source: str) -> set[str]:
    return {x for step in run.steps for x in step.recorded.get(source, set())}


# -- checks ---------------------------------------------------------------------------------


async def check_case(tmp_path: Path, case: Case, source: str, *, steps: int) -> None:
    reference = await reference_run(tmp_path, steps)
    faulted, platforms = await faulted_run(tmp_path, case, source, steps)
    window = window_of(case)
    other = next(s for s in SOURCES if s != source)
    story = STORY[source]
    touched = experiments_of(reference, source) if case.scope == "source" else {story}
    everyone = experiments_of(reference, source) | experiments_of(reference, other)
    assert story in touched and len(everyone) == 5

    # 2. The other source and the untouched experiments: exactly as without the fault.
    for experiment_id in sorted(everyone - touched):
        assert faulted.served.get(experiment_id) == reference.served.get(experiment_id), (
            experiment_id
        )
        assert faulted.hashes.get(experiment_id) == reference.hashes.get(experiment_id), (
            experiment_id
        )
        assert faulted.detections(experiment_id) == reference.detections(experiment_id), (
            experiment_id
        )
    assert [e for e in faulted.source_events if e[2] == other] == []

    # 5. One snapshot per distinct state served, for every experiment.
    for experiment_id in sorted(everyone):
        served = sorted(faulted.served.get(experiment_id, set()))
        expected = dedup(reference.state_at(experiment_id, k) for k in served)
        assert faulted.hashes.get(experiment_id, []) == expected, experiment_id

    recovery = check_touched(case, source, faulted, reference, platforms, touched, window)
    check_breaker_and_errors(case, source, faulted, platforms, window, recovery)
    check_rate_limit_pauses(platforms, source)

    # Detection events: what the observations imply, once each.
    if all(faulted.recorded_steps(x) == reference.recorded_steps(x) for x in everyone):
        implied = reference
    else:
        implied = await replay_run(tmp_path, faulted, steps, source, touched)
    for experiment_id in sorted(touched):
        assert faulted.detections(experiment_id) == implied.detections(experiment_id), experiment_id
    assert faulted.detections(story), "the story's changes were recorded after the fault"


def check_touched(
    case: Case,
    source: str,
    faulted: RunResult,
    reference: RunResult,
    platforms: Platforms,
    touched: set[str],
    window: range,
) -> int:
    """The touched experiments: exactly as in the reference when the fault is absorbed;
    else not served during the fault, and served again from the step of recovery on (the
    first step after the fault whose cycle the breaker admits); returns that step."""
    if case.absorbed:
        for experiment_id in touched:
            assert faulted.served.get(experiment_id) == reference.served.get(experiment_id)
            assert faulted.hashes.get(experiment_id) == reference.hashes.get(experiment_id)
        return window.start
    recovery = next(
        step.index
        for step in faulted.steps[window.stop :]
        if _is_admitted(faulted, platforms, source, step.index)
    )
    for experiment_id in touched:
        served = faulted.served.get(experiment_id, set())
        assert not served & set(range(window.start, recovery)), experiment_id
        after = {k for k in reference.served.get(experiment_id, set()) if k >= recovery}
        assert after <= served, experiment_id
        assert after or experiment_id != STORY[source]  # the story goes on after the fault
    if not case.polls_story_while_gone:
        story = STORY[source]
        asked = [
            e
            for e in platforms.logs[source]
            if story in e.path and platforms.refresh_of(e.at) in window
        ]
        assert [platforms.refresh_of(e.at) for e in asked] == [window.start], asked
        assert asked[0].status_code in (400, 404), asked
    return recovery


def _is_admitted(faulted: RunResult, platforms: Platforms, source: str, index: int) -> bool:
    """Whether the breaker lets step `index` of `source` call the platform."""
    before = faulted.steps[index - 1].status[source].breaker
    return before.open_until is None or before.open_until <= platforms.step_time(index)


def check_breaker_and_errors(
    case: Case,
    source: str,
    faulted: RunResult,
    platforms: Platforms,
    window: range,
    recovery: int,
) -> None:
    """The breaker's and the failure's events for the faulted source, each exactly once, and
    what the status shows meanwhile; nothing asked while the breaker is open."""
    mine = [e for e in faulted.source_events if e[2] == source]
    if case.error is None:
        assert mine == []
        for step in faulted.steps:
            assert step.status[source].breaker.consecutive_failures == 0
            assert step.status[source].failing == {}
        return
    key = None if case.scope == "source" else STORY[source]
    kinds = [(step, kind, experiment_id) for step, kind, _, experiment_id, _ in mine]
    expected = [(window.start, "source_error", key)]
    if case.opens_breaker:
        expected.append((window.start + THRESHOLD - 1, "source_unavailable", None))
    expected.append((recovery, "source_recovered", key))
    assert kinds == expected
    reason = str(mine[0][4])
    assert case.error in reason, reason
    if key is not None:  # an experiment's error never suggests that very experiment instead
        assert key not in reason.partition("Did you mean")[2], reason
    for step in faulted.steps[window.start : recovery]:
        status = step.status[source]
        assert status.failing == {key or "": reason}
        if case.opens_breaker:
            assert case.error in (status.breaker.last_error or "")
        else:
            assert status.breaker.state == "closed"
            assert status.breaker.consecutive_failures == 0
    after = faulted.steps[recovery].status[source]
    assert after.breaker.state == "closed" and after.failing == {}
    if case.opens_breaker:
        # While open and not yet due for a probe, the platform is left alone.
        for step in faulted.steps[window.start + THRESHOLD : recovery]:
            if not _is_admitted(faulted, platforms, source, step.index):
                asked = [
                    e for e in platforms.logs[source] if platforms.refresh_of(e.at) == step.index
                ]
                assert asked == [], (step.index, asked)


def check_rate_limit_pauses(platforms: Platforms, source: str) -> None:
    """After a 429, no request reaches that platform before the pause it asked for (its
    Retry-After, or the policy's wait without one) is over."""
    log = platforms.logs[source].entries
    for limited in log:
        if not isinstance(limited.fault, RateLimitFault):
            continue
        pause = limited.fault.retry_after_seconds or RATE_LIMIT_PAUSE_SECONDS
        ends = limited.at + timedelta(seconds=pause)
        early = [e for e in log if limited.at < e.at < ends]
        assert early == [], (limited, early)


async def test_the_run_loop_keeps_both_sources_going_through_an_outage(tmp_path: Path) -> None:
    """`Supervisor.run` over ten refreshes while GrowthBook answers 503 to everything for
    four of them: no exception ends it, each source cycles once a refresh throughout (the
    breaker skipping GrowthBook's cycles while it is open), Statsig is recorded at every
    refresh, and GrowthBook is recorded again once the fault is over, its outage reported
    once and its recovery once."""
    platforms = Platforms.new()
    window = range(2, 6)
    platforms.add("gb", StatusFault(503), refreshes=window)
    options = SourceOptions(failure_threshold=THRESHOLD)
    reports: list[CycleReport] = []
    store = await open_store(tmp_path / "run.db", platforms.clock)
    try:
        async with connected(platforms, loopback=False) as (client, urls):
            sources = source_list(client, platforms.clock, urls, options)
            supervisor = supervisor_for(store, sources, platforms.clock, options)
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    await tg.start(partial(supervisor.run, on_cycle=reports.append))
                    for refresh in range(11):
                        # Both loops have cycled at this refresh and sleep until the next.
                        await platforms.clock.wait_for_sleep_calls(2 * (refresh + 1))
                        platforms.clock.advance(REFRESH_SECONDS)
                    tg.cancel_scope.cancel()
        events = await store.events_after(0, limit=1000)
    finally:
        await store.aclose()
    assert len(reports) == 2 * 11  # both loops, at every refresh from 0 to 10
    assert sum(1 for r in reports if r.skipped_sources == ["gb"]) >= 1
    served = served_by(platforms)
    assert served["checkout_redesign"] == set(range(1, 11))
    # Failed at 2 and 3 (open), a failed probe at 4, 5 skipped, the probe at 6 recovers.
    assert served["exp_checkout_redesign"] == {0, 1} | set(range(6, 11))
    gb_events = [(e.kind, e.experiment_id) for e in events if e.source == "gb"]
    assert [k for k, x in gb_events if k.value.startswith("source_")] == [
        EventKind.SOURCE_ERROR,
        EventKind.SOURCE_UNAVAILABLE,
        EventKind.SOURCE_RECOVERED,
    ]
    assert not [e for e in events if e.source == "ss" and e.kind.value.startswith("source_")]
