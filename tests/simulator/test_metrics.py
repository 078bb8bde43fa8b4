"""The fake GrowthBook's metric definitions (`GET /metrics`, `GET /metrics/{id}`) and what a
metric's direction (`inverse`, lower is better) does to the script and to the numbers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from simulator import (
    Faults,
    PageLoopFault,
    Scenario,
    ScriptedExperiment,
    ScriptedMetric,
    ScriptedVariation,
    ScriptError,
    build_growthbook_app,
    default_scenario,
)
from simulator.stats import BinomialArm, StatsEngine, analyze_variation

START = datetime(2026, 1, 1, tzinfo=UTC)
REFRESH_SECONDS = 60.0
KEY = "secret_metrics_key"
METRICS = "/api/v1/metrics"
DEFAULT_METRIC_IDS = [
    "met_activation",
    "met_add_to_cart",
    "met_conversion",
    "met_refund",
    "met_search_ctr",
    "met_signup",
]


@asynccontextmanager
async def connect(
    scenario: Scenario | None = None, *, at_refresh: int = 2, **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    now = START + timedelta(seconds=at_refresh * REFRESH_SECONDS + 30)
    app = build_growthbook_app(
        scenario or default_scenario(start=START, refresh_seconds=REFRESH_SECONDS),
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


async def get_json(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def experiment(experiment_id: str, *metrics: ScriptedMetric, **knobs: Any) -> ScriptedExperiment:
    """A two-arm experiment whose first metric is the goal and the others guardrails."""
    return ScriptedExperiment(
        id=experiment_id,
        name=experiment_id.removeprefix("exp_").title(),
        tracking_key=experiment_id.removeprefix("exp_"),
        variations=(
            ScriptedVariation(id=f"var_{experiment_id}_0", key="0", name="Control"),
            ScriptedVariation(id=f"var_{experiment_id}_1", key="1", name="Treatment"),
        ),
        weights=(0.5, 0.5),
        goals=metrics[:1],
        guardrails=metrics[1:],
        **knobs,
    )


def scenario_of(*experiments: ScriptedExperiment) -> Scenario:
    return Scenario(start=START, refresh_seconds=REFRESH_SECONDS, experiments=experiments)


GOAL = ScriptedMetric(id="met_goal", name="Goal", control_rate=0.1)


# -- GET /metrics and GET /metrics/{id} ------------------------------------------------------


@pytest.mark.anyio
async def test_every_analysed_metric_is_listed_once_sorted_by_id_with_its_direction() -> None:
    """The default scenario's six metrics, in id order; only the refund guardrail decreases."""
    async with connect() as client:
        body = await get_json(client, METRICS, limit=100)
    assert [m["id"] for m in body["metrics"]] == DEFAULT_METRIC_IDS
    goals = {m["id"]: m["behavior"]["goal"] for m in body["metrics"]}
    assert goals.pop("met_refund") == "decrease"
    assert set(goals.values()) == {"increase"}
    refund = body["metrics"][DEFAULT_METRIC_IDS.index("met_refund")]
    assert (refund["name"], refund["type"], refund["archived"]) == (
        "Refund requested",
        "binomial",
        False,
    )
    assert (refund["owner"], refund["datasourceId"], refund["projects"]) == (
        "ana@example.com",
        "ds_warehouse",
        ["prj_checkout"],
    )
    assert refund["dateCreated"] == "2025-12-29T00:00:00.000Z"  # with its experiment
    assert (body["count"], body["total"], body["hasMore"], body["nextOffset"]) == (
        6,
        6,
        False,
        None,
    )


@pytest.mark.anyio
async def test_metric_pages_walk_every_definition_once() -> None:
    """limit/offset page through the definitions with the experiment list's PaginationFields."""
    pages: list[dict[str, Any]] = []
    offset: int | None = 0
    async with connect() as client:
        while offset is not None:
            page = await get_json(client, METRICS, limit=4, offset=offset)
            pages.append(page)
            offset = page["nextOffset"]
    assert [m["id"] for p in pages for m in p["metrics"]] == DEFAULT_METRIC_IDS
    assert [(p["offset"], p["count"], p["hasMore"], p["nextOffset"]) for p in pages] == [
        (0, 4, True, 4),
        (4, 2, False, None),
    ]
    assert {(p["limit"], p["total"]) for p in pages} == {(4, 6)}


