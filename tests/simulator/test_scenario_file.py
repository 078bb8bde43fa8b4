"""Scenario files: the TOML format, its errors, and the example served by both fake APIs."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from simulator import (
    EXAMPLE_SCENARIO_FILE,
    Scenario,
    ScenarioFileError,
    ScriptedExperiment,
    ScriptedMetric,
    StatsigExperiment,
    StatsigScenario,
    build_growthbook_app,
    build_statsig_app,
    load_scenario_file,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
REFRESH_SECONDS = 60.0
GROWTHBOOK_KEY = "secret_test_key"
STATSIG_KEY = "console-secretTestKey123"
EXAMPLE = load_scenario_file(EXAMPLE_SCENARIO_FILE)


def growthbook() -> Scenario:
    assert EXAMPLE.growthbook is not None
    return EXAMPLE.growthbook


def statsig() -> StatsigScenario:
    assert EXAMPLE.statsig is not None
    return EXAMPLE.statsig


def at_refresh(index: int) -> datetime:
    return START + timedelta(seconds=index * REFRESH_SECONDS + 30.0)


@asynccontextmanager
async def serve(app: Starlette, headers: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://fake.test", headers=headers
    ) as client:
        yield client


async def growthbook_at(index: int, path: str, **params: Any) -> httpx.Response:
    """One GrowthBook API request at refresh `index` of the example."""
    now = at_refresh(index)
    app = build_growthbook_app(growthbook(), api_key=GROWTHBOOK_KEY, clock=lambda: now)
    async with serve(app, {"Authorization": f"Bearer {GROWTHBOOK_KEY}"}) as client:
        return await client.get(f"/api/v1{path}", params=params)


async def growthbook_json(index: int, path: str, **params: Any) -> Any:
    response = await growthbook_at(index, path, **params)
    assert response.status_code == 200, response.text
    return response.json()


async def statsig_json(index: int, path: str, **params: Any) -> Any:
    """One Statsig Console API request at refresh `index` of the example."""
    now = at_refresh(index)
    app = build_statsig_app(statsig(), api_key=STATSIG_KEY, clock=lambda: now)
    async with serve(app, {"STATSIG-API-KEY": STATSIG_KEY}) as client:
        response = await client.get(f"/console/v1{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def analysis(body: dict[str, Any], metric_id: str) -> dict[str, Any]:
    """The last variation's analysis of `metric_id` in a results body."""
    metric = next(m for m in body["result"]["results"][0]["metrics"] if m["metricId"] == metric_id)
    found: dict[str, Any] = metric["variations"][-1]["analyses"][0]
    return found


