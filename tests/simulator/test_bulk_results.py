"""The fake GrowthBook's opt-in bulk-results endpoint, as GrowthBook's "Experiment Bulk
Results API" page describes it: off by default (404), every stored snapshot of a window newest
first, paginated over snapshots, strict about its query, nulls for missing statistics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from simulator import build_growthbook_app, default_scenario

pytestmark = pytest.mark.anyio

START = datetime(2026, 1, 1, tzinfo=UTC)
REFRESH_SECONDS = 3600.0
KEY = "secret_bulk_key"
PATH = "/api/v1/experiments/exp_checkout_redesign/bulk-results"
WINDOW = {"dateStart": "2025-12-01T00:00:00Z", "dateEnd": "2026-02-01T00:00:00Z"}


@asynccontextmanager
async def connect(*, at_refresh: int = 5, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    now = START + timedelta(seconds=at_refresh * REFRESH_SECONDS + 30)
    app = build_growthbook_app(
        default_scenario(start=START, refresh_seconds=REFRESH_SECONDS),
        api_key=KEY,
        clock=lambda: now,
        **options,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://gb.test",
        headers={"Authorization": f"Bearer {KEY}"},
    ) as client:
        yield client


async def test_bulk_results_are_off_by_default_like_an_unknown_endpoint() -> None:
    """Without the opt-in the endpoint answers exactly as an unknown path does."""
    async with connect() as client:
        off = await client.get(PATH, params=WINDOW)
        unknown = await client.get("/api/v1/no-such-endpoint")
    assert off.status_code == unknown.status_code == 404
    assert off.json() == unknown.json() == {"message": "Unknown API endpoint"}


async def test_every_stored_snapshot_of_the_window_comes_newest_first_a_page_at_a_time() -> None:
    """At refresh 5 the checkout experiment has analyses 1..5: pages of two, newest first,
    PaginationFields counting snapshots; items carry the bulk shape with nulls where
    GrowthBook's results endpoint sends zeros."""
    async with connect(bulk_results=True) as client:
        first = (await client.get(PATH, params={**WINDOW, "limit": 2})).json()
        last = (await client.get(PATH, params={**WINDOW, "limit": 2, "offset": 4})).json()
    assert [i["snapshotId"] for i in first["results"]] == [
        "snp_checkout_redesign_5",
        "snp_checkout_redesign_4",
    ]
    assert {
        k: first[k] for k in ("limit", "offset", "count", "total", "hasMore", "nextOffset")
    } == {
        "limit": 2,
        "offset": 0,
        "count": 2,
        "total": 5,
        "hasMore": True,
        "nextOffset": 2,
    }
    assert [i["snapshotId"] for i in last["results"]] == ["snp_checkout_redesign_1"]
    assert last["hasMore"] is False and last["nextOffset"] is None
    item = first["results"][0]
    assert item["id"] == "snp_checkout_redesign_5:overall"
    assert item["dateCreated"] == "2026-01-01T05:00:00.000Z"
    assert (item["type"], item["triggeredBy"], item["phase"]) == ("standard", "schedule", "0")
    assert item["dimension"] == {"type": "none", "precomputed": False}
    assert item["settings"]["goals"] == [{"metricId": "met_conversion"}]
    [overall] = item["results"]
    assert overall["dimensionValue"] == "" and overall["totalUsers"] == 20000
    control, treatment = overall["metrics"][0]["variations"]
    assert (control["variationIndex"], control["variationKey"]) == (0, "0")
    [baseline] = control["analyses"]
    assert baseline["differenceType"] == "relative"
    assert [
        baseline[k] for k in ("effect", "ciLow", "ciHigh", "pValue", "chanceToBeatControl")
    ] == [None] * 5
    [compared] = treatment["analyses"]
    assert compared["effect"] is not None and compared["chanceToBeatControl"] is not None
    assert compared["pValue"] is None  # a bayesian analysis has none


async def test_the_window_phase_and_snapshot_type_narrow_the_snapshots() -> None:
    """Only snapshots generated inside [dateStart, dateEnd], of the phase and type asked."""
    async with connect(bulk_results=True) as client:
        window = {"dateStart": "2026-01-01T02:00:00Z", "dateEnd": "2026-01-01T03:59:59Z"}
        inside = (await client.get(PATH, params=window)).json()
        other_phase = (await client.get(PATH, params={**WINDOW, "phase": 1})).json()
        report = (await client.get(PATH, params={**WINDOW, "snapshotType": "report"})).json()
    assert [i["snapshotId"] for i in inside["results"]] == [
        "snp_checkout_redesign_3",
        "snp_checkout_redesign_2",
    ]
    assert other_phase["total"] == report["total"] == 0


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"dateStart": WINDOW["dateStart"]}, 400),
        ({**WINDOW, "dateEnd": "yesterday"}, 400),
        ({**WINDOW, "phase": "-1"}, 400),
        ({**WINDOW, "phase": ""}, 400),
        ({**WINDOW, "snapshotType": "weekly"}, 400),
        ({**WINDOW, "limit": 101}, 400),
        ({**WINDOW, "dimension": "browser"}, 400),
    ],
)
async def test_a_query_it_does_not_accept_is_a_400(params: dict[str, Any], status: int) -> None:
    """Missing or malformed dates, a bad phase, type or limit, and any other parameter."""
    async with connect(bulk_results=True) as client:
        response = await client.get(PATH, params=params)
    assert response.status_code == status
    assert response.json()["message"]


async def test_an_unknown_experiment_is_a_404() -> None:
    """Unlike the results endpoint's 400, the bulk endpoint answers 404 for an unknown id."""
    async with connect(bulk_results=True) as client:
        response = await client.get("/api/v1/experiments/exp_nope/bulk-results", params=WINDOW)
    assert response.status_code == 404
    assert response.json() == {"message": "Could not find experiment with that id"}


async def test_bulk_results_have_their_own_per_key_limit() -> None:
    """Beyond its own limit in a minute the endpoint answers 429 while the rest of the API,
    under its own limit, still answers."""
    async with connect(
        bulk_results=True, rate_limit_per_minute=100, bulk_results_rate_limit_per_minute=2
    ) as client:
        statuses = [(await client.get(PATH, params=WINDOW)).status_code for _ in range(3)]
        listing = await client.get("/api/v1/experiments")
    assert statuses == [200, 200, 429]
    assert listing.status_code == 200
