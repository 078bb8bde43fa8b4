"""The Statsig source against the Statsig simulator in-process, and over recorded shapes."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from simulator import StatsigScenario, build_statsig_app, default_statsig_scenario
from store import (
    Experiment,
    ExperimentNotFound,
    MetricRole,
    PayloadError,
    SourceRejected,
    SourceUnavailable,
    Verdict,
)
from tests.helpers import ManualClock
from watcher import Source
from watcher.statsig import StatsigSource

pytestmark = pytest.mark.anyio

API_KEY = "console-watcherTestKey987"
BASE = "http://statsig.test"
REFRESH_SECONDS = 60.0
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def scenario(clock: ManualClock) -> StatsigScenario:
    return default_statsig_scenario(start=clock.now(), refresh_seconds=REFRESH_SECONDS)


@pytest.fixture
def requests() -> list[httpx.Request]:
    return []


@pytest.fixture
async def sg_client(
    clock: ManualClock, scenario: StatsigScenario, requests: list[httpx.Request]
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client whose requests reach the Statsig simulator in-process."""
    app = build_statsig_app(scenario, api_key=API_KEY, clock=clock.now)

    async def record(request: httpx.Request) -> None:
        requests.append(request)

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), event_hooks={"request": [record]}
    ) as client:
        yield client


def at_refresh(clock: ManualClock, scenario: StatsigScenario, index: int) -> None:
    """Move the clock to just after the simulator's refresh number `index`."""
    target = scenario.start + timedelta(seconds=index * REFRESH_SECONDS + 1)
    clock.advance((target - clock.now()).total_seconds())


def source(client: httpx.AsyncClient, **options: Any) -> StatsigSource:
    return StatsigSource(name="sg", api_key=API_KEY, client=client, base_url=BASE, **options)


async def find(sg: StatsigSource, experiment_id: str) -> Experiment:
    [found] = [e for e in await sg.list_experiments() if e.experiment_id == experiment_id]
    return found


