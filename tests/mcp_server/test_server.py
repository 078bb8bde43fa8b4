"""expwatch's MCP server as a client sees it: every resource, tool and prompt, answered from
a store the real watcher filled by polling the simulated GrowthBook through nine refreshes
(the platform calls conversion at refresh 3, our SRM test fires at 6, our verdict at 9)."""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from mcp import types
from mcp.shared.exceptions import MCPError
from pydantic import SecretStr
from sqlalchemy import text

from expwatch import open_app
from expwatch.app import App
from expwatch.cli_common import setup_logging
from expwatch.config import GrowthBookSourceSettings, McpSettings, Settings, StoreSettings
from simulator import Scenario, build_growthbook_app, default_scenario
from store import NewDelivery
from tests.charts.checks import check_readable_png, check_vega_lite
from tests.helpers import ManualClock
from tests.mcp_server.clients import UpdateInbox, handshake_http_client, legacy_subscribe
from tests.watcher.conftest import REFRESH_SECONDS, at_refresh

pytestmark = pytest.mark.anyio

KEY = "secret_mcp_server_key_314"
CHECKOUT = "exp_checkout_redesign"


@dataclass
class Rig:
    app: App
    clock: ManualClock
    scenario: Scenario

    async def poll_through(self, last: int, first: int = 1) -> None:
        for refresh in range(first, last + 1):
            at_refresh(self.clock, self.scenario, refresh)
            await self.app.supervisor.poll_once()


@asynccontextmanager
async def open_rig(tmp_path: Path, *, read_only: bool = False) -> AsyncIterator[Rig]:
    clock = ManualClock()
    scenario = default_scenario(start=clock.now(), refresh_seconds=REFRESH_SECONDS)
    simulator = build_growthbook_app(scenario, api_key=KEY, clock=clock.now)
    settings = Settings(
        store=StoreSettings(path=tmp_path / "mcp.db"),
        sources={
            "gb": GrowthBookSourceSettings(
                base_url="http://gb.test", api_key=SecretStr(KEY), ui_url="https://gb.example"
            )
        },
        mcp=McpSettings(port=0, read_only=read_only),
    )
    async with open_app(settings, clock=clock, transport=httpx.ASGITransport(app=simulator)) as app:
        yield Rig(app, clock, scenario)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with open_rig(tmp_path) as rig:
        await rig.poll_through(9)
        yield rig


def text_of(contents: list[Any]) -> str:
    [content] = contents
    assert isinstance(content, types.TextResourceContents)
    assert KEY not in content.text
    return content.text


async def read_json(client: Client, uri: str) -> Any:
    return json.loads(text_of(await client.read_resource(uri)))


async def call(client: Client, name: str, **arguments: Any) -> Any:
    result = await client.call_tool(name, arguments)
    [content] = result.content
    assert isinstance(content, types.TextContent)
    assert KEY not in content.text
    try:
        return json.loads(content.text)
    except json.JSONDecodeError:
        return content.text


async def tool_error(client: Client, name: str, **arguments: Any) -> str:
    with pytest.raises(ToolError) as caught:
        await client.call_tool(name, arguments)
    assert KEY not in str(caught.value)
    return str(caught.value)


async def test_lists_every_resource_template_tool_and_prompt(rig: Rig) -> None:
    async with Client(rig.app.mcp) as client:
        resources = sorted(r.uri for r in (await client.list_resources()))
        templates = sorted(t.uri_template for t in await client.list_resource_templates())
        tools = {t.name: t for t in await client.list_tools()}
        prompts = sorted(p.name for p in await client.list_prompts())
    assert resources == ["experiments://index", "watcher://status"]
    assert templates == [
        "experiments://{experiment_id}/health",
        "experiments://{experiment_id}/history",
        "experiments://{experiment_id}/metrics/{metric}",
        "experiments://{experiment_id}/results",
    ]
    assert set(tools) == {
        "get_experiment_results",
        "get_metric_details",
        "export_pulse_report",
        "get_experiments",
        "get_experiment",
        "get_history",
        "when_significant",
        "recent_events",
        "watcher_status",
        "refresh_experiment",
        "watch_experiment",
        "unwatch_experiment",
        "summarize_experiment",
    }
    assert prompts == ["experiment_analysis", "experiment_review"]
    for name, tool in tools.items():
        assert tool.description, name
        changes_state = name in {"refresh_experiment", "watch_experiment", "unwatch_experiment"}
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is not changes_state, name
    params = tools["get_experiments"].input_schema["properties"]
    assert params["mode"]["enum"] == ["metadata", "summary", "full"]


