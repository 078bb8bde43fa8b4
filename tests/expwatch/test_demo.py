"""`expwatch demo`: its stories, as the demo's own watcher sees them, and the command as a user
runs it without a terminal (plain lines), with and without a config file's alert targets."""

from __future__ import annotations

import io
import os
import re
import signal
import sys
from datetime import timedelta
from functools import partial
from pathlib import Path

import anyio
import httpx2
import pytest
from click.testing import CliRunner
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from rich.console import Console

from alerts import AppriseNotifier, Level
from expwatch.app import open_app
from expwatch.cli import main
from expwatch.demo import (
    GROWTHBOOK_KEY,
    GROWTHBOOK_SOURCE,
    STATSIG_KEY,
    STATSIG_SOURCE,
    TERMINAL,
    LiveOutput,
    TerminalNotifier,
    demo_settings,
    run_demo,
)
from expwatch.demo_view import AlertLine, DemoEndpoints, DemoState, load_rows, render_view
from simulator import build_growthbook_app, build_statsig_app, demo_scenarios
from tests.helpers import HostRouter, ManualClock, http_receiver

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
REFRESH_SECONDS = 4.0
"""The demo's default."""
STORIES = {
    "exp_checkout_redesign": [(1, "platform_verdict_changed"), (5, "significance_changed")],
    "exp_pricing_page": [(1, "platform_verdict_changed"), (4, "guardrail_regressed")],
    "exp_search_ranking": [(6, "status_changed"), (6, "decision_made")],
    "onboarding_checklist": [
        (2, "health_check_changed"),
        (3, "srm_detected"),
        (3, "health_check_changed"),
    ],
    "recommendations_carousel": [
        (1, "platform_verdict_changed"),
        (3, "significance_changed"),
        (7, "status_changed"),
        (7, "decision_made"),
    ],
}
"""By experiment: (refresh, event kind) of every event, in order (simulator.demo_scenarios)."""
TOLD = (
    "srm_detected             Onboarding checklist: sample ratio mismatch detected",
    "guardrail_regressed      Pricing page layout: guardrail Paid upgrade regressed",
    "significance_changed     Checkout redesign: Conversion is now won",
    "status_changed           Search ranking v2: status is now stopped",
    "decision_made            Recommendations carousel: decision recorded: launched",
)
"""The stories' chapters as the plain lines tell them (in the order of `STORIES`, though at
0.3 s a refresh may pass between two polls and two chapters share one)."""