def mock_client(handler: Handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


# -- listing and experiments ----------------------------------------------------------------


async def test_the_source_is_a_supervisor_source(sg_client: httpx.AsyncClient) -> None:
    """StatsigSource has what the supervisor needs: a name, listing and fetching."""
    polled: Source = source(sg_client)
    assert polled.name == "sg"


async def test_listing_follows_pagination_to_the_last_page(sg_client: httpx.AsyncClient) -> None:
    """With one experiment per page, every experiment is still found once."""
    found = await source(sg_client, status=None, page_size=1).list_experiments()
    ids = [e.experiment_id for e in found]
    assert sorted(ids) == sorted(set(ids))
    assert set(ids) == {"search_ranking", "checkout_redesign", "pricing_page", "onboarding_tour"}


async def test_listing_asks_for_active_experiments_with_the_key_and_version(
    sg_client: httpx.AsyncClient, requests: list[httpx.Request]
) -> None:
    """The default filter is status=active; every request carries both Statsig headers."""
    found = await source(sg_client).list_experiments()
    assert {e.status for e in found} == {"active"}
    [request] = requests
    assert request.url.params["status"] == "active"
    assert request.headers["STATSIG-API-KEY"] == API_KEY
    assert request.headers["STATSIG-API-VERSION"] == "20240601"


async def test_group_sizes_in_percent_become_fractional_weights_control_first(
    sg_client: httpx.AsyncClient, scenario: StatsigScenario
) -> None:
    """40/30/30 percent groups become weights 0.4/0.3/0.3 keyed by group id."""
    sg = source(sg_client, ui_url="https://console.statsig.com/proj123")
    pricing = await find(sg, "pricing_page")
    scripted = scenario.experiment("pricing_page")
    assert scripted is not None
    assert [(v.variation_id, v.name, v.weight) for v in pricing.variations] == [
        (g.id, g.name, g.size / 100) for g in scripted.groups
    ]
    assert pricing.url == "https://console.statsig.com/proj123/experiments/pricing_page"


async def test_the_upstream_version_moves_with_pulse_loads_and_modifications(
    sg_client: httpx.AsyncClient, clock: ManualClock, scenario: StatsigScenario
) -> None:
    """lastModifiedTime stays while Pulse reloads; the version still changes with each load."""
    sg = source(sg_client)
    at_refresh(clock, scenario, 2)
    before = await find(sg, "checkout_redesign")
    at_refresh(clock, scenario, 3)
    after = await find(sg, "checkout_redesign")
    assert before.upstream_updated_at == after.upstream_updated_at == scenario.start
    assert before.upstream_version is not None and after.upstream_version is not None
    assert before.upstream_version != after.upstream_version
    assert before.upstream_version.startswith(f"{scenario.start.timestamp() * 1000:.0f}/pulse:")


async def test_a_decision_shows_as_a_status_change(
    sg_client: httpx.AsyncClient, clock: ManualClock, scenario: StatsigScenario
) -> None:
    """search_ranking is fetched as active at refresh 3 and as decision_made at refresh 4."""
    sg = source(sg_client)
    at_refresh(clock, scenario, 3)
    search = await find(sg, "search_ranking")
    at_refresh(clock, scenario, 4)
    decided, snapshot = await sg.fetch_results(search)
    assert (search.status, decided.status) == ("active", "decision_made")
    assert decided.upstream_updated_at == scenario.refresh_time(4)
    assert (
        snapshot is not None and snapshot.metrics[0].variations[1].platform_verdict is Verdict.WON
    )


async def test_a_decision_names_the_launched_group(
    sg_client: httpx.AsyncClient, clock: ManualClock, scenario: StatsigScenario
) -> None:
    """`decision_made` with `launchedGroupID` becomes a Decision naming that group."""
    sg = source(sg_client)
    at_refresh(clock, scenario, 3)
    search = await find(sg, "search_ranking")
    assert search.decision is None
    at_refresh(clock, scenario, 4)
    decided, _ = await sg.fetch_results(search)
    assert decided.decision is not None and decided.decision.outcome == "launched"
    assert decided.decision.variation_id in {v.variation_id for v in decided.variations}
    assert decided.detailed_status is not None  # healthCheckStatus


async def test_cumulative_exposures_give_each_groups_units_per_day(
    sg_client: httpx.AsyncClient, clock: ManualClock, scenario: StatsigScenario
) -> None:
    """One (day, units) per Pulse day for every group, growing day by day."""
    sg = source(sg_client)
    at_refresh(clock, scenario, 5)
    checkout = await find(sg, "checkout_redesign")
    exposures = await sg.fetch_exposures(checkout)
    assert set(exposures) == {v.variation_id for v in checkout.variations}
    for days in exposures.values():
        assert len(days) >= 2
        assert [d for d, _ in days] == sorted(d for d, _ in days)
        assert all(a <= b for (_, a), (_, b) in itertools.pairwise(days))


# -- results --------------------------------------------------------------------------------


async def test_no_pulse_yet_is_a_state_not_an_error(
    sg_client: httpx.AsyncClient, requests: list[httpx.Request]
) -> None:
    """Before the first Pulse, and for an experiment in setup, there is no snapshot."""
    sg = source(sg_client, status=None)
    checkout = await find(sg, "checkout_redesign")
    onboarding = await find(sg, "onboarding_tour")
    _, waiting = await sg.fetch_results(checkout)
    requests.clear()
    _, never = await sg.fetch_results(onboarding)
    assert waiting is None and never is None
    assert [r.url.path for r in requests] == ["/console/v1/experiments/onboarding_tour"]


async def test_pulse_is_normalized_into_fractions_with_the_platform_verdict(
    sg_client: httpx.AsyncClient, clock: ManualClock, scenario: StatsigScenario
) -> None:
    """Percent becomes fractions, the control is the baseline, and CI excluding 0 wins."""
    at_refresh(clock, scenario, 3)
    sg = source(sg_client)
    experiment = await find(sg, "checkout_redesign")
    raw = (
        await sg_client.get(
            f"{BASE}/console/v1/experiments/checkout_redesign/pulse_results",
            params={
                "control": experiment.variations[0].variation_id,
                "test": experiment.variations[1].variation_id,
            },
            headers={"STATSIG-API-KEY": API_KEY},
        )
    ).json()["data"]["primaryMetrics"][0]
    _, snapshot = await sg.fetch_results(experiment)
    assert snapshot is not None
    assert (snapshot.upstream_snapshot_id, snapshot.engine) == ("2026-01-08", "frequentist")
    assert snapshot.upstream_updated_at == scenario.refresh_time(3)
    assert snapshot.srm_p_value is None
    goal = snapshot.metric("checkout_conversion::event_user")
    assert goal is not None
    assert (goal.metric_name, goal.role, goal.higher_is_better) == (
        "checkout_conversion",
        MetricRole.GOAL,
        True,
    )
    baseline, treatment = goal.variations
    assert [baseline.variation_id, treatment.variation_id] == [
        v.variation_id for v in experiment.variations
    ]
    assert baseline.platform_verdict is Verdict.BASELINE and baseline.relative_change is None
    assert baseline.users == raw["controlUnits"] and baseline.mean == raw["controlMean"]
    assert baseline.stddev == pytest.approx(math.sqrt(0.1 * 0.9), rel=1e-3)
    assert treatment.relative_change == pytest.approx(raw["percentChange"] / 100)
    assert treatment.ci_low == pytest.approx(
        (raw["percentChange"] - raw["percentConfidenceIntervalDelta"]) / 100
    )
    low, change, high = treatment.ci_low, treatment.relative_change, treatment.ci_high
    assert low is not None and change is not None and high is not None
    assert 0 < low < change < high < 1
    assert treatment.p_value == raw["pValue"] and treatment.chance_to_win is None
    assert treatment.platform_verdict is Verdict.WON
    assert snapshot.total_users == raw["controlUnits"] + raw["testUnits"]


async def test_before_the_crossing_the_goal_is_inconclusive(
    sg_client: httpx.AsyncClient, clock: ManualClock, scenario: StatsigScenario
) -> None:
    """At refresh 2 the primary metric's interval still contains 0."""
    at_refresh(clock, scenario, 2)
    sg = source(sg_client)
    _, snapshot = await sg.fetch_results(await find(sg, "checkout_redesign"))
    assert snapshot is not None
    treatment = snapshot.metrics[0].variations[1]
    assert treatment.ci_low is not None and treatment.ci_low < 0 < (treatment.ci_high or 0)
    assert treatment.platform_verdict is Verdict.INCONCLUSIVE


async def test_roles_and_directions_follow_the_experiment(
    sg_client: httpx.AsyncClient, clock: ManualClock, scenario: StatsigScenario
) -> None:
    """Primary → goal, secondary and other → secondary; a 'decrease' metric is lower-better."""
    at_refresh(clock, scenario, 3)
    sg = source(sg_client)
    _, snapshot = await sg.fetch_results(await find(sg, "checkout_redesign"))
    assert snapshot is not None
    assert [(m.metric_id, m.role, m.higher_is_better) for m in snapshot.metrics] == [
        ("checkout_conversion::event_user", MetricRole.GOAL, True),
        ("add_to_cart::event_user", MetricRole.SECONDARY, True),
        ("refund_requested::event_user", MetricRole.SECONDARY, False),
    ]


async def test_every_test_group_is_merged_into_one_snapshot_with_sequential_intervals(
    sg_client: httpx.AsyncClient, clock: ManualClock, scenario: StatsigScenario
) -> None:
    """Three groups give control + two tests per metric; sequential widths are used, except
    where Statsig's sequential delta is negative, which falls back to the fixed-horizon one."""
    at_refresh(clock, scenario, 2)
    sg = source(sg_client)
    pricing = await find(sg, "pricing_page")
    _, snapshot = await sg.fetch_results(pricing)
    assert snapshot is not None and snapshot.engine == "frequentist-sequential"
    raw = {}
    for test in pricing.variations[1:]:
        response = await sg_client.get(
            f"{BASE}/console/v1/experiments/pricing_page/pulse_results",
            params={"control": pricing.variations[0].variation_id, "test": test.variation_id},
            headers={"STATSIG-API-KEY": API_KEY},
        )
        data = response.json()["data"]
        raw[test.variation_id] = {
            m["metricID"]: m for m in data["primaryMetrics"] + data["secondaryMetrics"]
        }
    for metric in snapshot.metrics:
        assert [v.variation_id for v in metric.variations] == [
            v.variation_id for v in pricing.variations
        ]
        for v in metric.variations[1:]:
            pulse = raw[v.variation_id][metric.metric_id]
            sequential = pulse["percentSequentialTestingConfidenceIntervalDelta"]
            width = sequential if sequential >= 0 else pulse["percentConfidenceIntervalDelta"]
            assert v.ci_high is not None and v.ci_low is not None
            assert (v.ci_high - v.ci_low) * 100 == pytest.approx(2 * width)
    assert snapshot.metric("plan_page_bounce::event_user") is not None


async def test_the_snake_case_spelling_gives_the_same_results(
    clock: ManualClock, scenario: StatsigScenario
) -> None:
    """The legacy spelling parses to the same metrics; only the Pulse day is unknown."""
    at_refresh(clock, scenario, 4)
    snapshots = []
    for spelling in ("camelCase", "snake_case"):
        app = build_statsig_app(scenario, api_key=API_KEY, clock=clock.now, pulse_spelling=spelling)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            sg = source(client)
            snapshots.append((await sg.fetch_results(await find(sg, "pricing_page")))[1])
    camel, snake = snapshots
    assert camel is not None and snake is not None
    assert snake.metrics == camel.metrics
    assert (camel.upstream_snapshot_id, snake.upstream_snapshot_id) == ("2026-01-09", None)


async def test_interval_objects_are_read_when_half_widths_are_missing() -> None:
    """A metric with only {lower, upper} percent intervals still gets its interval."""
    metric = dict(GATE_EXAMPLE_METRIC)
    del metric["percentConfidenceIntervalDelta"], metric["confidenceIntervalDelta"]
    metric["percentConfidenceInterval"] = {"lower": 1.0, "upper": 4.0}
    async with mock_client(serve(pulse_metrics=[metric])) as client:
        _, snapshot = await source(client).fetch_results(fixture_experiment())
    assert snapshot is not None
    treatment = snapshot.metrics[0].variations[1]
    assert treatment.ci_low == pytest.approx(0.01)
    assert treatment.ci_high == pytest.approx(0.04)


async def test_a_date_reads_the_cumulative_pulse_of_that_day(
    sg_client: httpx.AsyncClient, clock: ManualClock, scenario: StatsigScenario
) -> None:
    """fetch_results_on(day) at refresh 6 gives what fetch_results gave at refresh 3."""
    sg = source(sg_client)
    at_refresh(clock, scenario, 3)
    checkout = await find(sg, "checkout_redesign")
    _, then = await sg.fetch_results(checkout)
    at_refresh(clock, scenario, 6)
    _, backfilled = await sg.fetch_results_on(checkout, date(2026, 1, 8))
    assert then is not None and backfilled is not None
    assert backfilled.metrics == then.metrics
    assert backfilled.upstream_snapshot_id == "2026-01-08"
    assert backfilled.upstream_updated_at == datetime(2026, 1, 9, tzinfo=UTC)


# -- recorded payload shapes from the research notes ----------------------------------------

# Facts of Statsig's pulse_results example (research notes §1.5), in its snake_case spelling:
# no metricName, directionality or ds; negative sequential percent deltas.
LEGACY_EXAMPLE_METRICS = {
    "primaryMetrics": [
        {
            "metricID": "Purchase::user_warehouse",
            "value": -0.56566,
            "confidence_interval_delta": 1.33315,
            "percent_change": -0.91046,
            "percent_confidence_interval_delta": 2.14577,
            "percent_sequential_testing_confidence_interval_delta": -1.60955,
            "test_mean": 61.56364,
            "control_mean": 62.1293,
            "test_std": 0.74617,
            "control_std": 0.72483,
            "test_units": 1669,
            "control_units": 1589,
            "p_value": 0.7067,
        }
    ],
    "secondaryMetrics": [
        {
            "metricID": "Support Success Rate::user_warehouse",
            "value": 0.0032569,
            "confidence_interval_delta": 0.0091204,
            "percent_change": 0.45699,
            "percent_confidence_interval_delta": 1.27972,
            "percent_sequential_testing_confidence_interval_delta": -140.31,
            "test_mean": 0.71594,
            "control_mean": 0.71269,
            "test_units": 4696,
            "control_units": 4690,
            "p_value": 0.55695,
        }
    ],
}

# Facts of Statsig's gate pulse example (research notes §1.5), camelCase, significant at 95 %.
GATE_EXAMPLE_METRIC = {
    "metricID": "conversion_rate",
    "metricName": "conversion_rate",
    "directionality": "increase",
    "absoluteChange": 0.0025,
    "confidenceIntervalDelta": 0.0015,
    "percentChange": 2.5,
    "percentConfidenceIntervalDelta": 1.5,
    "testMean": 0.1025,
    "controlMean": 0.1,
    "testUnits": 1500,
    "controlUnits": 1480,
    "pValue": 0.045,
}


def fixture_experiment_payload(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "example_experiment",
        "name": "Example experiment",
        "status": "active",
        "lastModifiedTime": 1726099200000,
        "sequentialTesting": True,
        "defaultConfidenceInterval": "95",
        "groups": [
            {"name": "Control", "id": "grpControl", "size": 50, "parameterValues": {}},
            {"name": "Test", "id": "grpTest", "size": 50, "parameterValues": {}},
        ],
        "primaryMetrics": [{"name": "Purchase", "type": "user_warehouse", "direction": "increase"}],
        "healthChecks": [],
        "healthCheckStatus": "PASSED",
    }
    body.update(changes)
    return body


def fixture_experiment() -> Experiment:
    return Experiment(
        source="sg", experiment_id="example_experiment", name="Example", status="active"
    )


def serve(
    *,
    pulse_metrics: list[dict[str, Any]] | None = None,
    pulse_data: dict[str, Any] | None = None,
    experiment: dict[str, Any] | None = None,
) -> Handler:
    """A stand-in Statsig answering GET one and pulse_results with recorded shapes."""
    data = pulse_data or {
        "ds": "2024-09-12",
        "primaryMetrics": pulse_metrics,
        "secondaryMetrics": [],
    }

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/pulse_results"):
            return httpx.Response(200, json={"message": "ok", "data": data})
        return httpx.Response(
            200, json={"message": "ok", "data": experiment or fixture_experiment_payload()}
        )

    return handle


async def test_statsigs_snake_case_example_parses_to_the_expected_domain_values() -> None:
    """The legacy example: percent → fraction, negative sequential delta ignored, inconclusive."""
    async with mock_client(serve(pulse_data=LEGACY_EXAMPLE_METRICS)) as client:
        experiment, snapshot = await source(client).fetch_results(fixture_experiment())
    assert experiment.upstream_updated_at == datetime(2024, 9, 12, tzinfo=UTC)
    assert snapshot is not None and snapshot.upstream_snapshot_id is None
    purchase, support = snapshot.metrics
    assert (purchase.metric_id, purchase.metric_name, purchase.role) == (
        "Purchase::user_warehouse",
        "Purchase",
        MetricRole.GOAL,
    )
    control, test = purchase.variations
    assert (control.users, control.mean, control.platform_verdict) == (
        1589,
        62.1293,
        Verdict.BASELINE,
    )
    assert control.stddev == pytest.approx(0.72483 * math.sqrt(1589))
    assert test.relative_change == pytest.approx(-0.0091046)
    assert test.ci_low == pytest.approx(-0.0305623)
    assert test.ci_high == pytest.approx(0.0123531)
    assert (test.p_value, test.users, test.platform_verdict) == (0.7067, 1669, Verdict.INCONCLUSIVE)
    assert support.role is MetricRole.SECONDARY and support.metric_name == "Support Success Rate"
    assert support.variations[1].ci_low == pytest.approx((0.45699 - 1.27972) / 100)
    assert support.variations[1].stddev is None
    assert snapshot.total_users == 4690 + 4696


async def test_statsigs_camel_case_gate_example_is_a_win() -> None:
    """2.5 % ± 1.5 % becomes 0.025 in [0.01, 0.04], won; ds is the snapshot id."""
    async with mock_client(serve(pulse_metrics=[GATE_EXAMPLE_METRIC])) as client:
        _, snapshot = await source(client).fetch_results(fixture_experiment())
    assert snapshot is not None and snapshot.upstream_snapshot_id == "2024-09-12"
    [metric] = snapshot.metrics
    test = metric.variations[1]
    assert test.relative_change == pytest.approx(0.025)
    assert test.ci_low == pytest.approx(0.01)
    assert test.ci_high == pytest.approx(0.04)
    assert test.platform_verdict is Verdict.WON
    assert (test.users, test.mean, test.p_value) == (1500, 0.1025, 0.045)


async def test_a_significant_rise_of_a_decrease_metric_is_a_loss() -> None:
    """directionality 'decrease' turns the same significant rise into LOST, lower-is-better."""
    metric = {**GATE_EXAMPLE_METRIC, "directionality": "decrease"}
    async with mock_client(serve(pulse_metrics=[metric])) as client:
        _, snapshot = await source(client).fetch_results(fixture_experiment())
    assert snapshot is not None
    assert snapshot.metrics[0].higher_is_better is False
    assert snapshot.metrics[0].variations[1].platform_verdict is Verdict.LOST


async def test_without_an_interval_the_p_value_decides_at_the_experiments_confidence() -> None:
    """With no half-widths at all, pValue < 1 - confidence/100 is significant."""
    bare = {k: v for k, v in GATE_EXAMPLE_METRIC.items() if "Delta" not in k}
    verdicts = []
    for confidence in ("95", "98"):
        experiment = fixture_experiment_payload(defaultConfidenceInterval=confidence)
        async with mock_client(serve(pulse_metrics=[bare], experiment=experiment)) as client:
            _, snapshot = await source(client).fetch_results(fixture_experiment())
        assert snapshot is not None
        verdicts.append(snapshot.metrics[0].variations[1].platform_verdict)
    assert verdicts == [Verdict.WON, Verdict.INCONCLUSIVE]


async def test_empty_pulse_lists_are_no_data_not_a_snapshot() -> None:
    """A 200 without any metric is treated like 'not yet available'."""
    async with mock_client(serve(pulse_metrics=[])) as client:
        _, snapshot = await source(client).fetch_results(fixture_experiment())
    assert snapshot is None


# -- errors ---------------------------------------------------------------------------------


async def test_a_wrong_key_is_rejected_with_guidance_and_without_any_key(
    sg_client: httpx.AsyncClient,
) -> None:
    """401 is not retried; the message names the source and the key it needs, never a key —
    not even the one Statsig echoes back."""
    sg = StatsigSource(name="sg", api_key="console-wrongKey456", client=sg_client, base_url=BASE)
    with pytest.raises(SourceRejected) as caught:
        await sg.list_experiments()
    message = str(caught.value)
    assert caught.value.status_code == 401
    assert "source 'sg' needs an active Console API key" in message
    assert "console.statsig.com/api_keys" in message
    assert "wrongKey456" not in message and API_KEY not in message


async def test_a_forbidden_key_names_the_missing_permission() -> None:
    """403 says the source's key lacks read access to experiments."""

    def forbid(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"status": 403, "message": "Forbidden resource"})

    async with mock_client(forbid) as client:
        with pytest.raises(SourceRejected) as caught:
            await source(client).list_experiments()
    assert caught.value.status_code == 403
    assert "Forbidden resource" in str(caught.value)
    assert "key of source 'sg' lacks permission to read experiments" in str(caught.value)


