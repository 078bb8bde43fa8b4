"""The fake Statsig Console API, end to end through httpx against the in-process app."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import NormalDist
from typing import Any

import httpx
import pytest
from referencing import Registry
from starlette.applications import Starlette

from simulator import (
    StatsigExperiment,
    StatsigGroup,
    StatsigMetric,
    StatsigScenario,
    build_statsig_app,
    default_statsig_scenario,
)
from tests.helpers import ManualClock
from tests.simulator.openapi import assert_response_matches, registry_of, resolve_ref

START = datetime(2026, 1, 1, tzinfo=UTC)
REFRESH_SECONDS = 60.0
KEY = "console-secretTestKey123"
SPEC_PATH = (
    Path(__file__).resolve().parents[3] / "shared" / "specs" / "statsig-console-openapi.json"
)
SPEC_URI = "urn:statsig-console-openapi"
BASE = "/console/v1"
CHECKOUT = "checkout_redesign"
PRICING = "pricing_page"
SEARCH = "search_ranking"
ONBOARDING = "onboarding_tour"
ALL_IDS = [SEARCH, CHECKOUT, PRICING, ONBOARDING]
SCENARIO = default_statsig_scenario(start=START, refresh_seconds=REFRESH_SECONDS)


def experiment(experiment_id: str) -> StatsigExperiment:
    found = SCENARIO.experiment(experiment_id)
    assert found is not None
    return found


def group_id(experiment_id: str, index: int) -> str:
    return experiment(experiment_id).groups[index].id


def at_refresh(index: int, *, seconds_in: float = 30.0) -> datetime:
    return START + timedelta(seconds=index * REFRESH_SECONDS + seconds_in)


def make_app(clock: ManualClock, **options: Any) -> Starlette:
    return build_statsig_app(SCENARIO, api_key=KEY, clock=clock.now, **options)


@asynccontextmanager
async def connect(
    app: Starlette, *, key: str | None = KEY, version: str | None = "20240601"
) -> AsyncIterator[httpx.AsyncClient]:
    headers = {}
    if key is not None:
        headers["STATSIG-API-KEY"] = key
    if version is not None:
        headers["STATSIG-API-VERSION"] = version
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://statsig.test", headers=headers
    ) as client:
        yield client


async def get_json(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params or None)  # keep a path's own query
    assert response.status_code == 200, response.text
    return response.json()


async def pulse(
    client: httpx.AsyncClient, experiment_id: str, test: int = -1, **params: Any
) -> dict[str, Any]:
    path = f"{BASE}/experiments/{experiment_id}/pulse_results"
    pair = {"control": group_id(experiment_id, 0), "test": group_id(experiment_id, test)}
    body: dict[str, Any] = await get_json(client, path, **pair, **params)
    return body


def metric_of(body: dict[str, Any], metric_id: str) -> dict[str, Any]:
    data = body["data"]
    metrics = data["primaryMetrics"] + data["secondaryMetrics"] + data.get("otherMetrics", [])
    found: dict[str, Any] = next(m for m in metrics if m["metricID"] == metric_id)
    return found


def excludes_zero(metric: dict[str, Any]) -> bool:
    return bool(abs(metric["percentChange"]) > metric["percentConfidenceIntervalDelta"])


# -- validating against Statsig's OpenAPI spec ----------------------------------------------


def _to_json_schema(node: Any, spec: dict[str, Any]) -> Any:
    """OpenAPI 3.0 schema objects as JSON Schema 2020-12.

    - `nullable: true` becomes a "null" member of `type`;
    - boolean `exclusiveMinimum` (draft 4 style) becomes the numeric 2020-12 form;
    - an `allOf` of object schemas is merged, later members' properties replacing earlier
      ones: the spec refines `SingleDataResponse.data` (an object) with an array for
      cumulative exposures, which no instance satisfies literally.
    """
    if isinstance(node, list):
        return [_to_json_schema(item, spec) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _to_json_schema(value, spec) for key, value in node.items()}
    if node.pop("nullable", False):
        if "type" in node:
            types = node["type"] if isinstance(node["type"], list) else [node["type"]]
            node["type"] = [*types, "null"]
        else:
            node = {"anyOf": [{"type": "null"}, node]}
    if node.get("exclusiveMinimum") is True:
        node["exclusiveMinimum"] = node.pop("minimum", 0)
    elif node.get("exclusiveMinimum") is False:
        del node["exclusiveMinimum"]
    members = [_to_json_schema(resolve_ref(m, spec), spec) for m in node.get("allOf", [])]
    if members and all("properties" in m for m in members):
        merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        for member in members:
            merged["properties"].update(member["properties"])
            merged["required"] += [
                r for r in member.get("required", []) if r not in merged["required"]
            ]
        return merged
    return node


@pytest.fixture(scope="session")
def spec() -> dict[str, Any]:
    if not SPEC_PATH.exists():
        pytest.skip(f"Statsig Console API OpenAPI spec not found at {SPEC_PATH}")
    loaded: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="session")
def spec_registry(spec: dict[str, Any]) -> Registry[Any]:
    normalized = _to_json_schema(spec, spec)
    return registry_of(SPEC_URI, normalized)


def assert_matches_spec(
    registry: Registry[Any], path: str, body: Any, *, status: str = "200"
) -> None:
    assert_response_matches(registry, SPEC_URI, path, body, status=status)


@pytest.mark.anyio
async def test_experiment_lists_match_the_spec(spec_registry: Registry[Any]) -> None:
    """GET /experiments validates against its 200 schema before, during and after the story."""
    for index in (0, 3, 7):
        async with connect(make_app(ManualClock(at_refresh(index)))) as client:
            body = await get_json(client, f"{BASE}/experiments")
        assert_matches_spec(spec_registry, f"{BASE}/experiments", body)
        assert [e["id"] for e in body["data"]] == ALL_IDS


@pytest.mark.anyio
@pytest.mark.parametrize("experiment_id", ALL_IDS)
async def test_single_experiments_match_the_spec(
    spec_registry: Registry[Any], experiment_id: str
) -> None:
    """GET /experiments/{id} validates at every step of the health-check and decision story."""
    for index in (0, 1, 4, 5, 7):
        async with connect(make_app(ManualClock(at_refresh(index)))) as client:
            body = await get_json(client, f"{BASE}/experiments/{experiment_id}")
        assert_matches_spec(spec_registry, f"{BASE}/experiments/{{id}}", body)


@pytest.mark.anyio
@pytest.mark.parametrize("experiment_id", [CHECKOUT, PRICING, SEARCH])
async def test_pulse_results_match_the_spec_for_every_pair(
    spec_registry: Registry[Any], experiment_id: str
) -> None:
    """Every (control, test) pair's Pulse validates, latest and per date, sequential included."""
    groups = experiment(experiment_id).groups
    for index in (1, 3, 7):
        async with connect(make_app(ManualClock(at_refresh(index)))) as client:
            for test in range(1, len(groups)):
                latest = await pulse(client, experiment_id, test)
                earlier = await pulse(client, experiment_id, test, date=latest["data"]["ds"])
                for body in (latest, earlier):
                    assert_matches_spec(
                        spec_registry, f"{BASE}/experiments/{{id}}/pulse_results", body
                    )


