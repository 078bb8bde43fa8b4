"""Secrets stay secret: canary API keys (GrowthBook and Statsig, right and wrong), an alert
URL's password and the MCP bearer token are driven through every path that logs or reports —
successful cycles at DEBUG in text and JSON logs, 401s (the Statsig simulator echoes the
key it refused), 5xx, 429, timeouts, malformed and drifted payloads, dropped connections, a
TLS failure, an unexpected exception inside a cycle, failing alert deliveries, every MCP
resource, tool and prompt (in memory and over HTTP with the token), the CLI's reports, the
database file, and a daemon stopped by SIGTERM — and none of them shows up anywhere.

Each path's own evidence (the 401 was logged, the redacted form was recorded, ...) is
asserted too, so a path that silently stopped being exercised fails the test."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import ssl
import sys
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import trustme
from anyio.streams.buffered import BufferedByteReceiveStream
from click.testing import CliRunner, Result
from fastmcp import Client
from fastmcp.exceptions import ToolError
from mcp import Client as SdkClient
from mcp.client.streamable_http import streamable_http_client

from expwatch import open_app
from expwatch.app import App
from expwatch.cli import main
from expwatch.cli_common import JsonFormatter, setup_logging
from expwatch.config import load_config
from expwatch.serving import serve_asgi
from simulator import (
    DriftFault,
    Faults,
    HangFault,
    MalformedBodyFault,
    RateLimitFault,
    ResetFault,
    StatusFault,
    build_growthbook_app,
    build_statsig_app,
    default_scenario,
    default_statsig_scenario,
    set_field,
)
from store import EventKind
from tests.helpers import ManualClock

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
MARK = "7f3a9c"
"""In every secret: its appearance anywhere, whole or in part, is a leak."""
GB_KEY = f"secret_CANARY_gb_{MARK}"
SS_KEY = f"console-CANARY_ss_{MARK}"
WRONG_GB_KEY = f"secret_CANARY_wrong_gb_{MARK}"
WRONG_SS_KEY = f"console-CANARY_wrong_ss_{MARK}"
TLS_KEY = f"secret_CANARY_tls_{MARK}"
HOOK_PASSWORD = f"pw_CANARY_hook_{MARK}"
MCP_TOKEN = f"tok_CANARY_mcp_{MARK}_0123456789"
SECRETS = (GB_KEY, SS_KEY, WRONG_GB_KEY, WRONG_SS_KEY, TLS_KEY, HOOK_PASSWORD, MCP_TOKEN)
REFRESH_SECONDS = 60.0
WAIT_SECONDS = 30


def leaks(text: str) -> list[str]:
    """The lines of `text` that show a secret, or a piece of one."""
    return [line for line in text.splitlines() if MARK in line]


# -- the rig: simulators on loopback, a config that names them ----------------------------


class Tripwire(httpx.AsyncBaseTransport):
    """The real HTTP transport, which raises an unexpected (non-httpx) exception for a
    request whose path ends with `armed`: a bug deep in a dependency, inside a cycle."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.armed: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.armed and request.url.path.endswith(self.armed):
            raise RuntimeError(f"transport bug while sending {request.method} {request.url}")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Platforms:
    """The GrowthBook and Statsig simulators (HTTP, with faults), one of each for the wrong
    keys, and a GrowthBook with a certificate from an unknown CA (HTTPS)."""

    clock: ManualClock
    start: datetime
    gb_faults: Faults
    ss_faults: Faults
    gb_url: str
    ss_url: str
    tls_url: str
    gbwrong_url: str
    sswrong_url: str

    def at_refresh(self, index: int) -> None:
        """Move the shared clock to just after the simulators' refresh number `index`."""
        target = self.start + timedelta(seconds=index * REFRESH_SECONDS + 1)
        self.clock.advance(max(0.0, (target - self.clock.now()).total_seconds()))


