"""The GrowthBook client over recorded payload shapes: what the real API sends, parsed into the
domain values a user sees (research notes, platforms.md section 2.6)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from store import (
    Experiment,
    ExperimentNotFound,
    MetricRole,
    PayloadError,
    Snapshot,
    SourceRejected,
    Verdict,
)
from tests.helpers import ManualClock
from tests.watcher.conftest import API_KEY
from watcher import GrowthBookSource

pytestmark = pytest.mark.anyio

BASE = "http://gb.test"
Json = dict[str, Any]

CONTROL, TREATMENT = "var_control", "var_treatment"


def analysis(**fields: float) -> Json:
    """One analysis as the per-experiment endpoint serialises it: zeros for what is missing."""
    base = dict.fromkeys(
        (
            "numerator",
            "denominator",
            "mean",
            "stddev",
            "percentChange",
            "ciLow",
            "ciHigh",
            "pValue",
            "risk",
            "chanceToBeatControl",
        ),
        0.0,
    )
    return {"engine": "bayesian", **base, **fields}


# GrowthBook's significance-notification mock (experimentSignificance.mocks.json), two arms,
# bayesian, 50/50, as its REST serializer (`toSnapshotApiInterface`) would emit it.
SIGNIFICANCE_MOCK_ROW: Json = {
    "dimension": "All",
    "totalUsers": 4378,
    "checks": {"srm": 0.00015787},
    "metrics": [
        {
            "metricId": "met_dd4gxd4lyelugrk",
            "metricName": "Purchased",
            "variations": [
                {
                    "variationId": CONTROL,
                    "variationName": "Control",
                    "users": 2314,
                    "analyses": [analysis(numerator=1746, mean=0.754538, stddev=0.430361)],
                },
                {
                    "variationId": TREATMENT,
                    "variationName": "Treatment",
                    "users": 2064,
                    "analyses": [
                        analysis(
                            numerator=1370,
                            mean=0.66376,
                            stddev=0.472422,
                            percentChange=-0.120309,
                            ciLow=-0.154184,
                            ciHigh=-0.086434,
                            risk=0.120309,
                            chanceToBeatControl=1.69e-12,
                        )
                    ],
                },
            ],
        },
        {
            # The mock's second metric has zero variance: GrowthBook's engine reports
            # ZERO_NEGATIVE_VARIANCE and neutral numbers.
            "metricId": "met_zero_variance",
            "metricName": "Zero variance",
            "variations": [
                {"variationId": CONTROL, "users": 2314, "analyses": [analysis()]},
                {
                    "variationId": TREATMENT,
                    "users": 2064,
                    "analyses": [analysis(chanceToBeatControl=0.5)],
                },
            ],
        },
    ],
}

EXPERIMENT: Json = {
    "id": "exp_significance",
    "name": "Significance mock",
    "status": "running",
    "archived": False,
    "project": "",
    "tags": ["checkout"],
    "dateUpdated": "2026-11-20T10:00:00.000Z",
    "variations": [
        {"variationId": CONTROL, "key": "0", "name": "Control"},
        {"variationId": TREATMENT, "key": "1", "name": "Treatment"},
    ],
    "phases": [
        {
            "name": "Main",
            "trafficSplit": [
                {"variationId": CONTROL, "weight": 0.5},
                {"variationId": TREATMENT, "weight": 0.5},
            ],
        }
    ],
    "settings": {
        "statsEngine": "bayesian",
        "goals": [{"metricId": "met_dd4gxd4lyelugrk"}],
        "secondaryMetrics": [],
        "guardrails": [{"metricId": "met_zero_variance"}],
    },
}


def result(*rows: Json, experiment_id: str = "exp_significance") -> Json:
    return {
        "id": "snp_1",
        "dateUpdated": "2026-11-20T10:00:00.000Z",
        "experimentId": experiment_id,
        "phase": "0",
        "settings": EXPERIMENT["settings"],
        "results": list(rows),
    }


Routes = dict[str, Callable[[httpx.Request], httpx.Response]]


def recorded(routes: Routes) -> httpx.AsyncClient:
    """A client whose requests are answered with recorded payloads by path; any other path
    gets GrowthBook's 404 for an unknown endpoint."""

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1")
        route = routes.get(path)
        if route is None:
            return httpx.Response(404, json={"message": "Unknown API endpoint"})
        return route(request)

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


def fixed(body: Json, status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json=body)


def source(client: httpx.AsyncClient) -> GrowthBookSource:
    return GrowthBookSource(name="gb", base_url=BASE, api_key=API_KEY, client=client)


def experiment() -> Experiment:
    return Experiment(source="gb", experiment_id="exp_significance", name="", status="running")