@pytest.mark.anyio
@pytest.mark.parametrize("experiment_id", ALL_IDS)
async def test_cumulative_exposures_match_the_spec(
    spec_registry: Registry[Any], experiment_id: str
) -> None:
    """GET /cumulative_exposures validates, with and without exposures yet."""
    for index in (0, 5):
        async with connect(make_app(ManualClock(at_refresh(index)))) as client:
            body = await get_json(
                client, f"{BASE}/experiments/{experiment_id}/cumulative_exposures"
            )
        assert_matches_spec(spec_registry, f"{BASE}/experiments/{{id}}/cumulative_exposures", body)


@pytest.mark.anyio
async def test_error_bodies_match_the_documented_error_schemas(
    spec_registry: Registry[Any],
) -> None:
    """The 401 and 404 answers validate against the responses the spec documents for them."""
    async with connect(make_app(ManualClock(START)), key="console-wrong") as client:
        unauthorized = await client.get(f"{BASE}/experiments")
    async with connect(make_app(ManualClock(START))) as client:
        missing = await client.get(f"{BASE}/experiments/no_such_experiment")
    assert_matches_spec(spec_registry, f"{BASE}/experiments", unauthorized.json(), status="401")
    assert_matches_spec(spec_registry, f"{BASE}/experiments/{{id}}", missing.json(), status="404")