def write(tmp_path: Path, text: str, name: str = "demo.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- the example file -------------------------------------------------------------------------


def test_the_example_scripts_both_platforms_on_one_timeline() -> None:
    """The packaged example loads into a GrowthBook and a Statsig scenario sharing the timeline."""
    assert EXAMPLE_SCENARIO_FILE.is_file()
    assert EXAMPLE.path == EXAMPLE_SCENARIO_FILE
    assert (growthbook().start, growthbook().refresh_seconds) == (START, REFRESH_SECONDS)
    assert (statsig().start, statsig().refresh_seconds) == (START, REFRESH_SECONDS)
    assert len(growthbook().experiments) == 8
    assert [e.id for e in statsig().experiments][:3] == [
        "checkout_redesign",
        "pricing_page",
        "search_ranking",
    ]


def test_the_example_exercises_every_field_of_both_scripts() -> None:
    """Every ScriptedExperiment and StatsigExperiment field appears in some example experiment."""
    document = tomllib.loads(EXAMPLE_SCENARIO_FILE.read_text(encoding="utf-8"))
    metric_fields = {"goals", "secondary_metrics", "guardrails"}
    used = {key for e in document["growthbook"]["experiments"] for key in e}
    expected = {f.name for f in dataclasses.fields(ScriptedExperiment)} - metric_fields
    assert expected | {"metrics"} == used
    metric_keys = {
        k for e in document["growthbook"]["experiments"] for m in e["metrics"] for k in m
    }
    assert {f.name for f in dataclasses.fields(ScriptedMetric)} | {"role"} == metric_keys
    used = {key for e in document["statsig"]["experiments"] for key in e}
    statsig_metrics = {"primary_metrics", "secondary_metrics", "other_metrics"}
    expected = {f.name for f in dataclasses.fields(StatsigExperiment)} - statsig_metrics
    assert expected | {"metrics"} == used


@pytest.mark.anyio
async def test_the_winner_turns_significant_at_refresh_3() -> None:
    """exp_checkout_redesign: no results at 0, chanceToBeatControl above 0.95 from refresh 3."""
    path = "/experiments/exp_checkout_redesign/results"
    assert (await growthbook_at(0, path)).status_code == 400
    chances = [
        analysis(await growthbook_json(i, path), "met_conversion")["chanceToBeatControl"]
        for i in (1, 2, 3, 8)
    ]
    assert [c > 0.95 for c in chances] == [False, False, True, True]


@pytest.mark.anyio
async def test_the_new_metric_appears_at_refresh_5() -> None:
    """met_repeat_purchase is absent from settings and results until refresh 5."""
    path = "/experiments/exp_checkout_redesign/results"
    before, after = await growthbook_json(4, path), await growthbook_json(5, path)
    for body, expected in (
        (before, ["met_conversion"]),
        (after, ["met_conversion", "met_repeat_purchase"]),
    ):
        metrics = [m["metricId"] for m in body["result"]["results"][0]["metrics"]]
        settings = body["experiment"]["settings"]
        assert metrics == expected
        assert [m["metricId"] for m in settings["goals"] + settings["secondaryMetrics"]] == expected


@pytest.mark.anyio
async def test_the_sample_ratio_mismatch_appears_at_refresh_4() -> None:
    """exp_pricing_page: checks.srm healthy at 3, below 0.001 (and Unhealthy) from 4."""
    path = "/experiments/exp_pricing_page"
    srm = [
        (await growthbook_json(i, f"{path}/results"))["result"]["results"][0]["checks"]["srm"]
        for i in (3, 4)
    ]
    assert srm[0] > 0.05 and srm[1] < 0.001
    single = await growthbook_json(4, path)
    assert single["experiment"]["enhancedStatus"] == {
        "status": "Running",
        "detailedStatus": "Unhealthy",
    }


@pytest.mark.anyio
async def test_the_guardrail_regresses_at_refresh_5() -> None:
    """exp_search_ranking: Session retention's chance to beat control drops under 0.05 at 5."""
    path = "/experiments/exp_search_ranking/results"
    before = analysis(await growthbook_json(4, path), "met_session_retention")
    after = analysis(await growthbook_json(5, path), "met_session_retention")
    assert before["chanceToBeatControl"] > 0.05
    assert after["chanceToBeatControl"] < 0.05
    assert after["percentChange"] < 0
    results = await growthbook_json(5, path)
    assert results["result"]["settings"]["datasourceId"] == "ds_events"


@pytest.mark.anyio
async def test_a_metric_marked_inverse_is_served_as_lower_is_better() -> None:
    """`inverse = true` makes met_zero_results a "decrease" metric in GET /metrics/{id};
    metrics without the key are "increase"."""
    zero_results = await growthbook_json(0, "/metrics/met_zero_results")
    retention = await growthbook_json(0, "/metrics/met_session_retention")
    assert zero_results["metric"]["behavior"]["goal"] == "decrease"
    assert retention["metric"]["behavior"]["goal"] == "increase"


@pytest.mark.anyio
async def test_the_decision_stops_at_refresh_6_and_the_archive_follows_at_9() -> None:
    """exp_free_shipping: running, then stopped as won with frozen results, then archived."""
    path = "/experiments/exp_free_shipping"
    running, stopped, archived = [await growthbook_json(i, path) for i in (5, 6, 9)]
    assert running["experiment"]["status"] == "running"
    assert "resultSummary" not in running["experiment"]
    assert stopped["experiment"]["status"] == "stopped"
    assert stopped["experiment"]["resultSummary"]["status"] == "won"
    assert stopped["experiment"]["enhancedStatus"] == {"status": "Stopped", "detailedStatus": "Won"}
    assert stopped["experiment"]["archived"] is False
    assert archived["experiment"]["archived"] is True
    assert archived["experiment"]["status"] == "stopped"
    assert archived["experiment"]["enhancedStatus"] == {"status": "Archived"}
    assert archived["experiment"]["dateUpdated"] == "2026-01-01T00:09:00.000Z"
    frozen = [await growthbook_json(i, f"{path}/results") for i in (6, 12)]
    assert frozen[0]["result"] == frozen[1]["result"]


@pytest.mark.anyio
async def test_the_vanishing_effect_is_gone_at_refresh_7() -> None:
    """exp_homepage_banner: significant at 2..6, inconclusive again from 7."""
    path = "/experiments/exp_homepage_banner/results"
    chances = [
        analysis(await growthbook_json(i, path), "met_click_through")["chanceToBeatControl"]
        for i in (1, 2, 6, 7, 10)
    ]
    assert [c > 0.95 for c in chances] == [False, True, True, False, False]


@pytest.mark.anyio
async def test_the_phase_restarts_at_refresh_6() -> None:
    """exp_recommendations: a second phase with a 20/80 split, phase "1", counts from zero."""
    path = "/experiments/exp_recommendations/results"
    before, after = await growthbook_json(5, path), await growthbook_json(6, path)
    assert (before["result"]["phase"], after["result"]["phase"]) == ("0", "1")
    assert len(before["experiment"]["phases"]) == 1
    phases = after["experiment"]["phases"]
    assert [p["name"] for p in phases] == ["Main", "Phase 2"]
    assert [s["weight"] for s in phases[1]["trafficSplit"]] == [0.2, 0.8]
    assert after["result"]["results"][0]["totalUsers"] == 4000
    assert before["result"]["results"][0]["totalUsers"] == 6 * 4000
    assert after["result"]["results"][0]["checks"]["srm"] > 0.05


@pytest.mark.anyio
async def test_the_late_start_and_the_no_data_period_of_the_onboarding_tour() -> None:
    """Draft until 3, no data at 3, results at 4..6, "No results found" at 7 and 8, back at 9."""
    path = "/experiments/exp_onboarding_tour"
    statuses = [(await growthbook_json(i, path))["experiment"]["enhancedStatus"] for i in (2, 3, 7)]
    assert statuses == [
        {"status": "Draft"},
        {"status": "Running", "detailedStatus": "No data"},
        {"status": "Running", "detailedStatus": "No data"},
    ]
    codes = [(await growthbook_at(i, f"{path}/results")).status_code for i in range(2, 11)]
    assert codes == [400, 400, 200, 200, 200, 400, 400, 200, 200]
    portfolio = await growthbook_json(7, "/experiments/results", limit=100)
    assert "exp_onboarding_tour" not in [r["experimentId"] for r in portfolio["experimentResults"]]
    assert portfolio["total"] == 8


@pytest.mark.anyio
async def test_the_draft_never_has_results() -> None:
    """exp_dark_mode stays a draft without results throughout."""
    for index in (0, 12):
        single = await growthbook_json(index, "/experiments/exp_dark_mode")
        assert single["experiment"]["status"] == "draft"
        response = await growthbook_at(index, "/experiments/exp_dark_mode/results")
        assert response.status_code == 400


@pytest.mark.anyio
async def test_the_statsig_experiments_follow_their_scripts() -> None:
    """Decision at 4, exposure imbalance WARNING at 5 and FAILED at 7, start at 2, abandon at 8."""
    search = [(await statsig_json(i, "/experiments/search_ranking"))["data"] for i in (3, 4)]
    assert [d["status"] for d in search] == ["active", "decision_made"]
    assert search[1]["launchedGroupID"] == search[1]["groups"][1]["id"]
    checkout = [
        (await statsig_json(i, "/experiments/checkout_redesign"))["data"]["healthCheckStatus"]
        for i in (4, 5, 7)
    ]
    assert checkout == ["PASSED", "WARNING", "FAILED"]
    banner = [
        (await statsig_json(i, "/experiments/homepage_banner"))["data"]["status"] for i in (1, 2, 8)
    ]
    assert banner == ["setup", "active", "abandoned"]
    onboarding = await statsig_json(20, "/experiments/onboarding_tour")
    assert onboarding["data"]["status"] == "setup"
    pricing = await statsig_json(0, "/experiments/pricing_page")
    assert pricing["data"]["groups"][2]["id"] == "7hTq2mXv9LpQeRw3ZbNc1K"


# -- the format -------------------------------------------------------------------------------

MINIMAL = """
[timeline]
start = 2026-01-01T00:00:00Z

[[growthbook.experiments]]
id = "exp_a"
name = "A"
variations = [{ id = "var_a0", name = "Control" }, { id = "var_a1", name = "Treatment" }]
weights = [0.5, 0.5]
metrics = [{ id = "met_a", name = "Goal", role = "goal", control_rate = 0.1 }]
"""


def test_defaults_fill_what_a_file_leaves_out(tmp_path: Path) -> None:
    """refresh_seconds defaults to 60, tracking_key to the id, variation keys to positions."""
    loaded = load_scenario_file(str(write(tmp_path, MINIMAL)))
    assert loaded.statsig is None
    assert loaded.growthbook is not None
    assert loaded.growthbook.refresh_seconds == 60.0
    (experiment,) = loaded.growthbook.experiments
    assert experiment.tracking_key == "exp_a"
    assert [v.key for v in experiment.variations] == ["0", "1"]
    assert experiment.goal_metric.id == "met_a"


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (
            ("weights = [0.5, 0.5]", "weights = [0.5, 0.5]\nsignificant_form = 3"),
            "growthbook.experiments[0].significant_form",
            "did you mean 'significant_from'?",
        ),
        (
            ("[timeline]", "[timelime]\nstart = 2026-01-01T00:00:00Z\n[timeline]"),
            "timelime",
            "did you mean 'timeline'?",
        ),
        (
            ('role = "goal"', 'role = "goal", added = 3'),
            "growthbook.experiments[0].metrics[0].added",
            "did you mean 'added_at'?",
        ),
        (
            ("weights = [0.5, 0.5]", "weights = [0.5, 0.3, 0.2]"),
            "growthbook.experiments[0].weights",
            "3 weights for 2 variations",
        ),
        (
            ("weights = [0.5, 0.5]", 'weights = "50/50"'),
            "growthbook.experiments[0].weights",
            "expected an array of numbers, got a string ('50/50')",
        ),
        (
            ("weights = [0.5, 0.5]", 'weights = [0.5, "half"]'),
            "growthbook.experiments[0].weights[1]",
            "expected a number",
        ),
        (
            ("weights = [0.5, 0.5]", "weights = [0.5, 0.5]\nsrm_from = -2"),
            "growthbook.experiments[0].srm_from",
            "expected a refresh index",
        ),
        (
            ("weights = [0.5, 0.5]", "weights = [0.5, 0.5]\nstops_at = true"),
            "growthbook.experiments[0].stops_at",
            "expected an integer, got a boolean",
        ),
        (
            ("weights = [0.5, 0.5]", 'weights = [0.5, 0.5]\nengine = "bayes"'),
            "growthbook.experiments[0].engine",
            "did you mean 'bayesian'?",
        ),
        (
            ("weights = [0.5, 0.5]", "weights = [0.5, 0.5]\nno_data_between = [4]"),
            "growthbook.experiments[0].no_data_between",
            "expected two refresh indexes",
        ),
        (
            ("control_rate = 0.1", "control_rate = 1.5"),
            "growthbook.experiments[0].metrics",
            "control_rate strictly between 0 and 1",
        ),
        (
            ('role = "goal"', 'role = "primary"'),
            "growthbook.experiments[0].metrics[0].role",
            "expected one of goal, secondary, guardrail",
        ),
        (
            ('role = "goal"', 'role = "secondary"'),
            "growthbook.experiments[0].metrics",
            "at least one goal metric",
        ),
        (
            ('name = "A"\n', ""),
            "growthbook.experiments[0]",
            "missing required key 'name'",
        ),
        (
            ("start = 2026-01-01T00:00:00Z", "start = 2026-01-01T00:00:00"),
            "timeline.start",
            "with a UTC offset",
        ),
        (
            ("start = 2026-01-01T00:00:00Z", "start = 2026-01-01T00:00:00Z\nrefresh_seconds = 0"),
            "timeline.refresh_seconds",
            "positive number of seconds",
        ),
        (
            ('variations = [{ id = "var_a0"', 'variations = [{ key = 0, id = "var_a0"'),
            "growthbook.experiments[0].variations[0].key",
            "expected a string",
        ),
        (
            ("weights = [0.5, 0.5]", 'weights = [0.5, 0.5]\nis_draft = "yes"'),
            "growthbook.experiments[0].is_draft",
            "expected true or false, got a string ('yes')",
        ),
        (
            ("weights = [0.5, 0.5]", 'weights = [0.5, 0.5]\ntags = "checkout"'),
            "growthbook.experiments[0].tags",
            "expected an array of strings",
        ),
        (
            ("variations = [{", "variations = [7, {"),
            "growthbook.experiments[0].variations[0]",
            "expected a table, got an integer (7)",
        ),
    ],
)
def test_mistakes_name_the_file_and_the_dotted_key(
    tmp_path: Path, change: tuple[str, str], key: str, problem: str
) -> None:
    """Every mistake raises ScenarioFileError naming the file, the key at fault and the problem."""
    old, new = change
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(ScenarioFileError) as caught:
        load_scenario_file(path)
    error = caught.value
    assert (error.path, error.key) == (path, key)
    assert problem in error.problem
    assert str(error).startswith(f"{path}: {key}: ")
    assert isinstance(error, ValueError)


