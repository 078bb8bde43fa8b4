"""The `expwatch` command line.

Exit codes: 0 success, 1 a runtime failure (store, source), 2 bad configuration or usage.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import click

from store import Store

from . import __version__
from .app import open_app
from .cli_common import (
    EXIT_CONFIG,
    config_option,
    load_alert_targets,
    load_settings,
    run_async,
    run_until_stopped,
    settle_heap,
    setup_logging,
)
from .http_auth import check_exposure

logger = logging.getLogger(__name__)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="expwatch")
@click.option(
    "--verbose", "-v", is_flag=True, help="Debug logging (overrides log_level), to stderr."
)
def main(verbose: bool) -> None:
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
    settings = load_settings(config_path)
    if not settings.sources:
        click.echo("expwatch: warning: no [sources] configured; nothing to watch", err=True)

    endpoint = (settings.mcp.host, settings.mcp.port) if mcp_http and not once else None

    async def main_() -> None:
        if endpoint is not None:  # refused here, before the store opens (exit code 2)
            check_exposure(endpoint[0], settings.mcp.auth_token, config_path=settings.config_path)
        async with open_app(settings) as app:
            if once:
                await app.run_once()
                return
            settle_heap()
            await run_until_stopped(lambda: _forever(app.run(mcp_http=endpoint)))

    run_async(main_)


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
    settings = load_settings(config_path)

    endpoint = (host or settings.mcp.host, port or settings.mcp.port)

    async def main_() -> None:
        if transport == "http":  # refused here, before the store opens (exit code 2)
            check_exposure(endpoint[0], settings.mcp.auth_token, config_path=settings.config_path)
        async with open_app(settings) as app:
            settle_heap()
            if transport == "http":
                await run_until_stopped(lambda: _forever(app.run(watch=watch, mcp_http=endpoint)))
                return
            try:
                async with anyio.create_task_group() as tg:
                    await tg.start(
                        lambda task_status: app.run(watch=watch, task_status=task_status)
                    )
                    await app.mcp.run_stdio_async(show_banner=False)
                    tg.cancel_scope.cancel()
            except* BrokenPipeError:
                logger.info("the MCP client closed the connection; stopping")

    run_async(main_)


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
    run_async(
        lambda: run_until_stopped(
            lambda: run_demo(directory=directory, port=port, refresh_seconds=refresh_seconds),
            duration_seconds=duration,
        )
    )
    click.echo("demo stopped.")


@main.command("check-config")
@config_option
def check_config(config_path: Path | None) -> None:
    """Validate the configuration (and alert URLs) without starting anything."""
    settings = load_settings(config_path)
    targets = load_alert_targets(settings)
    click.echo(
        f"configuration OK: {len(settings.sources)} source(s), "
        f"{len(targets)} alert target(s), database {settings.database_location()}"
    )


@main.command()
@config_option
@click.option(
    "--older-than-days",
    type=float,
    default=None,
    help="Prune snapshots older than this (default: [store] retention_days).",
)
@click.option("--vacuum", is_flag=True, help="Also give freed space back (SQLite VACUUM).")
def prune(config_path: Path | None, older_than_days: float | None, vacuum: bool) -> None:
    """Prune old snapshots, keeping those events refer to and each day's first and last."""
    settings = load_settings(config_path)
    days = older_than_days if older_than_days is not None else settings.store.retention_days
    if days <= 0:
        click.echo("expwatch: nothing to prune: retention_days is 0 (keep everything)", err=True)
        sys.exit(EXIT_CONFIG)

    async def main_() -> None:
        store = await Store.open(settings.database_url())
        try:
            report = await store.prune(older_than=datetime.now(UTC) - timedelta(days=days))
            await store.checkpoint(vacuum=vacuum)
        finally:
            await store.aclose()
        click.echo(
            f"pruned {report.snapshots_deleted} snapshots "
            f"({report.metric_rows_deleted} metric rows) older than {days:g} days"
        )

    run_async(main_)


from .cli_alerts import alerts  # noqa: E402
from .cli_completion import completion  # noqa: E402
from .cli_store import events, history, status, unwatch, watch  # noqa: E402

main.add_command(status)
main.add_command(events)
main.add_command(history)
main.add_command(watch)
main.add_command(unwatch)
main.add_command(alerts)
main.add_command(completion)