@pytest.mark.anyio
async def test_snake_case_pulse_spells_metrics_as_statsigs_own_example(
    spec: dict[str, Any],
) -> None:
    """The legacy spelling uses the example's keys, and drops ds, metricName, directionality."""
    operation = spec["paths"][f"{BASE}/experiments/{{id}}/pulse_results"]["get"]
    example = operation["responses"]["200"]["content"]["application/json"]["example"]
    example_keys = set(example["data"]["primaryMetrics"][0])
    async with connect(make_app(ManualClock(at_refresh(3)), pulse_spelling="snake_case")) as client:
        body = await pulse(client, PRICING)
    assert "ds" not in body["data"]
    oddity = metric_of(body, "plan_page_bounce::event_user")
    assert example_keys <= set(oddity)
    assert set(oddity) - example_keys == {"sequential_testing_confidence_interval_delta"}
    assert oddity["percent_sequential_testing_confidence_interval_delta"] < 0


# -- authentication and routing -------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("key", "echoed"), [(None, "undefined"), ("console-wrong", "console-wrong")]
)
async def test_a_missing_or_wrong_key_is_a_401_naming_the_key_sent(
    key: str | None, echoed: str
) -> None:
    """As documented: 401 {status, message} saying only an active CONSOLE key is accepted."""
    async with connect(make_app(ManualClock(START)), key=key) as client:
        response = await client.get(f"{BASE}/experiments/{CHECKOUT}")
    assert response.status_code == 401
    assert response.json() == {
        "status": 401,
        "message": "This endpoint only accepts an active CONSOLE key, but an invalid key was "
        f"sent. Key: {echoed}",
    }


@pytest.mark.anyio
async def test_the_api_version_header_is_optional_and_only_20240601_exists() -> None:
    """Without STATSIG-API-VERSION or with 20240601 requests pass; another version is a 400."""
    clock = ManualClock(START)
    async with connect(make_app(clock), version=None) as client:
        without = await client.get(f"{BASE}/experiments")
    async with connect(make_app(clock), version="20990101") as client:
        other = await client.get(f"{BASE}/experiments")
    assert without.status_code == 200
    assert other.status_code == 400
    assert other.json()["status"] == 400 and "20240601" in other.json()["message"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "path", [f"{BASE}/gates", f"{BASE}/experiments/no_such_experiment/pulse_results"]
)
async def test_unknown_paths_and_experiments_are_a_404(path: str) -> None:
    """Unknown endpoints and experiment ids answer Statsig's generic 404 body."""
    async with connect(make_app(ManualClock(START))) as client:
        response = await client.get(path, params={"control": "a", "test": "b"})
    assert response.status_code == 404
    assert response.json() == {
        "status": 404,
        "message": "Not Found. The requested resource could not be found.",
    }


# -- listing --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_pagination_walks_every_experiment_once_with_relative_next_pages() -> None:
    """Following nextPage while it is not null visits each experiment once, oldest first."""
    seen: list[str] = []
    pages: list[dict[str, Any]] = []
    async with connect(make_app(ManualClock(at_refresh(2)))) as client:
        body = await get_json(client, f"{BASE}/experiments", page=1, limit=3)
        while True:
            pages.append(body["pagination"])
            seen += [e["id"] for e in body["data"]]
            if body["pagination"]["nextPage"] is None:
                break
            body = await get_json(client, body["pagination"]["nextPage"])
    assert seen == ALL_IDS
    first, last = pages
    assert first == {
        "itemsPerPage": 3,
        "pageNumber": 1,
        "totalItems": 4,
        "nextPage": f"{BASE}/experiments?page=2&limit=3",
        "previousPage": None,
        "all": f"{BASE}/experiments",
    }
    assert (last["pageNumber"], last["nextPage"]) == (2, None)
    assert last["previousPage"] == f"{BASE}/experiments?page=1&limit=3"