def test_a_repeated_experiment_id_names_the_experiment_list(tmp_path: Path) -> None:
    """Two experiments with one id are a mistake of growthbook.experiments."""
    experiment = MINIMAL.split("[[growthbook.experiments]]")[1]
    text = MINIMAL + "\n[[growthbook.experiments]]" + experiment
    with pytest.raises(ScenarioFileError, match=r"growthbook\.experiments: .*repeated: exp_a"):
        load_scenario_file(write(tmp_path, text))


def test_a_repeated_statsig_experiment_id_names_the_experiment_list(tmp_path: Path) -> None:
    """Two Statsig experiments with one id are a mistake of statsig.experiments."""
    experiment = STATSIG.split("[[statsig.experiments]]")[1]
    text = STATSIG + "\n[[statsig.experiments]]" + experiment
    with pytest.raises(ScenarioFileError, match=r"statsig\.experiments: .*repeated: exp_s"):
        load_scenario_file(write(tmp_path, text))


def test_sections_of_the_wrong_shape_are_refused(tmp_path: Path) -> None:
    """`experiments` must be an array of tables and a platform section a table."""
    timeline = "[timeline]\nstart = 2026-01-01T00:00:00Z\n"
    path = write(tmp_path, timeline + "[growthbook]\nexperiments = 1\n")
    with pytest.raises(ScenarioFileError, match=r"growthbook\.experiments: expected an array"):
        load_scenario_file(path)
    path = write(tmp_path, 'statsig = "all"\n' + timeline)
    with pytest.raises(ScenarioFileError, match="statsig: expected a table, got a string"):
        load_scenario_file(path)


