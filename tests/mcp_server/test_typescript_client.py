"""`expwatch mcp` over stdio, seen by an independent client on the official TypeScript SDK.

`ts_client/client.mjs` (npm `@modelcontextprotocol/sdk`, pinned in `ts_client/package.json`
and its lockfile) spawns the server, lists, calls, reads and subscribes, prints
`{"step": "subscribed"}`, waits for `notifications/resources/updated` and re-reads. The test
owns the upstream side: a watcher in this process polls the simulator into the same SQLite
file the server reads, so the server learns of the change only by tailing the database, as it
does beside a separate `expwatch run` daemon.

Needs Node.js and npm; the SDK is installed with `npm ci` into `ts_client/node_modules` on
first use. Without them, or when the install fails (e.g. offline), the test is skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import ByteReceiveStream
from anyio.streams.buffered import BufferedByteReceiveStream

from store import EventKind
from tests.mcp_server.conftest import SHARED_KEY, Watcher

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = Path(__file__).resolve().parent / "ts_client"
SDK_PACKAGE = "@modelcontextprotocol/sdk"
EXPERIMENT = "exp_checkout_redesign"
URI = f"experiments://{EXPERIMENT}/results"
CLIENT_TIMEOUT_SECONDS = 20
"""The client's bound on each of its own waits; a timeout only ever means a failure."""
INSTALL_TIMEOUT_SECONDS = 240
HANDSHAKE_PROTOCOL_VERSION = "2025-11-25"
"""The newest version the pinned TypeScript SDK proposes; `expwatch mcp` accepts it."""


def pinned_sdk_version() -> str:
    manifest = json.loads((CLIENT_DIR / "package.json").read_text())
    return str(manifest["dependencies"][SDK_PACKAGE])


def installed_sdk_version() -> str | None:
    manifest = CLIENT_DIR / "node_modules" / SDK_PACKAGE / "package.json"
    if not manifest.is_file():
        return None
    return str(json.loads(manifest.read_text())["version"])


@pytest.fixture(scope="module")
def node() -> str:
    """The `node` executable, with the pinned SDK installed beside the client."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in [("node", node), ("npm", npm)] if not path)
        pytest.skip(f"TypeScript SDK client skipped: {missing} not found on PATH (install Node.js)")
    if installed_sdk_version() != pinned_sdk_version():
        command = [npm, "ci", "--no-audit", "--no-fund", "--no-update-notifier"]
        try:
            result = subprocess.run(
                command,
                cwd=CLIENT_DIR,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.skip(
                f"TypeScript SDK client skipped: `npm ci` in {CLIENT_DIR} took longer than "
                f"{exc.timeout:g} s (offline or a slow registry?)"
            )
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            pytest.skip(
                f"TypeScript SDK client skipped: `npm ci` in {CLIENT_DIR} failed with exit "
                f"code {result.returncode} (offline?):\n{tail}"
            )
    return node


class ClientOutput:
    """The client's stdout, one JSON object a line; failures quote its stderr."""

    def __init__(self, stdout: ByteReceiveStream, stderr_path: Path) -> None:
        self._stdout = BufferedByteReceiveStream(stdout)
        self._stderr_path = stderr_path
        self.lines: list[str] = []

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr_path.read_text(errors="replace").splitlines()[-30:])

    async def next(self) -> dict[str, Any]:
        try:
            line = await self._stdout.receive_until(b"\n", 1 << 22)
        except anyio.IncompleteRead:
            pytest.fail(f"the client stopped early; its stderr ends:\n{self.stderr_tail()}")
        self.lines.append(line.decode())
        record: dict[str, Any] = json.loads(line)
        return record


@pytest.mark.anyio
@pytest.mark.timeout(INSTALL_TIMEOUT_SECONDS + 60)
async def test_a_typescript_sdk_client_lists_calls_subscribes_and_rereads_an_update(
    node: str, watcher: Watcher, tmp_path: Path
) -> None:
    """A client on the official TypeScript SDK finds the tools and the results template,
    reads an experiment, subscribes, is told when a watcher in another process records an SRM,
    and re-reads the new results; the API key shows in nothing the client or server prints."""
    server = [sys.executable, "-m", "expwatch", "mcp", "--config", str(watcher.config)]
    command = [node, str(CLIENT_DIR / "client.mjs"), "--experiment", EXPERIMENT]
    command += ["--timeout-seconds", str(CLIENT_TIMEOUT_SECONDS), "--", *server]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPWATCH_")}
    stderr_path = tmp_path / "client.stderr"

    with stderr_path.open("wb") as stderr, anyio.fail_after(7 * CLIENT_TIMEOUT_SECONDS):
        async with await anyio.open_process(command, cwd=ROOT, env=env, stderr=stderr) as process:
            assert process.stdout is not None
            output = ClientOutput(process.stdout, stderr_path)
            try:
                assert await output.next() == {"step": "subscribed", "uri": URI}
                assert await watcher.poll(6) == [EventKind.SRM_DETECTED]
                result = await output.next()
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()  # rather than wait out the client's own timeouts
                raise
            code = await process.wait()
    assert code == 0, output.stderr_tail()
    assert result["step"] == "result"
    assert result["protocol_version"] == HANDSHAKE_PROTOCOL_VERSION
    assert result["capabilities"]["resources"]["subscribe"] is True
    assert "get_experiment_results" in result["tools"]
    assert "experiments://{experiment_id}/results" in result["resource_templates"]
    assert result["update_uri"] == URI
    assert result["errors"] == []

    called = json.loads(result["tool_result"])
    before = json.loads(result["first_read"])
    after = json.loads(result["reread"])
    assert called == before
    assert before["experiment"]["id"] == after["experiment"]["id"] == EXPERIMENT
    assert after["snapshot"]["id"] > before["snapshot"]["id"]
    srm_before, srm_after = before["health"]["our_srm"], after["health"]["our_srm"]
    assert srm_before["p_value"] > srm_before["alpha"] >= srm_after["p_value"]

    seen = "\n".join(output.lines) + stderr_path.read_text(errors="replace")
    assert SHARED_KEY not in seen