async def test_an_unknown_experiment_is_not_found_with_the_closest_ids(
    sg_client: httpx.AsyncClient,
) -> None:
    """404 becomes 'not found' naming the id and suggesting the known ones closest to it."""
    sg = source(sg_client, status=None)
    await sg.list_experiments()
    ghost = Experiment(source="sg", experiment_id="checkout_redesing", name="?", status="active")
    with pytest.raises(ExperimentNotFound) as caught:
        await sg.fetch_results(ghost)
    assert caught.value.suggestions == ["checkout_redesign"]
    assert caught.value.status_code == 404
    assert caught.value.experiment_id == "checkout_redesing"
    assert "'checkout_redesing' not found" in str(caught.value)
    assert "Did you mean: checkout_redesign?" in str(caught.value)


async def test_the_simulators_rate_limit_is_unavailable_without_a_wait_hint(
    clock: ManualClock, scenario: StatsigScenario
) -> None:
    """Statsig's 429 carries no headers: SourceUnavailable, retry_after_seconds None."""
    app = build_statsig_app(scenario, api_key=API_KEY, clock=clock.now, rate_limit_per_window=1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        sg = source(client)
        await sg.list_experiments()
        with pytest.raises(SourceUnavailable) as caught:
            await sg.list_experiments()
    assert caught.value.status_code == 429 and caught.value.retry_after_seconds is None
    assert "HTTP 429" in str(caught.value)


@pytest.mark.parametrize(
    ("response", "status", "retry_after"),
    [
        (httpx.Response(429, headers={"Retry-After": "7"}, json={"status": 429}), 429, 7.0),
        (httpx.Response(503, text="upstream unavailable"), 503, None),
        (httpx.Response(500, json={"status": 500, "message": f"bad key {API_KEY}"}), 500, None),
    ],
)
async def test_throttling_and_server_errors_are_retryable(
    response: httpx.Response, status: int, retry_after: float | None
) -> None:
    """429 (with its Retry-After) and 5xx become SourceUnavailable; echoed keys are scrubbed."""
    async with mock_client(lambda request: response) as client:
        with pytest.raises(SourceUnavailable) as caught:
            await source(client).list_experiments()
    assert caught.value.status_code == status
    assert caught.value.retry_after_seconds == retry_after
    assert API_KEY not in str(caught.value) and "Statsig GET /experiments" in str(caught.value)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (httpx.ReadTimeout("slow"), "Statsig did not answer GET /experiments in time"),
        (httpx.ConnectError("refused"), "cannot reach Statsig at http://statsig.test"),
    ],
)
async def test_timeouts_and_connection_errors_are_unavailable(
    error: httpx.TransportError, message: str
) -> None:
    """Transport failures are worth retrying, not a crash."""

    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    async with mock_client(fail) as client:
        with pytest.raises(SourceUnavailable, match=message):
            await source(client).list_experiments()