def test_a_file_without_any_platform_is_refused(tmp_path: Path) -> None:
    """A timeline alone scripts nothing."""
    path = write(tmp_path, "[timeline]\nstart = 2026-01-01T00:00:00Z\n")
    with pytest.raises(ScenarioFileError, match=r"\[growthbook\] or \[statsig\]"):
        load_scenario_file(path)


def test_invalid_toml_is_reported_with_the_file_name(tmp_path: Path) -> None:
    """A syntax error is a ScenarioFileError naming the file, chained to tomllib's error."""
    path = write(tmp_path, "[timeline\nstart = 1\n")
    with pytest.raises(ScenarioFileError, match="not valid TOML") as caught:
        load_scenario_file(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert isinstance(caught.value.__cause__, tomllib.TOMLDecodeError)


STATSIG = """
[timeline]
start = 2026-01-01T00:00:00Z

[[statsig.experiments]]
id = "exp_s"
name = "Statsig experiment"
groups = [{ name = "Control", size = 50.0 }, { name = "Test", size = 50.0 }]
metrics = [{ name = "conversion", role = "primary", control_rate = 0.1 }]
"""


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (
            ('id = "exp_s"', 'id = "exp_s"\nstarted_at = "later"'),
            "statsig.experiments[0].started_at",
            'expected a refresh index or "never"',
        ),
        (
            ('id = "exp_s"', 'id = "exp_s"\nlaunched_group_index = 2'),
            "statsig.experiments[0].launched_group_index",
            "one of the 2 groups",
        ),
        (
            ('id = "exp_s"', 'id = "exp_s"\ndefault_confidence_interval = 85'),
            "statsig.experiments[0].default_confidence_interval",
            "expected one of 80, 90, 95, 98, 99",
        ),
        (
            ('name = "Statsig experiment"', 'name = "Statsig experiment!"'),
            "statsig.experiments[0]",
            "does not fit Statsig's name rule",
        ),
        (
            ('size = 50.0 }, { name = "Test"', 'size = 50.0, weight = 1 }, { name = "Test"'),
            "statsig.experiments[0].groups[0].weight",
            "unknown key",
        ),
        (
            ("groups = [", "group = ["),
            "statsig.experiments[0].group",
            "did you mean 'groups'?",
        ),
    ],
)
def test_statsig_mistakes_name_the_dotted_key(
    tmp_path: Path, change: tuple[str, str], key: str, problem: str
) -> None:
    """Statsig experiments are checked like GrowthBook's, down to their groups and metrics."""
    old, new = change
    assert old in STATSIG
    with pytest.raises(ScenarioFileError) as caught:
        load_scenario_file(write(tmp_path, STATSIG.replace(old, new, 1)))
    assert caught.value.key == key
    assert problem in caught.value.problem


def test_statsig_defaults_generate_stable_group_ids(tmp_path: Path) -> None:
    """Groups without an id get a stable generated one; "never" keeps an experiment in setup."""
    text = STATSIG.replace('id = "exp_s"', 'id = "exp_s"\nstarted_at = "never"', 1)
    first = load_scenario_file(write(tmp_path, text, "first.toml")).statsig
    second = load_scenario_file(write(tmp_path, text, "second.toml")).statsig
    assert first is not None and second is not None
    (experiment,) = first.experiments
    assert [g.id for g in experiment.groups] == [g.id for g in second.experiments[0].groups]
    assert len({g.id for g in experiment.groups}) == 2
    assert experiment.started_at is None
    assert experiment.status_at(10) == "setup"