async def test_the_significance_mock_parses_to_its_domain_values() -> None:
    """SRM p 0.000158 failing; treatment -12.0 % [-15.4 %, -8.6 %], a loss by GrowthBook's
    rule; the baseline's zeros are not taken as numbers; roles from the settings."""
    routes: Routes = {
        "/experiments/exp_significance/results": fixed(
            {"experiment": EXPERIMENT, "result": result(SIGNIFICANCE_MOCK_ROW)}
        )
    }
    async with recorded(routes) as client:
        current, snapshot = await source(client).fetch_results(experiment())
    assert snapshot is not None
    assert snapshot.srm_p_value == pytest.approx(0.000158, abs=5e-7)
    assert snapshot.total_users == 4378 and snapshot.engine == "bayesian"
    purchased = snapshot.metric("met_dd4gxd4lyelugrk")
    assert purchased is not None and purchased.role is MetricRole.GOAL
    control, treatment = purchased.variations
    assert control.platform_verdict is Verdict.BASELINE
    assert (control.relative_change, control.ci_low, control.chance_to_win) == (None, None, None)
    assert control.users == 2314 and control.numerator == 1746
    assert treatment.users == 2064 and treatment.mean == pytest.approx(0.66376)
    assert round(treatment.relative_change or 0, 3) == -0.120
    assert (round(treatment.ci_low or 0, 3), round(treatment.ci_high or 0, 3)) == (-0.154, -0.086)
    assert treatment.platform_verdict is Verdict.LOST
    assert treatment.p_value is None  # bayesian: GrowthBook's 0 p-value is not a p-value
    assert treatment.risk == pytest.approx(0.120309)
    zero = snapshot.metric("met_zero_variance")
    assert zero is not None and zero.role is MetricRole.GUARDRAIL
    assert zero.variations[1].platform_verdict is Verdict.INCONCLUSIVE
    assert current.tags == ("checkout",)
    assert [v.weight for v in current.variations] == [0.5, 0.5]
    assert current.upstream_version == "2026-11-20T10:00:00+00:00"


@pytest.mark.parametrize(
    ("change", "chance_to_beat_control", "verdict"),
    [(0.08, 0.001, Verdict.LOST), (-0.08, 0.999, Verdict.WON)],
    ids=["rise-is-a-loss", "fall-is-a-win"],
)
async def test_an_inverse_metric_turns_a_significant_rise_into_a_loss(
    change: float, chance_to_beat_control: float, verdict: Verdict
) -> None:
    """The direction comes from the metric definitions (`behavior.goal` / fact `inverse`).
    GrowthBook's Bayesian engine reports a lower-is-better metric's chance of *falling* as
    its chanceToBeatControl (gbstats inverts it), so a rise comes with a small chance."""
    row = copy.deepcopy(SIGNIFICANCE_MOCK_ROW)
    treatment = row["metrics"][0]["variations"][1]["analyses"][0]
    treatment.update(
        percentChange=change,
        ciLow=change - 0.05,
        ciHigh=change + 0.05,
        chanceToBeatControl=chance_to_beat_control,
    )
    metric_pages = 0

    def metrics(request: httpx.Request) -> httpx.Response:
        nonlocal metric_pages
        metric_pages += 1
        return httpx.Response(
            200,
            json={
                "metrics": [{"id": "met_dd4gxd4lyelugrk", "behavior": {"goal": "decrease"}}],
                "hasMore": False,
                "nextOffset": None,
            },
        )

    routes: Routes = {
        "/experiments/exp_significance/results": fixed(
            {"experiment": EXPERIMENT, "result": result(row)}
        ),
        "/metrics": metrics,
    }
    async with recorded(routes) as client:
        gb = source(client)
        for _ in range(3):
            _, snapshot = await gb.fetch_results(experiment())
    assert snapshot is not None
    purchased = snapshot.metric("met_dd4gxd4lyelugrk")
    assert purchased is not None and purchased.higher_is_better is False
    assert purchased.variations[1].platform_verdict is verdict
    assert metric_pages == 1  # definitions are read once, not on every poll


async def test_without_access_to_metric_definitions_metrics_count_as_higher_is_better() -> None:
    """A key that may not read /metrics still gets results (and a logged warning)."""
    routes: Routes = {
        "/experiments/exp_significance/results": fixed(
            {"experiment": EXPERIMENT, "result": result(SIGNIFICANCE_MOCK_ROW)}
        ),
        "/metrics": fixed({"message": "You do not have permission"}, status=403),
    }
    async with recorded(routes) as client:
        _, snapshot = await source(client).fetch_results(experiment())
    assert snapshot is not None and all(m.higher_is_better for m in snapshot.metrics)


