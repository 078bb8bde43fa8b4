"""`expwatch events`: the table, and `--follow` tailing a real database that this test
writes to while a real `expwatch` process prints what it sees."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from click.testing import CliRunner

from expwatch.cli import main
from store import Event, EventKind, Store

ROOT = Path(__file__).resolve().parents[2]
WHEN = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def event(kind: EventKind, experiment_id: str, after: object = None) -> Event:
    return Event(kind=kind, source="gb", experiment_id=experiment_id, after=after, occurred_at=WHEN)


@dataclass
class Setup:
    config: Path
    database: Path


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    config = tmp_path / "expwatch.toml"
    config.write_text('[store]\npath = "events.db"\n')
    return Setup(config=config, database=tmp_path / "events.db")


@asynccontextmanager
async def opened(setup: Setup) -> AsyncIterator[Store]:
    store = await Store.open(f"sqlite+aiosqlite:///{setup.database}")
    try:
        yield store
    finally:
        await store.aclose()


class Lines:
    """The lines a process writes to one of its pipes, read as they come."""

    def __init__(self, stream: anyio.abc.ByteReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> str:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive()  # EndOfStream if it closes first
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    async def rest(self) -> str:
        async for chunk in self._stream:
            self._buffer += chunk
        return self._buffer.decode()


@asynccontextmanager
async def follower(setup: Setup, *args: str) -> AsyncIterator[tuple[Process, Lines, Lines]]:
    command = [sys.executable, "-m", "expwatch", "events", "--follow", *args]
    command += ["--config", str(setup.config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPWATCH_")}
    async with await anyio.open_process(command, env=env, cwd=ROOT) as process:
        assert process.stdout is not None and process.stderr is not None
        try:
            yield process, Lines(process.stdout), Lines(process.stderr)
        finally:
            if process.returncode is None:
                process.kill()


@pytest.mark.anyio
async def test_follow_prints_matching_events_as_json_lines_until_sigterm(setup: Setup) -> None:
    """`--follow --json` prints the backlog after --after, then each new event that matches
    the kind and experiment filters, one JSON object per line, as it is committed; SIGTERM
    stops it with exit code 0."""
    async with opened(setup) as store:
        [first] = await store.record_events([event(EventKind.SRM_DETECTED, "exp_a", 0.0001)])
        kinds = ["--kind", "srm_detected", "--kind", "srm_cleared"]
        args = ["--json", "--after", "0", "--experiment", "exp_a", *kinds]
        with anyio.fail_after(30):
            async with follower(setup, *args) as (process, out, err):
                assert json.loads(await out.next())["id"] == first.id
                await store.record_events([event(EventKind.STATUS_CHANGED, "exp_a", "stopped")])
                await store.record_events([event(EventKind.SRM_DETECTED, "exp_b", 0.001)])
                [cleared] = await store.record_events([event(EventKind.SRM_CLEARED, "exp_a")])
                line = json.loads(await out.next())
                assert (line["id"], line["kind"], line["experiment_id"]) == (
                    cleared.id,
                    "srm_cleared",
                    "exp_a",
                )
                process.send_signal(signal.SIGTERM)
                assert await process.wait() == 0
                assert await out.rest() == ""
                assert "Traceback" not in await err.rest()


@pytest.mark.anyio
async def test_follow_starts_at_the_end_of_the_log_and_stops_on_ctrl_c(setup: Setup) -> None:
    """Without --after or --since, `--follow` prints only events recorded after it started,
    as one human line each; Ctrl-C stops it with exit code 0."""
    async with opened(setup) as store:
        await store.record_events([event(EventKind.SRM_DETECTED, "exp_old", 0.0001)])
        with anyio.fail_after(30):
            async with follower(setup) as (process, out, err):
                assert "following events after #1;" in await err.next()
                [new] = await store.record_events(
                    [event(EventKind.STATUS_CHANGED, "exp_new", "stopped")]
                )
                line = await out.next()
                assert re.match(
                    rf"#{new.id} +2026-03-02 09:30:00  status_changed +exp_new  - → stopped$",
                    line,
                ), line
                process.send_signal(signal.SIGINT)
                assert await process.wait() == 0
                assert "exp_old" not in await out.rest()


@pytest.mark.anyio
async def test_follow_exits_0_quietly_when_its_reader_goes_away(setup: Setup) -> None:
    """`expwatch events --follow | head -n 1`: once head has closed the pipe, the next event
    ends the follower with exit code 0 and nothing on stderr but its start line."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    follow = f"{sys.executable} -m expwatch events --follow --after 0 --config {setup.config}"
    # The reader closes its end and says so once head is done: no reader holds the pipe then.
    script = f"set -o pipefail; {follow} | (head -n 1; exec 0<&-; echo closed >&2)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPWATCH_")}
    async with opened(setup) as store:
        with anyio.fail_after(30):
            async with await anyio.open_process([bash, "-c", script], env=env, cwd=ROOT) as shell:
                assert shell.stdout is not None and shell.stderr is not None
                out, err = Lines(shell.stdout), Lines(shell.stderr)
                await store.record_events([event(EventKind.SRM_DETECTED, "exp_a", 0.0001)])
                assert "srm_detected" in await out.next()
                stderr = [await err.next()]
                while stderr[-1] != "closed":
                    stderr.append(await err.next())
                await store.record_events([event(EventKind.SRM_CLEARED, "exp_a")])
                assert await shell.wait() == 0  # pipefail: the follower's own exit code
                stderr += (await err.rest()).splitlines()
    assert stderr == ["expwatch: following events after #0; Ctrl-C stops", "closed"], stderr


def test_events_prints_a_table_and_json(setup: Setup) -> None:
    """Without --follow, events are a table (one row per event, filters applied) or, with
    --json, one JSON array."""

    async def record() -> None:
        async with opened(setup) as store:
            await store.record_events(
                [
                    event(EventKind.SRM_DETECTED, "exp_a", 0.000123),
                    event(EventKind.STATUS_CHANGED, "exp_b", "stopped"),
                ]
            )

    anyio.run(record, backend="asyncio")
    runner = CliRunner()
    result = runner.invoke(main, ["events", "--config", str(setup.config)])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()]
    assert rows[0] == ["id", "time", "(UTC)", "kind", "about", "before", "after"]
    assert rows[2:] == [
        ["1", "2026-03-02", "09:30:00", "srm_detected", "exp_a", "-", "0.000123"],
        ["2", "2026-03-02", "09:30:00", "status_changed", "exp_b", "-", "stopped"],
    ]
    result = runner.invoke(
        main, ["events", "--json", "--kind", "status_changed", "--config", str(setup.config)]
    )
    assert result.exit_code == 0, result.output
    assert [(e["id"], e["experiment_id"]) for e in json.loads(result.output)] == [(2, "exp_b")]
    result = runner.invoke(main, ["events", "--after", "2", "--config", str(setup.config)])
    assert result.output == "no events\n"