@pytest.mark.anyio
async def test_the_default_metric_page_holds_ten() -> None:
    """Without limit and offset the metric list answers limit 10, offset 0."""
    async with connect() as client:
        body = await get_json(client, METRICS)
    assert (body["limit"], body["offset"], body["count"]) == (10, 0, 6)


@pytest.mark.anyio
async def test_a_metric_shared_by_experiments_is_defined_once_in_all_their_projects() -> None:
    """One definition per id: the oldest user's owner and data source, every user's project;
    a metric only project-less experiments use has no projects and matches any projectId."""
    shared = ScriptedMetric(id="met_shared", name="Shared", control_rate=0.2)
    scenario = scenario_of(
        experiment(
            "exp_new", GOAL, shared, project="prj_b", owner="new@example.com", datasource_id="ds_b"
        ),
        experiment(
            "exp_old",
            ScriptedMetric(id="met_open", name="Open", control_rate=0.1),
            shared,
            project="prj_a",
            owner="old@example.com",
            created_seconds_before_start=30 * 86400.0,
        ),
        experiment("exp_free", ScriptedMetric(id="met_open", name="Open", control_rate=0.3)),
    )
    async with connect(scenario) as client:
        listed = await get_json(client, METRICS)
        in_b = await get_json(client, METRICS, projectId="prj_b")
        in_c = await get_json(client, METRICS, projectId="prj_c")
        from_b = await get_json(client, METRICS, datasourceId="ds_b")
    by_id = {m["id"]: m for m in listed["metrics"]}
    assert list(by_id) == ["met_goal", "met_open", "met_shared"]
    assert (by_id["met_shared"]["owner"], by_id["met_shared"]["datasourceId"]) == (
        "old@example.com",
        "ds_warehouse",
    )
    assert by_id["met_shared"]["projects"] == ["prj_a", "prj_b"]
    assert by_id["met_open"]["projects"] == ["prj_a"]
    assert [m["id"] for m in in_b["metrics"]] == ["met_goal", "met_shared"]
    assert in_c["metrics"] == [] and in_c["total"] == 0
    assert [m["id"] for m in from_b["metrics"]] == ["met_goal"]
    free = scenario_of(experiment("exp_free", GOAL))
    async with connect(free) as client:
        anywhere = await get_json(client, METRICS, projectId="prj_anything")
    assert [m["id"] for m in anywhere["metrics"]] == ["met_goal"]
    assert anywhere["metrics"][0]["projects"] == []


@pytest.mark.anyio
async def test_one_metric_is_the_listed_definition() -> None:
    """GET /metrics/{id} answers {"metric": ...}, the very item the list holds."""
    async with connect() as client:
        listed = await get_json(client, METRICS, limit=100)
        for item in listed["metrics"]:
            single = await get_json(client, f"{METRICS}/{item['id']}")
            assert single == {"metric": item}


@pytest.mark.anyio
async def test_an_unknown_metric_is_a_400_with_a_message() -> None:
    """As GrowthBook's getMetric: an id it does not know answers 400 {message}."""
    async with connect() as client:
        response = await client.get(f"{METRICS}/met_nope")
    assert response.status_code == 400
    assert response.json() == {"message": "Could not find metric with that id"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 0}, "Pagination limit must be between 1 and 100"),
        ({"limit": 101}, "Pagination limit must be between 1 and 100"),
        ({"offset": "two"}, "[offset]"),
        ({"offset": -1}, "Invalid pagination offset"),
        ({"status": "running"}, "Unrecognized key(s) in object: 'status'"),
    ],
)
async def test_invalid_metric_list_parameters_are_a_400(
    params: dict[str, Any], message: str
) -> None:
    """Bad pages and parameters listMetrics does not know (its query is strict) answer 400."""
    async with connect() as client:
        response = await client.get(METRICS, params=params)
    assert response.status_code == 400
    assert message in response.json()["message"]


