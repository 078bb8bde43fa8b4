"""The fake GrowthBook REST API, end to end through httpx against the in-process app."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from referencing import Registry
from starlette.applications import Starlette

from simulator import (
    Scenario,
    ScriptedExperiment,
    ScriptedMetric,
    ScriptedVariation,
    build_growthbook_app,
    default_scenario,
)
from tests.simulator.openapi import assert_response_matches, registry_of, resolve_ref

START = datetime(2026, 1, 1, tzinfo=UTC)
REFRESH_SECONDS = 60.0
KEY = "secret_test_key"
SPEC_PATH = Path(__file__).resolve().parents[3] / "shared" / "specs" / "growthbook-openapi.yaml"
SPEC_URI = "urn:growthbook-openapi"
CHECKOUT = "exp_checkout_redesign"
PRICING = "exp_pricing_page"
ALL_IDS = ["exp_search_ranking", CHECKOUT, PRICING, "exp_onboarding_tour"]


class ManualClock:
    """A clock that moves only when a test advances it."""

    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


def at_refresh(index: int, *, seconds_in: float = 30.0) -> datetime:
    return START + timedelta(seconds=index * REFRESH_SECONDS + seconds_in)


def make_app(clock: ManualClock, **options: Any) -> Starlette:
    scenario = default_scenario(start=START, refresh_seconds=REFRESH_SECONDS)
    return build_growthbook_app(scenario, api_key=KEY, clock=clock.now, **options)


@asynccontextmanager
async def connect(
    app: Starlette, *, authorization: str | None = f"Bearer {KEY}"
) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": authorization} if authorization is not None else {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gb.test", headers=headers
    ) as client:
        yield client


async def get_json(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def goal_treatment(results: dict[str, Any], metric_id: str = "met_conversion") -> dict[str, Any]:
    metric = next(
        m for m in results["result"]["results"][0]["metrics"] if m["metricId"] == metric_id
    )
    analysis: dict[str, Any] = metric["variations"][-1]["analyses"][0]
    return analysis


# -- validating against GrowthBook's OpenAPI spec -------------------------------------------


def _merge_object_all_of(node: Any, spec: dict[str, Any]) -> Any:
    """Merge `allOf` lists of object schemas into one object (union of properties/required).

    GrowthBook's spec combines object schemas that each say `additionalProperties: false`,
    which no instance satisfies literally (see research/platforms.md, last section).
    """
    if isinstance(node, list):
        return [_merge_object_all_of(item, spec) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _merge_object_all_of(value, spec) for key, value in node.items()}
    members = [_merge_object_all_of(resolve_ref(m, spec), spec) for m in node.get("allOf", [])]
    if members and all(m.get("type") == "object" for m in members):
        merged: dict[str, Any] = {k: v for k, v in node.items() if k != "allOf"}
        merged.update(type="object", properties={}, required=[], additionalProperties=False)
        for member in members:
            merged["properties"].update(member.get("properties", {}))
            merged["required"] += [
                r for r in member.get("required", []) if r not in merged["required"]
            ]
        return merged
    return node


@pytest.fixture(scope="session")
def spec_registry() -> Registry[Any]:
    if not SPEC_PATH.exists():
        pytest.skip(f"GrowthBook OpenAPI spec not found at {SPEC_PATH}")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec = yaml.load(SPEC_PATH.read_text(encoding="utf-8"), Loader=loader)  # a safe loader
    normalized = _merge_object_all_of(spec, spec)
    return registry_of(SPEC_URI, normalized)


def assert_matches_spec(
    registry: Registry[Any], path: str, body: Any, *, status: str = "200"
) -> None:
    assert_response_matches(registry, SPEC_URI, path, body, status=status)


@pytest.mark.anyio
async def test_experiment_list_matches_the_spec(spec_registry: Registry[Any]) -> None:
    """GET /experiments validates against listExperiments' 200 schema at several refreshes."""
    for index in (0, 3, 7):
        async with connect(make_app(ManualClock(at_refresh(index)))) as client:
            body = await get_json(client, "/api/v1/experiments", limit=100)
        assert_matches_spec(spec_registry, "/v1/experiments", body)
        assert [e["id"] for e in body["experiments"]] == ALL_IDS


