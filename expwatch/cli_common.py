"""Helpers shared by the CLI's commands: options, settings, running async code, exit codes."""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:  # imported where used: `expwatch --help` must not load the app
    from alerts import AlertTarget

    from .config import Settings

EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130

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


NOISY_LOGGERS = (
    "alembic",
    "httpx",
    "httpcore",
    "apprise",
    "mcp",
    "fastmcp",
    "uvicorn",
    "sse_starlette",
)
CONTEXT_FIELDS = ("source", "experiment")
"""`extra=` fields the watcher attaches to its records; both formats show them."""
STRUCTURED_FIELDS = ("audit",)
"""`extra=` fields kept whole in JSON logs (the MCP audit record: client, call, duration,
outcome); text logs carry the same facts in the message."""


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


class RedactApprise(logging.Filter):
    """Apprise logs target URLs, which hold credentials (Slack tokens, SMTP passwords):
    keep its messages, drop the URLs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "apprise" or record.name.startswith("apprise."):
            record.msg = _URL.sub("[url redacted]", record.getMessage())
            record.args = None
        return True


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message [source/experiment]`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = "/".join(str(v) for f in CONTEXT_FIELDS if (v := getattr(record, f, None)))
        return f"{line} [{context}]" if context else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the watcher's context fields,
    and the exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS + STRUCTURED_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr (stdout belongs to MCP over stdio and to --json output), as text or as
    JSON lines; third-party loggers stay at WARNING unless DEBUG is asked for."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RedactApprise())
    handler.addFilter(AnsweredToolErrors())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # FastMCP gives its logger rich handlers of its own (a rich traceback per error answered,
    # about 100 ms each, outside our format and filters): route it through ours instead.
    os.environ.setdefault("FASTMCP_LOG_ENABLED", "false")  # read when fastmcp is imported
    fastmcp = logging.getLogger("fastmcp")
    fastmcp.handlers.clear()  # in case it was imported already
    fastmcp.propagate = True


class AnsweredToolErrors(logging.Filter):
    """A ToolError or ResourceError is an answer the client gets (an unknown experiment, a
    bad argument), not a crash: keep FastMCP's one line about it, drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and any(c.__name__ == "FastMCPError" for c in type(exc).__mro__):
            record.exc_info = None
            record.exc_text = None
        return True


def _verbose_requested() -> bool:
    context = click.get_current_context(silent=True)
    return bool(context and context.find_root().params.get("verbose"))


def load_settings(config_path: Path | None) -> Settings:
    from store import ConfigError

    from .config import load_config

    try:
        settings = load_config(config_path)
    except ConfigError as exc:
        click.echo(f"expwatch: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    setup_logging("DEBUG" if _verbose_requested() else settings.log_level, settings.log_format)
    return settings


def load_alert_targets(settings: Settings) -> list[AlertTarget]:
    """The configured alert targets, or a message and exit code 2 for a bad one."""
    from store import ConfigError

    from .alerting import alert_targets

    try:
        return alert_targets(settings)
    except ConfigError as exc:
        click.echo(f"expwatch: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


T = TypeVar("T")


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run `fn` under anyio (asyncio), with errors turned into messages and exit codes."""
    import anyio

    from store import ConfigError, ExpwatchError, leaves

    try:
        return anyio.run(fn, backend="asyncio")
    except ConfigError as exc:
        click.echo(f"expwatch: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    except ExpwatchError as exc:
        click.echo(f"expwatch: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    except BaseExceptionGroup as group:  # raised inside a task group (e.g. at start-up)
        errors = leaves(group)
        if not all(isinstance(e, ExpwatchError) for e in errors):
            raise
        click.echo(f"expwatch: {errors[0]}", err=True)
        sys.exit(EXIT_CONFIG if isinstance(errors[0], ConfigError) else EXIT_FAILURE)


async def run_until_stopped(
    main: Callable[..., Awaitable[Any]], *, duration_seconds: float | None = None
) -> None:
    """Run `main` until it returns, SIGINT/SIGTERM arrives, or `duration_seconds` pass.

    The first signal cancels `main`, whose records in flight finish (they are shielded) and
    whose servers shut down within their grace periods; a second signal exits at once.
    """
    import anyio

    log = logging.getLogger("expwatch")
    async with anyio.create_task_group() as outer:
        with anyio.CancelScope() as work:

            async def watch_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        if work.cancel_called:
                            log.warning("%s received again: exiting now", name)
                            os._exit(EXIT_INTERRUPTED)
                        log.info("%s received: stopping (send it again to force)", name)
                        work.cancel()

            outer.start_soon(watch_signals)
            if duration_seconds is not None:
                work.deadline = anyio.current_time() + duration_seconds
            await main()
        outer.cancel_scope.cancel()


class Timestamp(click.ParamType[datetime]):
    """An ISO 8601 date or date-time; without an offset it is taken as UTC."""

    name = "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(
                f"{value!r} is not an ISO 8601 date or time (e.g. 2026-03-02 or "
                "2026-03-02T09:00:00Z)",
                param,
                ctx,
            )
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def echo_json(value: Any) -> None:
    """`value` as indented JSON on stdout; times in ISO 8601."""
    click.echo(json.dumps(value, indent=2, default=_json_default))


def json_line(value: Any) -> str:
    """`value` as one line of JSON (JSON Lines); times in ISO 8601."""
    return json.dumps(value, default=_json_default)


def _json_default(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def settle_heap() -> None:
    """Move everything built at start-up out of the cyclic collector's way.

    A long-running daemon keeps its start-up objects (modules, engines, servers) for good;
    freezing them keeps full collections short, which measured p99 of a 500-point trajectory
    query fall from ~40 ms to ~10 ms (bench/store_bench.py).
    """
    gc.collect()
    gc.freeze()