@pytest.mark.anyio
@pytest.mark.parametrize("path", [METRICS, f"{METRICS}/met_refund"])
async def test_metric_definitions_need_the_key_and_count_against_the_rate_limit(path: str) -> None:
    """No key is a 400, a wrong one a 401; each answer carries the limiter's headers, and
    past the per-minute limit the endpoint answers 429 like any other."""
    async with connect(rate_limit_per_minute=2) as client:
        missing = await client.get(path, headers={"Authorization": ""})
        wrong = await client.get(path, headers={"Authorization": "Bearer secret_other"})
        first = await client.get(path)
        second = await client.get("/api/v1/experiments/exp_checkout_redesign")
        third = await client.get(path)
    assert missing.status_code == 400 and wrong.status_code == 401
    assert first.status_code == 200 and second.status_code == 200
    assert (first.headers["RateLimit-Limit"], first.headers["RateLimit-Remaining"]) == ("2", "1")
    assert third.status_code == 429
    assert third.json() == {"message": "Too many requests, limit to 2 per minute"}


@pytest.mark.anyio
async def test_a_page_loop_fault_loops_the_metric_list_too() -> None:
    """Under a PageLoopFault the page at offset 4 repeats the first items and promises more."""
    faults = Faults()
    faults.add(PageLoopFault(from_offset=4, to_offset=0), path=METRICS)
    async with connect(faults=faults) as client:
        looped = await get_json(client, METRICS, limit=4, offset=4)
    assert [m["id"] for m in looped["metrics"]] == DEFAULT_METRIC_IDS[:4]
    assert (looped["hasMore"], looped["nextOffset"]) == (True, 8)


def test_a_metric_id_defined_two_ways_is_refused() -> None:
    """Two experiments giving one metric id different names or directions make no scenario."""
    for other in (
        ScriptedMetric(id="met_goal", name="Other name", control_rate=0.1),
        ScriptedMetric(id="met_goal", name="Goal", control_rate=0.1, inverse=True),
    ):
        with pytest.raises(ValueError, match="'met_goal' is defined twice"):
            scenario_of(experiment("exp_a", GOAL), experiment("exp_b", other))
    same = ScriptedMetric(id="met_goal", name="Goal", control_rate=0.3)  # own baseline rate
    assert len(scenario_of(experiment("exp_a", GOAL), experiment("exp_b", same)).experiments) == 2


# -- inverse metrics: the numbers and the script ---------------------------------------------


def test_an_inverse_metric_reports_the_chance_and_risk_of_a_fall() -> None:
    """As gbstats: for a lower-is-better metric chanceToBeatControl is 1 - P(rise) and the
    risk is the expected rise; lift, interval and frequentist numbers do not change."""
    control = BinomialArm(users=10_000, conversions=500)
    treatment = BinomialArm(users=10_000, conversions=560)
    for engine in ("bayesian", "frequentist"):
        plain = analyze_variation(control, treatment, engine=engine)
        inverse = analyze_variation(control, treatment, engine=engine, inverse=True)
        assert (inverse.percent_change, inverse.ci_low, inverse.ci_high, inverse.p_value) == (
            plain.percent_change,
            plain.ci_low,
            plain.ci_high,
            plain.p_value,
        )
    plain = analyze_variation(control, treatment, engine="bayesian")
    inverse = analyze_variation(control, treatment, engine="bayesian", inverse=True)
    assert plain.chance_to_beat_control > 0.95
    assert inverse.chance_to_beat_control == pytest.approx(1 - plain.chance_to_beat_control)
    mirrored = analyze_variation(
        control, BinomialArm(users=10_000, conversions=440), engine="bayesian"
    )
    assert inverse.risk == pytest.approx(mirrored.risk, rel=0.05)  # a rise costs as a fall does
    assert inverse.risk > plain.risk * 10


