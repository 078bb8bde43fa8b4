"""The supervisor against the simulator with fault injection, on a manual clock: the rate
budget, version skipping, retries, the circuit breaker, payload isolation and shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from simulator import (
    DriftFault,
    Faults,
    HangFault,
    LatencyFault,
    RateLimitFault,
    RequestLog,
    Scenario,
    StatusFault,
    build_growthbook_app,
    set_field,
)
from store import EventKind, Store, sqlite_url
from tests.helpers import ManualClock
from tests.watcher.conftest import API_KEY, at_refresh
from watcher import (
    ChangeDetector,
    CycleReport,
    GrowthBookSource,
    RateBudget,
    RetryPolicy,
    SourcePolicy,
    Supervisor,
    WatchRules,
)

pytestmark = pytest.mark.anyio

RESULTS = "/api/v1/experiments/*/results"
PORTFOLIO = "/api/v1/experiments/results"
ONE_BY_ONE = SourcePolicy(use_portfolio=False)


@dataclass
class Rig:
    """The simulator with faults and a request log, a source on it, and a store."""

    clock: ManualClock
    scenario: Scenario
    faults: Faults
    requests: RequestLog
    client: httpx.AsyncClient
    store: Store
    db_url: str

    def source(self, *, rate_per_minute: float | None = None) -> GrowthBookSource:
        return GrowthBookSource(
            name="gb",
            base_url="http://gb.test",
            api_key=API_KEY,
            client=self.client,
            budget=RateBudget(rate_per_minute, clock=self.clock),
            retry=RetryPolicy(attempts=3),
        )

    def supervisor(
        self,
        *,
        source: GrowthBookSource | None = None,
        policy: SourcePolicy = ONE_BY_ONE,
        poll_interval_seconds: float = 300.0,
        refresh_unchanged_seconds: float = 3600.0,
        jitter: float = 0.1,
    ) -> Supervisor:
        return Supervisor(
            self.store,
            [source or self.source()],
            clock=self.clock,
            source_policies={"gb": policy},
            poll_interval_seconds=poll_interval_seconds,
            refresh_unchanged_seconds=refresh_unchanged_seconds,
            jitter=jitter,
        )

    def results_requests(self) -> int:
        return sum(1 for r in self.requests.entries if r.path.endswith("/results"))


@pytest.fixture
async def rig(tmp_path: Path, clock: ManualClock, scenario: Scenario) -> AsyncIterator[Rig]:
    faults, requests = Faults(), RequestLog()
    app = build_growthbook_app(
        scenario,
        api_key=API_KEY,
        clock=clock.now,
        rate_limit_per_minute=1000,
        faults=faults,
        request_log=requests,
    )
    url = sqlite_url(tmp_path / "watch.db")
    store = await Store.open(url, clock=clock.now)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        yield Rig(clock, scenario, faults, requests, client, store, url)
    await store.aclose()


async def drive(clock: ManualClock, *, step_seconds: float, until: anyio.Event) -> None:
    """Move the clock by `step_seconds` each time every task is blocked, until `until`."""
    while not until.is_set():
        await anyio.wait_all_tasks_blocked()
        if not until.is_set():
            clock.advance(step_seconds)


async def test_unchanged_experiments_cost_no_results_requests(rig: Rig) -> None:
    """Within one refresh a second cycle lists and stops there; the next refresh fetches
    again."""
    supervisor = rig.supervisor()
    at_refresh(rig.clock, rig.scenario, 2)
    first = await supervisor.poll_once()
    assert first.fetched == 2 and first.new_snapshots == 2
    rig.requests.clear()
    second = await supervisor.poll_once()
    assert second.fetched == 0
    assert [r.path for r in rig.requests.entries] == ["/api/v1/experiments"]
    at_refresh(rig.clock, rig.scenario, 3)
    third = await supervisor.poll_once()
    assert third.fetched == 2 and third.new_snapshots == 2


async def test_many_changed_experiments_are_read_through_the_portfolio_endpoint(
    rig: Rig,
) -> None:
    """Two due experiments on one list page: one portfolio request instead of two."""
    supervisor = rig.supervisor(policy=SourcePolicy())
    at_refresh(rig.clock, rig.scenario, 2)
    await supervisor.poll_once()
    paths = [r.path for r in rig.requests.entries if "/metrics" not in r.path]
    assert paths == ["/api/v1/experiments", "/api/v1/experiments/results"]
    assert await rig.store.snapshot_count("exp_checkout_redesign") == 1
    assert await rig.store.snapshot_count("exp_pricing_page") == 1


async def test_a_failed_portfolio_read_falls_back_to_one_request_per_experiment(
    rig: Rig,
) -> None:
    """The portfolio endpoint failing (503 on every attempt): the cycle does not fail; the
    due experiments are fetched one by one and recorded."""
    supervisor = rig.supervisor(policy=SourcePolicy())
    at_refresh(rig.clock, rig.scenario, 2)
    rig.faults.add(StatusFault(503), path=PORTFOLIO)
    report = await supervisor.poll_once()
    assert report.fetched == 2 and report.errors == []
    assert rig.results_requests() == 3 + 2  # three portfolio attempts, then one each
    assert await rig.store.snapshot_count("exp_checkout_redesign") == 1
    assert await rig.store.snapshot_count("exp_pricing_page") == 1


async def test_the_rate_budget_is_never_exceeded(rig: Rig) -> None:
    """Six requests a minute, cycles every ten seconds for ten minutes of the simulator's
    clock: no sixty-second window holds more than six requests, and nothing is refused."""
    supervisor = rig.supervisor(
        source=rig.source(rate_per_minute=6),
        poll_interval_seconds=10,
        jitter=0,
        refresh_unchanged_seconds=30,  # keeps every cycle asking for more than the budget
    )
    end = rig.clock.now() + timedelta(minutes=10)
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await tg.start(supervisor.run)
            await rig.clock.run_until(end)
            tg.cancel_scope.cancel()
    times = [r.at for r in rig.requests.entries]
    assert len(times) >= 50  # the budget, not the schedule, was the limit
    busiest = max(sum(1 for t in times if s <= t < s + timedelta(seconds=60)) for s in times)
    assert busiest <= 6
    assert all(r.status_code != 429 for r in rig.requests.entries)


async def test_a_429_storm_with_retry_after_is_waited_out(rig: Rig) -> None:
    """The first results request gets 429 with Retry-After 30: nothing more is asked of the
    platform for 30 s of its clock, then the cycle finishes and records the results."""
    supervisor = rig.supervisor()
    at_refresh(rig.clock, rig.scenario, 2)
    rig.faults.add(RateLimitFault(retry_after_seconds=30), path=RESULTS, times=1)
    storm_ends = rig.clock.now() + timedelta(seconds=30)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(supervisor.poll_once)
            while not any(r.status_code == 429 for r in rig.requests.entries):
                await anyio.wait_all_tasks_blocked()
            await anyio.wait_all_tasks_blocked()
            asked = len(rig.requests.entries)
            rig.clock.advance(29)
            await anyio.wait_all_tasks_blocked()
            assert len(rig.requests.entries) == asked  # still waiting out Retry-After
            rig.faults.clear()
            rig.clock.advance(2)
    assert all(r.at >= storm_ends for r in rig.requests.entries[asked:])
    assert await rig.store.snapshot_count("exp_checkout_redesign") == 1
    assert await rig.store.snapshot_count("exp_pricing_page") == 1


async def test_the_breaker_opens_probes_once_and_recovers(rig: Rig) -> None:
    """Two failed cycles open it (one source_unavailable event); while open nothing is
    asked; after the cooldown ONE probe; a failed probe doubles the cooldown; a good one
    closes it (source_recovered) and polling resumes. The state survives a restart."""
    policy = SourcePolicy(failure_threshold=2, cooldown_seconds=60, max_cooldown_seconds=600)
    supervisor = rig.supervisor(policy=policy)
    at_refresh(rig.clock, rig.scenario, 2)
    outage = rig.faults.add(StatusFault(503))
    await supervisor.poll_once()
    await supervisor.poll_once()
    kinds = [e.kind for e in await rig.store.events_after(0)]
    assert kinds == [EventKind.SOURCE_ERROR, EventKind.SOURCE_UNAVAILABLE]
    [status] = supervisor.status()
    assert status.breaker.state == "open"
    saved = await rig.store.state.sources()
    assert saved["gb"]["breaker"]["state"] == "open"

    rig.requests.clear()
    report = await supervisor.poll_once()
    assert report.skipped_sources == ["gb"] and len(rig.requests) == 0

    rig.clock.advance(61)
    await supervisor.poll_once()  # the probe: one listing, retried within the call
    assert {r.path for r in rig.requests.entries} == {"/api/v1/experiments"}
    probe_attempts = len(rig.requests)
    assert supervisor.status()[0].breaker.open_until == rig.clock.now() + timedelta(seconds=120)

    # A restarted supervisor resumes the open breaker instead of hammering the platform.
    restarted = rig.supervisor(policy=policy)
    restarted_report = await restarted.poll_once()
    assert restarted_report.skipped_sources == ["gb"]
    assert len(rig.requests) == probe_attempts

    rig.faults.remove(outage)
    rig.clock.advance(121)
    report = await restarted.poll_once()
    assert [e.kind for e in report.events][:1] == [EventKind.SOURCE_RECOVERED]
    assert restarted.status()[0].breaker.state == "closed"
    assert await rig.store.snapshot_count("exp_checkout_redesign") == 1
    unavailable = [
        e for e in await rig.store.events_after(0) if e.kind is EventKind.SOURCE_UNAVAILABLE
    ]
    assert len(unavailable) == 1


async def test_a_drifted_payload_for_one_experiment_leaves_the_others_alone(rig: Rig) -> None:
    """A field of the wrong type in pricing's results is a source error naming the field;
    checkout is recorded, and the breaker does not count it against the source."""
    supervisor = rig.supervisor()
    at_refresh(rig.clock, rig.scenario, 2)
    rig.faults.add(
        DriftFault(set_field("result.results.0.totalUsers", "many")),
        path="/api/v1/experiments/exp_pricing_page/results",
    )
    report = await supervisor.poll_once()
    [error] = [e for e in report.events if e.kind is EventKind.SOURCE_ERROR]
    assert error.experiment_id == "exp_pricing_page"
    assert "totalUsers" in str(error.after)
    assert await rig.store.snapshot_count("exp_checkout_redesign") == 1
    assert supervisor.status()[0].breaker.consecutive_failures == 0


async def test_watch_rules_and_the_run_time_watch_list(rig: Rig) -> None:
    """Tags filter the listing; an explicit id is watched though the listing does not show
    it (a stopped experiment); `unwatch` wins over the filters."""
    rules = WatchRules(tags=frozenset({"checkout"}), include=frozenset({"exp_search_ranking"}))
    supervisor = rig.supervisor(policy=SourcePolicy(rules=rules, use_portfolio=False))
    at_refresh(rig.clock, rig.scenario, 2)
    report = await supervisor.poll_once()
    assert report.experiments == 2
    seen = {e.experiment_id for e in await rig.store.experiments()}
    assert seen == {"exp_checkout_redesign", "exp_search_ranking"}
    await rig.store.state.unwatch("gb", "exp_checkout_redesign")
    await rig.store.state.watch("gb", "exp_pricing_page")
    at_refresh(rig.clock, rig.scenario, 3)
    report = await supervisor.poll_once()
    assert report.experiments == 2
    assert await rig.store.snapshot_count("exp_checkout_redesign") == 1
    assert await rig.store.snapshot_count("exp_pricing_page") == 1


async def test_results_that_stop_updating_are_flagged_once_and_cleared_once(rig: Rig) -> None:
    """Pricing's results stay as of refresh 1 (its later payloads are broken): flagged once
    when they are older than five minutes, cleared once when fresh results arrive."""
    supervisor = rig.supervisor(
        policy=SourcePolicy(stale_after_seconds=300, use_portfolio=False),
        refresh_unchanged_seconds=60,
    )
    at_refresh(rig.clock, rig.scenario, 1)
    await supervisor.poll_once()
    rig.faults.add(
        DriftFault(set_field("result.results.0.totalUsers", "many")),
        path="/api/v1/experiments/exp_pricing_page/results",
    )
    for _ in range(8):
        rig.clock.advance(60)
        await supervisor.poll_once()
    stale = [e for e in await rig.store.events_after(0) if e.kind is EventKind.RESULTS_STALE]
    assert [(e.experiment_id, e.after) for e in stale] == [("exp_pricing_page", True)]
    rig.faults.clear()
    rig.clock.advance(60)
    await supervisor.poll_once()
    stale = [e for e in await rig.store.events_after(0) if e.kind is EventKind.RESULTS_STALE]
    assert [e.after for e in stale] == [True, False]


async def test_a_shutdown_in_the_middle_of_a_cycle_loses_nothing(rig: Rig) -> None:
    """Cancelled while pricing's request hangs: what was recorded stays whole, and a
    restarted supervisor records the rest, each event exactly once."""
    at_refresh(rig.clock, rig.scenario, 1)
    await rig.supervisor().poll_once()
    at_refresh(rig.clock, rig.scenario, 3)  # checkout turns platform-significant
    rig.faults.add(HangFault(), path="/api/v1/experiments/exp_pricing_page/results")
    first = rig.supervisor()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first.poll_once)
            while await rig.store.snapshot_count("exp_checkout_redesign") < 2:
                await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    rig.faults.clear()
    second = rig.supervisor()
    await second.poll_once()
    await second.poll_once()
    events = await rig.store.events_after(0)
    keys = [(e.kind, e.experiment_id, e.metric_id, e.variation_id) for e in events]
    assert len(keys) == len(set(keys))
    assert (EventKind.PLATFORM_VERDICT_CHANGED, "exp_checkout_redesign") in {
        (k, x) for k, x, _, _ in keys
    }
    assert await rig.store.snapshot_count("exp_checkout_redesign") == 2
    assert await rig.store.snapshot_count("exp_pricing_page") == 2


class FailingDetector(ChangeDetector):
    """Our own detection failing on one experiment's results (a bug we have not met yet)."""

    def __init__(self, rig: Rig, experiment_id: str) -> None:
        super().__init__(clock=rig.clock.now)
        self.experiment_id = experiment_id

    def __call__(self, **kw: Any) -> Any:
        if kw["after"].experiment_id == self.experiment_id and kw["current"] is not None:
            raise ZeroDivisionError("float division by zero")
        return super().__call__(**kw)