@pytest.mark.anyio
@pytest.mark.parametrize("experiment_id", ALL_IDS)
async def test_single_experiment_matches_the_spec(
    spec_registry: Registry[Any], experiment_id: str
) -> None:
    """GET /experiments/{id} validates, enhancedStatus included, before and after results."""
    for index in (0, 7):
        async with connect(make_app(ManualClock(at_refresh(index)))) as client:
            body = await get_json(client, f"/api/v1/experiments/{experiment_id}")
        assert_matches_spec(spec_registry, "/v1/experiments/{id}", body)
        assert "enhancedStatus" in body["experiment"]


@pytest.mark.anyio
@pytest.mark.parametrize("experiment_id", [CHECKOUT, PRICING, "exp_search_ranking"])
async def test_results_match_the_spec(spec_registry: Registry[Any], experiment_id: str) -> None:
    """GET /experiments/{id}/results validates while healthy, significant and under SRM."""
    for index in (1, 3, 6):
        async with connect(make_app(ManualClock(at_refresh(index)))) as client:
            body = await get_json(client, f"/api/v1/experiments/{experiment_id}/results")
        assert_matches_spec(spec_registry, "/v1/experiments/{id}/results", body)


# -- index and authentication ---------------------------------------------------------------


@pytest.mark.anyio
async def test_index_names_the_api_and_its_version() -> None:
    """GET /api/v1/ answers GrowthBook's health check shape {name, apiVersion, build}."""
    async with connect(make_app(ManualClock(START))) as client:
        body = await get_json(client, "/api/v1/")
    assert body["name"] == "GrowthBook API"
    assert body["apiVersion"] == 1
    assert set(body["build"]) == {"sha", "date", "lastVersion"}


@pytest.mark.anyio
async def test_basic_auth_with_the_key_as_user_name_is_accepted() -> None:
    """HTTP Basic with the key as user name and an empty password authenticates."""
    token = base64.b64encode(f"{KEY}:".encode()).decode()
    async with connect(make_app(ManualClock(START)), authorization=f"Basic {token}") as client:
        response = await client.get("/api/v1/experiments")
    assert response.status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer secret_wrong_key",
        "Basic " + base64.b64encode(b"secret_wrong_key:").decode(),
        "Basic " + base64.b64encode(f":{KEY}".encode()).decode(),
        "Basic not-base64!",
    ],
)
async def test_a_wrong_key_is_rejected_with_401(authorization: str) -> None:
    """Any key other than the app's, however it is sent, gets 401 {message}."""
    async with connect(make_app(ManualClock(START)), authorization=authorization) as client:
        response = await client.get("/api/v1/experiments")
    assert response.status_code == 401
    assert response.json() == {"message": "Invalid API key"}
    assert "RateLimit-Limit" not in response.headers


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "Missing Authorization header"),
        (f"Token {KEY}", "Must use either a Bearer or Basic authentication scheme"),
        ("Bearer ", "Missing API key in Authorization header"),
    ],
)
async def test_a_missing_or_malformed_authorization_header_is_a_400(
    authorization: str | None, message: str
) -> None:
    """As GrowthBook's middleware: no header, another scheme or no key answer 400 {message}."""
    async with connect(make_app(ManualClock(START)), authorization=authorization) as client:
        response = await client.get("/api/v1/experiments")
    assert response.status_code == 400
    assert response.json() == {"message": message}


@pytest.mark.anyio
async def test_an_unknown_api_path_is_a_404_with_a_message() -> None:
    """Paths the fake does not serve answer 404 {"message": "Unknown API endpoint"}."""
    async with connect(make_app(ManualClock(START))) as client:
        response = await client.get("/api/v1/features")
    assert response.status_code == 404
    assert response.json() == {"message": "Unknown API endpoint"}