async def test_an_invalid_request_is_rejected_not_mistaken_for_no_data() -> None:
    """A 400 other than 'not yet available' is a rejection carrying Statsig's message."""

    def invalid(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/pulse_results"):
            return httpx.Response(
                400, json={"status": 400, "message": "Invalid request. Please check the input."}
            )
        return httpx.Response(200, json={"message": "ok", "data": fixture_experiment_payload()})

    async with mock_client(invalid) as client:
        with pytest.raises(SourceRejected, match="HTTP 400: Invalid request"):
            await source(client).fetch_results(fixture_experiment())


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"message": "ok", "data": "not a list", "pagination": {}}, "data"),
        ({"message": "ok", "data": []}, "pagination"),
    ],
)
async def test_a_drifted_list_is_a_payload_error_naming_the_path(
    body: dict[str, Any], path: str
) -> None:
    """A list answer of the wrong shape names the field that did not fit."""
    async with mock_client(lambda request: httpx.Response(200, json=body)) as client:
        with pytest.raises(PayloadError, match=f"unexpected payload: {path}"):
            await source(client).list_experiments()


async def test_a_drifted_pulse_metric_is_a_payload_error_for_that_experiment() -> None:
    """A non-numeric percentChange names data.primaryMetrics.0 and the experiment, and no
    partial snapshot escapes."""
    metric = {**GATE_EXAMPLE_METRIC, "percentChange": "2.5 percent"}
    async with mock_client(serve(pulse_metrics=[metric])) as client:
        with pytest.raises(PayloadError) as caught:
            await source(client).fetch_results(fixture_experiment())
    assert "data.primaryMetrics.0.percentChange" in str(caught.value)
    assert caught.value.experiment_id == "example_experiment"


