"""`expwatch demo`: the whole path against the built-in simulators, no keys or config.

Simulated GrowthBook and Statsig APIs serve scripted experiments on loopback whose stories
unfold in accelerated time (`simulator.demo_scenarios`: one wins, one shows a sample-ratio
mismatch, one regresses a guardrail, two are stopped or decided). The watcher, the alert
dispatcher and an MCP endpoint over streamable HTTP run against them on an SQLite file; the
dispatcher alerts a `terminal` target (and, with `--config`, that file's `[alerts]` targets).
On a terminal a live view shows the experiments, their verdicts, the event feed, the alerts
and each source's health; otherwise (a pipe, CI) every event and alert is one plain line.
"""

from __future__ import annotations

import json
import logging
import socket
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Protocol

import anyio
import click
from pydantic import SecretStr
from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler

from alerts import AlertTarget, AppriseNotifier, Message, Notifier
from simulator import DEMO_STORY, build_growthbook_app, build_statsig_app, demo_scenarios
from store import ConfigError
from watcher import CycleReport

from .app import App, open_app
from .cli_common import (
    load_alert_targets,
    load_settings,
    run_async,
    run_until_stopped,
    setup_logging,
)
from .config import (
    GrowthBookSourceSettings,
    McpSettings,
    Settings,
    StatsigSourceSettings,
    StoreSettings,
    WatcherSettings,
)
from .demo_view import (
    FEED_SIZE,
    AlertLine,
    DemoEndpoints,
    DemoState,
    FeedLine,
    alert_line,
    load_rows,
    render_view,
    summary_lines,
)
from .serving import serve_asgi

GROWTHBOOK_SOURCE = "growthbook-demo"
STATSIG_SOURCE = "statsig-demo"
GROWTHBOOK_KEY = "secret_demo_growthbook_key"
STATSIG_KEY = "console-demoStatsigKey"
TERMINAL = AlertTarget(name="terminal", url="terminal://expwatch-demo")
"""The alert target the demo adds: alerts to it are shown, not sent."""
VIEW_REFRESH_SECONDS = 0.25


def run_demo_command(
    *,
    duration_seconds: float | None,
    directory: Path | None,
    port: int,
    refresh_seconds: float,
    config_path: Path | None,
) -> None:
    """`expwatch demo`: the live view on a terminal, plain lines otherwise; exits 0 when
    stopped (Ctrl-C, SIGTERM or `duration_seconds`), 2 for a bad `--config` file."""
    alerts_from = None
    if config_path is not None:
        alerts_from = load_settings(config_path)
        load_alert_targets(alerts_from)  # a bad alert URL: exit code 2 now
    setup_logging("WARNING")
    console = Console()
    live = console.is_terminal and not console.is_dumb_terminal
    output: DemoOutput = LiveOutput(console) if live else PlainOutput(click.echo)
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    run_async(
        lambda: run_until_stopped(
            lambda: run_demo(
                directory=directory,
                port=port,
                refresh_seconds=refresh_seconds,
                output=output,
                alerts_from=alerts_from,
            ),
            duration_seconds=duration_seconds,
        )
    )
    click.echo("demo stopped.")


def demo_settings(
    *,
    directory: Path,
    growthbook_url: str,
    statsig_url: str,
    port: int,
    refresh_seconds: float,
    alerts_from: Settings | None = None,
) -> Settings:
    """The demo's settings: both simulated sources, polled twice a refresh, an SQLite file in
    `directory` and MCP on loopback. `alerts_from` (a loaded config) contributes its `[alerts]`
    section; without it nothing is read from files or the environment."""
    base = alerts_from or Settings.model_construct()
    return base.model_copy(
        update={
            "store": StoreSettings(path=directory / "expwatch-demo.db"),
            "watcher": WatcherSettings(
                poll_interval_seconds=max(0.25, refresh_seconds / 2), poll_timeout_seconds=10
            ),
            "sources": {
                GROWTHBOOK_SOURCE: GrowthBookSourceSettings(
                    base_url=growthbook_url,
                    api_key=SecretStr(GROWTHBOOK_KEY),
                    ui_url=growthbook_url,
                    rate_limit_per_minute=0,
                ),
                STATSIG_SOURCE: StatsigSourceSettings(
                    kind="statsig",
                    base_url=statsig_url,
                    api_key=SecretStr(STATSIG_KEY),
                    rate_limit_per_minute=0,
                ),
            },
            "mcp": McpSettings(host="127.0.0.1", port=port),
        }
    )


