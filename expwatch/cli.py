"""The `expwatch` command line.

Commands other than the few defined here live in `cli_*` modules and are imported only when
they run (`LAZY_COMMANDS`): `expwatch --help`, `--version` and completing a command name load
neither the store nor the watcher nor the MCP server. `tests/expwatch/test_cli_startup.py`
keeps it so.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from . import __version__
from .cli_common import (
    EXIT_CONFIG,
    config_option,
    echo_json,
    json_option,
    load_alert_targets,
    load_settings,
    run_async,
    run_until_stopped,
    settle_heap,
)
from .cli_group import LazyCommand, LazyGroup

logger = logging.getLogger(__name__)

LAZY_COMMANDS = {
    "status": LazyCommand(
        "expwatch.cli_status:status",
        "Show sources (breaker, rate budget, lag), alert outboxes and experiments.",
    ),
    "events": LazyCommand(
        "expwatch.cli_events:events",
        "List events from the log, or with --follow print them as they are recorded.",
    ),
    "history": LazyCommand(
        "expwatch.cli_store:history",
        "An experiment's history: when metrics became significant, when SRM started and "
        "cleared, and with --metric the metric's trajectory; --at shows what was known then.",
    ),
    "watch": LazyCommand(
        "expwatch.cli_store:watch", "Watch EXPERIMENT_ID whatever the source's filters say."
    ),
    "unwatch": LazyCommand(
        "expwatch.cli_store:unwatch",
        "Stop watching EXPERIMENT_ID, even if the source's filters match it.",
    ),
    "alerts": LazyCommand(
        "expwatch.cli_alerts:alerts", "Alert targets and the outbox of deliveries."
    ),
    "completion": LazyCommand(
        "expwatch.cli_completion:completion",
        "Print the completion script for SHELL (bash, zsh or fish).",
    ),
    "report": LazyCommand(
        "expwatch.cli_report:report",
        "Write an experiment's report as JSON, CSV, a summary or HTML.",
    ),
    "backfill": LazyCommand(
        "expwatch.cli_backfill:backfill",
        "Reconstruct EXPERIMENT_ID's history (or every experiment's, with --all) from the "
        "platform, day by day, within each source's rate budget.",
    ),
}
"""Command name → where it lives and its one-line help (its docstring's first sentence)."""

EXIT_CODES_HELP = """\b
Exit codes:
  0    success; also run, demo, mcp --transport http and events --follow
       stopped by Ctrl-C or SIGTERM (events --follow: or a closed pipe), and
       mcp over stdio when its client closes the connection
  1    a runtime failure: the store, a source, an alert not delivered;
       also a backfill stopped before it finished
  2    bad configuration or usage
  130  interrupted: Ctrl-C in a command not named above (run --once too),
       or a second Ctrl-C/SIGTERM that forces a stop
"""


@click.group(
    cls=LazyGroup,
    lazy_commands=LAZY_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES_HELP,
)
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
    from .app import open_app
    from .http_auth import check_exposure

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
    import anyio

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
    import anyio

    from .app import open_app
    from .http_auth import check_exposure

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
    type=click.FloatRange(min=0.1),
    default=4.0,
    show_default=True,
    help="How often the simulated platforms refresh results.",
)
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also alert this config file's [alerts] targets (only that section is used).",
)
def demo(
    duration: float | None,
    directory: Path | None,
    port: int,
    refresh_seconds: float,
    config_path: Path | None,
) -> None:
    """Run everything against simulated GrowthBook and Statsig, no keys or config needed:
    a live view on a terminal, one line per event and alert otherwise."""
    from .demo import run_demo_command

    run_demo_command(
        duration_seconds=duration,
        directory=directory,
        port=port,
        refresh_seconds=refresh_seconds,
        config_path=config_path,
    )


@main.command("check-config")
@config_option
@json_option
def check_config(config_path: Path | None, as_json: bool) -> None:
    """Validate the configuration (and alert URLs) without starting anything."""
    settings = load_settings(config_path)
    targets = load_alert_targets(settings)
    if as_json:
        echo_json(
            {
                "sources": {name: s.kind for name, s in sorted(settings.sources.items())},
                "alert_targets": sorted(t.name for t in targets),
                "database": settings.database_location(),
            }
        )
        return
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
@json_option
def prune(
    config_path: Path | None, older_than_days: float | None, vacuum: bool, as_json: bool
) -> None:
    """Prune old snapshots, keeping those events refer to and each day's first and last."""
    from store import Store

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
        if as_json:
            echo_json(
                {
                    "snapshots_deleted": report.snapshots_deleted,
                    "metric_rows_deleted": report.metric_rows_deleted,
                    "older_than_days": days,
                }
            )
            return
        click.echo(
            f"pruned {report.snapshots_deleted} snapshots "
            f"({report.metric_rows_deleted} metric rows) older than {days:g} days"
        )

    run_async(main_)