@pytest.mark.anyio
async def test_a_page_past_the_end_is_empty_and_the_default_page_holds_a_hundred() -> None:
    """page 9 of 1 is an empty page without nextPage; no limit means 100 per page."""
    async with connect(make_app(ManualClock(START))) as client:
        default = await get_json(client, f"{BASE}/experiments")
        beyond = await get_json(client, f"{BASE}/experiments", page=9, limit=5)
    assert default["pagination"]["itemsPerPage"] == 100
    assert beyond["data"] == [] and beyond["pagination"]["nextPage"] is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    "params", [{"page": 0}, {"limit": 0}, {"limit": "ten"}, {"status": "running"}]
)
async def test_invalid_list_parameters_are_a_400(params: dict[str, Any]) -> None:
    """Non-positive or non-numeric paging and unknown statuses answer Statsig's 400 body."""
    async with connect(make_app(ManualClock(START))) as client:
        response = await client.get(f"{BASE}/experiments", params=params)
    assert response.status_code == 400
    assert response.json() == {
        "status": 400,
        "message": "Invalid request. Please check the request input and try again.",
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["active"], [CHECKOUT, PRICING]),
        (["setup"], [ONBOARDING]),
        (["decision_made"], [SEARCH]),
        (["decision_made", "setup"], [SEARCH, ONBOARDING]),
        (["archived"], []),
    ],
)
async def test_the_status_filter_takes_one_or_several_statuses(
    statuses: list[str], expected: list[str]
) -> None:
    """status (a string or an array) keeps only experiments in one of those statuses."""
    async with connect(make_app(ManualClock(at_refresh(5)))) as client:
        body = await get_json(client, f"{BASE}/experiments", status=statuses, limit=1)
        ids = [e["id"] for e in body["data"]]
        while body["pagination"]["nextPage"]:
            body = await get_json(client, body["pagination"]["nextPage"])
            ids += [e["id"] for e in body["data"]]
    assert ids == expected


# -- experiments: status, decisions and health checks ---------------------------------------


@pytest.mark.anyio
async def test_exposure_balance_goes_waiting_passed_warning_failed_with_the_roll_up() -> None:
    """has_balanced_exposures follows the script and healthCheckStatus rolls it up."""
    clock = ManualClock(at_refresh(0))
    balance: list[str] = []
    roll_up: list[str] = []
    async with connect(make_app(clock)) as client:
        for _ in range(9):
            data = (await get_json(client, f"{BASE}/experiments/{CHECKOUT}"))["data"]
            [check] = [c for c in data["healthChecks"] if c["type"] == "has_balanced_exposures"]
            balance.append(check["status"])
            roll_up.append(data["healthCheckStatus"])
            clock.advance(REFRESH_SECONDS)
    expected = ["WAITING"] + ["PASSED"] * 4 + ["WARNING"] * 2 + ["FAILED"] * 2
    assert balance == expected
    assert roll_up == expected


@pytest.mark.anyio
async def test_the_balance_check_agrees_with_the_exposures_it_reports() -> None:
    """FAILED exposures really are short in the last group; PASSED ones are near 50/50."""
    async with connect(make_app(ManualClock(at_refresh(7)))) as client:
        body = await get_json(client, f"{BASE}/experiments/{CHECKOUT}/cumulative_exposures")
    control, test = (g["results"][-1]["exposures"] for g in body["data"])
    assert test / (control + test) < 0.49
    first_day = [g["results"][0]["exposures"] for g in body["data"]]
    assert abs(first_day[1] / sum(first_day) - 0.5) < 0.01