async def test_a_non_json_answer_is_a_payload_error() -> None:
    """An HTML page where JSON was expected does not crash the source."""
    async with mock_client(lambda request: httpx.Response(200, text="<html>")) as client:
        with pytest.raises(PayloadError, match="Invalid JSON"):
            await source(client).list_experiments()


@pytest.mark.parametrize(
    "next_page",
    [
        "/console/v1/experiments?page=2&limit=1",
        "statsigapi.net/console/v1/experiments?page=2",
        "?page=2",
    ],
)
async def test_every_documented_next_page_form_is_followed(next_page: str) -> None:
    """Relative paths, host-prefixed paths and bare queries all name the next page."""
    pages: list[str] = []

    def paged(request: httpx.Request) -> httpx.Response:
        page = request.url.params["page"]
        pages.append(page)
        item = fixture_experiment_payload(id=f"exp_{page}")
        pagination = {
            "itemsPerPage": 1,
            "pageNumber": int(page),
            "previousPage": None,
            "nextPage": next_page if page == "1" else None,
        }
        return httpx.Response(200, json={"message": "ok", "data": [item], "pagination": pagination})

    async with mock_client(paged) as client:
        found = await source(client, page_size=1).list_experiments()
    assert pages == ["1", "2"]
    assert [e.experiment_id for e in found] == ["exp_1", "exp_2"]


