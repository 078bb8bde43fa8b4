"""Real MCP clients for the tests: handshake-era subscribers and their inbox.

`Client.subscribe_resource` / `unsubscribe_resource` emit `MCPDeprecationWarning` (the
2026-07-28 protocol removed them); pytest turns warnings into errors, so `legacy_subscribe` and
`legacy_unsubscribe` expect exactly that warning: serving handshake-era clients is the point.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx2
import pytest
from mcp import Client, types
from mcp.client.session import IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning

WAIT_SECONDS = 10
"""Bound on every wait: generous, since a timeout only ever means a failure."""


class UpdateInbox:
    """A client message handler that records the URIs of `resources/updated` notifications."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self._arrived = anyio.Event()

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.uris.append(message.params.uri)
            self._arrived.set()
            self._arrived = anyio.Event()

    async def wait_for(self, uri: str) -> list[str]:
        """Wait until `uri` arrives; return everything received up to and including it."""
        with anyio.fail_after(WAIT_SECONDS):
            while uri not in self.uris:
                await self._arrived.wait()
        return self.uris[: self.uris.index(uri) + 1]


async def legacy_subscribe(client: Client, uri: str) -> None:
    with pytest.warns(MCPDeprecationWarning, match="resources/subscribe is removed"):
        await client.subscribe_resource(uri)


async def legacy_unsubscribe(client: Client, uri: str) -> None:
    with pytest.warns(MCPDeprecationWarning, match="resources/unsubscribe is removed"):
        await client.unsubscribe_resource(uri)


@asynccontextmanager
async def handshake_http_client(url: str, inbox: UpdateInbox) -> AsyncIterator[Client]:
    """A handshake-era client over streamable HTTP, entered once its GET stream is open.

    Handshake-era notifications travel on the session's standalone GET stream, which the
    client opens in the background after the handshake; one published before the server has
    that stream is dropped (no event store). The server registers that stream before the GET's
    response headers can reach the client, so seeing the 200 is the barrier.
    """
    standalone_stream_open = anyio.Event()

    async def on_response(response: httpx2.Response) -> None:
        if response.request.method == "GET" and response.status_code == 200:
            standalone_stream_open.set()

    async with (
        httpx2.AsyncClient(timeout=WAIT_SECONDS, event_hooks={"response": [on_response]}) as http,
        Client(
            streamable_http_client(url, http_client=http), mode="legacy", message_handler=inbox
        ) as client,
    ):
        with anyio.fail_after(WAIT_SECONDS):
            await standalone_stream_open.wait()
        yield client
