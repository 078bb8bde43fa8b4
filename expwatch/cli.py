"""The `expwatch` command line.

Exit codes: 0 success, 1 a runtime failure (store, source), 2 bad configuration or usage.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import click

from store import ConfigError, ExpwatchError, Store

from . import __version__
from .app import open_app
from .config import Settings, load_config

EXIT_FAILURE = 1
EXIT_CONFIG = 2

config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    envvar="EXPWATCH_CONFIG",
    help="TOML config file (default: $EXPWATCH_CONFIG; otherwise defaults + EXPWATCH_… env).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def setup_logging(level: str) -> None:
    """Log to stderr (stdout belongs to MCP over stdio and to --json output)."""
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in (
        "alembic",
        "httpx",
        "httpcore",
        "apprise",
        "mcp",
        "fastmcp",
        "uvicorn",
        "sse_starlette",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _load(config_path: Path | None) -> Settings:
    try:
        settings = load_config(config_path)
    except ConfigError as exc:
        click.echo(f"expwatch: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    setup_logging(settings.log_level)
    return settings


def _run(fn: Callable[[], Awaitable[None]]) -> None:
    """Run `fn` under anyio (asyncio), with errors turned into messages and exit codes."""
    try:
        anyio.run(fn, backend="asyncio")
    except ConfigError as exc:
        click.echo(f"expwatch: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    except ExpwatchError as exc:
        click.echo(f"expwatch: {exc}", err=True)
        sys.exit(EXIT_FAILURE)


async def run_until_stopped(
    main: Callable[..., Awaitable[Any]], *, duration_seconds: float | None = None
) -> None:
    """Run `main` until it returns, SIGINT/SIGTERM arrives, or `duration_seconds` pass."""
    async with anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    logging.getLogger("expwatch").info(
                        "%s received, stopping", signal.Signals(signum).name
                    )
                    tg.cancel_scope.cancel()
                    return

        async def run_main() -> None:
            await main()
            tg.cancel_scope.cancel()

        tg.start_soon(stop_on_signal)
        tg.start_soon(run_main)
        if duration_seconds is not None:
            tg.cancel_scope.deadline = anyio.current_time() + duration_seconds


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="expwatch")
def main() -> None:
    """Watch A/B-test experiments and tell people and assistants when results change."""


@main.command()
@config_option
@click.option("--once", is_flag=True, help="Run one poll cycle, deliver its alerts, and exit.")
@click.option(
    "--mcp-http/--no-mcp-http",
    default=False,
    help="Also serve MCP over streamable HTTP on [mcp] host and port.",
)
def run(config_path: Path | None, once: bool, mcp_http: bool) -> None:
    """Run the watcher daemon: poll sources, record snapshots, send alerts."""
    settings = _load(config_path)
    if not settings.sources:
        click.echo("expwatch: warning: no [sources] configured; nothing to watch", err=True)

    async def main_() -> None:
        async with open_app(settings) as app:
            if once:
                await app.run_once()
                return
            endpoint = (settings.mcp.host, settings.mcp.port) if mcp_http else None
            await run_until_stopped(lambda: _forever(app.run(mcp_http=endpoint)))

    _run(main_)


async def _forever(started: Awaitable[None]) -> None:
    await started
    await anyio.sleep_forever()


@main.command()
@config_option
@click.option(
    "--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True
)
@click.option("--host", default=None, help="HTTP host (default: [mcp] host).")
@click.option("--port", type=int, default=None, help="HTTP port (default: [mcp] port).")
@click.option(
    "--watch/--no-watch",
    default=False,
    help="Also run the watcher and alerts in this process (when no daemon runs).",
)
def mcp(
    config_path: Path | None, transport: str, host: str | None, port: int | None, watch: bool
) -> None:
    """Serve the MCP server (resources, tools, subscriptions) over stdio or HTTP."""
    settings = _load(config_path)

    async def main_() -> None:
        async with open_app(settings) as app:
            if transport == "http":
                endpoint = (host or settings.mcp.host, port or settings.mcp.port)
                await run_until_stopped(lambda: _forever(app.run(watch=watch, mcp_http=endpoint)))
                return
            async with anyio.create_task_group() as tg:
                await tg.start(lambda task_status: app.run(watch=watch, task_status=task_status))
                await app.mcp.run_stdio_async(show_banner=False)
                tg.cancel_scope.cancel()

    _run(main_)


@main.command()
@click.option(
    "--duration", type=float, default=None, help="Stop after this many seconds (default: Ctrl-C)."
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Keep the demo database here (default: a temporary directory).",
)
@click.option("--port", type=int, default=8765, show_default=True, help="MCP HTTP port (0: any).")
@click.option(
    "--refresh-seconds",
    type=float,
    default=4.0,
    show_default=True,
    help="How often the simulated platform refreshes results.",
)
def demo(duration: float | None, directory: Path | None, port: int, refresh_seconds: float) -> None:
    """Run everything against the built-in simulator, no keys or config needed."""
    from .demo import run_demo

    setup_logging("WARNING")
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    _run(
        lambda: run_until_stopped(
            lambda: run_demo(directory=directory, port=port, refresh_seconds=refresh_seconds),
            duration_seconds=duration,
        )
    )
    click.echo("demo stopped.")


@main.command()
@config_option
@json_option
def status(config_path: Path | None, as_json: bool) -> None:
    """Show what the store holds: experiments, latest snapshots, the event log."""
    settings = _load(config_path)

    async def main_() -> None:
        store = await Store.open(settings.database_url())
        try:
            rows = []
            for experiment in await store.experiments():
                latest = await store.latest_snapshot(experiment.experiment_id)
                rows.append(
                    {
                        "source": experiment.source,
                        "experiment_id": experiment.experiment_id,
                        "name": experiment.name,
                        "status": experiment.status,
                        "snapshots": await store.snapshot_count(experiment.experiment_id),
                        "latest_snapshot_at": latest.fetched_at.isoformat() if latest else None,
                        "last_checked_at": latest.last_checked_at.isoformat() if latest else None,
                    }
                )
            result: dict[str, Any] = {
                "database": settings.database_url().split("///")[-1],
                "sources": sorted(settings.sources),
                "alert_targets": sorted(settings.alerts.targets),
                "last_event_id": await store.last_event_id(),
                "experiments": rows,
            }
        finally:
            await store.aclose()
        if as_json:
            click.echo(json.dumps(result, indent=2))
            return
        click.echo(f"database: {result['database']}")
        click.echo(f"sources: {', '.join(result['sources']) or '(none)'}")
        click.echo(f"alert targets: {', '.join(result['alert_targets']) or '(none)'}")
        click.echo(f"events: {result['last_event_id']}")
        for r in rows:
            click.echo(
                f"  {r['experiment_id']:<32} {r['status']:<10} {r['snapshots']:>4} snapshots"
                f"  last checked {r['last_checked_at'] or '-'}"
            )

    _run(main_)


@main.command()
@config_option
@json_option
@click.option("--after", type=int, default=0, help="Only events with an id above this.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--experiment", default=None, help="Only this experiment's events.")
def events(
    config_path: Path | None, as_json: bool, after: int, limit: int, experiment: str | None
) -> None:
    """List events from the log (id, experiment, kind, metric, time, details)."""
    settings = _load(config_path)

    async def main_() -> None:
        store = await Store.open(settings.database_url())
        try:
            found = await store.events_after(after, limit=limit, experiment_id=experiment)
        finally:
            await store.aclose()
        if as_json:
            click.echo(json.dumps([e.model_dump(mode="json") for e in found], indent=2))
            return
        for e in found:
            subject = " ".join(x for x in (e.experiment_id, e.metric_id, e.variation_id) if x)
            click.echo(
                f"#{e.id:<5} {e.occurred_at:%Y-%m-%d %H:%M:%S}  {e.kind.value:<22} {subject}"
                f"  {e.before} → {e.after}"
            )

    _run(main_)


@main.command()
@config_option
@json_option
@click.argument("experiment_id")
@click.argument("metric_id")
@click.option("--variation", default=None, help="Variation id (default: every non-baseline).")
def history(
    config_path: Path | None,
    as_json: bool,
    experiment_id: str,
    metric_id: str,
    variation: str | None,
) -> None:
    """Show a metric's trajectory: one row per distinct snapshot."""
    settings = _load(config_path)

    async def main_() -> None:
        store = await Store.open(settings.database_url())
        try:
            experiment = await store.experiment(experiment_id)
            variations = (
                [variation] if variation else [v.variation_id for v in experiment.variations[1:]]
            )
            series = {
                v: await store.metric_history(experiment_id, metric_id, v) for v in variations
            }
        finally:
            await store.aclose()
        if as_json:
            click.echo(
                json.dumps(
                    {
                        v: [p.model_dump(mode="json") for p in points]
                        for v, points in series.items()
                    },
                    indent=2,
                )
            )
            return
        for v, points in series.items():
            click.echo(f"{experiment_id} / {metric_id} / {v}: {len(points)} points")
            for p in points:
                change = f"{p.relative_change:+.2%}" if p.relative_change is not None else "n/a"
                ctw = f"{p.chance_to_win:.1%}" if p.chance_to_win is not None else "-"
                click.echo(
                    f"  {p.fetched_at:%Y-%m-%d %H:%M:%S}  users {p.users:>9.0f}  change {change:>8}"
                    f"  chance to win {ctw:>6}  {p.platform_verdict.value}"
                )

    _run(main_)


@main.command("check-config")
@config_option
def check_config(config_path: Path | None) -> None:
    """Validate the configuration (and alert URLs) without starting anything."""
    settings = _load(config_path)
    from .app import alert_targets

    try:
        alert_targets(settings)
    except ConfigError as exc:
        click.echo(f"expwatch: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    click.echo(
        f"configuration OK: {len(settings.sources)} source(s), "
        f"{len(settings.alerts.targets)} alert target(s), database {settings.database_url()}"
    )