@asynccontextmanager
async def platforms() -> AsyncIterator[Platforms]:
    clock = ManualClock()
    start = clock.now()
    gb_faults, ss_faults = Faults(), Faults()
    gb = build_growthbook_app(
        default_scenario(start=start, refresh_seconds=REFRESH_SECONDS),
        api_key=GB_KEY,
        clock=clock.now,
        rate_limit_per_minute=100_000,
        faults=gb_faults,
    )
    ss = build_statsig_app(
        default_statsig_scenario(start=start, refresh_seconds=REFRESH_SECONDS),
        api_key=SS_KEY,
        clock=clock.now,
        faults=ss_faults,
    )
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    tls = build_growthbook_app(default_scenario(start=start), api_key=TLS_KEY, clock=clock.now)
    # The wrong keys go to platforms of their own, which the faults above leave alone (a
    # fault that quotes a key quotes the key of the request it answers).
    gb_other = build_growthbook_app(default_scenario(start=start), api_key=GB_KEY, clock=clock.now)
    ss_other = build_statsig_app(
        default_statsig_scenario(start=start), api_key=SS_KEY, clock=clock.now
    )
    served = ((gb, None), (ss, None), (tls, server_context), (gb_other, None), (ss_other, None))
    async with anyio.create_task_group() as tg:
        ports = [
            await tg.start(lambda task_status, app=app, ctx=ctx: serve_asgi(
                app, ssl_context=ctx, task_status=task_status
            ))
            for app, ctx in served
        ]  # fmt: skip
        yield Platforms(
            clock,
            start,
            gb_faults,
            ss_faults,
            gb_url=f"http://127.0.0.1:{ports[0]}",
            ss_url=f"http://127.0.0.1:{ports[1]}",
            tls_url=f"https://127.0.0.1:{ports[2]}",
            gbwrong_url=f"http://127.0.0.1:{ports[3]}",
            sswrong_url=f"http://127.0.0.1:{ports[4]}",
        )
        tg.cancel_scope.cancel()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(directory: Path, p: Platforms, *, log_format: str = "text") -> Path:
    """Every secret in the file but the GrowthBook key, which comes from the environment
    (EXPWATCH_SOURCES__GB__API_KEY), as the example config recommends."""
    common = (
        "retry_attempts = 2\nbreaker_failures = 1000\nrequest_timeout_seconds = 0.5\n"
        "rate_limit_per_minute = 0\n"
    )
    path = directory / "expwatch.toml"
    path.write_text(
        f'log_level = "DEBUG"\nlog_format = "{log_format}"\n'
        '[store]\npath = "secrets.db"\n'
        "[watcher]\npoll_timeout_seconds = 10\npoll_interval_seconds = 0.2\njitter = 0\n"
        f'[sources.gb]\nbase_url = "{p.gb_url}"\n{common}'
        f'[sources.ss]\nkind = "statsig"\nbase_url = "{p.ss_url}"\napi_key = "{SS_KEY}"\n{common}'
        f'[sources.gbwrong]\nbase_url = "{p.gbwrong_url}"\napi_key = "{WRONG_GB_KEY}"\n{common}'
        f'[sources.sswrong]\nkind = "statsig"\nbase_url = "{p.sswrong_url}"\n'
        f'api_key = "{WRONG_SS_KEY}"\n{common}'
        f'[sources.tls]\nbase_url = "{p.tls_url}"\napi_key = "{TLS_KEY}"\n{common}'
        "[alerts]\nretry_initial_seconds = 1\ngive_up_after_hours = 1\nsend_timeout_seconds = 5\n"
        "[alerts.rate_limit]\nper_experiment_per_hour = 1000\nglobal_per_hour = 1000\n"
        "[alerts.targets.hook]\n"
        f'url = "json://alerts:{HOOK_PASSWORD}@127.0.0.1:{closed_port()}/hook"\n'
        f'[mcp]\nauth_token = "{MCP_TOKEN}"\nport = 0\nclient_rate_limit_per_minute = 0\n'
    )
    return path