# -- listing --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_pagination_walks_every_experiment_once() -> None:
    """Following nextOffset while hasMore visits each experiment once, oldest first."""
    seen: list[str] = []
    pages: list[dict[str, Any]] = []
    offset: int | None = 0
    async with connect(make_app(ManualClock(at_refresh(2)))) as client:
        while offset is not None:
            page = await get_json(client, "/api/v1/experiments", limit=3, offset=offset)
            pages.append(page)
            seen += [e["id"] for e in page["experiments"]]
            offset = page["nextOffset"]
    assert seen == ALL_IDS
    first, last = pages
    assert (first["count"], first["total"], first["hasMore"], first["nextOffset"]) == (
        3,
        4,
        True,
        3,
    )
    assert (last["count"], last["offset"], last["hasMore"], last["nextOffset"]) == (
        1,
        3,
        False,
        None,
    )


@pytest.mark.anyio
async def test_the_default_page_holds_ten_experiments() -> None:
    """Without limit and offset the list answers limit 10, offset 0."""
    async with connect(make_app(ManualClock(START))) as client:
        body = await get_json(client, "/api/v1/experiments")
    assert (body["limit"], body["offset"], body["count"], body["hasMore"]) == (10, 0, 4, False)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 0}, "Pagination limit must be between 1 and 100"),
        ({"limit": 101}, "Pagination limit must be between 1 and 100"),
        ({"limit": "ten"}, "[limit]"),
        ({"offset": -1}, "Invalid pagination offset"),
        ({"status": "paused"}, "[status]"),
    ],
)
async def test_invalid_list_parameters_are_a_400(params: dict[str, Any], message: str) -> None:
    """Out-of-range limits, negative offsets and unknown statuses answer 400 {message}."""
    async with connect(make_app(ManualClock(START))) as client:
        response = await client.get("/api/v1/experiments", params=params)
    assert response.status_code == 400
    assert message in response.json()["message"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("running", [CHECKOUT, PRICING]),
        ("draft", ["exp_onboarding_tour"]),
        ("stopped", ["exp_search_ranking"]),
    ],
)
async def test_the_status_filter_keeps_only_that_status(status: str, expected: list[str]) -> None:
    """status=running|draft|stopped lists exactly the experiments in that status."""
    async with connect(make_app(ManualClock(at_refresh(2)))) as client:
        body = await get_json(client, "/api/v1/experiments", status=status)
    assert [e["id"] for e in body["experiments"]] == expected
    assert {e["status"] for e in body["experiments"]} == {status}
    assert body["total"] == len(expected)


@pytest.mark.anyio
async def test_the_project_filter_keeps_only_that_project() -> None:
    """projectId lists only the experiments of that project."""
    async with connect(make_app(ManualClock(START))) as client:
        body = await get_json(client, "/api/v1/experiments", projectId="prj_growth")
    assert [e["id"] for e in body["experiments"]] == [PRICING, "exp_onboarding_tour"]


# -- single experiment and results ----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("suffix", ["", "/results"])
async def test_an_unknown_experiment_is_a_400_with_a_message(suffix: str) -> None:
    """GrowthBook answers handler errors with 400, also for an experiment it does not know."""
    async with connect(make_app(ManualClock(at_refresh(3)))) as client:
        response = await client.get(f"/api/v1/experiments/exp_nope{suffix}")
    assert response.status_code == 400
    assert response.json() == {"message": "Could not find experiment with that id"}


@pytest.mark.anyio
async def test_results_before_first_results_at_are_a_400_no_results_found() -> None:
    """Refresh 0 has no analysis of the checkout redesign yet; refresh 1 has one."""
    clock = ManualClock(at_refresh(0))
    async with connect(make_app(clock)) as client:
        before = await client.get(f"/api/v1/experiments/{CHECKOUT}/results")
        clock.advance(REFRESH_SECONDS)
        after = await client.get(f"/api/v1/experiments/{CHECKOUT}/results")
    assert before.status_code == 400
    assert before.json() == {"message": "No results found for that experiment"}
    assert after.status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/experiments/exp_onboarding_tour/results", {}),
        (f"/api/v1/experiments/{CHECKOUT}/results", {"phase": "1"}),
        (f"/api/v1/experiments/{CHECKOUT}/results", {"dimension": "browser"}),
    ],
)
async def test_drafts_other_phases_and_dimensions_have_no_results(
    path: str, params: dict[str, str]
) -> None:
    """A draft, a phase that does not exist and a dimension all answer "No results found"."""
    async with connect(make_app(ManualClock(at_refresh(5)))) as client:
        response = await client.get(path, params=params)
    assert response.status_code == 400
    assert response.json() == {"message": "No results found for that experiment"}


