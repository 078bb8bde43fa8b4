"""Backfilling history from the simulators in-process: Statsig Pulse per day, GrowthBook
bulk results (enabled and not), within the rate budget, resumable, never alerted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
import anyio.lowlevel
import httpx
import pytest
from fastmcp import Client
from fastmcp.client.client import CallToolResult
from mcp import types

from alerts import AlertDispatcher, AlertTarget
from mcp_server import ResponseCache, build_server
from simulator import (
    Faults,
    RequestLog,
    StatusFault,
    build_growthbook_app,
    build_statsig_app,
    default_scenario,
    default_statsig_scenario,
)
from simulator.statsig_scenario import stable_group_id
from store import Event, EventKind, Store, sqlite_url
from watcher import (
    Backfiller,
    BackfillJob,
    BackfillStatus,
    ChangeDetector,
    DayDone,
    ExperimentReport,
    GrowthBookSource,
    RateBudget,
    RetryPolicy,
    StatsigSource,
    Supervisor,
)
from watcher.backfill import HistorySource

pytestmark = pytest.mark.anyio

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DAY = 86400.0
SG_KEY = "console-backfillTestKey"
GB_KEY = "secret_backfill_key_77"
CHECKOUT = "checkout_redesign"
CONVERSION = "checkout_conversion::event_user"
ONE_PAGE = stable_group_id(CHECKOUT, "One page checkout")


class VirtualClock:
    """Time that moves only when someone sleeps on it: a sleep jumps to its end at once."""

    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        self._now += timedelta(seconds=max(0.0, seconds))
        await anyio.lowlevel.checkpoint()


@dataclass
class Rig:
    clock: VirtualClock
    store: Store
    requests: RequestLog
    faults: Faults
    source: HistorySource
    backfiller: Backfiller

    async def backfill(
        self, *experiment_ids: str, on_day: Callable[[DayDone], None] | None = None
    ) -> list[ExperimentReport]:
        jobs = [BackfillJob(source=self.source.name, experiment_id=i) for i in experiment_ids]
        report = await self.backfiller.run(jobs, on_day=on_day)
        return list(report.experiments)


@asynccontextmanager
async def rig(
    tmp_path: Path,
    *,
    platform: str = "statsig",
    day: float = 10,
    rate_per_minute: float | None = None,
    refresh_seconds: float = DAY,
    bulk_results: bool = True,
    page_size: int = 100,
) -> AsyncIterator[Rig]:
    """A simulator on day `day` of its story, a source with a budget on the same virtual
    clock, a real SQLite store."""
    clock = VirtualClock(START + timedelta(days=day, seconds=1))
    requests, faults = RequestLog(), Faults()
    source: HistorySource
    if platform == "statsig":
        app = build_statsig_app(
            default_statsig_scenario(start=START, refresh_seconds=refresh_seconds),
            api_key=SG_KEY,
            clock=clock.now,
            faults=faults,
            request_log=requests,
        )
    else:
        app = build_growthbook_app(
            default_scenario(start=START, refresh_seconds=refresh_seconds),
            api_key=GB_KEY,
            clock=clock.now,
            bulk_results=bulk_results,
            faults=faults,
            request_log=requests,
        )
    store = await Store.open(sqlite_url(tmp_path / "history.db"), clock=clock.now)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            budget = RateBudget(rate_per_minute, clock=clock)
            if platform == "statsig":
                source = StatsigSource(
                    name="sg",
                    api_key=SG_KEY,
                    client=client,
                    base_url="http://statsig.test",
                    budget=budget,
                    retry=RetryPolicy(),
                )
            else:
                source = GrowthBookSource(
                    name="gb",
                    api_key=GB_KEY,
                    client=client,
                    base_url="http://growthbook.test",
                    budget=budget,
                    retry=RetryPolicy(),
                    page_size=page_size,
                )
            detector = ChangeDetector(clock=clock.now)
            yield Rig(
                clock=clock,
                store=store,
                requests=requests,
                faults=faults,
                source=source,
                backfiller=Backfiller(store, [source], clock=clock, detector=detector),
            )
    finally:
        await store.aclose()


def end_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def pulse_days(requests: RequestLog) -> list[str]:
    """The `date` of every Pulse request, in order."""
    return [parse_qs(r.query)["date"][0] for r in requests if r.path.endswith("/pulse_results")]


async def test_statsig_backfill_records_each_pulse_day_at_the_day_statsig_computed_it(
    tmp_path: Path,
) -> None:
    """Ten days since the start (today excluded): the first has no Pulse yet, the nine
    after it become nine backfilled snapshots, each at the end of its Pulse day; the day the
    platform's interval excluded 0 (day 3) and the day ours crossed are backfilled events."""
    async with rig(tmp_path) as r:
        [entry] = await r.backfill(CHECKOUT)
        points = await r.store.metric_history(CHECKOUT, CONVERSION, ONE_PAGE)
        events = await r.store.history_events(CHECKOUT)
    assert entry.status is BackfillStatus.DONE
    assert (entry.first_day, entry.last_day) == (date(2026, 1, 5), date(2026, 1, 14))
    assert [p.fetched_at for p in points] == [end_of(date(2026, 1, d)) for d in range(6, 15)]
    assert all(p.backfilled for p in points)
    assert pulse_days(r.requests) == [f"2026-01-{d:02d}" for d in range(5, 15)]
    crossings = {
        (e.kind, e.occurred_at) for e in events if e.metric_id == CONVERSION and e.after == "won"
    }
    assert (EventKind.PLATFORM_VERDICT_CHANGED, end_of(date(2026, 1, 8))) in crossings
    assert any(kind is EventKind.SIGNIFICANCE_CHANGED for kind, _ in crossings)
    assert events and all(e.backfilled for e in events)


