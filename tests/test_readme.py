"""The README run as written: the Claude Desktop entry starts a server that answers a real
stdio client, and every tool, resource and prompt it offers is named in the README; the
backup commands copy a live database whole; CI runs the quick-start commands it shows."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from store import Event, EventKind, Store

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def client_setup_section() -> str:
    start = README.index("## Connecting an MCP client")
    return README[start : README.index("\n## ", start + 1)]


def desktop_entry() -> dict[str, object]:
    [block] = re.findall(r"```json\n(.*?)```", client_setup_section(), flags=re.DOTALL)
    entry: dict[str, object] = json.loads(block)["mcpServers"]["expwatch"]
    return entry


@pytest.mark.anyio
async def test_the_claude_desktop_entry_starts_a_server_a_client_can_use(tmp_path: Path) -> None:
    entry = desktop_entry()
    command, args = entry["command"], entry["args"]
    assert isinstance(command, str) and isinstance(args, list)
    # The placeholders, replaced by this checkout's paths, as a user would.
    assert command == "/path/to/expwatch/.venv/bin/expwatch"
    installed = Path(sys.executable).parent / "expwatch"
    if not installed.exists():
        pytest.skip(f"the expwatch console script is not installed beside {sys.executable}")
    config = tmp_path / "expwatch.toml"
    config.write_text('[store]\npath = "readme.db"\n')
    args = [str(config) if a == "/path/to/expwatch.toml" else a for a in args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPWATCH_")}
    server = StdioServerParameters(command=str(installed), args=args, env=env, cwd=str(tmp_path))
    with anyio.fail_after(30):
        async with Client(server) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            resources = {r.uri for r in (await client.list_resources()).resources}
            templates = {
                t.uri_template for t in (await client.list_resource_templates()).resource_templates
            }
            prompts = {p.name for p in (await client.list_prompts()).prompts}
            index = await client.read_resource("experiments://index")
    assert index.contents and (tmp_path / "readme.db").exists()
    section = client_setup_section()
    for name in sorted(tools | prompts):
        assert f"`{name}`" in section, f"README does not mention {name}"
    for uri in sorted(resources | templates):
        shown = uri.replace("{experiment_id}", "{id}").replace("{metric}", "{metric_id}")
        assert f"`{shown}`" in section, f"README does not mention {uri}"


def operations_sh_block(after: str) -> list[str]:
    """The commands of the first ```sh block after `after` in the Operations section."""
    start = README.index("## Operations")
    section = README[start : README.index("\n## ", start + 1)]
    block = re.search(r"```sh\n(.*?)```", section[section.index(after) :], flags=re.DOTALL)
    assert block is not None
    return [line.strip() for line in block[1].splitlines() if line.strip()]


@pytest.mark.anyio
async def test_the_backup_commands_copy_a_live_wal_database_whole(tmp_path: Path) -> None:
    """The README's backup commands, run as written beside an open store whose latest commits
    are still only in the -wal file, each make a copy that holds every event."""
    commands = operations_sh_block("Backup:")
    assert [c.split()[0] for c in commands] == ["sqlite3", "python3"]
    database = tmp_path / "expwatch.db"
    store = await Store.open(f"sqlite+aiosqlite:///{database}")
    try:
        when = datetime(2026, 3, 2, tzinfo=UTC)
        recorded = await store.record_events(
            [
                Event(
                    kind=EventKind.SRM_DETECTED,
                    source="gb",
                    experiment_id=f"e{i}",
                    occurred_at=when,
                )
                for i in range(20)
            ]
        )
        wal = database.with_name("expwatch.db-wal")
        assert wal.stat().st_size > 0, "the test needs commits that are still in the WAL"
        for command in commands:
            if shutil.which(command.split()[0]) is None:
                continue  # the sqlite3 shell is optional; the Python line always runs
            copy = tmp_path / "expwatch-backup.db"
            copy.unlink(missing_ok=True)
            result = await anyio.run_process(["sh", "-c", command], cwd=tmp_path, check=False)
            assert result.returncode == 0, (command, result.stderr)
            with closing(sqlite3.connect(copy)) as backup:
                [(count,)] = backup.execute("SELECT count(*) FROM events").fetchall()
                [(check,)] = backup.execute("PRAGMA integrity_check").fetchall()
            assert (count, check) == (len(recorded), "ok"), command
    finally:
        await store.aclose()


def test_ci_runs_the_two_quick_start_commands_the_readme_shows() -> None:
    """.ci/readme_commands.py finds the demo and the test command in the Quick start (each
    makes its own .venv), and .ci/run runs exactly what it prints."""
    script = ROOT / ".ci" / "readme_commands.py"
    demo, tests = (
        subprocess.run(
            [sys.executable, str(script), name], capture_output=True, text=True, check=True
        ).stdout.strip()
        for name in ("demo", "tests")
    )
    for command in (demo, tests):
        assert command.startswith("python3 -m venv .venv && "), command
        assert f"```sh\n{command}\n```" in README
    assert "expwatch demo --duration" in demo and tests.endswith(".venv/bin/pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "demo_command=$(python3 .ci/readme_commands.py demo)" in ci
    assert "tests_command=$(python3 .ci/readme_commands.py tests)" in ci
    assert 'bash -c "$demo_command"' in ci and 'bash -c "$tests_command"' in ci