@pytest.mark.anyio
async def test_results_are_identical_within_a_refresh_and_change_across_refreshes() -> None:
    """Content depends only on the refresh index: same within a refresh, new at the next."""
    clock = ManualClock(at_refresh(4, seconds_in=0.0))
    path = f"/api/v1/experiments/{CHECKOUT}/results"
    async with connect(make_app(clock)) as client:
        first = await get_json(client, path)
        clock.advance(REFRESH_SECONDS - 0.001)
        second = await get_json(client, path)
        clock.advance(0.001)
        third = await get_json(client, path)
    assert first == second
    assert third != second
    assert (
        third["result"]["results"][0]["totalUsers"] > second["result"]["results"][0]["totalUsers"]
    )


@pytest.mark.anyio
async def test_date_updated_is_the_refresh_time_in_javascript_iso_format() -> None:
    """Result and experiment dateUpdated are start + i * refresh_seconds as "…T…:…:….mmmZ"."""
    async with connect(make_app(ManualClock(at_refresh(5, seconds_in=42.5)))) as client:
        body = await get_json(client, f"/api/v1/experiments/{CHECKOUT}/results")
    assert body["result"]["dateUpdated"] == "2026-01-01T00:05:00.000Z"
    assert body["experiment"]["dateUpdated"] == "2026-01-01T00:05:00.000Z"
    assert body["result"]["phase"] == "0"
    assert body["result"]["experimentId"] == CHECKOUT


@pytest.mark.anyio
async def test_the_goal_metric_turns_significant_exactly_at_significant_from() -> None:
    """chanceToBeatControl of met_conversion exceeds 0.95 from refresh 3 on, never before."""
    clock = ManualClock(at_refresh(1))
    chances: list[float] = []
    async with connect(make_app(clock)) as client:
        for _ in range(1, 12):
            body = await get_json(client, f"/api/v1/experiments/{CHECKOUT}/results")
            chances.append(goal_treatment(body)["chanceToBeatControl"])
            clock.advance(REFRESH_SECONDS)
    assert [c > 0.95 for c in chances] == [False, False] + [True] * 9
    assert all(c > 0.05 for c in chances)


@pytest.mark.anyio
async def test_srm_appears_exactly_at_srm_from() -> None:
    """checks.srm stays healthy until refresh 6 and is below 0.001 from then on."""
    clock = ManualClock(at_refresh(1))
    srm: list[float] = []
    async with connect(make_app(clock)) as client:
        for _ in range(1, 12):
            body = await get_json(client, f"/api/v1/experiments/{CHECKOUT}/results")
            srm.append(body["result"]["results"][0]["checks"]["srm"])
            clock.advance(REFRESH_SECONDS)
    assert [p < 0.001 for p in srm] == [False] * 5 + [True] * 6
    assert all(p > 0.05 for p in srm[:5])


@pytest.mark.anyio
async def test_enhanced_status_reports_no_data_then_unhealthy() -> None:
    """GET one's enhancedStatus follows the script: No data, plain Running, then Unhealthy."""
    details: list[str | None] = []
    for index in (0, 2, 6):
        async with connect(make_app(ManualClock(at_refresh(index)))) as client:
            body = await get_json(client, f"/api/v1/experiments/{CHECKOUT}")
        assert body["experiment"]["enhancedStatus"]["status"] == "Running"
        details.append(body["experiment"]["enhancedStatus"].get("detailedStatus"))
    assert details == ["No data", None, "Unhealthy"]


@pytest.mark.anyio
async def test_the_baseline_variation_reports_zeros_not_nulls() -> None:
    """Like GrowthBook's serializer, the baseline's lift, interval and probabilities are 0."""
    async with connect(make_app(ManualClock(at_refresh(4)))) as client:
        body = await get_json(client, f"/api/v1/experiments/{CHECKOUT}/results")
    for metric in body["result"]["results"][0]["metrics"]:
        baseline = metric["variations"][0]
        assert baseline["variationId"] == body["experiment"]["variations"][0]["variationId"]
        analysis = baseline["analyses"][0]
        for field in ("percentChange", "ciLow", "ciHigh", "pValue", "risk", "chanceToBeatControl"):
            assert analysis[field] == 0, (metric["metricId"], field)
        assert 0 < analysis["mean"] < 1
        assert analysis["stddev"] > 0