@dataclass
class Captured:
    """Every text a path produced, by path."""

    texts: dict[str, str] = field(default_factory=dict)

    def add(self, path: str, text: Any) -> None:
        self.texts[path] = self.texts.get(path, "") + (
            text if isinstance(text, str) else json.dumps(text, default=str)
        )

    def assert_no_leaks(self) -> None:
        leaked = {
            path: [line[:300] for line in found[:3]]
            for path, text in self.texts.items()
            if (found := leaks(text))
        }
        assert not leaked, json.dumps(leaked, indent=1, ensure_ascii=False)


def capture_logs() -> tuple[io.StringIO, io.StringIO]:
    """The CLI's logging at DEBUG, as text and (the same records) as JSON lines, each into
    a buffer: the handler, formatters and filters are setup_logging's own."""
    setup_logging("DEBUG", "text")
    [handler] = logging.getLogger().handlers
    text = io.StringIO()
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(text)
    as_json = io.StringIO()
    json_handler = logging.StreamHandler(as_json)
    json_handler.setFormatter(JsonFormatter())
    for log_filter in handler.filters:
        json_handler.addFilter(log_filter)
    logging.getLogger().addHandler(json_handler)
    return text, as_json


# -- the paths ----------------------------------------------------------------------------


async def poll_through_faults(app: App, p: Platforms, wire: Tripwire) -> list[str]:
    """Cycles at growing refreshes, each with the platforms misbehaving in another way;
    returns every cycle's errors."""
    errors: list[str] = []
    gb_results = "*/results*"
    ss_results = "*/pulse_results*"
    echoing_proxy = {"message": f"Invalid API key: {GB_KEY} (Authorization: Bearer {GB_KEY})"}
    plans: list[list[tuple[Faults, Any, str | None]]] = [
        [],  # a clean cycle: snapshots, events, alerts
        [(p.gb_faults, StatusFault(503), gb_results), (p.ss_faults, StatusFault(500), ss_results)],
        [(p.gb_faults, RateLimitFault(retry_after_seconds=0), None)],
        [(p.gb_faults, MalformedBodyFault(), gb_results)],
        [(p.ss_faults, MalformedBodyFault(), None)],
        [(p.gb_faults, StatusFault(401, body=echoing_proxy), None)],
        [(p.ss_faults, StatusFault(401, body={"message": f"bad key {SS_KEY}"}), None)],
        [(p.gb_faults, DriftFault(set_field("experiments.0.id", 42)), "*/experiments")],
        [(p.gb_faults, ResetFault(), gb_results)],
        [(p.ss_faults, HangFault(), ss_results)],
    ]  # fmt: skip
    for refresh, plan in enumerate(plans, start=1):
        rules = [(faults, faults.add(fault, path=path)) for faults, fault, path in plan]
        p.at_refresh(refresh)
        with anyio.fail_after(WAIT_SECONDS):
            report = await app.supervisor.poll_once()
        errors += report.errors
        for faults, rule in rules:
            faults.remove(rule)
    wire.armed = "/pulse_results"  # an unexpected exception inside the next cycle
    p.at_refresh(len(plans) + 1)
    with anyio.fail_after(WAIT_SECONDS):
        report = await app.supervisor.poll_once()
    errors += report.errors
    wire.armed = None
    return errors


async def fail_deliveries(app: App, p: Platforms) -> None:
    """Alerts to the target whose receiver is down: retried, then given up after an hour
    (an alert_delivery_failed event that carries the last error)."""
    with anyio.fail_after(WAIT_SECONDS):
        await app.dispatcher.deliver_pending()
        p.clock.advance(2 * 3600)
        await app.dispatcher.deliver_pending()


CALLED_WITH = [
    ("exp_checkout_redesign", "gb"),
    ("checkout_redesign", "ss"),
    ("exp_checkout_redesign", "gbwrong"),
    ("checkout_redesign", "sswrong"),
]