async def test_the_index_shows_status_verdicts_and_warnings(rig: Rig) -> None:
    async with Client(rig.app.mcp) as client:
        index = await read_json(client, "experiments://index")
    by_id = {e["id"]: e for e in index["experiments"]}
    checkout = by_id[CHECKOUT]
    assert checkout["status"] == "running" and checkout["watched"] is True
    assert checkout["snapshots"] == 9
    conversion = [s for s in checkout["significant"] if s["metric"] == "met_conversion"]
    assert conversion == [
        {
            "metric": "met_conversion",
            "variation": conversion[0]["variation"],
            "ours": "won",
            "platform": "won",
            "relative_change": conversion[0]["relative_change"],
        }
    ]
    assert conversion[0]["relative_change"] > 0
    assert [w for w in checkout["warnings"] if w.startswith("sample-ratio mismatch")]
    assert by_id["exp_pricing_page"]["warnings"] == []
    assert checkout["url"].startswith("http")


async def test_results_health_history_and_metric_resources(rig: Rig) -> None:
    async with Client(rig.app.mcp) as client:
        results = await read_json(client, f"experiments://{CHECKOUT}/results")
        health = await read_json(client, f"experiments://{CHECKOUT}/health")
        history = await read_json(client, f"experiments://{CHECKOUT}/history")
        metric = await read_json(client, f"experiments://{CHECKOUT}/metrics/met_conversion")
    assert results["has_results"] and results["snapshot"]["id"]
    assert {m["id"] for m in results["metrics"]} == {
        "met_conversion",
        "met_add_to_cart",
        "met_refund",
    }
    assert health["healthy"] is False
    assert health["srm"]["ours"]["mismatch"] is True
    assert health["srm"]["ours"]["p_value"] <= health["srm"]["ours"]["alpha"]
    assert health["freshness"]["stale"] is False
    assert health["source"]["name"] == "gb"
    assert health["source"]["breaker"]["state"] == "closed"
    kinds = [e["kind"] for e in history["events"]]
    assert "platform_verdict_changed" in kinds and "srm_detected" in kinds
    assert [e["after"] for e in history["significance_changes"]][-1] == "won"
    assert [e["kind"] for e in history["srm_changes"]] == ["srm_detected"]
    assert history["snapshots"]["count"] == 9
    assert metric["metric"]["id"] == "met_conversion"
    [comparison] = metric["comparisons"]
    assert comparison["our_verdict"] == "won" and comparison["platform_verdict"] == "won"
    [trajectory] = metric["history"].values()
    assert len(trajectory) == 9
    assert trajectory[0]["our_verdict"] != "won" and trajectory[-1]["our_verdict"] == "won"


@pytest.mark.usefixtures("restore_logging")
async def test_an_answered_error_is_logged_in_one_line_of_our_format(rig: Rig) -> None:
    """Under the CLI's logging, FastMCP's log of an error it answers (an unknown experiment)
    comes through our handler as one line, without the rich traceback FastMCP draws itself."""
    setup_logging("INFO", "text")
    [handler] = logging.getLogger().handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out := io.StringIO())
    async with Client(rig.app.mcp) as client:
        with pytest.raises(MCPError):
            await client.read_resource("experiments://exp_nope/health")
    lines = out.getvalue().splitlines()
    assert [line for line in lines if "Error reading resource" in line], lines
    assert not [line for line in lines if "Traceback" in line or "│" in line], lines
    assert not logging.getLogger("fastmcp").handlers