@pytest.mark.anyio
async def test_lifts_are_fractions_derived_from_the_counts() -> None:
    """percentChange is (mean_B - mean_A) / mean_A inside its interval; mean = numerator / users."""
    async with connect(make_app(ManualClock(at_refresh(4)))) as client:
        body = await get_json(client, f"/api/v1/experiments/{CHECKOUT}/results")
    overall = body["result"]["results"][0]
    metric = overall["metrics"][0]
    assert (metric["metricId"], metric["metricName"]) == ("met_conversion", "Conversion")
    control, treatment = (v["analyses"][0] for v in metric["variations"])
    assert treatment["mean"] == pytest.approx(treatment["numerator"] / treatment["denominator"])
    expected = (treatment["mean"] - control["mean"]) / control["mean"]
    assert treatment["percentChange"] == pytest.approx(expected)
    assert treatment["ciLow"] < treatment["percentChange"] < treatment["ciHigh"]
    assert 0.05 < treatment["percentChange"] < 0.2
    assert treatment["pValue"] == 0
    assert overall["totalUsers"] == sum(v["users"] for v in metric["variations"])


@pytest.mark.anyio
async def test_frequentist_results_report_p_values_and_no_chance_to_beat_control() -> None:
    """The frequentist pricing experiment reports pValue, with chanceToBeatControl and risk 0."""
    async with connect(make_app(ManualClock(at_refresh(4)))) as client:
        body = await get_json(client, f"/api/v1/experiments/{PRICING}/results")
    metric = body["result"]["results"][0]["metrics"][0]
    assert len(metric["variations"]) == 3
    for variation in metric["variations"][1:]:
        analysis = variation["analyses"][0]
        assert analysis["engine"] == "frequentist"
        assert 0.05 < analysis["pValue"] <= 1
        assert (analysis["chanceToBeatControl"], analysis["risk"]) == (0, 0)


@pytest.mark.anyio
async def test_a_stopped_experiment_reports_its_verdict_and_frozen_results() -> None:
    """exp_search_ranking is stopped and won, and its results never change."""
    clock = ManualClock(at_refresh(1))
    path = "/api/v1/experiments/exp_search_ranking"
    async with connect(make_app(clock)) as client:
        first = await get_json(client, f"{path}/results")
        clock.advance(5 * REFRESH_SECONDS)
        later = await get_json(client, f"{path}/results")
        single = await get_json(client, path)
    assert first == later
    experiment = single["experiment"]
    assert experiment["status"] == "stopped"
    assert experiment["resultSummary"]["status"] == "won"
    assert experiment["enhancedStatus"] == {"status": "Stopped", "detailedStatus": "Won"}
    assert experiment["phases"][0]["dateEnded"] == "2026-01-01T00:00:00.000Z"
    assert goal_treatment(first, "met_search_ctr")["chanceToBeatControl"] > 0.95


# -- portfolio results (GET /experiments/results) and scripted knobs ------------------------

PORTFOLIO = "/api/v1/experiments/results"


def knob_scenario() -> Scenario:
    """Four experiments scripting a phase restart, a no-data period, an archive, a late start."""

    def scripted(experiment_id: str, days_old: float, **knobs: Any) -> ScriptedExperiment:
        return ScriptedExperiment(
            id=experiment_id,
            name=experiment_id.removeprefix("exp_").title(),
            tracking_key=experiment_id.removeprefix("exp_"),
            variations=(
                ScriptedVariation(id=f"var_{experiment_id}_0", key="0", name="Control"),
                ScriptedVariation(id=f"var_{experiment_id}_1", key="1", name="Treatment"),
            ),
            weights=(0.5, 0.5),
            goals=(ScriptedMetric(id="met_goal", name="Goal", control_rate=0.1),),
            created_seconds_before_start=days_old * 86400.0,
            **knobs,
        )

    return Scenario(
        start=START,
        refresh_seconds=REFRESH_SECONDS,
        experiments=(
            scripted(
                "exp_restart",
                4,
                secondary_metrics=(
                    ScriptedMetric(id="met_late", name="Late", control_rate=0.2, added_at=2),
                ),
                guardrails=(ScriptedMetric(id="met_guard", name="Guard", control_rate=0.3),),
                guardrail_regresses_from=3,
                new_phase_at=4,
                new_phase_weights=(0.3, 0.7),
            ),
            scripted("exp_gap", 3, no_data_between=(2, 4), datasource_id="ds_events"),
            scripted(
                "exp_archived", 2, significant_from=1, stops_at=3, verdict="lost", archived_at=5
            ),
            scripted("exp_late", 1, starts_at=2, first_results_at=3),
        ),
    )