def arguments_for(schema: dict[str, Any], experiment_id: str, source: str) -> dict[str, Any]:
    values = {"experiment_id": experiment_id, "metric_name": "met_conversion", "source": source}
    return {name: values[name] for name in schema.get("required", [])} | (
        {"source": source} if "source" in schema["properties"] else {}
    )


async def read_everything_over_mcp(app: App, ids: dict[str, str]) -> list[str]:
    """Every resource (listed and templated, for each experiment and metric), every tool
    (for an experiment of each platform, and through each wrong key: refresh polls, and
    fails) and every prompt, through a real in-memory client; the texts of all answers
    and errors."""
    texts: list[str] = []
    async with Client(app.mcp) as client:
        for resource in await client.list_resources():
            texts += [str(c) for c in await client.read_resource(resource.uri)]
        for experiment_id in ids:
            for template in ("results", "health", "history", "metrics/met_conversion"):
                try:
                    contents = await client.read_resource(
                        f"experiments://{experiment_id}/{template}"
                    )
                    texts += [str(c) for c in contents]
                except Exception as exc:  # an MCP error answer is an answer to search too
                    texts.append(str(exc))
        for tool in await client.list_tools():
            for experiment_id, source in CALLED_WITH:
                arguments = arguments_for(tool.input_schema, experiment_id, source)
                try:
                    result = await client.call_tool(tool.name, arguments)
                    texts += [str(c) for c in result.content]
                    texts.append(json.dumps(result.structured_content, default=str))
                except ToolError as exc:
                    texts.append(str(exc))
        for prompt in await client.list_prompts():
            arguments = {a.name: next(iter(ids)) for a in prompt.arguments or [] if a.required}
            texts += [str(m) for m in (await client.get_prompt(prompt.name, arguments)).messages]
    return texts


async def use_mcp_over_http(app: App) -> list[str]:
    """The HTTP endpoint with the bearer token: a real client reads watcher://status and
    calls watcher_status; a request with a wrong token is refused (and logged)."""
    texts: list[str] = []
    async with anyio.create_task_group() as tg:
        port = await tg.start(lambda task_status: app.run(
            watch=False, mcp_http=("127.0.0.1", 0), task_status=task_status
        ))  # fmt: skip
        url = f"http://127.0.0.1:{port}/mcp"
        async with httpx.AsyncClient(timeout=WAIT_SECONDS) as plain:
            refused = await plain.post(
                url, json={}, headers={"Authorization": f"Bearer wrong{MCP_TOKEN[5:]}"}
            )
        assert refused.status_code == 401
        texts.append(refused.text)
        async with (
            httpx2.AsyncClient(
                headers={"Authorization": f"Bearer {MCP_TOKEN}"}, timeout=WAIT_SECONDS
            ) as http,
            SdkClient(streamable_http_client(url, http_client=http)) as client,
        ):
            status = await client.read_resource("watcher://status")
            texts += [str(c) for c in status.contents]
            called = await client.call_tool("watcher_status", {})
            texts += [str(c) for c in called.content]
        tg.cancel_scope.cancel()
    return texts


def run_cli(*args: str) -> str:
    """One `expwatch` command in this process (the click command itself): what it printed
    and, if it crashed, the traceback Python would print."""
    return output_of(CliRunner().invoke(main, list(args)))


def output_of(result: Result) -> str:
    crash = ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        crash = "".join(traceback.format_exception(result.exception))
    return result.stdout + result.stderr + crash


# -- the tests ----------------------------------------------------------------------------