async def test_unknown_ids_and_metrics_get_errors_that_say_what_exists(rig: Rig) -> None:
    async with Client(rig.app.mcp) as client:
        with pytest.raises(MCPError, match="Did you mean: exp_checkout_redesign"):
            await client.read_resource("experiments://exp_checkout_redesing/health")
        text = await tool_error(
            client, "get_metric_details", experiment_id=CHECKOUT, metric_name="revenue"
        )
        assert "has no metric 'revenue'" in text
        assert "met_conversion (Conversion)" in text and "met_refund" in text
        text = await tool_error(client, "when_significant", experiment_id="exp_nope_nope")
        assert "Unknown experiment 'exp_nope_nope'" in text
        assert "Known experiments:" in text and CHECKOUT in text
        text = await tool_error(client, "recent_events", kinds=["srm"])
        assert "unknown event kind(s) 'srm'" in text and "srm_detected" in text
        text = await tool_error(client, "recent_events", since="last tuesday")
        assert "ISO 8601" in text
        # A metric addressed by its name works too (case-insensitive).
        by_name = await call(
            client, "get_metric_details", experiment_id=CHECKOUT, metric_name="conversion"
        )
        assert by_name["metric"]["id"] == "met_conversion"


async def test_missing_results_say_why(tmp_path: Path) -> None:
    """The draft experiment has no data; a failing source says it is failing."""
    async with open_rig(tmp_path) as rig:
        await rig.poll_through(1)
        await rig.app.store.state.watch("gb", "exp_onboarding_tour")
        await rig.poll_through(2, first=2)
        async with Client(rig.app.mcp) as client:
            results = await call(
                client, "get_experiment_results", experiment_id="exp_onboarding_tour"
            )
            assert results["has_results"] is False
            assert "the platform has no data for it" in results["message"]
            text = await tool_error(
                client,
                "get_metric_details",
                experiment_id="exp_onboarding_tour",
                metric_name="met_activation",
            )
            assert "No results for 'exp_onboarding_tour' (gb) yet" in text


async def test_get_experiments_pages_filters_and_modes(rig: Rig) -> None:
    async with Client(rig.app.mcp) as client:
        first = await call(client, "get_experiments", limit=1, mode="metadata")
        second = await call(
            client, "get_experiments", limit=1, offset=first["pagination"]["next_offset"]
        )
        running = await call(client, "get_experiments", status="running", mode="full")
        nothing = await call(client, "get_experiments", project="prj_nope")
        one = await call(client, "get_experiment", experiment_id=CHECKOUT, mode="summary")
    total = first["pagination"]["total"]
    assert total >= 2 and first["pagination"]["has_more"] is True
    assert first["experiments"][0]["id"] != second["experiments"][0]["id"]
    assert "significant" not in first["experiments"][0]
    assert {e["status"] for e in running["experiments"]} == {"running"}
    assert all("results" in e for e in running["experiments"])
    assert nothing["experiments"] == [] and "prj_checkout" in nothing["message"]
    assert one["url"].startswith("http") and one["significant"]


async def test_when_significant_and_history_answer_since_when(rig: Rig) -> None:
    async with Client(rig.app.mcp) as client:
        answer = await call(
            client, "when_significant", experiment_id=CHECKOUT, metric="met_conversion"
        )
        history = await call(
            client,
            "get_history",
            experiment_id=CHECKOUT,
            metric="Conversion",
            at=rig.scenario.start.isoformat(),
        )
    [conversion] = answer["metrics"]
    refresh_9 = rig.scenario.start.timestamp() + 9 * REFRESH_SECONDS
    refresh_3 = rig.scenario.start.timestamp() + 3 * REFRESH_SECONDS
    ours = datetime.fromisoformat(conversion["significant_since"]).timestamp()
    platform = datetime.fromisoformat(conversion["platform_significant_since"]).timestamp()
    assert refresh_9 <= ours < refresh_9 + REFRESH_SECONDS
    assert refresh_3 <= platform < refresh_3 + REFRESH_SECONDS
    assert "became significant (won)" in conversion["answer"]
    assert "not valid under repeated looks" in conversion["answer"]
    [points] = history["trajectory"].values()
    assert len(points) == 9
    assert history["snapshot_at"] is None  # nothing was known at the scenario's start