async def test_backfilled_events_answer_when_but_are_never_routed_to_alerts(
    tmp_path: Path,
) -> None:
    """The alert router, started before the backfill, routes a live event recorded after it
    and none of the backfilled ones."""
    async with rig(tmp_path) as r:
        router = AlertDispatcher(r.store, [AlertTarget("hook", "json://127.0.0.1:9/")])
        await router.start_cursor()
        await r.backfill(CHECKOUT)
        backfilled = await r.store.significance_changes(CHECKOUT)
        [live] = await r.store.record_events(
            [
                Event(
                    kind=EventKind.SRM_DETECTED,
                    source="sg",
                    experiment_id=CHECKOUT,
                    occurred_at=r.clock.now(),
                )
            ]
        )
        await router.route_pending()
        routed = {d.event_id for d in await r.store.outbox.due("hook")}
    assert backfilled and all(e.backfilled for e in backfilled)
    assert routed == {live.id}


async def test_backfill_never_exceeds_the_sources_rate_budget(tmp_path: Path) -> None:
    """At 4 requests a minute, no 60 seconds of the simulator's clock see more than 4 of
    the backfill's requests (two experiments, 32 requests)."""
    async with rig(tmp_path, rate_per_minute=4) as r:
        await r.backfill(CHECKOUT, "pricing_page")
    times = [entry.at for entry in r.requests]
    busiest = max(sum(t <= u < t + timedelta(seconds=60) for u in times) for t in times)
    assert len(times) == 32
    assert busiest == 4