@pytest.mark.usefixtures("restore_logging")
async def test_no_secret_shows_in_logs_errors_mcp_cli_or_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The canaries go through every path; none comes back out, and each path left its own
    evidence (so it was really exercised)."""
    monkeypatch.setenv("EXPWATCH_SOURCES__GB__API_KEY", GB_KEY)
    captured = Captured()
    text_log, json_log = capture_logs()
    wire = Tripwire()
    async with platforms() as p:
        config = write_config(tmp_path, p)
        settings = load_config(config)
        async with open_app(settings, clock=p.clock, transport=wire) as app:
            await app.dispatcher.start_cursor()
            errors = await poll_through_faults(app, p, wire)
            await fail_deliveries(app, p)
            ids = {e.experiment_id: e.source for e in await app.store.experiments()}
            mcp_texts = await read_everything_over_mcp(app, ids)
            http_texts = await use_mcp_over_http(app)
            events = await app.store.events_after(0)
    captured.add("cycle errors", "\n".join(errors))
    captured.add("events", [e.__dict__ for e in events])
    captured.add("MCP answers (in memory)", "\n".join(mcp_texts))
    captured.add("MCP answers (HTTP)", "\n".join(http_texts))
    captured.add("log (text)", text_log.getvalue())
    captured.add("log (json)", json_log.getvalue())
    # What libraries print themselves (fastmcp's rich tracebacks of failed tool calls,
    # uvicorn's of dropped connections) goes to stderr, beside the logs.
    printed = capsys.readouterr()
    captured.add("stderr and stdout", printed.err + printed.out)

    at = ["--config", str(config)]
    cli = {
        "status": ["status", *at],
        "status --json": ["status", *at, "--json"],
        "alerts outbox": ["alerts", "outbox", *at],
        "alerts outbox --json": ["alerts", "outbox", *at, "--json"],
        "events --json": ["events", *at, "--json"],
        "check-config": ["check-config", *at],
        "alerts test": ["alerts", "test", *at],
    }
    for label, args in cli.items():
        captured.add(f"expwatch {label}", await anyio.to_thread.run_sync(run_cli, *args))
    database = b"".join([f.read_bytes() for f in tmp_path.glob("secrets.db*")])  # noqa: ASYNC240 -- a few small files, after everything stopped
    captured.add("database bytes", database.decode("latin-1"))

    captured.assert_no_leaks()

    # Evidence that each path ran (and was redacted where it echoes what it refused).
    log = captured.texts["log (text)"]
    kinds = {e.kind for e in events}
    source_errors = " ".join(str(e.after) for e in events if e.kind is EventKind.SOURCE_ERROR)
    assert {EventKind.SIGNIFICANCE_CHANGED, EventKind.SOURCE_ERROR} <= kinds
    assert EventKind.ALERT_DELIVERY_FAILED in kinds
    assert "HTTP 401" in source_errors and "check the api_key of source 'gbwrong'" in source_errors
    assert "[redacted]" in source_errors  # Statsig's 401 quoted the key it refused
    assert "certificate verif" in source_errors.lower()
    for evidence in ("HTTP 503", "HTTP 500", "429", "unexpected payload", "did not answer"):
        assert evidence in log, evidence
    assert "unexpected failure polling" in log and "RuntimeError: transport bug" in log
    assert "alert target 'hook'" in log and "retrying" in log
    assert "MCP HTTP request refused" in log
    assert '"level": "DEBUG"' in captured.texts["log (json)"]
    assert "hook" in captured.texts["expwatch status"]
    assert "FAILED" in captured.texts["expwatch alerts test"]
    assert "configuration OK: 5 source(s)" in captured.texts["expwatch check-config"]


async def test_a_daemon_stopped_by_sigterm_prints_no_secret(tmp_path: Path) -> None:
    """`expwatch -v run --mcp-http` with JSON logs, in a real process: its cycles (with the
    wrong keys and the untrusted certificate failing) and its SIGTERM stop show no secret."""
    async with platforms() as p:
        p.at_refresh(3)
        config = write_config(tmp_path, p, log_format="json")
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EXPWATCH_")}
        env["EXPWATCH_SOURCES__GB__API_KEY"] = GB_KEY
        command = [sys.executable, "-m", "expwatch", "-v", "run", "--mcp-http"]
        stderr = b""
        with anyio.fail_after(60):
            async with await anyio.open_process(
                [*command, "--config", str(config)], env=env, cwd=ROOT
            ) as process:
                assert process.stderr is not None and process.stdout is not None
                lines = BufferedByteReceiveStream(process.stderr)
                while b"poll cycle" not in stderr or b"MCP endpoint" not in stderr:
                    stderr += await lines.receive_until(b"\n", 1 << 20) + b"\n"
                process.send_signal(signal.SIGTERM)
                async for chunk in lines:
                    stderr += chunk
                stdout = b"".join([chunk async for chunk in process.stdout])
                code = await process.wait()
    text = stderr.decode()
    assert code == 0, text[-3000:]
    assert not leaks(text) and not leaks(stdout.decode()), leaks(text)[:5]
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    messages = " ".join(e["message"] for e in entries)
    assert "SIGTERM received" in messages and "HTTP 401" in messages
    assert any(e["level"] == "DEBUG" for e in entries)


def bad_configs(port: int) -> dict[str, tuple[str, dict[str, str]]]:
    """Configurations that are wrong where a secret sits, each with its environment (and a
    valid one whose database, at `port`, does not answer)."""
    return {
        "api_key of the wrong type": (f'[sources.gb]\napi_key = ["{GB_KEY}"]\n', {}),
        "api_key unquoted (not TOML)": (f"[sources.gb]\napi_key = {GB_KEY}\n", {}),
        "a secret as the source kind": (f'[sources.gb]\nkind = "{GB_KEY}"\napi_key = "k"\n', {}),
        "an alert URL Apprise refuses": (
            f'[alerts.targets.pager]\nurl = "nosuchscheme://u:{HOOK_PASSWORD}@host/"\n',
            {},
        ),
        "a Slack URL with a malformed token": (
            f'[alerts.targets.slack]\nurl = "slack://T1JJ3T3L2/A1BRTD4JD/{GB_KEY}!"\n',
            {},
        ),
        "an MCP token with a space": (f'[mcp]\nauth_token = "{MCP_TOKEN} x"\n', {}),
        "tags from the environment, not JSON": (
            '[sources.gb]\napi_key = "k"\n',
            {"EXPWATCH_SOURCES__GB__TAGS": GB_KEY},
        ),
        "a database URL with a password": (
            f'[store]\nurl = "postgresql+asyncpg://expwatch:{HOOK_PASSWORD}@127.0.0.1:{port}/x"\n',
            {},
        ),
    }


@pytest.mark.usefixtures("restore_logging")
def test_configuration_errors_and_reports_never_echo_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pydantic quotes the input it rejects, Apprise the token it cannot parse, the TOML
    parser the line: `check-config` says what is wrong with each secret-holding key (exit
    2) without its value; a database URL's password shows neither in `check-config` nor in
    the error `status` reports when the database cannot be reached."""
    for name in [k for k in os.environ if k.upper().startswith("EXPWATCH_")]:
        monkeypatch.delenv(name)
    outputs = {}
    port = closed_port()
    for label, (text, environment) in bad_configs(port).items():
        path = tmp_path / f"{len(outputs)}.toml"
        path.write_text(text)
        with monkeypatch.context() as env:
            for name, value in environment.items():
                env.setenv(name, value)
            result = CliRunner().invoke(main, ["check-config", "--config", str(path)])
            outputs[label] = (result.exit_code, output_of(result))
            if label == "a database URL with a password":
                status = CliRunner().invoke(main, ["status", "--config", str(path)])
                outputs["status, database unreachable"] = (status.exit_code, output_of(status))
    leaked = {label: out for label, (_, out) in outputs.items() if leaks(out)}
    assert not leaked, leaked
    codes = {label: code for label, (code, _) in outputs.items()}
    assert codes == {
        **dict.fromkeys(bad_configs(port), 2),
        "a database URL with a password": 0,  # a valid configuration, shown without password
        "status, database unreachable": 1,
    }, outputs
    assert "expwatch:***@127.0.0.1" in outputs["a database URL with a password"][1]
    assert f"127.0.0.1', {port}" in outputs["status, database unreachable"][1]