async def test_recent_events_filters_by_kind_and_pages(rig: Rig) -> None:
    async with Client(rig.app.mcp) as client:
        everything = await call(client, "recent_events", since="7d", limit=1000)
        srm = await call(client, "recent_events", since="7d", kinds=["srm_detected"])
        page = await call(client, "recent_events", since="7d", limit=1)
        rest = await call(client, "recent_events", since="7d", after_id=page["next_after_id"])
    assert [e["kind"] for e in srm["events"]] == ["srm_detected"]
    assert page["has_more"] is True and page["count"] == 1
    assert [e["id"] for e in page["events"] + rest["events"]] == [
        e["id"] for e in everything["events"]
    ]


async def call_with_images(
    client: Client, name: str, **arguments: Any
) -> tuple[Any, list[types.ImageContent]]:
    """A tool's text answer (parsed when it is JSON) and the images after it."""
    result = await client.call_tool(name, arguments)
    text, *images = result.content
    assert isinstance(text, types.TextContent)
    assert KEY not in text.text
    assert all(isinstance(i, types.ImageContent) for i in images)
    try:
        return json.loads(text.text), images  # type: ignore[return-value]
    except json.JSONDecodeError:
        return text.text, images  # type: ignore[return-value]


async def test_pulse_report_in_three_formats_with_charts_as_images_and_vega_lite(rig: Rig) -> None:
    """JSON, CSV (one row per metric × variation) and a Markdown summary (with sparklines);
    with include_charts the JSON and the summary are followed by PNG images (SRM, exposures,
    then each trajectory: goal, guardrail, secondary) and the JSON holds each chart's series
    and a Vega-Lite spec with its data inline; without include_charts there are neither."""
    async with Client(rig.app.mcp) as client:
        as_json, images = await call_with_images(
            client, "export_pulse_report", experiment_id=CHECKOUT, include_charts=True
        )
        as_csv = await call(client, "export_pulse_report", experiment_id=CHECKOUT, format="csv")
        summary, summary_images = await call_with_images(
            client,
            "export_pulse_report",
            experiment_id=CHECKOUT,
            format="summary",
            include_charts=True,
        )
        plain, no_images = await call_with_images(
            client, "export_pulse_report", experiment_id=CHECKOUT
        )
    assert {m["id"] for m in as_json["metrics"]} == {
        "met_conversion",
        "met_add_to_cart",
        "met_refund",
    }
    rows = list(csv.DictReader(io.StringIO(as_csv)))
    assert len(rows) == 3 * 2  # three metrics × two variations
    treatment = next(r for r in rows if r["metric_id"] == "met_conversion" and r["our_verdict"])
    assert treatment["our_verdict"] == "won"
    assert summary.startswith("# Checkout redesign (exp_checkout_redesign)")
    assert "sample-ratio mismatch" in summary and "lift over 9 snapshots" in summary
    # The charts.
    assert no_images == [] and "charts" not in plain
    assert [c["name"] for c in as_json["charts"] if c["image"]] == [
        "srm",
        "exposures",
        "trajectory-met_conversion-var_checkout_1",
        "trajectory-met_refund-var_checkout_1",
        "trajectory-met_add_to_cart-var_checkout_1",
    ]
    assert len(images) == len(summary_images) == 5
    for image in images:
        assert image.mime_type == "image/png"
        check_readable_png(base64.b64decode(image.data))
    for chart in as_json["charts"]:
        check_vega_lite(chart["vega_lite"])
    [conversion] = [c for c in as_json["charts"] if c["metric"] == "met_conversion"]
    assert len(conversion["values"]) == 9 and len(conversion["sparkline"]) == 9
    series = conversion["vega_lite"]["data"]["values"]
    assert len(series) == 9 and series[-1]["our_verdict"] == "won"
    assert series[0]["ours_low"] < 0 < series[-1]["ours_low"]  # our interval left zero behind
    [srm] = [c for c in as_json["charts"] if c["kind"] == "srm"]
    assert srm["vega_lite"]["title"]["text"].startswith("Sample-ratio test: mismatch detected")