async def test_an_outage_stops_the_backfill_and_the_next_run_resumes_without_repeating_a_day(
    tmp_path: Path,
) -> None:
    """Statsig starts failing after four days: the run stops with those four recorded;
    once Statsig is back, the next run reads only the days not done."""
    async with rig(tmp_path) as r:
        outage = []

        def fail_after_four(progress: DayDone) -> None:
            if progress.days_read == 4:
                outage.append(r.faults.add(StatusFault(503), path="*/pulse_results"))

        [stopped] = await r.backfill(CHECKOUT, on_day=fail_after_four)
        done_then = await r.store.backfill_days("sg", CHECKOUT)
        r.faults.remove(outage[0])
        r.requests.clear()
        [resumed] = await r.backfill(CHECKOUT)
        points = await r.store.metric_history(CHECKOUT, CONVERSION, ONE_PAGE)
    assert stopped.status is BackfillStatus.FAILED
    assert "503" in (stopped.error or "")
    assert done_then == {date(2026, 1, d) for d in range(5, 9)}
    assert resumed.status is BackfillStatus.DONE
    assert pulse_days(r.requests) == [f"2026-01-{d:02d}" for d in range(9, 15)]
    assert [p.fetched_at for p in points] == [end_of(date(2026, 1, d)) for d in range(6, 15)]


async def test_a_cancelled_backfill_keeps_the_days_it_finished_and_resumes_after_them(
    tmp_path: Path,
) -> None:
    """Cancelled (Ctrl-C) after three days, a backfill leaves exactly those three days
    recorded; the next run starts at the fourth."""
    async with rig(tmp_path) as r:
        with anyio.CancelScope() as scope:

            def stop_after_three(progress: DayDone) -> None:
                if progress.days_read == 3:
                    scope.cancel()

            await r.backfill(CHECKOUT, on_day=stop_after_three)
        done_then = await r.store.backfill_days("sg", CHECKOUT)
        snapshots_then = await r.store.snapshot_count(CHECKOUT)
        r.requests.clear()
        await r.backfill(CHECKOUT)
        snapshots = await r.store.snapshot_count(CHECKOUT)
    assert scope.cancelled_caught
    assert done_then == {date(2026, 1, d) for d in range(5, 8)}
    assert snapshots_then == 2
    assert pulse_days(r.requests) == [f"2026-01-{d:02d}" for d in range(8, 15)]
    assert snapshots == 9


async def test_backfill_stops_at_the_first_live_snapshot_and_leaves_the_live_series_alone(
    tmp_path: Path,
) -> None:
    """Watched live since day 4, an experiment gets history only for the days before; the
    next live poll resumes the live statistics (two polls), not the backfilled ones."""
    async with rig(tmp_path, day=4) as r:
        supervisor = Supervisor(
            r.store, [r.source], clock=r.clock, detector=ChangeDetector(clock=r.clock.now)
        )
        await supervisor.poll_once()
        live_since = await r.store.live_since("sg", CHECKOUT)
        r.clock.advance(6 * DAY)
        [entry] = await r.backfill(CHECKOUT)
        r.clock.advance(DAY)
        await supervisor.poll_once()
        points = await r.store.metric_history(CHECKOUT, CONVERSION, ONE_PAGE)
        latest = await r.store.latest_snapshot(CHECKOUT)
    assert live_since == START + timedelta(days=4)
    assert entry.last_day == date(2026, 1, 9)
    assert [(p.fetched_at.date(), p.backfilled) for p in points] == [
        (date(2026, 1, 7), True),
        (date(2026, 1, 8), True),
        (date(2026, 1, 9), True),
        (date(2026, 1, 9), False),
        (date(2026, 1, 16), False),
    ]
    assert all(p.fetched_at < live_since for p in points if p.backfilled)
    assert latest is not None and not latest.backfilled
    ours = latest.snapshot.metric(CONVERSION).variation(ONE_PAGE).ours  # type: ignore[union-attr]
    assert ours is not None and ours.state["polls"] == 2


async def test_an_unknown_experiment_is_reported_with_the_closest_ids(tmp_path: Path) -> None:
    """An id Statsig does not know is `not_found`, naming the closest listed id; the other
    experiments of the run are still backfilled."""
    async with rig(tmp_path) as r:
        missing, found = await r.backfill("checkout_redesing", "search_ranking")
    assert missing.status is BackfillStatus.NOT_FOUND
    assert "Did you mean: checkout_redesign" in (missing.error or "")
    assert found.status is BackfillStatus.DONE and found.snapshots > 0