def connect_help(mcp_url: str) -> str:
    """How to point an MCP client at the demo, ready to paste."""
    generic = {"mcpServers": {"expwatch-demo": {"type": "http", "url": mcp_url}}}
    desktop = {
        "mcpServers": {"expwatch-demo": {"command": "npx", "args": ["-y", "mcp-remote", mcp_url]}}
    }
    return (
        f"Connect an MCP client to {mcp_url} (streamable HTTP; no token on loopback):\n"
        f"  Claude Code     claude mcp add --transport http expwatch-demo {mcp_url}\n"
        f"  mcpServers JSON {json.dumps(generic)}\n"
        f"  Claude Desktop  {json.dumps(desktop)}\n"
        "  then read experiments://index or call get_experiment_results; subscribe to a\n"
        "  resource to hear of each change."
    )


def expectations(refresh_seconds: float) -> str:
    """What the stories do and when, counted from the watcher's first look."""
    return "\n".join(
        ["What happens (from the first poll on):"]
        + [f"  ~{refresh * refresh_seconds:>3.0f} s  {what}" for refresh, what in DEMO_STORY]
    )


class StoryClock:
    """The simulated platforms' clock. It stands at the stories' start (refresh 0) until
    `begin`, then runs with the wall clock: the watcher's first look at each platform sees
    every experiment at the start of its story, however long starting up took."""

    def __init__(self) -> None:
        self.start = datetime.now(UTC)
        self._begun_at: datetime | None = None

    def begin(self) -> None:
        if self._begun_at is None:
            self._begun_at = datetime.now(UTC)

    def seconds(self) -> float:
        """How long the stories have been running."""
        if self._begun_at is None:
            return 0.0
        return (datetime.now(UTC) - self._begun_at).total_seconds()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.seconds())


class Signal:
    """A wake-up that may be given many times and is taken by one waiter."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        """Until the next `set` since the last `wait` returned."""
        await self._event.wait()
        self._event = anyio.Event()


class TerminalNotifier:
    """A `Notifier` that shows the `terminal` target's alerts (through `show`) and hands
    every other target's to `fallback` (Apprise: the real targets of `--config`)."""

    def __init__(self, show: Callable[[AlertLine], None], *, fallback: Notifier) -> None:
        self._show = show
        self._fallback = fallback

    async def send(self, target: AlertTarget, message: Message) -> None:
        if target.name != TERMINAL.name:
            await self._fallback.send(target, message)
            return
        self._show(
            AlertLine(
                at=datetime.now(UTC),
                level=message.level,
                title=message.title,
                notify_type=message.notify_type,
            )
        )


class DemoOutput(Protocol):
    """Where the demo shows itself: a live view, or plain lines."""

    def event(self, line: FeedLine) -> None: ...

    def alert(self, alert: AlertLine) -> None: ...

    async def show(self, state: DemoState, intro: str) -> None:
        """Show `intro`, then the state, until cancelled; the final state when cancelled."""
        ...


class PlainOutput:
    """One line per event and per alert, no colours or cursor movement: for pipes and CI
    (`expwatch demo --duration 60 > demo.log`). At the end, a table of the experiments."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def event(self, line: FeedLine) -> None:
        self._write(f"  event {line.text}")

    def alert(self, alert: AlertLine) -> None:
        self._write(f"  alert → terminal  {alert_line(alert)}")

    async def show(self, state: DemoState, intro: str) -> None:
        self._write(intro)
        try:
            await anyio.sleep_forever()
        finally:
            self._write("Experiments when the demo stopped:")
            for line in summary_lines(state.rows) or ["  none recorded"]:
                self._write(line)


class LiveOutput:
    """The live terminal view (rich), redrawn a few times a second."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def event(self, line: FeedLine) -> None:
        pass  # the view shows the feed

    def alert(self, alert: AlertLine) -> None:
        pass

    async def show(self, state: DemoState, intro: str) -> None:
        console = self._console
        console.print(intro, highlight=False, markup=False)
        with (
            _log_to(console),
            Live(
                console=console,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
                vertical_overflow="crop",
            ) as live,
        ):
            try:
                while True:
                    live.update(render_view(state, console=console), refresh=True)
                    await anyio.sleep(VIEW_REFRESH_SECONDS)
            finally:
                live.update(render_view(state, console=console), refresh=True)


@contextmanager
def _log_to(console: Console) -> Iterator[None]:
    """Errors logged while the view runs are printed above it (not across it)."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [RichHandler(console=console, level=logging.ERROR, show_path=False)]
    try:
        yield
    finally:
        root.handlers[:] = saved


def _port_or_any(port: int) -> int:
    """`port` if it is free on loopback, else 0 (any free port)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


def check_demo_settings(alerts_from: Settings | None) -> None:
    """Raise ConfigError now if `alerts_from` names a target the demo's own would hide."""
    if alerts_from is not None and TERMINAL.name in alerts_from.alerts.targets:
        raise alerts_from.invalid(
            f"alerts.targets.{TERMINAL.name}",
            "is the demo's own target name; rename that target to use this file with the demo",
        )