async def test_status_resource_and_tool_show_each_source(rig: Rig) -> None:
    store = rig.app.store
    last = await store.last_event_id()
    waiting = NewDelivery(last, "pager", CHECKOUT, "critical", store.outbox.now())
    await store.outbox.route([waiting], cursor="test", position=last)
    async with Client(rig.app.mcp) as client:
        status = await read_json(client, "watcher://status")
        tool_status = await call(client, "watcher_status")
    [gb] = status["sources"]
    assert gb["name"] == "gb" and gb["configured"] is True
    assert gb["breaker"]["state"] == "closed"
    assert gb["rate_per_minute"] > 0 and gb["requests"] > 0
    assert gb["last_cycle_at"] is not None and gb["seconds_since_last_cycle"] >= 0
    assert gb["watched"] == 2
    assert tool_status["sources"][0]["requests"] == gb["requests"]
    assert status["note"] is None
    [pager] = status["alerts"]
    assert pager["target"] == "pager" and pager["outbox"]["pending"] == 1
    assert pager["oldest_waiting_at"] is not None and pager["last_error"] is None


async def test_watch_and_unwatch_change_the_watch_list_unless_read_only(
    rig: Rig, tmp_path: Path
) -> None:
    async with Client(rig.app.mcp) as client:
        watched = await call(client, "watch_experiment", experiment_id="exp_onboarding_tour")
        again = await call(client, "watch_experiment", experiment_id="exp_onboarding_tour")
        unwatched = await call(client, "unwatch_experiment", experiment_id=CHECKOUT)
        index = await read_json(client, "experiments://index")
    assert watched["changed"] is True and again["changed"] is False
    assert unwatched["watched"] is False
    entries = {(e.experiment_id, e.mode) for e in await rig.app.store.state.watch_list()}
    assert entries == {("exp_onboarding_tour", "watch"), (CHECKOUT, "ignore")}
    assert {e["id"]: e["watched"] for e in index["experiments"]}[CHECKOUT] is False

    (tmp_path / "ro").mkdir()
    async with (
        open_rig(tmp_path / "ro", read_only=True) as read_only,
        Client(read_only.app.mcp) as client,
    ):
        names = {t.name for t in await client.list_tools()}
    assert "watch_experiment" not in names and "unwatch_experiment" not in names
    assert "refresh_experiment" in names


async def test_watch_on_a_database_that_refuses_writes_says_why(rig: Rig) -> None:
    """A failing store write gives the tool's caller the database's reason, not FastMCP's
    masked "Error calling tool"."""
    async with rig.app.store.database.autocommit() as conn:
        await conn.execute(text("PRAGMA query_only = 1"))
    try:
        async with Client(rig.app.mcp) as client:
            message = await tool_error(client, "watch_experiment", experiment_id=CHECKOUT)
    finally:
        async with rig.app.store.database.autocommit() as conn:
            await conn.execute(text("PRAGMA query_only = 0"))
    assert "readonly database" in message, message