def make_knob_app(clock: ManualClock) -> Starlette:
    return build_growthbook_app(knob_scenario(), api_key=KEY, clock=clock.now)


@pytest.mark.anyio
async def test_portfolio_results_match_the_spec(spec_registry: Registry[Any]) -> None:
    """GET /experiments/results validates against listExperimentResults' 200 schema."""
    for make in (make_app, make_knob_app):
        for index in (0, 1, 3, 4, 6, 7):
            async with connect(make(ManualClock(at_refresh(index)))) as client:
                body = await get_json(client, PORTFOLIO, limit=100)
            assert_matches_spec(spec_registry, "/v1/experiments/results", body)


@pytest.mark.anyio
async def test_scripted_knobs_match_the_spec(spec_registry: Registry[Any]) -> None:
    """Phases, archives, late metrics and late starts keep every payload within the spec."""
    ids = [e.id for e in knob_scenario().experiments]
    for index in (0, 2, 3, 4, 5, 8):
        async with connect(make_knob_app(ManualClock(at_refresh(index)))) as client:
            listed = await get_json(client, "/api/v1/experiments", limit=100)
            assert_matches_spec(spec_registry, "/v1/experiments", listed)
            for experiment_id in ids:
                single = await get_json(client, f"/api/v1/experiments/{experiment_id}")
                assert_matches_spec(spec_registry, "/v1/experiments/{id}", single)
                response = await client.get(f"/api/v1/experiments/{experiment_id}/results")
                if response.status_code == 200:
                    body = response.json()
                    assert_matches_spec(spec_registry, "/v1/experiments/{id}/results", body)


@pytest.mark.anyio
async def test_metric_definitions_match_the_spec(spec_registry: Registry[Any]) -> None:
    """GET /metrics (whole, paged, filtered) and GET /metrics/{id} for every metric validate
    against listMetrics' and getMetric's 200 schemas."""
    for make in (make_app, make_knob_app):
        async with connect(make(ManualClock(at_refresh(3)))) as client:
            listed = await get_json(client, "/api/v1/metrics", limit=100)
            assert listed["metrics"]
            assert_matches_spec(spec_registry, "/v1/metrics", listed)
            for params in ({"limit": 2, "offset": 1}, {"projectId": "prj_growth"}):
                page = await get_json(client, "/api/v1/metrics", **params)
                assert_matches_spec(spec_registry, "/v1/metrics", page)
            for metric in listed["metrics"]:
                single = await get_json(client, f"/api/v1/metrics/{metric['id']}")
                assert_matches_spec(spec_registry, "/v1/metrics/{id}", single)


@pytest.mark.anyio
async def test_the_portfolio_leaves_out_drafts_and_experiments_without_results() -> None:
    """At refresh 0 only the stopped and the frequentist experiment have results to report."""
    async with connect(make_app(ManualClock(at_refresh(0)))) as client:
        body = await get_json(client, PORTFOLIO)
    assert [r["experimentId"] for r in body["experimentResults"]] == [
        "exp_search_ranking",
        PRICING,
    ]
    assert (body["limit"], body["offset"], body["count"], body["total"]) == (10, 0, 2, 4)
    assert (body["hasMore"], body["nextOffset"]) == (False, None)