async def test_pagination_that_does_not_advance_is_a_payload_error() -> None:
    """A nextPage pointing back at the same page stops the walk instead of looping."""
    body = {
        "message": "ok",
        "data": [],
        "pagination": {
            "itemsPerPage": 1,
            "pageNumber": 1,
            "previousPage": None,
            "nextPage": "/console/v1/experiments?page=1",
        },
    }
    async with mock_client(lambda request: httpx.Response(200, json=body)) as client:
        with pytest.raises(PayloadError, match="did not advance"):
            await source(client).list_experiments()


async def test_no_message_ever_contains_the_key() -> None:
    """Across every failure class the API key is absent from what a user reads."""
    failures: list[Handler] = [
        lambda r: httpx.Response(401, json={"status": 401, "message": f"Key: {API_KEY}"}),
        lambda r: httpx.Response(403, json={"status": 403, "message": API_KEY[:18] + "…"}),
        lambda r: httpx.Response(404, text=json.dumps({"message": API_KEY})),
        lambda r: httpx.Response(502, text=f"gateway saw {API_KEY}"),
        lambda r: httpx.Response(200, json={"data": [{"id": API_KEY}], "pagination": 3}),
    ]
    for failure in failures:
        async with mock_client(failure) as client:
            with pytest.raises((SourceRejected, SourceUnavailable, PayloadError)) as caught:
                await source(client).list_experiments()
        assert "watcherTes" not in str(caught.value), str(caught.value)
