"""`expwatch demo`: the whole path against the built-in simulator, no keys or config.

The simulator serves a GrowthBook-compatible API on loopback whose scripted experiments
unfold in accelerated time; the watcher, the alert dispatcher and an MCP HTTP endpoint run
against it on an SQLite file, and the terminal shows each poll and each event as it happens.
"""

from __future__ import annotations

import socket
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import anyio
import click
from pydantic import SecretStr

from simulator import build_growthbook_app, default_scenario
from store import Event
from watcher import CycleReport

from .app import open_app
from .config import (
    GrowthBookSourceSettings,
    McpSettings,
    Settings,
    StoreSettings,
    WatcherSettings,
)
from .serving import serve_asgi

DEMO_KEY = "demo-key"


def demo_settings(*, directory: Path, base_url: str, port: int, refresh_seconds: float) -> Settings:
    return Settings(
        store=StoreSettings(path=directory / "expwatch-demo.db"),
        watcher=WatcherSettings(
            poll_interval_seconds=max(0.25, refresh_seconds / 2), poll_timeout_seconds=10
        ),
        sources={
            "growthbook-demo": GrowthBookSourceSettings(
                base_url=base_url, api_key=SecretStr(DEMO_KEY), ui_url=base_url
            )
        },
        mcp=McpSettings(host="127.0.0.1", port=port),
    )


def _value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def describe(event: Event) -> str:
    """One terminal line for an event."""
    d = event.details
    subject = event.experiment_id or event.source
    if event.metric_id:
        metric = d.get("metric_name", event.metric_id)
        subject += f" · {metric} · {d.get('variation_name', event.variation_id)}"
    return (
        f"  event #{event.id:<3} {event.kind.value:<24} {subject}: "
        f"{_value(event.before)} → {_value(event.after)}"
    )


def _port_or_any(port: int) -> int:
    """`port` if it is free on loopback, else 0 (any free port)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


async def run_demo(*, directory: Path | None, port: int, refresh_seconds: float) -> None:
    """Run the demo until cancelled. `directory`, if given, must exist."""
    with tempfile.TemporaryDirectory(prefix="expwatch-demo-") as tmp:
        where = directory or Path(tmp)
        scenario = default_scenario(start=datetime.now(UTC), refresh_seconds=refresh_seconds)
        simulator = build_growthbook_app(
            scenario, api_key=DEMO_KEY, clock=lambda: datetime.now(UTC), rate_limit_per_minute=6000
        )
        async with anyio.create_task_group() as tg:
            sim_port = await tg.start(
                lambda task_status: serve_asgi(simulator, port=0, task_status=task_status)
            )
            base_url = f"http://127.0.0.1:{sim_port}"
            settings = demo_settings(
                directory=where,
                base_url=base_url,
                port=_port_or_any(port),
                refresh_seconds=refresh_seconds,
            )
            async with open_app(settings) as app:
                cycles = 0

                def show_cycle(report: CycleReport) -> None:
                    nonlocal cycles
                    cycles += 1
                    if report.new_snapshots or report.errors:
                        click.echo(f"  poll {cycles:<4} {report.summary()}")

                mcp_port = await tg.start(
                    lambda task_status: app.run(
                        mcp_http=(settings.mcp.host, settings.mcp.port),
                        on_cycle=show_cycle,
                        task_status=task_status,
                    )
                )
                click.echo(
                    f"expwatch demo\n"
                    f"  simulated GrowthBook API  {base_url}/api/v1  "
                    f"({len(scenario.experiments)} experiments, results refresh every "
                    f"{refresh_seconds:g} s)\n"
                    f"  database                  {settings.database_location()}\n"
                    f"  MCP (streamable HTTP)     http://127.0.0.1:{mcp_port}/mcp\n"
                    f"      read experiments://exp_checkout_redesign/results or call the\n"
                    f"      get_experiment_results tool; subscribe to hear of changes.\n"
                    f"  What to expect on exp_checkout_redesign: GrowthBook calls conversion a\n"
                    f"  winner at refresh 3 (recorded, not alerted: its test is not valid when\n"
                    f"  polled); the sequential SRM test fires at refresh 6; expwatch's\n"
                    f"  anytime-valid verdict confirms the win at refresh 9. Ctrl-C stops.\n"
                )
                position = 0
                while True:
                    await app.store.wait_for_events(position, poll_interval_seconds=1.0)
                    for event in await app.store.events_after(position):
                        assert event.id is not None
                        position = event.id
                        click.echo(describe(event))