@pytest.mark.parametrize("policy", [ONE_BY_ONE, SourcePolicy()], ids=["one-by-one", "portfolio"])
async def test_a_result_our_detection_cannot_handle_fails_alone(
    rig: Rig, policy: SourcePolicy
) -> None:
    """An exception of ours while recording one experiment (here in detection) is that
    experiment's source error, logged with its traceback; the rest of its page is recorded
    and the breaker does not count it."""
    supervisor = Supervisor(
        rig.store,
        [rig.source()],
        clock=rig.clock,
        source_policies={"gb": policy},
        detector=FailingDetector(rig, "exp_pricing_page"),
    )
    at_refresh(rig.clock, rig.scenario, 2)
    report = await supervisor.poll_once()
    [error] = [e for e in report.events if e.kind is EventKind.SOURCE_ERROR]
    assert error.experiment_id == "exp_pricing_page"
    assert "ZeroDivisionError" in str(error.details) or "division" in str(error.after)
    assert await rig.store.snapshot_count("exp_checkout_redesign") == 1
    assert await rig.store.snapshot_count("exp_pricing_page") == 0
    assert supervisor.status()[0].breaker.consecutive_failures == 0


class BrokenListing(GrowthBookSource):
    """A source whose listing returns, once, something that is not a list of experiments."""

    broken = True

    async def list_experiments(self) -> Any:
        if self.broken:
            self.broken = False
            return [None]
        return await super().list_experiments()


