from __future__ import annotations

import logging
from typing import Any

import anyio
import httpx
import pytest

from simulator import Scenario
from store import MetricRole, PayloadError, SourceRejected, SourceUnavailable, Verdict
from tests.helpers import ManualClock
from tests.watcher.conftest import API_KEY, at_refresh
from watcher import GrowthBookSource

pytestmark = pytest.mark.anyio

BASE = "http://gb.test"
Json = dict[str, Any]


def source(client: httpx.AsyncClient, **options: object) -> GrowthBookSource:
    return GrowthBookSource(
        name="gb",
        base_url=BASE,
        api_key=API_KEY,
        client=client,
        **options,  # type: ignore[arg-type]
    )


async def test_listing_follows_pagination_to_the_last_page(gb_client: httpx.AsyncClient) -> None:
    """With one experiment per page, every experiment is still found once."""
    found = await source(gb_client, status=None, page_size=1).list_experiments()
    ids = [e.experiment_id for e in found]
    assert len(ids) == len(set(ids)) == 4
    assert "exp_checkout_redesign" in ids


async def test_listing_keeps_only_running_experiments_by_default(
    gb_client: httpx.AsyncClient,
) -> None:
    """The default filter asks GrowthBook for running experiments only."""
    found = await source(gb_client).list_experiments()
    assert {e.status for e in found} == {"running"}
    checkout = next(e for e in found if e.experiment_id == "exp_checkout_redesign")
    assert [v.weight for v in checkout.variations] == [0.5, 0.5]


async def test_no_results_yet_is_a_state_not_an_error(gb_client: httpx.AsyncClient) -> None:
    """GrowthBook's 400 'No results found' before the first analysis gives no snapshot."""
    gb = source(gb_client)
    [checkout] = [e for e in await gb.list_experiments() if "checkout" in e.experiment_id]
    _, snapshot = await gb.fetch_results(checkout)
    assert snapshot is None


async def test_results_are_normalized_with_the_platform_verdict(
    gb_client: httpx.AsyncClient, clock: ManualClock, scenario: Scenario
) -> None:
    """A bayesian result keeps chance to win, drops GrowthBook's zero p-value, and
    marks the baseline; roles come from the experiment's settings."""
    at_refresh(clock, scenario, 3)
    gb = source(gb_client, ui_url="https://app.growthbook.io")
    [checkout] = [e for e in await gb.list_experiments() if "checkout" in e.experiment_id]
    experiment, snapshot = await gb.fetch_results(checkout)
    assert snapshot is not None
    assert experiment.url == "https://app.growthbook.io/experiment/exp_checkout_redesign"
    conversion = snapshot.metric("met_conversion")
    assert conversion is not None and conversion.role is MetricRole.GOAL
    baseline, treatment = conversion.variations
    assert baseline.platform_verdict is Verdict.BASELINE and baseline.relative_change is None
    assert treatment.platform_verdict is Verdict.WON
    assert treatment.chance_to_win is not None and treatment.chance_to_win > 0.95
    assert treatment.p_value is None
    assert snapshot.srm_p_value is not None and snapshot.srm_p_value > 0.001
    assert snapshot.phase == "0" and snapshot.engine == "bayesian"


async def test_a_frequentist_result_keeps_the_p_value_only(
    gb_client: httpx.AsyncClient, clock: ManualClock, scenario: Scenario
) -> None:
    """GrowthBook's zero chance-to-win on a frequentist result is not taken as a number."""
    at_refresh(clock, scenario, 2)
    gb = source(gb_client)
    [pricing] = [e for e in await gb.list_experiments() if "pricing" in e.experiment_id]
    _, snapshot = await gb.fetch_results(pricing)
    assert snapshot is not None and snapshot.engine == "frequentist"
    variation = snapshot.metrics[0].variations[1]
    assert variation.p_value is not None and variation.chance_to_win is None


