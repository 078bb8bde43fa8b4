"""The `expwatch` command as a user runs it: real processes, a simulator on loopback."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner
from mcp import Client, types
from mcp.client.stdio import StdioServerParameters

from expwatch.cli import main
from expwatch.cli_common import JsonFormatter
from expwatch.serving import serve_asgi
from simulator import build_growthbook_app, default_scenario
from tests.helpers import ManualClock

KEY = "secret_cli_key_4242"
ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["run", "mcp", "demo", "status", "events", "history", "check-config"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    """`expwatch COMMAND --help` explains the command and exits 0."""
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--help" in result.output


def test_check_config_rejects_a_typo_with_exit_code_2(tmp_path: Path) -> None:
    """A bad config file is one message naming the key and the file, and exit code 2."""
    path = tmp_path / "bad.toml"
    path.write_text("[watcher]\npoll_interval = 5\n")
    result = CliRunner().invoke(main, ["check-config", "--config", str(path)])
    assert result.exit_code == 2
    assert "watcher.poll_interval: unknown key" in result.output and str(path) in result.output


def test_check_config_rejects_an_alert_url_apprise_does_not_know(tmp_path: Path) -> None:
    """An alert URL Apprise cannot parse is caught before anything starts."""
    path = tmp_path / "bad.toml"
    path.write_text('[alerts.targets.pager]\nurl = "nosuchscheme://x"\n')
    result = CliRunner().invoke(main, ["check-config", "--config", str(path)])
    assert result.exit_code == 2
    assert "alerts.targets.pager.url" in result.output and "nosuchscheme" not in result.output


@dataclass
class Deployment:
    config: Path
    database: Path


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    """A simulator on loopback at refresh 12 (significant, SRM), and a config for it."""
    clock = ManualClock()
    scenario = default_scenario(start=clock.now(), refresh_seconds=60)
    clock.advance(timedelta(minutes=12, seconds=1).total_seconds())
    app = build_growthbook_app(scenario, api_key=KEY, clock=clock.now)
    async with anyio.create_task_group() as tg:
        port = await tg.start(lambda task_status: serve_asgi(app, task_status=task_status))
        config = tmp_path / "expwatch.toml"
        config.write_text(
            f'[store]\npath = "watch.db"\n[sources.gb]\nbase_url = "http://127.0.0.1:{port}"\n'
        )
        yield Deployment(config=config, database=tmp_path / "watch.db")
        tg.cancel_scope.cancel()


async def expwatch(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "EXPWATCH_SOURCES__GB__API_KEY": KEY}
    result = await anyio.run_process(
        [sys.executable, "-m", "expwatch", *args], env=env, cwd=ROOT, check=False
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


@pytest.mark.anyio
async def test_run_once_records_snapshots_and_events_lists_them_as_json(
    deployment: Deployment,
) -> None:
    """`run --once` polls and exits 0; `events --json` and `status --json` show what it saw;
    the API key appears in no output and not in the database."""
    code, out, err = await expwatch("run", "--config", str(deployment.config), "--once")
    assert code == 0, err
    code, out, err = await expwatch("events", "--config", str(deployment.config), "--json")
    assert code == 0, err
    events = json.loads(out)
    kinds = {(e["experiment_id"], e["kind"], e["metric_id"]) for e in events}
    assert ("exp_checkout_redesign", "significance_changed", "met_conversion") in kinds
    assert ("exp_checkout_redesign", "srm_detected", None) in kinds
    assert all({"id", "occurred_at", "details"} <= e.keys() for e in events)

    code, out, err = await expwatch("status", "--config", str(deployment.config), "--json")
    status = json.loads(out)
    snapshots = {e["experiment_id"]: e["snapshots"] for e in status["experiments"]}
    assert snapshots["exp_checkout_redesign"] == 1
    [source] = status["sources"]
    assert source["name"] == "gb" and source["breaker"]["state"] == "closed"
    assert source["lag_seconds"] >= 0 and datetime.fromisoformat(source["last_success_at"])

    code, out, err = await expwatch(
        "unwatch", "exp_pricing_page", "--config", str(deployment.config)
    )
    assert code == 0 and "gb/exp_pricing_page is not watched" in out
    code, out, err = await expwatch(
        "watch", "exp_x", "--source", "nope", "--config", str(deployment.config)
    )
    assert code == 2 and "no source 'nope' in the configuration; sources: gb" in err
    code, out, err = await expwatch("status", "--config", str(deployment.config))
    assert re.search(r"^gb +growthbook +closed +60/min ", out, re.MULTILINE), out
    assert re.search(r"^gb +exp_pricing_page +never watch$", out, re.MULTILINE), out

    code, out, err = await expwatch(
        "history",
        "exp_checkout_redesign",
        "--metric",
        "met_conversion",
        "--config",
        str(deployment.config),
        "--json",
    )
    assert code == 0, err
    history = json.loads(out)
    [series] = history["trajectory"].values()
    assert len(series) == 1 and series[0]["platform_verdict"] == "won"
    [change] = history["significance_changes"]
    assert (change["before"], change["after"]) == (None, "won")
    assert [e["kind"] for e in history["srm_changes"]] == ["srm_detected"]

    code, out, err = await expwatch(
        "events",
        "--kind",
        "srm_detected",
        "--since",
        "2026-01-01",
        "--config",
        str(deployment.config),
        "--json",
    )
    assert code == 0, err
    assert [e["kind"] for e in json.loads(out)] == ["srm_detected"]
    code, out, err = await expwatch(
        "history", "exp_checkout_redesing", "--config", str(deployment.config)
    )
    assert code == 1 and "Did you mean: exp_checkout_redesign" in err

    logged = await expwatch("run", "--config", str(deployment.config), "--once")
    assert all(KEY not in text for text in logged[1:])
    assert KEY.encode() not in deployment.database.read_bytes()


@pytest.mark.anyio
async def test_a_wrong_api_key_is_reported_and_run_once_still_exits_cleanly(
    deployment: Deployment,
) -> None:
    """A rejected key becomes a source_error event with guidance; the command does not crash."""
    env_key = "EXPWATCH_SOURCES__GB__API_KEY"
    result = await anyio.run_process(
        [sys.executable, "-m", "expwatch", "run", "--config", str(deployment.config), "--once"],
        env={**os.environ, env_key: "wrong_key_0000"},
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0
    code, out, _ = await expwatch("events", "--config", str(deployment.config), "--json")
    assert code == 0
    [event] = json.loads(out)
    assert event["kind"] == "source_error" and "check the api_key of source 'gb'" in event["after"]
    assert b"wrong_key_0000" not in result.stderr + result.stdout


@pytest.mark.anyio
async def test_the_stdio_mcp_server_answers_from_the_store_and_explains_unknown_ids(
    deployment: Deployment,
) -> None:
    """`expwatch mcp` over stdio serves results to a real client; a typo'd id gets a useful
    MCP error that names the closest known id."""
    code, _, err = await expwatch("run", "--config", str(deployment.config), "--once")
    assert code == 0, err
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "expwatch", "mcp", "--config", str(deployment.config)],
        cwd=ROOT,
        env={**os.environ, "EXPWATCH_SOURCES__GB__API_KEY": KEY},
    )
    with anyio.fail_after(30):
        async with Client(server) as client:
            templates = await client.list_resource_templates()
            assert sorted(t.uri_template for t in templates.resource_templates) == [
                "experiments://{experiment_id}/health",
                "experiments://{experiment_id}/history",
                "experiments://{experiment_id}/metrics/{metric}",
                "experiments://{experiment_id}/results",
            ]
            resources = await client.list_resources()
            assert sorted(r.uri for r in resources.resources) == [
                "experiments://index",
                "watcher://status",
            ]
            read = await client.read_resource("experiments://exp_checkout_redesign/results")
            content = read.contents[0]
            assert isinstance(content, types.TextResourceContents)
            assert json.loads(content.text)["health"]["srm_p_value"] < 0.001
            result = await client.call_tool(
                "get_experiment_results", {"experiment_id": "exp_checkout_redesing"}
            )
            assert result.is_error
            [text] = result.content
            assert isinstance(text, types.TextContent)
            assert "Did you mean: exp_checkout_redesign" in text.text
            bad = await client.call_tool("get_experiment_results", {"experiment_id": 42})
            assert bad.is_error
            [text] = bad.content
            assert isinstance(text, types.TextContent)
            assert "experiment_id" in text.text, text.text


@pytest.mark.anyio
async def test_json_logs_carry_the_source_and_never_the_key(deployment: Deployment) -> None:
    """`log_format = "json"`: every stderr line is one JSON object; the watcher's lines name
    their source; `-v` turns on debug logging; the API key appears nowhere."""
    env = {**os.environ, "EXPWATCH_SOURCES__GB__API_KEY": KEY, "EXPWATCH_LOG_FORMAT": "json"}
    command = [sys.executable, "-m", "expwatch", "-v", "run", "--config", str(deployment.config)]
    result = await anyio.run_process([*command, "--once"], env=env, cwd=ROOT, check=False)
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    entries = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert any(e["level"] == "DEBUG" for e in entries)
    cycle = [e for e in entries if e["message"].startswith("poll cycle")]
    assert cycle and {"time", "level", "logger", "message"} <= set(cycle[0])
    assert KEY not in stderr and KEY not in result.stdout.decode()


def test_json_logs_keep_the_mcp_audit_record_whole() -> None:
    audit = {"client": "stdio", "name": "get_experiment_results", "duration_ms": 1.5}
    record = logging.LogRecord("expwatch.audit", logging.INFO, __file__, 1, "call", None, None)
    record.audit = audit
    entry = json.loads(JsonFormatter().format(record))
    assert entry["audit"] == audit and entry["logger"] == "expwatch.audit"
