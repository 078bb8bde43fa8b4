"""One experiment with absurdly long values among normal ones, polled by the supervisor into
SQLite and PostgreSQL alike: a long name or status is recorded clipped; an id too long to
store is that experiment's own error (a source_error for it), or, when it is the experiment's
own id, the experiment is left out of the listing with a warning. The others are recorded,
the source itself is not failing, and the database is never taken for down."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from simulator import (
    DriftFault,
    Faults,
    Scenario,
    ScriptedMetric,
    ScriptedVariation,
    build_growthbook_app,
    build_statsig_app,
    default_statsig_scenario,
    on_item,
    set_field,
)
from store import (
    ID_LENGTH,
    NAME_LENGTH,
    STATUS_LENGTH,
    Decision,
    Event,
    EventKind,
    Experiment,
    PayloadError,
    Store,
    clip,
)
from tests.helpers import ManualClock
from tests.watcher.conftest import API_KEY, REFRESH_SECONDS, at_refresh
from watcher import CircuitState, GrowthBookSource, SourcePolicy, StatsigSource, Supervisor

pytestmark = pytest.mark.anyio

LONG_NAME = "Tableau de bord — é😀 " * 30 + "ñ" * 30
"""660 characters, many several bytes long in UTF-8: longer than any name column."""
LONG_STATUS = "stopped (" + "waiting on the warehouse " * 2 + ")"
LONG_ID = "x" * (ID_LENGTH + 1)
SG_KEY = "console-overlongValuesKey"


@pytest.fixture
async def store(database_url: str, clock: ManualClock) -> AsyncIterator[Store]:
    """A store on an empty SQLite file or the emptied PostgreSQL test database."""
    opened = await Store.open(database_url, clock=clock.now)
    yield opened
    await opened.aclose()


def overlong_scenario(scenario: Scenario) -> Scenario:
    """The default scenario, with an absurd name on exp_pricing_page (and one of its
    variations), a metric id too long on exp_checkout_redesign, and one more experiment
    whose own id is too long."""
    by_id = {e.id: e for e in scenario.experiments}
    pricing = by_id["exp_pricing_page"]
    pricing = dataclasses.replace(
        pricing,
        name=LONG_NAME,
        variations=(
            *pricing.variations[:2],
            ScriptedVariation(id="var_pricing_2", key="2", name=LONG_NAME),
        ),
    )
    checkout = dataclasses.replace(
        by_id["exp_checkout_redesign"],
        goals=(ScriptedMetric(id="met_" + LONG_ID, name="Conversion", control_rate=0.1),),
    )
    unstorable = dataclasses.replace(by_id["exp_search_ranking"], id="exp_" + LONG_ID)
    return dataclasses.replace(
        scenario,
        experiments=(
            by_id["exp_search_ranking"],
            checkout,
            pricing,
            by_id["exp_onboarding_tour"],
            unstorable,
        ),
    )


def changes(*mutations: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """One drift making each of `mutations` in turn."""

    def mutate(body: Any) -> Any:
        for mutation in mutations:
            body = mutation(body)
        return body

    return mutate


async def source_errors(store: Store, source: str) -> dict[str | None, Event]:
    latest = await store.latest_events([EventKind.SOURCE_ERROR], source=source)
    return {experiment_id: event for (_, experiment_id), event in latest.items()}


def left_out_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "left out of the listing" in r.getMessage()
    ]


@pytest.mark.parametrize("portfolio", [True, False], ids=["portfolio", "one-by-one"])
async def test_one_growthbook_experiment_with_overlong_values_never_blocks_the_others(
    store: Store,
    clock: ManualClock,
    scenario: Scenario,
    portfolio: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 660-character name is recorded clipped, a 60-character status too; a metric id too
    long is a source_error for its experiment alone; an experiment id too long leaves that
    experiment out of the listing with a warning; the rest is recorded, on both databases."""
    faults = Faults()
    stopped = on_item("experiments", {"id": "exp_search_ranking"}, set_field("status", LONG_STATUS))
    faults.add(DriftFault(stopped), path="/api/v1/experiments")
    faults.add(
        DriftFault(set_field("experiment.status", LONG_STATUS)),
        path="/api/v1/experiments/exp_search_ranking/results",
    )
    app = build_growthbook_app(
        overlong_scenario(scenario), api_key=API_KEY, clock=clock.now, faults=faults
    )
    at_refresh(clock, scenario, 1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        gb = GrowthBookSource(
            name="gb", base_url="http://gb.test", api_key=API_KEY, client=client, status=None
        )
        supervisor = Supervisor(
            store,
            [gb],
            clock=clock,
            source_policies={"gb": SourcePolicy(use_portfolio=portfolio)},
        )
        with caplog.at_level(logging.WARNING):
            report = await supervisor.poll_once()
    assert report.fetched == 3, report.summary()
    states = await store.watch_states("gb")
    assert sorted(states) == ["exp_onboarding_tour", "exp_pricing_page", "exp_search_ranking"]
    assert all(s.last_checked_at == clock.now() for s in states.values())
    pricing = states["exp_pricing_page"].experiment
    assert pricing.name == clip(LONG_NAME, NAME_LENGTH)
    assert pricing.variations[2].name == clip(LONG_NAME, NAME_LENGTH)
    assert states["exp_search_ranking"].experiment.status == clip(LONG_STATUS, STATUS_LENGTH)
    assert await store.snapshot_count("exp_pricing_page") == 1
    errors = await source_errors(store, "gb")
    assert sorted(errors, key=str) == ["exp_checkout_redesign"]
    reason = str(errors["exp_checkout_redesign"].after)
    assert "metricId" in reason and f"at most {ID_LENGTH} characters" in reason, reason
    assert errors["exp_checkout_redesign"].details["error"] == PayloadError.__name__
    [warning] = left_out_warnings(caplog)
    assert f"experiment id is {len(LONG_ID) + 4} characters long ('exp_xxx" in warning
    assert all(len(e.experiment_id or "") <= ID_LENGTH for e in await store.events_after(0))
    [status] = supervisor.status()
    assert status.breaker.state is CircuitState.CLOSED and status.database_error is None
    assert status.failing == {"exp_checkout_redesign": reason}


async def test_one_statsig_experiment_with_overlong_values_never_blocks_the_others(
    store: Store, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Statsig alike: a drifted 660-character name and 60-character status are recorded
    clipped, a Pulse metric id too long is a source_error for that experiment, an id too long
    in the listing leaves its experiment out with a warning, the others are recorded."""
    scenario = default_statsig_scenario(start=clock.now(), refresh_seconds=REFRESH_SECONDS)
    faults = Faults()  # one drift per address: the first rule that matches applies
    faults.add(
        DriftFault(
            changes(set_field("data.name", LONG_NAME), set_field("data.status", LONG_STATUS))
        ),
        path="/console/v1/experiments/pricing_page",
    )
    renamed = changes(set_field("name", LONG_NAME), set_field("status", LONG_STATUS))
    faults.add(
        DriftFault(
            changes(
                on_item("data", {"id": "pricing_page"}, renamed),
                on_item("data", {"id": "checkout_redesign"}, set_field("id", LONG_ID)),
            )
        ),
        path="/console/v1/experiments",
    )
    faults.add(
        DriftFault(set_field("data.primaryMetrics.0.metricID", LONG_ID)),
        path="/console/v1/experiments/search_ranking/pulse_results",
    )
    app = build_statsig_app(scenario, api_key=SG_KEY, clock=clock.now, faults=faults)
    clock.advance(2 * REFRESH_SECONDS + 1)  # every started experiment has Pulse results
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        sg = StatsigSource(
            name="sg", api_key=SG_KEY, client=client, base_url="http://sg.test", status=None
        )
        supervisor = Supervisor(store, [sg], clock=clock)
        with caplog.at_level(logging.WARNING):
            report = await supervisor.poll_once()
    assert report.fetched == 2, report.summary()
    states = await store.watch_states("sg")
    assert sorted(states) == ["onboarding_tour", "pricing_page"]
    pricing = states["pricing_page"].experiment
    assert pricing.name == clip(LONG_NAME, NAME_LENGTH)
    assert pricing.status == clip(LONG_STATUS, STATUS_LENGTH)
    assert await store.snapshot_count("pricing_page") == 1
    errors = await source_errors(store, "sg")
    assert sorted(errors, key=str) == ["search_ranking"]
    reason = str(errors["search_ranking"].after)
    assert "data.primaryMetrics.0.metricID" in reason and str(ID_LENGTH) in reason, reason
    [warning] = left_out_warnings(caplog)
    assert "Statsig experiment id is 201 characters long ('xxx" in warning
    [status] = supervisor.status()
    assert status.breaker.state is CircuitState.CLOSED and status.database_error is None


def statsig_payload(**changes: Any) -> dict[str, Any]:
    """A Statsig experiment object as the Console API documents it."""
    return {
        "id": "exp_groups",
        "name": "Groups",
        "status": "decision_made",
        "lastModifiedTime": 1726099200000,
        "groups": [
            {"name": "Control", "id": "grpControl", "size": 50},
            {"name": "Test", "id": "grpTest", "size": 50},
        ],
        "launchedGroupID": "grpTest",
        **changes,
    }


@pytest.mark.parametrize(
    ("changes", "what"),
    [
        (
            {"groups": [{"name": "Control", "size": 50}, {"name": LONG_ID, "size": 50}]},
            "id of group",
        ),
        ({"launchedGroupID": LONG_ID}, "the launched group id is 201 characters"),
    ],
    ids=["group-without-id-named-too-long", "launched-group"],
)
async def test_a_statsig_group_id_too_long_is_a_payload_error_for_its_experiment(
    changes: dict[str, Any], what: str
) -> None:
    """A group's id (its name when it has none: the variation id of its results) or the
    launched group's id past the limit: GET one is that experiment's PayloadError, and the
    listing leaves it out while keeping the others."""
    bad = statsig_payload(**changes)
    fine = statsig_payload(id="exp_fine")

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/experiments"):
            page = {"pageNumber": 1, "nextPage": None, "totalItems": 2}
            return httpx.Response(200, json={"data": [bad, fine], "pagination": page})
        return httpx.Response(200, json={"data": bad})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        sg = StatsigSource(name="sg", api_key=SG_KEY, client=client, base_url="http://sg.test")
        listed = await sg.list_experiments()
        with pytest.raises(PayloadError, match=what) as caught:
            await sg.fetch_results(
                Experiment(source="sg", experiment_id="exp_groups", name="", status="")
            )
    assert [e.experiment_id for e in listed] == ["exp_fine"]
    assert caught.value.experiment_id == "exp_groups"


async def test_a_growthbook_decision_naming_a_variation_id_too_long_leaves_only_it_out() -> None:
    """GrowthBook's released variation id (an event's variation id once decided) past the
    limit: that experiment is left out of the listing, the rest of the page is kept."""

    def experiment(experiment_id: str, released: str) -> dict[str, Any]:
        return {
            "id": experiment_id,
            "name": experiment_id,
            "status": "stopped",
            "dateUpdated": "2026-01-05T09:00:00Z",
            "variations": [{"variationId": "v0"}, {"variationId": "v1"}],
            "resultSummary": {"status": "won", "releasedVariationId": released},
        }

    page = {
        "experiments": [experiment("exp_bad", "v" * (ID_LENGTH + 1)), experiment("exp_ok", "v1")],
        "hasMore": False,
        "total": 2,
    }
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=page))
    async with httpx.AsyncClient(transport=transport) as client:
        gb = GrowthBookSource(name="gb", base_url="http://gb.test", api_key=API_KEY, client=client)
        listed = await gb.list_experiments()
    assert [(e.experiment_id, e.decision) for e in listed] == [
        ("exp_ok", Decision(outcome="won", variation_id="v1"))
    ]