async def test_metric_directions_come_from_the_simulators_definitions(
    gb_client: httpx.AsyncClient,
    clock: ManualClock,
    scenario: Scenario,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The simulator serves GET /metrics: the refund guardrail is read as lower-is-better,
    the rest higher-is-better, paging through the definitions without a warning."""
    at_refresh(clock, scenario, 3)
    gb = source(gb_client, page_size=2)
    [checkout] = [e for e in await gb.list_experiments() if "checkout" in e.experiment_id]
    with caplog.at_level(logging.WARNING, logger="watcher.growthbook"):
        _, snapshot = await gb.fetch_results(checkout)
    assert snapshot is not None
    assert {m.metric_id: m.higher_is_better for m in snapshot.metrics} == {
        "met_conversion": True,
        "met_add_to_cart": True,
        "met_refund": False,
    }
    assert "cannot read metric definitions" not in caplog.text


async def test_a_wrong_key_is_rejected_with_guidance_and_without_the_key(
    gb_client: httpx.AsyncClient,
) -> None:
    """401 is not retried; the message says which setting to check and never shows a key."""
    gb = GrowthBookSource(name="gb", base_url=BASE, api_key="wrong_key_456", client=gb_client)
    with pytest.raises(SourceRejected) as caught:
        await gb.list_experiments()
    assert caught.value.status_code == 401
    assert "check the api_key of source 'gb'" in str(caught.value)
    assert "wrong_key_456" not in str(caught.value) and API_KEY not in str(caught.value)


async def test_rate_limiting_is_reported_as_unavailable_with_the_reset_time(
    gb_client: httpx.AsyncClient,
) -> None:
    """A 429 becomes SourceUnavailable carrying how long to wait."""
    gb = source(gb_client)
    with pytest.raises(SourceUnavailable) as caught:
        for _ in range(61):
            await gb.list_experiments()
    assert caught.value.status_code == 429
    assert caught.value.retry_after_seconds is not None and caught.value.retry_after_seconds > 0


async def test_an_unreachable_platform_is_unavailable() -> None:
    """A refused connection is a transport failure worth retrying, not a crash."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(SourceUnavailable, match="cannot reach GrowthBook"):
            await source(client).list_experiments()


async def test_a_payload_of_the_wrong_shape_is_a_payload_error() -> None:
    """A drifted payload names the field that did not fit."""

    def drifted(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"experiments": "not a list", "hasMore": False})

    async with httpx.AsyncClient(transport=httpx.MockTransport(drifted)) as client:
        with pytest.raises(PayloadError, match="experiments"):
            await source(client).list_experiments()


def listed(experiment_ids: list[str], *, offset: int, total: int, limit: int = 1) -> Json:
    """A page of GET /experiments with GrowthBook's pagination fields."""
    return {
        "experiments": [
            {
                "id": experiment_id,
                "name": experiment_id,
                "status": "running",
                "dateUpdated": "2026-01-05T00:00:00.000Z",
                "variations": [],
            }
            for experiment_id in experiment_ids
        ],
        "limit": limit,
        "offset": offset,
        "count": len(experiment_ids),
        "total": total,
        "hasMore": offset + limit < total,
        "nextOffset": offset + limit if offset + limit < total else None,
    }


async def test_listing_reads_pages_a_few_at_a_time_and_keeps_their_order() -> None:
    """After the first page, up to `pages_in_flight` pages are requested together (never
    more), and the experiments come back in the platform's order."""
    in_flight = max_in_flight = 0
    window_full = anyio.Event()

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, max_in_flight
        offset = int(request.url.params["offset"])
        in_flight += 1
        max_in_flight = max(max_in_flight, in_flight)
        if offset > 0 and in_flight == 3:
            window_full.set()
        if offset > 0:
            await window_full.wait()  # answers only once three requests are waiting
        in_flight -= 1
        return httpx.Response(200, json=listed([f"exp_{offset}"], offset=offset, total=7))

    with anyio.fail_after(5):
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            found = await source(
                client, status=None, page_size=1, pages_in_flight=3
            ).list_experiments()
    assert [e.experiment_id for e in found] == [f"exp_{offset}" for offset in range(7)]
    assert max_in_flight == 3


async def test_a_failing_page_fails_the_listing_with_its_own_error() -> None:
    """One page answering 503 while others are in flight: the listing raises that page's
    SourceUnavailable (not a group of errors), as a sequential read would."""

    def answer(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        if offset == 3:
            return httpx.Response(503, json={"message": "busy"})
        return httpx.Response(200, json=listed([f"exp_{offset}"], offset=offset, total=6))

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(SourceUnavailable, match="503"):
            await source(client, status=None, page_size=1).list_experiments()


async def test_a_list_that_grew_while_paging_is_read_to_its_end() -> None:
    """The first page counted two experiments; by the second page there are three: the
    listing follows `nextOffset` past the first count and misses none."""

    def answer(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        total = 2 if offset == 0 else 3
        return httpx.Response(200, json=listed([f"exp_{offset}"], offset=offset, total=total))

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        found = await source(client, status=None, page_size=1).list_experiments()
    assert [e.experiment_id for e in found] == ["exp_0", "exp_1", "exp_2"]