@pytest.mark.anyio
async def test_portfolio_pages_advance_over_experiments_not_results() -> None:
    """With limit 1 a page may hold no results yet have more; nextOffset counts experiments."""
    pages: list[dict[str, Any]] = []
    offset: int | None = 0
    async with connect(make_app(ManualClock(at_refresh(0)))) as client:
        while offset is not None:
            page = await get_json(client, PORTFOLIO, limit=1, offset=offset)
            pages.append(page)
            offset = page["nextOffset"]
    assert [p["count"] for p in pages] == [1, 0, 1, 0]
    assert [p["hasMore"] for p in pages] == [True, True, True, False]
    assert [p["nextOffset"] for p in pages] == [1, 2, 3, None]
    assert {p["total"] for p in pages} == {4}


@pytest.mark.anyio
async def test_portfolio_entries_are_the_single_experiment_results() -> None:
    """Each entry equals what GET /experiments/{id}/results answers as `result`."""
    async with connect(make_app(ManualClock(at_refresh(6)))) as client:
        body = await get_json(client, PORTFOLIO)
        assert body["count"] == 3
        for entry in body["experimentResults"]:
            single = await get_json(client, f"/api/v1/experiments/{entry['experimentId']}/results")
            assert entry == single["result"]


@pytest.mark.anyio
async def test_portfolio_results_report_zeros_for_the_baseline() -> None:
    """As in the single-experiment results, the baseline's analysis fields are 0, not null."""
    async with connect(make_app(ManualClock(at_refresh(4)))) as client:
        body = await get_json(client, PORTFOLIO)
    for entry in body["experimentResults"]:
        for metric in entry["results"][0]["metrics"]:
            baseline = metric["variations"][0]["analyses"][0]
            for field in ("percentChange", "ciLow", "ciHigh", "pValue", "risk"):
                assert baseline[field] == 0, (entry["experimentId"], field)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("params", "expected", "total"),
    [
        ({"status": "running"}, [CHECKOUT, PRICING], 2),
        ({"status": "stopped"}, ["exp_search_ranking"], 1),
        ({"status": "draft"}, [], 1),
        ({"projectId": "prj_growth"}, [PRICING], 2),
        ({"trackingKey": "checkout-redesign"}, [CHECKOUT], 1),
        ({"datasourceId": "ds_warehouse"}, ["exp_search_ranking", CHECKOUT, PRICING], 4),
        ({"datasourceId": "ds_elsewhere"}, [], 0),
    ],
)
async def test_portfolio_filters_keep_only_matching_experiments(
    params: dict[str, str], expected: list[str], total: int
) -> None:
    """status, projectId, trackingKey and datasourceId narrow the experiments scanned."""
    async with connect(make_app(ManualClock(at_refresh(3)))) as client:
        body = await get_json(client, PORTFOLIO, **params)
    assert [r["experimentId"] for r in body["experimentResults"]] == expected
    assert body["total"] == total


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 0}, "Pagination limit must be between 1 and 100"),
        ({"limit": 101}, "Pagination limit must be between 1 and 100"),
        ({"offset": "two"}, "[offset]"),
        ({"offset": -1}, "Invalid pagination offset"),
        ({"status": "archived"}, "[status]"),
    ],
)
async def test_invalid_portfolio_parameters_are_a_400(params: dict[str, Any], message: str) -> None:
    """The portfolio scan checks its parameters as the experiment list does."""
    async with connect(make_app(ManualClock(START))) as client:
        response = await client.get(PORTFOLIO, params=params)
    assert response.status_code == 400
    assert message in response.json()["message"]


@pytest.mark.anyio
async def test_the_experiment_list_filters_by_tracking_key_and_data_source() -> None:
    """GET /experiments honours trackingKey and datasourceId too."""
    async with connect(make_knob_app(ManualClock(at_refresh(1)))) as client:
        by_key = await get_json(client, "/api/v1/experiments", trackingKey="late")
        by_source = await get_json(client, "/api/v1/experiments", datasourceId="ds_events")
    assert [e["id"] for e in by_key["experiments"]] == ["exp_late"]
    assert [e["id"] for e in by_source["experiments"]] == ["exp_gap"]


