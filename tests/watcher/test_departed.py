"""Experiments that leave a status-filtered listing: the listing of running (GrowthBook) or
active (Statsig) experiments drops an experiment the moment it stops or is decided, so the
supervisor fetches a departed experiment on its own until its recorded status says it ended;
one the platform no longer knows is reported once and left alone until it is listed again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from simulator import (
    Faults,
    RequestLog,
    Scenario,
    ScriptedExperiment,
    ScriptedMetric,
    ScriptedVariation,
    StatsigExperiment,
    StatsigGroup,
    StatsigMetric,
    StatsigScenario,
    VanishFault,
    build_growthbook_app,
    build_statsig_app,
)
from store import Event, EventKind, Store, sqlite_url
from tests.helpers import HostRouter, ManualClock
from watcher import GrowthBookSource, SourcePolicy, StatsigSource, Supervisor, WatchRules

pytestmark = pytest.mark.anyio

REFRESH_SECONDS = 60.0
GB_KEY = "secret_gb_departed"
SS_KEY = "console-departedKey"


def gb_experiment(experiment_id: str, **script: object) -> ScriptedExperiment:
    return ScriptedExperiment(
        id=experiment_id,
        name=experiment_id.replace("_", " "),
        tracking_key=experiment_id,
        variations=(
            ScriptedVariation(id=f"{experiment_id}_0", key="0", name="Control"),
            ScriptedVariation(id=f"{experiment_id}_1", key="1", name="Treatment"),
        ),
        weights=(0.5, 0.5),
        goals=(ScriptedMetric(id="met_conversion", name="Conversion", control_rate=0.1),),
        **script,  # type: ignore[arg-type]  # the test's own keyword arguments
    )


@dataclass
class Platforms:
    """Both simulators in-process on one manual clock, with their request logs and faults."""

    clock: ManualClock
    gb: Scenario
    ss: StatsigScenario
    gb_log: RequestLog
    ss_log: RequestLog
    gb_faults: Faults

    def at_refresh(self, index: int) -> None:
        target = self.gb.refresh_time(index) + timedelta(seconds=1)
        self.clock.advance((target - self.clock.now()).total_seconds())

    def asked_for(self, log: RequestLog, experiment_id: str) -> list[int]:
        """The refreshes at which `experiment_id` was asked for by id."""
        return [self.gb.refresh_index(e.at) for e in log if f"/{experiment_id}" in e.path]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def store(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Store]:
    s = await Store.open(sqlite_url(tmp_path / "departed.db"), clock=clock.now)
    yield s
    await s.aclose()


@pytest.fixture
async def platforms(clock: ManualClock) -> AsyncIterator[tuple[Platforms, httpx.AsyncClient]]:
    """GrowthBook: one experiment stopping at refresh 3 (a winner), one running on, one that
    starts at refresh 2 (a draft before). Statsig: one decided at refresh 3, one running on."""
    gb = Scenario(
        start=clock.now(),
        refresh_seconds=REFRESH_SECONDS,
        experiments=(
            gb_experiment("exp_stops", significant_from=1, stops_at=3, verdict="won"),
            gb_experiment("exp_runs"),
            gb_experiment("exp_starts", starts_at=2, first_results_at=2),
        ),
    )
    groups = (
        StatsigGroup(id="grp_control_00000000000", name="Control", size=50.0),
        StatsigGroup(id="grp_test_000000000000000", name="Test", size=50.0),
    )
    metric = (StatsigMetric(name="conversion", control_rate=0.1),)
    ss = StatsigScenario(
        start=clock.now(),
        refresh_seconds=REFRESH_SECONDS,
        experiments=(
            StatsigExperiment(
                id="decided",
                name="Decided",
                groups=groups,
                primary_metrics=metric,
                significant_from=0,
                ends_at=3,
                end_status="decision_made",
                launched_group_index=1,
            ),
            StatsigExperiment(id="running", name="Running", groups=groups, primary_metrics=metric),
        ),
    )
    rig = Platforms(clock, gb, ss, RequestLog(), RequestLog(), Faults())
    apps = {
        "gb.test": build_growthbook_app(
            gb,
            api_key=GB_KEY,
            clock=clock.now,
            rate_limit_per_minute=100_000,
            faults=rig.gb_faults,
            request_log=rig.gb_log,
        ),
        "ss.test": build_statsig_app(ss, api_key=SS_KEY, clock=clock.now, request_log=rig.ss_log),
    }
    async with httpx.AsyncClient(transport=HostRouter(apps)) as client:
        yield rig, client


def supervisor_for(
    store: Store,
    client: httpx.AsyncClient,
    clock: ManualClock,
    *,
    gb_status: str = "running",
    exclude: frozenset[str] = frozenset(),
) -> Supervisor:
    sources: list[GrowthBookSource | StatsigSource] = [
        GrowthBookSource(
            name="gb", base_url="http://gb.test", api_key=GB_KEY, client=client, status=gb_status
        ),
        StatsigSource(name="ss", base_url="http://ss.test", api_key=SS_KEY, client=client),
    ]
    return Supervisor(
        store,
        sources,
        clock=clock,
        jitter=0,
        source_policies={"gb": SourcePolicy(rules=WatchRules(exclude=exclude))},
    )


def kinds(events: list[Event], experiment_id: str) -> list[str]:
    return [e.kind.value for e in events if e.experiment_id == experiment_id]


async def test_a_stopped_and_a_decided_experiment_are_recorded_after_they_leave_the_listing(
    store: Store, platforms: tuple[Platforms, httpx.AsyncClient], clock: ManualClock
) -> None:
    """The poll after a GrowthBook experiment stops (and a Statsig one is decided) fetches
    each once on its own and records status_changed and decision_made; later polls leave them
    alone, as they are recorded as ended."""
    rig, client = platforms
    supervisor = supervisor_for(store, client, clock)
    by_refresh: dict[int, list[Event]] = {}
    for index in range(6):
        rig.at_refresh(index)
        by_refresh[index] = (await supervisor.poll_once()).events
    assert kinds(by_refresh[3], "exp_stops") == ["status_changed", "decision_made"]
    assert kinds(by_refresh[3], "decided") == ["status_changed", "decision_made"]
    for index in (0, 1, 2, 4, 5):
        for experiment_id in ("exp_stops", "decided"):
            assert not {"status_changed", "decision_made"} & set(
                kinds(by_refresh[index], experiment_id)
            )
    gb_stopped = next(e for e in by_refresh[3] if e.experiment_id == "exp_stops")
    assert (gb_stopped.before, gb_stopped.after) == ("running", "stopped")
    ss_decided = next(
        e for e in by_refresh[3] if e.kind is EventKind.DECISION_MADE and e.source == "ss"
    )
    assert ss_decided.variation_id == "grp_test_000000000000000"
    states = await store.watch_states("gb")
    assert states["exp_stops"].experiment.status == "stopped"
    assert (await store.watch_states("ss"))["decided"].experiment.status == "decision_made"
    # Listed until refresh 2 (its results read through the listing's versions), fetched on
    # its own once at refresh 3, then never again.
    assert [i for i in rig.asked_for(rig.gb_log, "exp_stops") if i >= 3] == [3]
    assert [i for i in rig.asked_for(rig.ss_log, "decided") if i >= 3] == [3, 3]  # + Pulse
    assert all(not kinds(by_refresh[i], "exp_runs") for i in range(1, 6))


async def test_a_deleted_experiment_is_reported_once_and_polled_again_when_it_returns(
    store: Store, platforms: tuple[Platforms, httpx.AsyncClient], clock: ManualClock
) -> None:
    """A running experiment that vanishes (deleted) is asked for once: one source_error
    saying it is gone, nothing asked or recorded while it stays gone (not after a restart
    either), and source_recovered once it is listed again."""
    rig, client = platforms
    rig.gb_faults.add(
        VanishFault("exp_runs"), start=rig.gb.refresh_time(2), until=rig.gb.refresh_time(6)
    )
    supervisor = supervisor_for(store, client, clock)
    events: dict[int, list[Event]] = {}
    for index in range(7):
        if index == 4:  # a restart: the store remembers that it is gone
            supervisor = supervisor_for(store, client, clock)
        rig.at_refresh(index)
        events[index] = (await supervisor.poll_once()).events
    [error] = [e for e in events[2] if e.experiment_id == "exp_runs"]
    assert error.kind is EventKind.SOURCE_ERROR
    assert "not found" in str(error.after) and "stops polling it" in str(error.after)
    assert error.details["gone"] is True
    assert "Did you mean" not in str(error.after)
    assert all(not kinds(events[i], "exp_runs") for i in (3, 4, 5))
    assert kinds(events[6], "exp_runs") == ["source_recovered"]
    # Listed, its results come with the portfolio; asked for by id only when it left.
    assert rig.asked_for(rig.gb_log, "exp_runs") == [2]
    # Meanwhile the status shows what fails; after the return, nothing.
    assert supervisor.status()[0].failing == {}


async def test_an_experiment_that_left_the_listing_but_still_runs_is_fetched_once(
    store: Store, platforms: tuple[Platforms, httpx.AsyncClient], clock: ManualClock
) -> None:
    """With a listing of drafts, a draft that starts leaves it: it is fetched once (its start
    recorded as status_changed), then left alone while it runs outside the filter."""
    rig, client = platforms
    supervisor = supervisor_for(store, client, clock, gb_status="draft")
    recorded: dict[int, list[str]] = {}
    for index in range(5):
        rig.at_refresh(index)
        recorded[index] = kinds((await supervisor.poll_once()).events, "exp_starts")
    assert recorded[2] == ["status_changed"]
    assert rig.asked_for(rig.gb_log, "exp_starts") == [0, 2]
    assert (await store.watch_states("gb"))["exp_starts"].experiment.status == "running"


async def test_an_excluded_experiment_is_not_chased_when_it_leaves_the_listing(
    store: Store, platforms: tuple[Platforms, httpx.AsyncClient], clock: ManualClock
) -> None:
    """An experiment the rules exclude once it is known is never asked for after it stops."""
    rig, client = platforms
    rig.at_refresh(0)
    await supervisor_for(store, client, clock).poll_once()
    supervisor = supervisor_for(store, client, clock, exclude=frozenset({"exp_stops"}))
    for index in range(1, 5):
        rig.at_refresh(index)
        assert not kinds((await supervisor.poll_once()).events, "exp_stops")
    assert rig.asked_for(rig.gb_log, "exp_stops") == []  # (read through the portfolio at 0)
    assert (await store.watch_states("gb"))["exp_stops"].experiment.status == "running"
