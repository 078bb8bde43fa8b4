from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from simulator import Scenario
from store import (
    EventKind,
    Experiment,
    Snapshot,
    SourceUnavailable,
    Store,
    Verdict,
    sqlite_url,
)
from tests.helpers import ManualClock
from tests.watcher.conftest import API_KEY, REFRESH_SECONDS, at_refresh
from watcher import GrowthBookSource, Supervisor

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Store]:
    s = await Store.open(sqlite_url(tmp_path / "watch.db"), clock=clock.now)
    yield s
    await s.aclose()


def growthbook(client: httpx.AsyncClient) -> GrowthBookSource:
    return GrowthBookSource(name="gb", base_url="http://gb.test", api_key=API_KEY, client=client)


async def test_the_scripted_story_yields_each_event_once_at_its_refresh(
    store: Store, gb_client: httpx.AsyncClient, clock: ManualClock, scenario: Scenario
) -> None:
    """Polling twice per refresh over twelve refreshes: the platform's own verdict flips at
    refresh 3 (recorded as information), our sequential SRM test fires at refresh 6, and our
    anytime-valid significance follows at refresh 9, each exactly once; one snapshot per
    distinct result."""
    supervisor = Supervisor(store, [growthbook(gb_client)], clock=clock)
    seen: dict[int, list[EventKind]] = {}
    for index in range(12):
        at_refresh(clock, scenario, index)
        first = await supervisor.poll_once()
        second = await supervisor.poll_once()
        assert not second.events and second.new_snapshots == 0
        seen[index] = [e.kind for e in first.events]
    assert seen[3] == [EventKind.PLATFORM_VERDICT_CHANGED]
    assert seen[6] == [EventKind.SRM_DETECTED]
    assert seen[9] == [EventKind.SIGNIFICANCE_CHANGED]
    assert all(not kinds for i, kinds in seen.items() if i not in (3, 6, 9))
    [significance] = await store.significance_changes("exp_checkout_redesign")
    assert significance.metric_id == "met_conversion" and significance.after == "won"
    assert significance.before == "inconclusive"
    assert significance.details["platform_verdict"] == "won"
    assert significance.details["absolute_ci_low"] > 0
    assert significance.details["p_value"] <= significance.details["alpha"]
    # checkout has results from refresh 1, pricing from refresh 0: one snapshot per refresh each
    assert await store.snapshot_count("exp_checkout_redesign") == 11
    assert await store.snapshot_count("exp_pricing_page") == 12
    [*_, point] = await store.metric_history(
        "exp_checkout_redesign", "met_conversion", "var_checkout_1"
    )
    assert point.our_verdict is Verdict.WON and point.platform_verdict is Verdict.WON


class FlakySource:
    """Wraps a source; fails results for one experiment while `failing` is set."""

    def __init__(self, inner: GrowthBookSource, broken_id: str) -> None:
        self.name = inner.name
        self.budget = inner.budget
        self.inner = inner
        self.broken_id = broken_id
        self.failing = True

    async def list_experiments(self) -> list[Experiment]:
        return await self.inner.list_experiments()

    async def fetch_results(self, experiment: Experiment) -> tuple[Experiment, Snapshot | None]:
        if self.failing and experiment.experiment_id == self.broken_id:
            raise SourceUnavailable("HTTP 503: upstream down", source=self.name, status_code=503)
        return await self.inner.fetch_results(experiment)


async def test_a_failing_experiment_is_reported_once_while_the_others_are_watched(
    store: Store, gb_client: httpx.AsyncClient, clock: ManualClock, scenario: Scenario
) -> None:
    """One broken experiment gives one source_error (not one per poll), the rest keep being
    recorded, and its recovery is an event too."""
    flaky = FlakySource(growthbook(gb_client), "exp_checkout_redesign")
    supervisor = Supervisor(store, [flaky], clock=clock)
    at_refresh(clock, scenario, 1)
    for _ in range(3):
        await supervisor.poll_once()
    errors = [e for e in await store.events_after(0) if e.kind is EventKind.SOURCE_ERROR]
    assert len(errors) == 1 and errors[0].experiment_id == "exp_checkout_redesign"
    assert await store.snapshot_count("exp_pricing_page") == 1
    flaky.failing = False
    report = await supervisor.poll_once()
    assert [e.kind for e in report.events] == [EventKind.SOURCE_RECOVERED]
    assert await store.snapshot_count("exp_checkout_redesign") == 1


async def test_an_unreachable_source_is_recorded_and_does_not_stop_the_cycle(
    store: Store, clock: ManualClock
) -> None:
    """A source that cannot be listed is an event, not an exception out of poll_once."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        report = await Supervisor(store, [growthbook(client)], clock=clock).poll_once()
    assert report.experiments == 0 and len(report.errors) == 1
    [event] = await store.events_after(0)
    assert event.kind is EventKind.SOURCE_ERROR and event.experiment_id is None


async def test_the_daemon_loop_polls_once_per_interval_of_its_clock(
    store: Store, gb_client: httpx.AsyncClient, clock: ManualClock, scenario: Scenario
) -> None:
    """The loop sleeps on the injected clock: nothing is polled until the clock moves."""
    supervisor = Supervisor(
        store,
        [growthbook(gb_client)],
        clock=clock,
        poll_interval_seconds=REFRESH_SECONDS,
        jitter=0,
    )
    at_refresh(clock, scenario, 0)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(supervisor.run)
            await clock.wait_for_sleep_calls(1)
            assert await store.snapshot_count("exp_pricing_page") == 1
            clock.advance(REFRESH_SECONDS - 1)
            await anyio.wait_all_tasks_blocked()
            assert clock.sleep_calls == 1  # still asleep: the interval has not passed
            clock.advance(1)
            await clock.wait_for_sleep_calls(2)
            assert await store.snapshot_count("exp_pricing_page") == 2
            assert await store.snapshot_count("exp_checkout_redesign") == 1
            tg.cancel_scope.cancel()