@pytest.mark.anyio
async def test_the_portfolio_follows_no_data_periods_phases_and_archives() -> None:
    """No-data refreshes drop an entry, a new phase reports phase "1", archives stay listed."""
    reported: dict[int, dict[str, str]] = {}
    clock = ManualClock(at_refresh(0))
    async with connect(make_knob_app(clock)) as client:
        for index in range(8):
            body = await get_json(client, PORTFOLIO)
            reported[index] = {r["experimentId"]: r["phase"] for r in body["experimentResults"]}
            assert body["total"] == 4
            clock.advance(REFRESH_SECONDS)
    assert reported[0] == {"exp_restart": "0", "exp_gap": "0", "exp_archived": "0"}
    assert "exp_gap" not in reported[2] and "exp_gap" not in reported[3]
    assert reported[4]["exp_gap"] == "0"
    assert "exp_late" not in reported[2] and reported[3]["exp_late"] == "0"
    assert [reported[i]["exp_restart"] for i in (3, 4, 7)] == ["0", "1", "1"]
    assert "exp_archived" in reported[7]


@pytest.mark.anyio
async def test_results_answer_any_begun_phase_and_default_to_the_current_one() -> None:
    """After a restart: no phase or "1" is the new phase, "0" the first phase's last analysis."""
    path = "/api/v1/experiments/exp_restart/results"
    async with connect(make_knob_app(ManualClock(at_refresh(3)))) as client:
        before = await get_json(client, path)
        too_early = await client.get(path, params={"phase": "1"})
    async with connect(make_knob_app(ManualClock(at_refresh(6)))) as client:
        current = await get_json(client, path)
        explicit = await get_json(client, path, phase="1")
        first = await get_json(client, path, phase="0")
        unknown = await client.get(path, params={"phase": "2"})
    assert too_early.status_code == unknown.status_code == 400
    assert current == explicit
    assert current["result"]["phase"] == "1"
    assert current["result"]["dateStart"] == "2026-01-01T00:04:00.000Z"
    assert current["result"]["results"][0]["totalUsers"] == 3 * 4000
    assert first["result"] == before["result"]
    phases = current["experiment"]["phases"]
    assert [p["dateEnded"] for p in phases] == ["2026-01-01T00:04:00.000Z", ""]
    assert [s["weight"] for s in phases[1]["trafficSplit"]] == [0.3, 0.7]


# -- rate limiting --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_requests_beyond_sixty_a_minute_get_429_until_the_window_resets() -> None:
    """The 61st request in a window is refused; 60 seconds later requests pass again."""
    clock = ManualClock(START)
    async with connect(make_app(clock)) as client:
        for _ in range(60):
            assert (await client.get("/api/v1/experiments")).status_code == 200
        refused = await client.get("/api/v1/experiments")
        clock.advance(59.9)
        still_refused = await client.get("/api/v1/")
        clock.advance(0.1)
        allowed = await client.get("/api/v1/experiments")
    assert refused.status_code == 429
    assert refused.json() == {"message": "Too many requests, limit to 60 per minute"}
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["Retry-After"] == "60"
    assert still_refused.status_code == 429
    assert allowed.status_code == 200
    assert allowed.headers["RateLimit-Remaining"] == "59"


@pytest.mark.anyio
async def test_rate_limit_headers_count_down_on_every_authenticated_response() -> None:
    """RateLimit-Limit/Remaining/Reset accompany successes and handler errors alike."""
    clock = ManualClock(START)
    async with connect(make_app(clock)) as client:
        ok = await client.get("/api/v1/experiments")
        clock.advance(20.5)
        error = await client.get("/api/v1/experiments/exp_nope")
    assert (ok.headers["RateLimit-Limit"], ok.headers["RateLimit-Remaining"]) == ("60", "59")
    assert ok.headers["RateLimit-Reset"] == "60"
    assert error.status_code == 400
    assert (error.headers["RateLimit-Remaining"], error.headers["RateLimit-Reset"]) == ("58", "40")


@pytest.mark.anyio
async def test_the_rate_limit_is_configurable() -> None:
    """rate_limit_per_minute sets both the limit and the 429 message."""
    async with connect(make_app(ManualClock(START), rate_limit_per_minute=2)) as client:
        statuses = [(await client.get("/api/v1/")).status_code for _ in range(3)]
        refused = await client.get("/api/v1/")
    assert statuses == [200, 200, 429]
    assert refused.json() == {"message": "Too many requests, limit to 2 per minute"}
    assert refused.headers["RateLimit-Limit"] == "2"