async def test_an_unexpected_failure_in_a_cycle_is_logged_and_the_loop_goes_on(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug of ours that escapes every narrower guard ends that cycle, not the daemon: the
    traceback is logged, the cycle's report says so, and the next cycle records."""
    source = BrokenListing(name="gb", base_url="http://gb.test", api_key=API_KEY, client=rig.client)
    supervisor = rig.supervisor(source=source, poll_interval_seconds=60, jitter=0)
    at_refresh(rig.clock, rig.scenario, 2)
    reports: list[CycleReport] = []
    second = anyio.Event()

    def on_cycle(report: CycleReport) -> None:
        reports.append(report)
        if len(reports) == 2:
            second.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: supervisor.run(on_cycle=on_cycle))
            await drive(rig.clock, step_seconds=60, until=second)
            tg.cancel_scope.cancel()
    assert any("unexpected failure" in e for e in reports[0].errors), reports[0].errors
    assert "poll cycle of gb failed unexpectedly" in caplog.text
    assert "Traceback" in caplog.text or "AttributeError" in caplog.text
    assert reports[1].errors == [] and reports[1].new_snapshots >= 1
    assert await rig.store.snapshot_count("exp_checkout_redesign") == 1


async def test_a_listing_longer_than_the_poll_timeout_is_read_to_the_end(rig: Rig) -> None:
    """poll_timeout_seconds bounds one experiment's fetch, not the whole listing: pages that
    each answer in time (0.2 s here, one experiment per page, one page after the other)
    are read to the end though together they take longer than the poll timeout."""
    rig.faults.add(LatencyFault(0.2), path="/api/v1/experiments")
    source = GrowthBookSource(
        name="gb", base_url="http://gb.test", api_key=API_KEY, client=rig.client, page_size=1
    )
    supervisor = Supervisor(
        rig.store,
        [source],
        clock=rig.clock,
        source_policies={"gb": ONE_BY_ONE},
        poll_timeout_seconds=0.3,
    )
    at_refresh(rig.clock, rig.scenario, 2)
    report = await supervisor.poll_once()
    assert report.errors == []
    assert supervisor.status()[0].listed == 2  # the running experiments, one page each
    assert rig.requests.count(path_prefix="/api/v1/experiments", method="GET") >= 2
    assert await rig.store.snapshot_count("exp_checkout_redesign") == 1


class BrokenPortfolio(GrowthBookSource):
    """A source whose portfolio reader has a bug (here: a KeyError of its own)."""

    async def read_portfolio(self, *args: Any, **kw: Any) -> None:
        raise KeyError("results")


async def test_a_bug_in_the_portfolio_reader_falls_back_to_one_request_per_experiment(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    source = BrokenPortfolio(
        name="gb", base_url="http://gb.test", api_key=API_KEY, client=rig.client
    )
    supervisor = rig.supervisor(source=source, policy=SourcePolicy())
    at_refresh(rig.clock, rig.scenario, 2)
    report = await supervisor.poll_once()
    assert report.fetched == 2 and report.errors == []
    assert "unexpected failure reading the portfolio of gb" in caplog.text
    assert await rig.store.snapshot_count("exp_pricing_page") == 1