async def test_dimension_rows_are_kept_as_slices_beside_the_overall_row() -> None:
    chrome = {**copy.deepcopy(SIGNIFICANCE_MOCK_ROW), "dimension": "Chrome", "totalUsers": 3000}
    firefox = {**copy.deepcopy(SIGNIFICANCE_MOCK_ROW), "dimension": "Firefox", "totalUsers": 1378}
    routes: Routes = {
        "/experiments/exp_significance/results": lambda request: httpx.Response(
            200,
            json={
                "experiment": EXPERIMENT,
                "result": result(chrome, firefox)
                if request.url.params.get("dimension")
                else result(SIGNIFICANCE_MOCK_ROW, chrome),
            },
        )
    }
    async with recorded(routes) as client:
        gb = source(client)
        _, overall = await gb.fetch_results(experiment())
        _, by_browser = await gb.fetch_results(experiment(), dimension="dim_browser")
    assert overall is not None and overall.total_users == 4378
    assert [s.dimension for s in overall.slices] == ["Chrome"]
    # Only dimension rows: no overall row is invented from one of them.
    assert by_browser is not None and by_browser.metrics == () and by_browser.total_users == 0
    assert [(s.dimension, s.total_users) for s in by_browser.slices] == [
        ("Chrome", 3000),
        ("Firefox", 1378),
    ]


async def test_the_portfolio_endpoint_reads_nulls_and_isolates_a_bad_item() -> None:
    """The bulk endpoint sends nulls (not zeros) for the baseline; one experiment's bad
    payload becomes its PayloadError while the others are read; pagination is followed."""
    bulk_row = copy.deepcopy(SIGNIFICANCE_MOCK_ROW)
    for metric in bulk_row["metrics"]:
        baseline = metric["variations"][0]["analyses"][0]
        for field in ("percentChange", "ciLow", "ciHigh", "pValue", "risk", "chanceToBeatControl"):
            baseline[field] = None
    broken = result(copy.deepcopy(bulk_row), experiment_id="exp_broken")
    broken["results"][0]["totalUsers"] = "many"

    def portfolio(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        if offset == 0:
            return httpx.Response(
                200,
                json={
                    "experimentResults": [result(bulk_row), broken],
                    "limit": 2,
                    "offset": 0,
                    "count": 2,
                    "total": 3,
                    "hasMore": True,
                    "nextOffset": 2,
                },
            )
        # The last experiment has no results: an empty page that still paginates correctly.
        return httpx.Response(
            200,
            json={
                "experimentResults": [],
                "limit": 2,
                "offset": 2,
                "count": 0,
                "total": 3,
                "hasMore": False,
                "nextOffset": None,
            },
        )

    found: dict[str, Snapshot | PayloadError] = {}
    pages_out, pages_in = anyio.create_memory_object_stream[dict[str, Snapshot | PayloadError]]()
    async with (
        recorded({"/experiments/results": portfolio}) as client,
        anyio.create_task_group() as tg,
        pages_in,
    ):
        tg.start_soon(source(client).read_portfolio, {"exp_significance": experiment()}, pages_out)
        async for page in pages_in:
            found.update(page)
    assert set(found) == {"exp_significance", "exp_broken"}
    good = found["exp_significance"]
    assert not isinstance(good, PayloadError)
    control, treatment = good.metrics[0].variations
    assert control.platform_verdict is Verdict.BASELINE and control.relative_change is None
    assert treatment.platform_verdict is Verdict.LOST
    bad = found["exp_broken"]
    assert isinstance(bad, PayloadError) and "results.0.totalUsers" in str(bad)


async def test_an_unknown_experiment_is_not_found_with_the_closest_ids(
    gb_client: httpx.AsyncClient, clock: ManualClock
) -> None:
    """GrowthBook answers 400 'Could not find experiment'; the user sees what was meant."""
    gb = GrowthBookSource(name="gb", base_url=BASE, api_key=API_KEY, client=gb_client)
    await gb.list_experiments()
    with pytest.raises(ExperimentNotFound) as caught:
        await gb.get_experiment("exp_checkout_redsign")
    assert caught.value.suggestions[0] == "exp_checkout_redesign"
    assert "not found in source 'gb'" in str(caught.value)
    assert "Did you mean: exp_checkout_redesign" in str(caught.value)


async def test_a_forbidden_key_names_the_missing_permission() -> None:
    routes: Routes = {
        "/experiments": fixed({"message": "You do not have permission to do that"}, status=403)
    }
    async with recorded(routes) as client:
        with pytest.raises(SourceRejected) as caught:
            await source(client).list_experiments()
    assert caught.value.status_code == 403
    assert "lacks a permission" in str(caught.value)
    assert "read access to experiments" in str(caught.value)
    assert API_KEY not in str(caught.value)


async def test_get_one_reports_the_enhanced_status_and_decision(
    gb_client: httpx.AsyncClient,
) -> None:
    """`enhancedStatus.detailedStatus` and `resultSummary` reach the domain experiment."""
    gb = GrowthBookSource(name="gb", base_url=BASE, api_key=API_KEY, client=gb_client)
    checkout = await gb.get_experiment("exp_checkout_redesign")
    assert checkout.detailed_status == "No data" and checkout.decision is None
    search = await gb.get_experiment("exp_search_ranking")
    assert search.status == "stopped" and search.detailed_status == "Won"
    assert search.decision is not None and search.decision.outcome == "won"
    assert search.decision.variation_id == "var_search_1"
