"""A real `expwatch mcp` subprocess over stdio, beside a watcher in another process.

The watcher runs in the test process and polls the simulator into an SQLite file; the
subprocess serves that file and learns of changes only by tailing it, as it does beside an
`expwatch run` daemon. Each client library (fastmcp, the mcp SDK) in each protocol era
(handshake-era resources/subscribe, 2026-07-28 subscriptions/listen) subscribes, is told of
a change made in the simulator, re-reads it, and after unsubscribing is told nothing more.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import anyio
import fastmcp
import mcp
import pytest
from fastmcp.client.transports import StdioTransport
from mcp import StdioServerParameters, types
from mcp.client.subscriptions import ResourceUpdated, listen

from store import EventKind
from tests.mcp_server.clients import WAIT_SECONDS, UpdateInbox, legacy_subscribe, legacy_unsubscribe
from tests.mcp_server.conftest import SHARED_KEY, Watcher

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "exp_checkout_redesign"
RESULTS = f"experiments://{EXPERIMENT}/results"
HEALTH = f"experiments://{EXPERIMENT}/health"


def server_command(config: Path) -> tuple[str, list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPWATCH_")}
    return sys.executable, ["-m", "expwatch", "mcp", "--config", str(config)], env


@asynccontextmanager
async def connect(
    library: Literal["fastmcp", "mcp"], era: Literal["legacy", "modern"], config: Path, inbox: Any
) -> AsyncIterator[Any]:
    """A client of `library` in `era` on a fresh `expwatch mcp` subprocess; the subprocess
    ends when the block does."""
    command, args, env = server_command(config)
    mode = "legacy" if era == "legacy" else "auto"
    client: AbstractAsyncContextManager[Any]
    if library == "fastmcp":
        transport = StdioTransport(command, args, env=env, cwd=str(ROOT), keep_alive=False)
        client = fastmcp.Client(transport, mode=mode, message_handler=inbox)
    else:
        parameters = StdioServerParameters(command=command, args=args, env=env, cwd=str(ROOT))
        client = mcp.Client(parameters, mode=mode, message_handler=inbox)
    async with client as connected:
        yield connected


async def read_json(client: Any, uri: str) -> dict[str, Any]:
    result = await client.read_resource(uri)
    contents = result if isinstance(result, list) else result.contents
    [content] = contents
    assert isinstance(content, types.TextResourceContents)
    assert SHARED_KEY not in content.text
    loaded: dict[str, Any] = json.loads(content.text)
    return loaded


def session_of(client: Any) -> mcp.ClientSession:
    session = client.session
    assert isinstance(session, mcp.ClientSession)
    return session


@pytest.mark.parametrize("library", ["fastmcp", "mcp"])
async def test_a_handshake_era_client_is_told_of_a_change_and_not_after_unsubscribing(
    watcher: Watcher, library: Literal["fastmcp", "mcp"]
) -> None:
    inbox = UpdateInbox()
    with anyio.fail_after(4 * WAIT_SECONDS):
        async with connect(library, "legacy", watcher.config, inbox) as client:
            await legacy_subscribe(session_of(client), RESULTS)
            await legacy_subscribe(session_of(client), HEALTH)
            before = await read_json(client, RESULTS)
            assert await watcher.poll(6) == [EventKind.SRM_DETECTED]
            await inbox.wait_for(RESULTS)
            await inbox.wait_for(HEALTH)
            after = await read_json(client, RESULTS)
            assert before["health"]["our_srm"]["mismatch"] is False
            assert after["health"]["our_srm"]["mismatch"] is True
            assert after["snapshot"]["id"] > before["snapshot"]["id"]

            await legacy_unsubscribe(session_of(client), RESULTS)
            seen = len(inbox.uris)
            await watcher.poll(7)
            await inbox.wait_for(HEALTH)  # still subscribed: proves the change went out
            assert RESULTS not in inbox.uris[seen:]


@pytest.mark.parametrize("library", ["fastmcp", "mcp"])
async def test_a_listening_client_is_told_of_a_change_and_not_after_the_stream_ends(
    watcher: Watcher, library: Literal["fastmcp", "mcp"]
) -> None:
    with anyio.fail_after(4 * WAIT_SECONDS):
        async with connect(library, "modern", watcher.config, None) as client:
            session = session_of(client)
            assert session.protocol_version == "2026-07-28"
            before = await read_json(client, RESULTS)
            async with listen(session, resource_subscriptions=[RESULTS]) as results:
                assert await watcher.poll(6) == [EventKind.SRM_DETECTED]
                assert await anext(results) == ResourceUpdated(uri=RESULTS)
                after = await read_json(client, RESULTS)
            assert after["snapshot"]["id"] > before["snapshot"]["id"]
            assert after["health"]["our_srm"]["mismatch"] is True
            # The stream is closed: a later change reaches only the still-open stream.
            async with listen(session, resource_subscriptions=[HEALTH]) as health:
                await watcher.poll(7)
                assert await anext(health) == ResourceUpdated(uri=HEALTH)