@pytest.mark.anyio
async def test_a_decision_ends_the_experiment_and_names_the_launched_group() -> None:
    """search_ranking is active at refresh 3 and decision_made from 4, launching Ranking v2."""
    async with connect(make_app(ManualClock(at_refresh(3)))) as client:
        before = (await get_json(client, f"{BASE}/experiments/{SEARCH}"))["data"]
    async with connect(make_app(ManualClock(at_refresh(6)))) as client:
        after = (await get_json(client, f"{BASE}/experiments/{SEARCH}"))["data"]
    assert (before["status"], before["launchedGroupID"], before["decisionTime"]) == (
        "active",
        None,
        None,
    )
    decided_ms = round(at_refresh(4, seconds_in=0).timestamp() * 1000)
    assert after["status"] == "decision_made"
    assert after["launchedGroupID"] == group_id(SEARCH, 1)
    assert after["decisionTime"] == after["endTime"] == after["lastModifiedTime"] == decided_ms
    assert after["decisionReason"]
    assert before["lastModifiedTime"] < after["lastModifiedTime"]


@pytest.mark.anyio
async def test_an_experiment_in_setup_waits_on_every_health_check() -> None:
    """A never-started experiment has five WAITING checks, no start time and no Pulse."""
    async with connect(make_app(ManualClock(at_refresh(5)))) as client:
        data = (await get_json(client, f"{BASE}/experiments/{ONBOARDING}"))["data"]
        response = await client.get(
            f"{BASE}/experiments/{ONBOARDING}/pulse_results",
            params={"control": group_id(ONBOARDING, 0), "test": group_id(ONBOARDING, 1)},
        )
    assert data["status"] == "setup" and data["startTime"] is None
    assert data["healthCheckStatus"] == "WAITING"
    assert [c["status"] for c in data["healthChecks"]] == ["WAITING"] * 5
    assert "Pulse metrics not yet available" in [c["name"] for c in data["healthChecks"]]
    assert response.status_code == 400


@pytest.mark.anyio
async def test_experiments_carry_groups_in_percent_and_their_stats_settings() -> None:
    """Group sizes are percent, the control is named, and the stats settings are reported."""
    async with connect(make_app(ManualClock(at_refresh(2)))) as client:
        data = (await get_json(client, f"{BASE}/experiments/{PRICING}"))["data"]
    assert [g["size"] for g in data["groups"]] == [40, 30, 30]
    assert data["controlGroupID"] == data["groups"][0]["id"] == group_id(PRICING, 0)
    assert data["sequentialTesting"] is True and data["bonferroniCorrection"] is True
    assert data["defaultConfidenceInterval"] == "95"
    assert data["secondaryMetrics"] == [
        {"name": "plan_page_bounce", "type": "event_user", "direction": "decrease"}
    ]
    [pulse_check] = [c for c in data["healthChecks"] if c["type"] == "has_pulse_metrics"]
    loaded_ms = round(at_refresh(2, seconds_in=0).timestamp() * 1000)
    assert pulse_check["metadata"]["lastPulseLoadTime"] == loaded_ms


# -- pulse ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_pulse_is_not_yet_available_before_the_first_results() -> None:
    """checkout_redesign has no Pulse at refresh 0 (a 400 saying so) and one at refresh 1."""
    clock = ManualClock(at_refresh(0))
    async with connect(make_app(clock)) as client:
        path = f"{BASE}/experiments/{CHECKOUT}/pulse_results"
        pair = {"control": group_id(CHECKOUT, 0), "test": group_id(CHECKOUT, 1)}
        before = await client.get(path, params=pair)
        clock.advance(REFRESH_SECONDS)
        after = await client.get(path, params=pair)
    assert before.status_code == 400
    assert before.json()["status"] == 400
    assert "not yet available" in before.json()["message"]
    assert after.status_code == 200
    assert after.json()["data"]["ds"] == "2026-01-02"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"control": "x"},
        {"control": "CONTROL", "test": "nope"},
        {"control": "CONTROL", "test": "CONTROL"},
        {"control": "CONTROL", "test": "TEST", "cuped": "yes"},
        {"control": "CONTROL", "test": "TEST", "confidence": "150"},
        {"control": "CONTROL", "test": "TEST", "date": "2026/01/02"},
    ],
)
async def test_bad_pulse_parameters_are_a_400(params: dict[str, str]) -> None:
    """Missing or unknown groups, identical groups and malformed options answer 400."""
    named = {"CONTROL": group_id(CHECKOUT, 0), "TEST": group_id(CHECKOUT, 1)}
    params = {k: named.get(v, v) for k, v in params.items()}
    async with connect(make_app(ManualClock(at_refresh(3)))) as client:
        response = await client.get(f"{BASE}/experiments/{CHECKOUT}/pulse_results", params=params)
    assert response.status_code == 400
    assert response.json()["message"].startswith("Invalid request.")