def _treatment(experiment: ScriptedExperiment, metric_id: str, index: int) -> Any:
    snapshot = experiment.snapshot_at(index)
    assert snapshot is not None
    metric = next(m for m in experiment.metrics if m.id == metric_id)
    return analyze_variation(
        snapshot.arm(metric_id, 0),
        snapshot.arm(metric_id, -1),
        engine=experiment.engine,
        inverse=metric.inverse,
    )


def _is_significant(analysis: Any, engine: StatsEngine, *, better: bool) -> bool:
    """Significant by GrowthBook's rule, better (chance to win > 0.95) or worse (< 0.05)."""
    if engine == "bayesian":
        chance = analysis.chance_to_beat_control
        return bool(chance > 0.95 if better else chance < 0.05)
    return bool(analysis.p_value < 0.05)


@pytest.mark.parametrize("engine", ["bayesian", "frequentist"])
def test_an_inverse_guardrail_regresses_by_rising(engine: StatsEngine) -> None:
    """A lower-is-better guardrail's regression is a significant rise, from the scripted
    refresh on, never before."""
    refunds = ScriptedMetric(id="met_refunds", name="Refunds", control_rate=0.03, inverse=True)
    scripted = experiment("exp_refunds", GOAL, refunds, engine=engine, guardrail_regresses_from=4)
    for index in range(12):
        analysis = _treatment(scripted, "met_refunds", index)
        regressed = _is_significant(analysis, engine, better=False) and analysis.percent_change > 0
        assert regressed == (index >= 4), index


@pytest.mark.parametrize("engine", ["bayesian", "frequentist"])
def test_an_inverse_goal_wins_by_falling(engine: StatsEngine) -> None:
    """A lower-is-better goal turns significantly better (a fall) exactly at significant_from."""
    errors = ScriptedMetric(id="met_errors", name="Errors", control_rate=0.2, inverse=True)
    scripted = experiment("exp_errors", errors, engine=engine, significant_from=3)
    for index in range(12):
        analysis = _treatment(scripted, "met_errors", index)
        won = _is_significant(analysis, engine, better=True) and analysis.percent_change < 0
        assert won == (index >= 3), index


def test_an_inverse_goal_too_rare_to_fall_significantly_is_refused() -> None:
    """A scripted fall needs conversions to lose: a rare inverse goal's win is a ScriptError
    naming significant_from; a rare inverse guardrail may still regress (it rises)."""
    rare = ScriptedMetric(id="met_rare", name="Rare", control_rate=0.001, inverse=True)
    with pytest.raises(ScriptError, match="too few") as caught:
        experiment("exp_rare", rare, significant_from=2)
    assert caught.value.field == "significant_from"
    assert experiment("exp_rare", GOAL, rare, guardrail_regresses_from=2).guardrails == (rare,)


@pytest.mark.anyio
async def test_served_results_of_an_inverse_guardrail_report_the_regression() -> None:
    """Through the API, the regressing inverse guardrail rises with chanceToBeatControl < 0.05."""
    refunds = ScriptedMetric(id="met_refunds", name="Refunds", control_rate=0.03, inverse=True)
    scenario = scenario_of(experiment("exp_refunds", GOAL, refunds, guardrail_regresses_from=1))
    async with connect(scenario, at_refresh=3) as client:
        body = await get_json(client, "/api/v1/experiments/exp_refunds/results")
        definition = await get_json(client, f"{METRICS}/met_refunds")
    [metric] = [
        m for m in body["result"]["results"][0]["metrics"] if m["metricId"] == "met_refunds"
    ]
    treatment = metric["variations"][1]["analyses"][0]
    assert treatment["percentChange"] > 0
    assert treatment["chanceToBeatControl"] < 0.05
    assert definition["metric"]["behavior"]["goal"] == "decrease"