async def run_demo(
    *,
    directory: Path | None,
    port: int,
    refresh_seconds: float,
    output: DemoOutput,
    alerts_from: Settings | None = None,
) -> None:
    """Run the demo until cancelled. `directory`, if given, must exist."""
    check_demo_settings(alerts_from)
    with tempfile.TemporaryDirectory(prefix="expwatch-demo-") as tmp:
        where = directory or Path(tmp)
        database = where / "expwatch-demo.db"
        if database.exists():
            raise ConfigError(
                f"{database} is left from an earlier demo: the simulated platforms start their "
                "stories afresh, so remove it (or choose another --dir) first",
                path=str(database),
            )
        clock = StoryClock()
        scenarios = demo_scenarios(start=clock.start, refresh_seconds=refresh_seconds)
        growthbook = build_growthbook_app(
            scenarios.growthbook,
            api_key=GROWTHBOOK_KEY,
            clock=clock.now,
            rate_limit_per_minute=6000,
        )
        statsig = build_statsig_app(scenarios.statsig, api_key=STATSIG_KEY, clock=clock.now)
        async with anyio.create_task_group() as simulators:
            gb_port = await simulators.start(partial(serve_asgi, growthbook, port=0))
            ss_port = await simulators.start(partial(serve_asgi, statsig, port=0))
            settings = demo_settings(
                directory=where,
                growthbook_url=f"http://127.0.0.1:{gb_port}",
                statsig_url=f"http://127.0.0.1:{ss_port}",
                port=_port_or_any(port),
                refresh_seconds=refresh_seconds,
                alerts_from=alerts_from,
            )
            await _run_app(settings, clock=clock, refresh_seconds=refresh_seconds, output=output)
            simulators.cancel_scope.cancel()


async def _run_app(
    settings: Settings, *, clock: StoryClock, refresh_seconds: float, output: DemoOutput
) -> None:
    platforms = {GROWTHBOOK_SOURCE: "GrowthBook", STATSIG_SOURCE: "Statsig"}
    alerts: deque[AlertLine] = deque(maxlen=FEED_SIZE)
    changed = Signal()

    def show_alert(alert: AlertLine) -> None:
        alerts.append(alert)
        output.alert(alert)

    cycles = 0

    def cycled(report: CycleReport) -> None:
        nonlocal cycles
        cycles += 1
        if cycles >= len(settings.sources):  # each source has had its first look
            clock.begin()
        changed.set()

    notifier = TerminalNotifier(
        show_alert,
        fallback=AppriseNotifier(timeout_seconds=settings.alerts.send_timeout_seconds),
    )
    async with (
        open_app(settings, notifier=notifier, extra_targets=[TERMINAL]) as app,
        anyio.create_task_group() as tg,
    ):
        mcp_port = await tg.start(
            partial(app.run, mcp_http=(settings.mcp.host, settings.mcp.port), on_cycle=cycled)
        )
        mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
        gb = settings.sources[GROWTHBOOK_SOURCE].base_url
        ss = settings.sources[STATSIG_SOURCE].base_url
        state = DemoState(
            endpoints=DemoEndpoints(
                growthbook_url=f"{gb}/api/v1",
                statsig_url=f"{ss}/console/v1",
                mcp_url=mcp_url,
                database=settings.database_location(),
                refresh_seconds=refresh_seconds,
                story_seconds=clock.seconds,
            ),
            platforms=platforms,
            alerts=alerts,
        )

        async def keep_current() -> None:
            while True:
                await changed.wait()
                state.rows = await load_rows(app.store, platforms)
                state.sources = app.supervisor.status()

        tg.start_soon(keep_current)
        tg.start_soon(_tail_events, app, state, output, changed.set)
        e = state.endpoints
        intro = (
            f"expwatch demo: simulated GrowthBook and Statsig on loopback, results refresh "
            f"every {e.refresh_seconds:g} s\n"
            f"  simulated GrowthBook API  {e.growthbook_url}\n"
            f"  simulated Statsig API     {e.statsig_url}\n"
            f"  database                  {e.database}\n"
            f"  MCP (streamable HTTP)     {mcp_url}\n"
            f"{connect_help(mcp_url)}\n"
            f"{expectations(e.refresh_seconds)}\n"
            "Ctrl-C stops."
        )
        await output.show(state, intro)


async def _tail_events(
    app: App, state: DemoState, output: DemoOutput, changed: Callable[[], None]
) -> None:
    """Every event recorded, into the feed and the output, as it is committed."""
    position = 0
    while True:
        await app.store.wait_for_events(position, poll_interval_seconds=0.5)
        for event in await app.store.events_after(position):
            assert event.id is not None
            position = event.id
            output.event(state.add_event(event))
        changed()