async def test_growthbook_backfill_reads_every_stored_snapshot_from_bulk_results(
    tmp_path: Path,
) -> None:
    """With bulk results on and analyses every six hours, each day's four snapshots (read
    two a page) are recorded at the times GrowthBook generated them, in order; SRM and the
    platform's significance become backfilled events at those times."""
    async with rig(
        tmp_path, platform="growthbook", day=3, refresh_seconds=DAY / 4, page_size=2
    ) as r:
        [entry] = await r.backfill("exp_checkout_redesign")
        points = await r.store.metric_history(
            "exp_checkout_redesign", "met_conversion", "var_checkout_1"
        )
        events = await r.store.history_events("exp_checkout_redesign")
    analysed = [START + timedelta(hours=6 * i) for i in range(1, 11)]  # refresh 0 has none
    assert entry.status is BackfillStatus.DONE
    assert [p.fetched_at for p in points] == analysed
    assert all(p.backfilled for p in points)
    kinds = {(e.kind, e.occurred_at) for e in events}
    assert (EventKind.PLATFORM_VERDICT_CHANGED, START + timedelta(hours=18)) in kinds
    assert (EventKind.SRM_DETECTED, START + timedelta(hours=36)) in kinds
    assert all(e.backfilled for e in events)
    pages = [r_ for r_ in r.requests if r_.path.endswith("/bulk-results")]
    assert any("offset=2" in p.query for p in pages)


async def test_growthbook_without_bulk_results_says_history_is_unavailable(
    tmp_path: Path,
) -> None:
    """GrowthBook's default 404 on bulk-results is `unsupported`, with the setting that
    enables it; the source's other experiments are not tried and nothing is recorded."""
    async with rig(tmp_path, platform="growthbook", bulk_results=False) as r:
        first, second = await r.backfill("exp_checkout_redesign", "exp_pricing_page")
        recorded = await r.store.experiments()
    assert first.status is BackfillStatus.UNSUPPORTED
    assert "EXPERIMENT_BULK_RESULTS_ENABLED=true" in (first.error or "")
    assert second.status is BackfillStatus.UNSUPPORTED
    assert len(r.requests) == 2 and recorded == []


async def test_when_significant_answers_from_backfilled_history_before_live_events(
    tmp_path: Path,
) -> None:
    """Watched live from day 4, when the platform's verdict had already been significant
    since Pulse day 3: after a backfill, the MCP `when_significant` tool dates the platform's
    call to the end of that day, and `get_history` lists the backfilled events first."""
    async with rig(tmp_path, day=4) as r:
        supervisor = Supervisor(
            r.store, [r.source], clock=r.clock, detector=ChangeDetector(clock=r.clock.now)
        )
        await supervisor.poll_once()
        r.clock.advance(6 * DAY)
        await r.backfill(CHECKOUT)
        server = build_server(r.store, cache=ResponseCache(ttl_seconds=300), now=r.clock.now)
        async with Client(server) as client:
            answer = await client.call_tool("when_significant", {"experiment_id": CHECKOUT})
            history = await client.call_tool("get_history", {"experiment_id": CHECKOUT})
    [entry] = [m for m in tool_json(answer)["metrics"] if m["metric"] == CONVERSION]
    assert datetime.fromisoformat(entry["platform_significant_since"]) == end_of(date(2026, 1, 8))
    flags = [e.get("backfilled", False) for e in tool_json(history)["events"]]
    assert flags == sorted(flags, reverse=True) and flags[0] and not flags[-1]


def tool_json(result: CallToolResult) -> dict[str, Any]:
    [content] = result.content
    assert isinstance(content, types.TextContent)
    answer: dict[str, Any] = json.loads(content.text)
    return answer