@pytest.mark.anyio
async def test_the_primary_metric_interval_excludes_zero_exactly_from_refresh_three() -> None:
    """Percent CI, absolute CI and p-value all turn significant at refresh 3 and stay so."""
    clock = ManualClock(at_refresh(1))
    flags: list[tuple[bool, bool, bool]] = []
    async with connect(make_app(clock)) as client:
        for _ in range(1, 10):
            metric = metric_of(await pulse(client, CHECKOUT), "checkout_conversion::event_user")
            absolute = abs(metric["absoluteChange"]) > metric["confidenceIntervalDelta"]
            flags.append((excludes_zero(metric), absolute, metric["pValue"] < 0.05))
            clock.advance(REFRESH_SECONDS)
    assert flags == [(False, False, False)] * 2 + [(True, True, True)] * 7


@pytest.mark.anyio
async def test_percent_fields_are_in_percent_units_derived_from_the_means() -> None:
    """percentChange is 100 (test - control) / control; absoluteChange test - control."""
    async with connect(make_app(ManualClock(at_refresh(4)))) as client:
        metric = metric_of(await pulse(client, CHECKOUT), "checkout_conversion::event_user")
    relative = (metric["testMean"] - metric["controlMean"]) / metric["controlMean"]
    assert metric["percentChange"] == pytest.approx(100 * relative)
    assert metric["absoluteChange"] == pytest.approx(metric["testMean"] - metric["controlMean"])
    assert 5 < metric["percentChange"] < 25
    z = NormalDist().inv_cdf(0.975)
    se = math.hypot(metric["testStd"], metric["controlStd"])
    assert metric["confidenceIntervalDelta"] == pytest.approx(z * se)
    assert metric["testUnits"] + metric["controlUnits"] == 4 * 4000
    assert (metric["metricName"], metric["directionality"]) == ("checkout_conversion", "increase")


@pytest.mark.anyio
async def test_a_date_gives_the_cumulative_results_of_that_pulse_day() -> None:
    """At refresh 6, date=<ds of refresh 2> answers what refresh 2 answered; later days 400."""
    async with connect(make_app(ManualClock(at_refresh(2)))) as client:
        then = await pulse(client, CHECKOUT)
    async with connect(make_app(ManualClock(at_refresh(6)))) as client:
        backfilled = await pulse(client, CHECKOUT, date="2026-01-03")
        latest = await pulse(client, CHECKOUT)
        future = await client.get(
            f"{BASE}/experiments/{CHECKOUT}/pulse_results",
            params={
                "control": group_id(CHECKOUT, 0),
                "test": group_id(CHECKOUT, 1),
                "date": "2026-01-08",
            },
        )
    assert backfilled == then
    assert latest["data"]["ds"] == "2026-01-07"
    assert future.status_code == 400 and "not yet available" in future.json()["message"]


@pytest.mark.anyio
async def test_a_decided_experiments_pulse_is_frozen_at_the_decision() -> None:
    """After the decision at refresh 4, search_ranking's Pulse no longer changes."""
    async with connect(make_app(ManualClock(at_refresh(4)))) as client:
        at_decision = await pulse(client, SEARCH)
    async with connect(make_app(ManualClock(at_refresh(9)))) as client:
        later = await pulse(client, SEARCH)
    assert later == at_decision
    assert excludes_zero(metric_of(later, "search_click_through::event_user"))


