from __future__ import annotations

import httpx
import pytest

from simulator import Scenario
from store import MetricRole, PayloadError, SourceRejected, SourceUnavailable, Verdict
from tests.helpers import ManualClock
from tests.watcher.conftest import API_KEY, at_refresh
from watcher import GrowthBookSource

pytestmark = pytest.mark.anyio

BASE = "http://gb.test"


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