async def test_refresh_polls_now_and_reports_progress(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        await rig.poll_through(5)
        at_refresh(rig.clock, rig.scenario, 6)  # the SRM appears upstream; no cycle ran yet
        progress: list[tuple[float, float | None, str | None]] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append((done, total, message))

        async with Client(rig.app.mcp, progress_handler=on_progress) as client:
            answer = await call(client, "refresh_experiment", experiment_id=CHECKOUT)
            again = await call(client, "refresh_experiment", experiment_id=CHECKOUT)
            health = await read_json(client, f"experiments://{CHECKOUT}/health")
        assert answer["refreshed"] and answer["new_snapshot"]
        assert [e["kind"] for e in answer["events"]] == ["srm_detected"]
        assert answer["results"]["health"]["our_srm"]["mismatch"] is True
        assert again["refreshed"] and not again["new_snapshot"] and again["events"] == []
        assert health["srm"]["ours"]["mismatch"] is True
        assert progress[:3] == [
            (0, 3, "asking gb for exp_checkout_redesign's results"),
            (2, 3, "recorded a new snapshot"),
            (3, 3, "done"),
        ]


async def test_summarize_uses_client_sampling_when_offered(rig: Rig) -> None:
    asked: list[str] = []

    async def sampler(messages: Any, params: Any, context: Any) -> str:
        asked.append(messages[0].content.text)
        return "Conversion won; fix the SRM first."

    async with Client(rig.app.mcp) as plain:
        ours = await call(plain, "summarize_experiment", experiment_id=CHECKOUT)
    assert ours["generated_by"] == "expwatch"
    assert "sample-ratio mismatch" in ours["summary"]
    assert "Conversion (" in ours["summary"]
    async with Client(rig.app.mcp, sampling_handler=sampler, mode="legacy") as sampling:
        sampled = await call(sampling, "summarize_experiment", experiment_id=CHECKOUT)
    assert sampled["generated_by"] == "client_sampling"
    assert sampled["summary"] == "Conversion won; fix the SRM first."
    assert CHECKOUT in asked[0] and "sample-ratio mismatch" in asked[0]
    assert sampled["facts"] == ours["facts"]


async def test_prompts_guide_through_results_health_and_history(rig: Rig) -> None:
    async with Client(rig.app.mcp) as client:
        analysis = await client.get_prompt("experiment_analysis", {"experiment_id": CHECKOUT})
        review = await client.get_prompt("experiment_review", {"project": "prj_checkout"})
    [message] = analysis.messages
    assert isinstance(message.content, types.TextContent)
    for uri in (f"experiments://{CHECKOUT}/health", f"experiments://{CHECKOUT}/results"):
        assert uri in message.content.text
    assert "when_significant" in message.content.text
    [message] = review.messages
    assert isinstance(message.content, types.TextContent)
    assert 'project="prj_checkout"' in message.content.text


async def test_every_changed_resource_is_notified_after_its_cache_is_dropped(
    tmp_path: Path,
) -> None:
    """A new snapshot without any event still changes the results, health, history, metric
    and index resources; the cycle's saved source state changes the status. Subscribers of
    each are told, and a re-read (through the response cache) shows the new snapshot."""
    async with open_rig(tmp_path) as rig, anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: rig.app.run(
                watch=False, mcp_http=("127.0.0.1", 0), task_status=task_status
            )
        )
        await rig.poll_through(1)
        await rig.app.notifier.settled()  # refresh 1's notifications went out to nobody
        uris = [
            f"experiments://{CHECKOUT}/results",
            f"experiments://{CHECKOUT}/health",
            f"experiments://{CHECKOUT}/history",
            f"experiments://{CHECKOUT}/metrics/met_conversion",
            "experiments://index",
            "watcher://status",
        ]
        unrelated = "experiments://exp_onboarding_tour/results"
        inbox = UpdateInbox()
        async with handshake_http_client(f"http://127.0.0.1:{port}/mcp", inbox) as client:
            for uri in [*uris, unrelated]:
                await legacy_subscribe(client, uri)
            before = json.loads(text_of((await client.read_resource(uris[0])).contents))
            before_metric = json.loads(text_of((await client.read_resource(uris[3])).contents))
            at_refresh(rig.clock, rig.scenario, 2)
            report = await rig.app.supervisor.poll_once()
            assert report.new_snapshots >= 1 and report.events == []
            for uri in uris:
                await inbox.wait_for(uri)
            after = json.loads(text_of((await client.read_resource(uris[0])).contents))
            after_metric = json.loads(text_of((await client.read_resource(uris[3])).contents))
        tg.cancel_scope.cancel()
    assert unrelated not in inbox.uris
    assert after["snapshot"]["id"] > before["snapshot"]["id"]
    [trajectory] = after_metric["history"].values()
    assert len(trajectory) == len(next(iter(before_metric["history"].values()))) + 1