@pytest.mark.anyio
async def test_the_confidence_parameter_sets_the_interval_width() -> None:
    """confidence=80 narrows and confidence=99 widens the interval around the same change."""
    async with connect(make_app(ManualClock(at_refresh(4)))) as client:
        widths = {}
        for level in ("80", "95", "99"):
            body = await pulse(client, CHECKOUT, confidence=level)
            metric = metric_of(body, "add_to_cart::event_user")
            widths[level] = metric["percentConfidenceIntervalDelta"]
    assert widths["80"] < widths["95"] < widths["99"]
    z = NormalDist().inv_cdf
    assert widths["99"] / widths["95"] == pytest.approx(z(0.995) / z(0.975))


@pytest.mark.anyio
async def test_sequential_and_bonferroni_settings_widen_the_intervals() -> None:
    """pricing_page (2 test groups, Bonferroni, sequential) reports wider sequential deltas."""
    async with connect(make_app(ManualClock(at_refresh(2)))) as client:
        corrected = metric_of(await pulse(client, PRICING, 1), "signup::event_user")
        plain = metric_of(
            await pulse(client, PRICING, 1, applyBonferroniPerVariant="false"),
            "signup::event_user",
        )
    z = NormalDist().inv_cdf
    ratio = corrected["percentConfidenceIntervalDelta"] / plain["percentConfidenceIntervalDelta"]
    assert ratio == pytest.approx(z(1 - 0.05 / 4) / z(0.975))
    sequential = corrected["percentSequentialTestingConfidenceIntervalDelta"]
    assert sequential > corrected["percentConfidenceIntervalDelta"]
    assert corrected["sequentialTestingConfidenceIntervalDelta"] > 0


@pytest.mark.anyio
async def test_one_metric_reports_a_negative_sequential_percent_delta() -> None:
    """The oddity of Statsig's example: plan_page_bounce's sequential percent delta is < 0."""
    async with connect(make_app(ManualClock(at_refresh(3)))) as client:
        body = await pulse(client, PRICING)
    oddity = metric_of(body, "plan_page_bounce::event_user")
    assert oddity["percentSequentialTestingConfidenceIntervalDelta"] < 0
    assert oddity["directionality"] == "decrease"
    assert (
        metric_of(body, "signup::event_user")["percentSequentialTestingConfidenceIntervalDelta"] > 0
    )


@pytest.mark.anyio
async def test_interval_objects_can_be_served_around_the_changes() -> None:
    """pulse_interval_bounds adds {lower, upper} = change -/+ delta, absolute and percent."""
    app = make_app(ManualClock(at_refresh(3)), pulse_interval_bounds=True)
    async with connect(app) as client:
        metric = metric_of(await pulse(client, CHECKOUT), "checkout_conversion::event_user")
    percent = metric["percentConfidenceInterval"]
    assert percent["lower"] == pytest.approx(
        metric["percentChange"] - metric["percentConfidenceIntervalDelta"]
    )
    assert metric["confidenceInterval"]["upper"] == pytest.approx(
        metric["absoluteChange"] + metric["confidenceIntervalDelta"]
    )


@pytest.mark.anyio
async def test_cumulative_exposures_run_daily_up_to_the_current_pulse_day() -> None:
    """One cumulative row per Pulse day per group, the last matching Pulse's units."""
    async with connect(make_app(ManualClock(at_refresh(4)))) as client:
        body = await get_json(client, f"{BASE}/experiments/{CHECKOUT}/cumulative_exposures")
        metric = metric_of(await pulse(client, CHECKOUT), "checkout_conversion::event_user")
    control, test = body["data"]
    assert control["groupID"] == group_id(CHECKOUT, 0) and control["groupName"] == "Control"
    assert [r["date"] for r in control["results"]] == [
        (date(2026, 1, 2) + timedelta(days=i)).isoformat() for i in range(4)
    ]
    exposures = [r["exposures"] for r in control["results"]]
    assert exposures == sorted(exposures)
    assert control["results"][-1]["exposures"] == metric["controlUnits"]
    assert test["results"][-1]["exposures"] == metric["testUnits"]