async def test_the_demo_stories_unfold_refresh_by_refresh_and_alert_the_terminal(
    tmp_path: Path,
) -> None:
    """The demo's scenarios, settings and alert wiring on a virtual clock, polled as the demo
    polls (twice a refresh): each story's events come once, at their refresh, in order (one
    wins, one shows SRM, one regresses a guardrail, one stops, one is decided, one stays
    flat); the terminal target is alerted of each but the platforms' own verdict flips, and
    the live view shows the outcome in a 45-line terminal."""
    clock = ManualClock()
    scenarios = demo_scenarios(start=clock.now(), refresh_seconds=REFRESH_SECONDS)
    apps = {
        "gb.demo": build_growthbook_app(
            scenarios.growthbook,
            api_key=GROWTHBOOK_KEY,
            clock=clock.now,
            rate_limit_per_minute=6000,
        ),
        "ss.demo": build_statsig_app(scenarios.statsig, api_key=STATSIG_KEY, clock=clock.now),
    }
    settings = demo_settings(
        directory=tmp_path,
        growthbook_url="http://gb.demo",
        statsig_url="http://ss.demo",
        port=0,
        refresh_seconds=REFRESH_SECONDS,
    )
    assert settings.watcher.poll_interval_seconds == REFRESH_SECONDS / 2
    shown: list[AlertLine] = []
    notifier = TerminalNotifier(shown.append, fallback=AppriseNotifier())
    seen: dict[str | None, list[tuple[int, str]]] = {}
    async with open_app(
        settings,
        clock=clock,
        transport=HostRouter(apps),
        notifier=notifier,
        extra_targets=[TERMINAL],
    ) as app:
        await app.dispatcher.start_cursor()
        for poll in range(2 * 10):
            at = scenarios.growthbook.start + timedelta(
                seconds=poll * settings.watcher.poll_interval_seconds + 0.1
            )
            clock.advance((at - clock.now()).total_seconds())
            report = await app.supervisor.poll_once()
            assert report.errors == []
            for event in report.events:
                seen.setdefault(event.experiment_id, []).append((poll // 2, event.kind.value))
        await app.dispatcher.deliver_pending()
        platforms = {GROWTHBOOK_SOURCE: "GrowthBook", STATSIG_SOURCE: "Statsig"}
        state = DemoState(
            endpoints=DemoEndpoints(
                growthbook_url="http://gb.demo/api/v1",
                statsig_url="http://ss.demo/console/v1",
                mcp_url="http://127.0.0.1:8765/mcp",
                database=settings.database_location(),
                refresh_seconds=REFRESH_SECONDS,
                story_seconds=lambda: 40.0,
            ),
            platforms=platforms,
            rows=await load_rows(app.store, platforms),
            sources=app.supervisor.status(),
        )
        for event in await app.store.events_after(0):
            state.add_event(event)
    assert seen == STORIES
    assert len({r.experiment_id for r in state.rows}) == 6  # the flat one too

    titles = {a.title: a.level for a in shown}
    assert len(shown) == len(titles) == 10  # every story event but the 3 platform verdicts
    assert titles["Onboarding checklist: sample ratio mismatch detected"] is Level.CRITICAL
    assert (
        titles["Pricing page layout: guardrail Paid upgrade regressed for Annual first"]
        is Level.CRITICAL
    )
    assert titles["Checkout redesign: Conversion is now won for One-page checkout"] is Level.INFO
    assert "Search ranking v2: status is now stopped" in titles
    state.alerts.extend(shown)

    console = Console(width=150, height=45, file=io.StringIO(), record=True, color_system=None)
    console.print(render_view(state, console=console))
    screen = console.export_text()
    assert len(screen.splitlines()) <= 45
    assert "refresh 10 (every 4 s)" in screen
    for words in ("MISMATCH", "regressed", "won", "stopped", "launched: Carousel", "closed"):
        assert words in screen, words
    # The feeds show the newest that fit.
    assert "[info] Recommendations carousel: decision recorded: launched (Carousel)" in screen
    newest = state.events[-1]
    assert f"#{newest.id} " in screen and newest.kind.value == "decision_made"


async def test_the_demo_without_a_terminal_prints_lines_and_alerts_configured_targets(
    tmp_path: Path,
) -> None:
    """`expwatch demo --config FILE > log`: plain lines (no escape codes) for every event and
    terminal alert, every story told; the file's JSON webhook target hears the alerts too; an
    MCP client pointed where the demo says reads the experiments; Ctrl-C ends it with a
    summary of the experiments, exit code 0, the database kept."""
    async with http_receiver() as receiver:
        config = tmp_path / "alerts.toml"
        config.write_text(f'[alerts.targets.hook]\nurl = "json://127.0.0.1:{receiver.port}/hook"\n')
        command = [sys.executable, "-m", "expwatch", "demo", "--port", "0"]
        command += ["--refresh-seconds", "0.3", "--dir", str(tmp_path / "demo")]
        command += ["--config", str(config)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXPWATCH_")}
        lines: list[str] = []
        with anyio.fail_after(60):
            async with await anyio.open_process(command, env=env, cwd=ROOT) as process:
                assert process.stdout is not None
                buffered = ""
                async for chunk in process.stdout:
                    buffered += chunk.decode()
                    *complete, buffered = buffered.split("\n")
                    lines.extend(complete)
                    if all(line in text_of(lines) for line in TOLD):
                        break
                count = 1
                while not any("sample ratio mismatch" in str(b) for b in receiver.bodies.items):
                    await receiver.bodies.wait_for(count, timeout_seconds=30)
                    count += 1
                [url] = re.findall(
                    r"Claude Code +claude mcp add .* (http://\S+/mcp)", text_of(lines)
                )
                index = await read_over_mcp(url, "experiments://index")
                process.send_signal(signal.SIGINT)
                rest = ""
                async for chunk in process.stdout:
                    rest += chunk.decode()
                assert await process.wait() == 0
    text = "\n".join(lines) + buffered + rest
    assert "\x1b[" not in text
    assert "MCP (streamable HTTP)     http://127.0.0.1:" in text
    assert "claude mcp add --transport http expwatch-demo http://127.0.0.1:" in text
    assert "alert → terminal  " in text and "[critical] Onboarding checklist: sample ratio" in text
    assert "Experiments when the demo stopped:" in text and "demo stopped." in text
    assert "SRM MISMATCH" in text
    assert (tmp_path / "demo" / "expwatch-demo.db").exists()
    hook = [b["json"] for b in receiver.bodies.items]
    kinds = {b["expwatch"]["kind"] for b in hook}
    # The printed connection line reaches the demo's MCP endpoint: all six are there.
    for experiment in ("exp_checkout_redesign", "onboarding_checklist", "free_trial_banner"):
        assert experiment in index
    assert "srm_detected" in kinds and "platform_verdict_changed" not in kinds


class Screen(io.StringIO):
    """A terminal's output that tells (`drawn`) once it has shown every text of `until`."""

    def __init__(self, *, until: tuple[str, ...]) -> None:
        super().__init__()
        self.until = until
        self.drawn = anyio.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        shown = self.getvalue()
        if all(text in shown for text in self.until):
            self.drawn.set()
        return written


async def test_the_live_view_runs_the_whole_demo_in_a_terminal(tmp_path: Path) -> None:
    """The demo in this process on a (recorded) 160×50 terminal: it prints how to connect an
    MCP client, then redraws the live view until every story is told, the last alert
    included; cancelled, it stops cleanly and leaves its database."""
    # The alert feed and the experiments table redraw apart: wait for both to show the end.
    screen = Screen(until=("decision recorded: launched (Carousel)", "launched: Carousel"))
    console = Console(file=screen, force_terminal=True, width=160, height=50, record=True)
    with anyio.fail_after(45):
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                partial(
                    run_demo,
                    directory=tmp_path,
                    port=0,
                    refresh_seconds=0.3,
                    output=LiveOutput(console),
                )
            )
            await screen.drawn.wait()
            tg.cancel_scope.cancel()
    text = console.export_text()
    assert "claude mcp add --transport http expwatch-demo http://127.0.0.1:" in text
    assert '{"mcpServers": {"expwatch-demo": {"type": "http", "url": "http://127.0.0.1:' in text
    for words in ("─ expwatch demo ─", "MISMATCH", "regressed", "stopped", "launched: Carousel"):
        assert words in text, words
    assert (tmp_path / "expwatch-demo.db").exists()


def text_of(lines: list[str]) -> str:
    return "\n".join(lines)


async def read_over_mcp(url: str, uri: str) -> str:
    """Read one resource through a real MCP client over streamable HTTP (no token: loopback)."""
    async with (
        httpx2.AsyncClient(timeout=20) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        result = await client.read_resource(uri)
    [content] = result.contents
    assert isinstance(content, types.TextResourceContents)
    return content.text


def test_the_demo_refuses_a_database_left_from_an_earlier_run(tmp_path: Path) -> None:
    """A demo database already in --dir would mix two runs' stories: exit code 2, saying
    which file to remove."""
    (tmp_path / "expwatch-demo.db").write_bytes(b"")
    result = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path), "--port", "0"])
    assert result.exit_code == 2, result.output
    assert "expwatch-demo.db is left from an earlier demo" in result.output


def test_the_demo_refuses_a_config_whose_target_is_named_terminal(tmp_path: Path) -> None:
    """The demo's own alert target is `terminal`: a config file naming one is exit code 2."""
    config = tmp_path / "alerts.toml"
    config.write_text('[alerts.targets.terminal]\nurl = "json://127.0.0.1:9/x"\n')
    result = CliRunner().invoke(main, ["demo", "--config", str(config), "--port", "0"])
    assert result.exit_code == 2, result.output
    assert "alerts.targets.terminal" in result.output