@pytest.mark.anyio
async def test_content_is_fixed_within_a_refresh_and_changes_at_the_next() -> None:
    """Pulse depends only on the refresh index; lastModifiedTime does not move with Pulse."""
    clock = ManualClock(at_refresh(4, seconds_in=0.0))
    async with connect(make_app(clock)) as client:
        first = await pulse(client, CHECKOUT)
        modified = (await get_json(client, f"{BASE}/experiments/{CHECKOUT}"))["data"]
        clock.advance(REFRESH_SECONDS - 0.001)
        second = await pulse(client, CHECKOUT)
        clock.advance(0.001)
        third = await pulse(client, CHECKOUT)
        later = (await get_json(client, f"{BASE}/experiments/{CHECKOUT}"))["data"]
    assert first == second != third
    assert modified["lastModifiedTime"] == later["lastModifiedTime"]


# -- rate limiting --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_reads_are_unlimited_unless_a_rate_limit_is_configured() -> None:
    """By default many reads pass; with a limit, the next request in the window gets 429."""
    clock = ManualClock(START)
    async with connect(make_app(clock)) as client:
        statuses = {(await client.get(f"{BASE}/experiments")).status_code for _ in range(150)}
    assert statuses == {200}
    async with connect(make_app(clock, rate_limit_per_window=2)) as client:
        codes = [(await client.get(f"{BASE}/experiments")).status_code for _ in range(3)]
        refused = await client.get(f"{BASE}/experiments")
        clock.advance(10.0)
        allowed = await client.get(f"{BASE}/experiments")
    assert codes == [200, 200, 429]
    assert refused.json()["status"] == 429 and refused.json()["message"]
    assert "Retry-After" not in refused.headers
    assert allowed.status_code == 200


# -- the scenario's own rules ---------------------------------------------------------------


def test_experiment_names_follow_statsigs_naming_rule() -> None:
    """Names outside [a-zA-Z0-9_- ]{3,100} are refused when the script is written."""
    groups = (
        StatsigGroup(id="g0", name="Control", size=50.0),
        StatsigGroup(id="g1", name="Test", size=50.0),
    )
    metric = StatsigMetric(name="m", control_rate=0.1)
    with pytest.raises(ValueError, match="name rule"):
        StatsigExperiment(id="x", name="Bad/name", groups=groups, primary_metrics=(metric,))
    with pytest.raises(ValueError, match="two groups"):
        StatsigExperiment(id="x", name="Fine", groups=groups[:1], primary_metrics=(metric,))
    with pytest.raises(ValueError, match="launches a group"):
        StatsigExperiment(
            id="x",
            name="Fine",
            groups=groups,
            primary_metrics=(metric,),
            end_status="abandoned",
            launched_group_index=1,
        )


def test_a_scenario_refuses_duplicate_ids_and_naive_start_times() -> None:
    """Experiment ids are unique and the timeline needs a timezone-aware start."""
    search = experiment(SEARCH)
    with pytest.raises(ValueError, match="unique"):
        StatsigScenario(start=START, refresh_seconds=60.0, experiments=(search, search))
    with pytest.raises(ValueError, match="timezone-aware"):
        StatsigScenario(start=datetime(2026, 1, 1), refresh_seconds=60.0, experiments=())


def test_every_status_statsig_documents_can_be_scripted() -> None:
    """An experiment can end in any of Statsig's terminal statuses."""
    search = experiment(SEARCH)
    for status in ("abandoned", "archived", "experiment_stopped", "assignment_stopped"):
        ended = StatsigExperiment(
            id="x",
            name="Ends",
            groups=search.groups,
            primary_metrics=search.primary_metrics,
            ends_at=2,
            end_status=status,
        )
        assert [ended.status_at(i) for i in (1, 2)] == ["active", status]
