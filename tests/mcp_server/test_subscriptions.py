"""ResourceSubscriptions end to end: real MCP clients against a FastMCP server.

Handshake-era clients (`mode="legacy"`) use `resources/subscribe` and receive
`notifications/resources/updated` through their message handler; 2026-07-28 clients use
`subscriptions/listen`. The servers run over streamable HTTP on loopback (uvicorn in the test's
task group), over stdio (a subprocess), or in-process where the test needs to see the server
side close a connection or hold a client's messages back.

`Client.subscribe_resource` / `unsubscribe_resource` emit `MCPDeprecationWarning` (the
2026-07-28 protocol removed them); pytest turns warnings into errors, so `legacy_subscribe` and
`legacy_unsubscribe` expect exactly that warning: serving handshake-era clients is the point.
"""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import pytest
import uvicorn
from fastmcp import Context, FastMCP
from mcp import Client, types
from mcp.client.stdio import StdioServerParameters
from mcp.client.subscriptions import ResourceUpdated
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from mcp_server import ResourceSubscriptions, _sdk
from tests.mcp_server.clients import (
    UpdateInbox,
    handshake_http_client,
    legacy_subscribe,
    legacy_unsubscribe,
)
from tests.mcp_server.stdio_server import ResultsStore, build_test_server, results_uri

pytestmark = pytest.mark.anyio

WAIT_SECONDS = 10
"""Bound on every wait: generous, since a timeout only ever means a failure."""

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = results_uri("checkout-42")
PRICING = results_uri("pricing-7")


# -- helpers ---------------------------------------------------------------------------------


async def read_revision(client: Client, uri: str) -> int:
    result = await client.read_resource(uri)  # with the client's response cache, as in use
    content = result.contents[0]
    assert isinstance(content, types.TextResourceContents)
    revision: int = json.loads(content.text)["revision"]
    return revision


@dataclass
class Loopback:
    """A uvicorn server on a free loopback port."""

    url: str
    server: uvicorn.Server
    stopped: anyio.Event

    async def stop(self) -> None:
        """Shut the server down gracefully (FastMCP's lifespan included) and wait for it."""
        self.server.should_exit = True
        with anyio.fail_after(WAIT_SECONDS):
            await self.stopped.wait()


async def serve_http(
    app: Any, *, task_status: anyio.abc.TaskStatus[Loopback] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Serve `app` on 127.0.0.1 until `Loopback.stop()`; start it with `task_group.start`."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        # Bound and listening before `started`: a client may connect at once; uvicorn accepts
        # queued connections once the app's lifespan has started.
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        loopback = Loopback(f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", server, anyio.Event())
        task_status.started(loopback)
        try:
            await server.serve(sockets=[sock])
        finally:
            loopback.stopped.set()


def add_close_probe(server: FastMCP) -> dict[str, anyio.Event]:
    """Add a `watch_close(name)` tool whose event is set when the calling connection closes.

    The event is set from the connection's exit stack, which unwinds last-in first-out: call
    `watch_close` before subscribing and the event is set after the subscriptions' cleanup ran.
    """
    closed: dict[str, anyio.Event] = {}

    @server.tool
    async def watch_close(name: str, ctx: Context) -> None:
        closed[name] = anyio.Event()
        _sdk.session_connection(ctx.session).exit_stack.callback(closed[name].set)

    return closed


# -- the two eras over streamable HTTP ---------------------------------------------------------


async def test_handshake_client_over_http_is_notified_and_rereads_new_results() -> None:
    """A handshake-era HTTP subscriber gets resources/updated and re-reads the new results."""
    subscriptions, store = ResourceSubscriptions(), ResultsStore()
    server = build_test_server(subscriptions, store)
    inbox = UpdateInbox()
    async with anyio.create_task_group() as tg:
        await tg.start(subscriptions.run)
        http = await tg.start(serve_http, server.http_app())
        async with handshake_http_client(http.url, inbox) as client:
            capabilities = client.server_capabilities.resources
            assert capabilities is not None and capabilities.subscribe is True
            assert await read_revision(client, CHECKOUT) == 0
            await legacy_subscribe(client, CHECKOUT)
            assert subscriptions.subscriber_count(CHECKOUT) == 1

            store.record("checkout-42")
            await subscriptions.publish(CHECKOUT)

            assert await inbox.wait_for(CHECKOUT) == [CHECKOUT]
            assert await read_revision(client, CHECKOUT) == 1
        await http.stop()
        tg.cancel_scope.cancel()


async def test_listen_client_over_http_is_notified_and_rereads_new_results() -> None:
    """A 2026-07-28 HTTP client listening on a URI gets its update and re-reads the results."""
    subscriptions, store = ResourceSubscriptions(), ResultsStore()
    server = build_test_server(subscriptions, store)
    async with anyio.create_task_group() as tg:
        await tg.start(subscriptions.run)
        http = await tg.start(serve_http, server.http_app())
        async with (
            Client(http.url) as client,
            client.listen(resource_subscriptions=[CHECKOUT]) as listening,
        ):
            assert client.protocol_version == "2026-07-28"
            assert listening.honored.resource_subscriptions == [CHECKOUT]
            assert subscriptions.subscriber_count(CHECKOUT) == 1

            store.record("checkout-42")
            await subscriptions.publish(CHECKOUT)

            with anyio.fail_after(WAIT_SECONDS):
                event = await anext(listening)
            assert event == ResourceUpdated(uri=CHECKOUT)
            assert await read_revision(client, CHECKOUT) == 1
        await http.stop()
        tg.cancel_scope.cancel()


# -- stdio --------------------------------------------------------------------------------------


def stdio_server_parameters() -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "tests.mcp_server.stdio_server"], cwd=PROJECT_ROOT
    )


async def test_handshake_client_over_stdio_is_notified_of_a_poke_and_rereads() -> None:
    """A handshake-era stdio subscriber is notified when the server publishes, then re-reads."""
    inbox = UpdateInbox()
    async with Client(stdio_server_parameters(), mode="legacy", message_handler=inbox) as client:
        await legacy_subscribe(client, CHECKOUT)

        await client.call_tool("poke", {"experiment_id": "checkout-42"})

        assert await inbox.wait_for(CHECKOUT) == [CHECKOUT]
        assert await read_revision(client, CHECKOUT) == 1


async def test_listen_client_over_stdio_is_notified_of_a_poke_and_rereads() -> None:
    """A 2026-07-28 stdio client listening on a URI gets the update a poke publishes."""
    async with (
        Client(stdio_server_parameters()) as client,
        client.listen(resource_subscriptions=[CHECKOUT]) as listening,
    ):
        assert client.protocol_version == "2026-07-28"

        await client.call_tool("poke", {"experiment_id": "checkout-42"})

        with anyio.fail_after(WAIT_SECONDS):
            assert await anext(listening) == ResourceUpdated(uri=CHECKOUT)
        assert await read_revision(client, CHECKOUT) == 1


# -- who gets notified -----------------------------------------------------------------------


async def test_only_subscribers_of_the_exact_uri_are_notified() -> None:
    """Publishing a URI reaches its subscribers in both eras and no one subscribed elsewhere."""
    subscriptions = ResourceSubscriptions()
    server = build_test_server(subscriptions, ResultsStore())
    watcher_inbox, bystander_inbox = UpdateInbox(), UpdateInbox()
    async with anyio.create_task_group() as tg:
        await tg.start(subscriptions.run)
        http = await tg.start(serve_http, server.http_app())
        async with (
            handshake_http_client(http.url, watcher_inbox) as watcher,
            handshake_http_client(http.url, bystander_inbox) as bystander,
            Client(http.url) as listener,
            listener.listen(resource_subscriptions=[PRICING]) as listening,
        ):
            await legacy_subscribe(watcher, CHECKOUT)
            await legacy_subscribe(bystander, PRICING)
            await legacy_subscribe(bystander, "experiments://{experiment_id}/results")

            await subscriptions.publish(CHECKOUT)
            await subscriptions.publish(PRICING)  # each client receives in publish order

            assert await watcher_inbox.wait_for(CHECKOUT) == [CHECKOUT]
            assert await bystander_inbox.wait_for(PRICING) == [PRICING]
            with anyio.fail_after(WAIT_SECONDS):
                assert await anext(listening) == ResourceUpdated(uri=PRICING)
        await http.stop()
        tg.cancel_scope.cancel()


async def test_an_unsubscribed_uri_is_not_notified_any_more() -> None:
    """After resources/unsubscribe, updates of that URI no longer reach the client."""
    subscriptions = ResourceSubscriptions()
    server = build_test_server(subscriptions, ResultsStore())
    inbox = UpdateInbox()
    async with anyio.create_task_group() as tg:
        await tg.start(subscriptions.run)
        http = await tg.start(serve_http, server.http_app())
        async with handshake_http_client(http.url, inbox) as client:
            await legacy_subscribe(client, CHECKOUT)
            await legacy_subscribe(client, PRICING)
            await subscriptions.publish(CHECKOUT)
            assert await inbox.wait_for(CHECKOUT) == [CHECKOUT]

            await legacy_unsubscribe(client, CHECKOUT)
            assert subscriptions.subscriber_count(CHECKOUT) == 0
            await subscriptions.publish(CHECKOUT)
            await subscriptions.publish(PRICING)

            assert await inbox.wait_for(PRICING) == [CHECKOUT, PRICING]
        await http.stop()
        tg.cancel_scope.cancel()


async def test_handshake_subscribe_over_stateless_http_is_refused_pointing_to_listen() -> None:
    """Stateless HTTP cannot push notifications, so resources/subscribe fails and says why."""
    subscriptions = ResourceSubscriptions()
    server = build_test_server(subscriptions, ResultsStore())
    async with anyio.create_task_group() as tg:
        await tg.start(subscriptions.run)
        http = await tg.start(serve_http, server.http_app(stateless_http=True))
        async with Client(http.url, mode="legacy") as client:
            with pytest.raises(MCPError, match="stateless HTTP") as refused:
                await legacy_subscribe(client, CHECKOUT)
            assert refused.value.error.code == types.INVALID_REQUEST
            assert "subscriptions/listen" in refused.value.error.message
            assert subscriptions.subscriber_count(CHECKOUT) == 0
        await http.stop()
        tg.cancel_scope.cancel()


# -- slow clients and closed connections ---------------------------------------------------------


class StreamPair:
    """A client `Transport` over streams the test wired up itself."""

    def __init__(
        self,
        read: anyio.abc.ObjectReceiveStream[SessionMessage | Exception],
        write: anyio.abc.ObjectSendStream[SessionMessage],
    ) -> None:
        self._read, self._write = read, write

    async def __aenter__(
        self,
    ) -> tuple[
        anyio.abc.ObjectReceiveStream[SessionMessage | Exception],
        anyio.abc.ObjectSendStream[SessionMessage],
    ]:
        return self._read, self._write

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._write.aclose()
        await self._read.aclose()


class Valve:
    """Relays server-to-client messages; while shut, it holds one and reads no further."""

    def __init__(self) -> None:
        self.is_open = anyio.Event()
        self.is_open.set()
        self.holding = anyio.Event()

    def shut(self) -> None:
        self.is_open = anyio.Event()

    def open(self) -> None:
        self.is_open.set()

    async def relay(
        self,
        source: anyio.abc.ObjectReceiveStream[SessionMessage],
        sink: anyio.abc.ObjectSendStream[SessionMessage | Exception],
    ) -> None:
        async with source, sink:
            async for message in source:
                if not self.is_open.is_set():
                    self.holding.set()
                    await self.is_open.wait()
                await sink.send(message)


async def test_a_client_that_stops_reading_never_stalls_publish() -> None:
    """Publishing completes while a subscriber reads nothing; it later gets coalesced updates."""
    subscriptions = ResourceSubscriptions()
    lowlevel = _sdk.lowlevel_server(build_test_server(subscriptions, ResultsStore()))
    inbox, valve = UpdateInbox(), Valve()
    # Unbuffered all the way: once the valve holds a message, the server's next write blocks.
    to_server, server_reads = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    server_writes, to_valve = anyio.create_memory_object_stream[SessionMessage](0)
    to_client, client_reads = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    async with anyio.create_task_group() as tg:
        await tg.start(subscriptions.run)
        tg.start_soon(
            lowlevel.run, server_reads, server_writes, lowlevel.create_initialization_options()
        )
        tg.start_soon(valve.relay, to_valve, to_client)
        transport = StreamPair(client_reads, to_server)
        async with Client(transport, mode="legacy", message_handler=inbox) as client:
            await legacy_subscribe(client, CHECKOUT)
            await legacy_subscribe(client, PRICING)

            valve.shut()
            await subscriptions.publish(CHECKOUT)
            with anyio.fail_after(WAIT_SECONDS):
                await valve.holding.wait()  # the client now reads nothing
                for _ in range(1000):
                    await subscriptions.publish(CHECKOUT)
                await subscriptions.publish(PRICING)
            valve.open()

            received = await inbox.wait_for(PRICING)
            assert 1 <= received.count(CHECKOUT) <= 3  # the held one, the blocked one, the rest
        tg.cancel_scope.cancel()


async def test_closing_a_connection_releases_its_subscriptions_in_both_eras() -> None:
    """When a client disconnects, its handshake-era and listen subscriptions are released."""
    subscriptions = ResourceSubscriptions()
    lowlevel = _sdk.lowlevel_server(build_test_server(subscriptions, ResultsStore()))
    async with anyio.create_task_group() as tg:
        await tg.start(subscriptions.run)
        # In-process: leaving `async with Client` waits for the server side to finish.
        async with Client(lowlevel, mode="legacy") as client:
            await legacy_subscribe(client, CHECKOUT)
            await legacy_subscribe(client, PRICING)
            assert subscriptions.subscriber_count(CHECKOUT) == 1
        assert subscriptions.subscriber_count(CHECKOUT) == 0
        assert subscriptions.subscriber_count(PRICING) == 0

        async with Client(lowlevel) as client, client.listen(resource_subscriptions=[CHECKOUT]):
            assert subscriptions.subscriber_count(CHECKOUT) == 1
        assert subscriptions.subscriber_count(CHECKOUT) == 0
        tg.cancel_scope.cancel()


async def test_an_http_session_that_ends_releases_its_subscriptions() -> None:
    """When a handshake-era HTTP client ends its session, its subscriptions are released."""
    subscriptions = ResourceSubscriptions()
    server = build_test_server(subscriptions, ResultsStore())
    closed = add_close_probe(server)
    async with anyio.create_task_group() as tg:
        await tg.start(subscriptions.run)
        http = await tg.start(serve_http, server.http_app())
        async with Client(http.url, mode="legacy") as client:
            await client.call_tool("watch_close", {"name": "session"})
            await legacy_subscribe(client, CHECKOUT)
            assert subscriptions.subscriber_count(CHECKOUT) == 1
        with anyio.fail_after(WAIT_SECONDS):
            await closed["session"].wait()
        assert subscriptions.subscriber_count(CHECKOUT) == 0
        await http.stop()
        tg.cancel_scope.cancel()


# -- lifecycle -----------------------------------------------------------------------------------


async def test_subscribing_is_refused_in_both_eras_while_not_running() -> None:
    """Without run() no update could be delivered, so subscribe and listen fail clearly."""
    subscriptions = ResourceSubscriptions()
    lowlevel = _sdk.lowlevel_server(build_test_server(subscriptions, ResultsStore()))
    async with Client(lowlevel, mode="legacy") as client:
        with pytest.raises(MCPError, match="not being served"):
            await legacy_subscribe(client, CHECKOUT)
    async with Client(lowlevel) as client:
        with pytest.raises(MCPError, match="not being served"):
            async with client.listen(resource_subscriptions=[CHECKOUT]):
                pass
    assert subscriptions.subscriber_count(CHECKOUT) == 0


async def test_stopping_run_ends_listen_streams_gracefully_and_drops_subscriptions() -> None:
    """When run() ends, listen streams close gracefully and handshake subscriptions go."""
    subscriptions = ResourceSubscriptions()
    lowlevel = _sdk.lowlevel_server(build_test_server(subscriptions, ResultsStore()))
    running = anyio.CancelScope()

    async def run_until_stopped(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        with running:
            await subscriptions.run(task_status=task_status)

    async with anyio.create_task_group() as tg:
        await tg.start(run_until_stopped)
        async with (
            Client(lowlevel, mode="legacy") as handshake_client,
            Client(lowlevel) as listen_client,
            listen_client.listen(resource_subscriptions=[CHECKOUT]) as listening,
        ):
            await legacy_subscribe(handshake_client, CHECKOUT)
            assert subscriptions.subscriber_count(CHECKOUT) == 2

            running.cancel()

            with anyio.fail_after(WAIT_SECONDS):
                assert [event async for event in listening] == []  # ended, not lost
            assert subscriptions.subscriber_count(CHECKOUT) == 0
            with pytest.raises(MCPError, match="not being served"):
                await legacy_subscribe(handshake_client, CHECKOUT)


async def test_run_cannot_be_started_twice_at_once() -> None:
    """A second concurrent run() raises instead of sharing the sender tasks."""
    subscriptions = ResourceSubscriptions()
    async with anyio.create_task_group() as tg:
        await tg.start(subscriptions.run)
        with pytest.raises(RuntimeError, match="already running"):
            await subscriptions.run()
        tg.cancel_scope.cancel()


def test_installing_twice_on_one_server_is_refused() -> None:
    """A second install on the same server raises instead of silently replacing handlers."""
    subscriptions = ResourceSubscriptions()
    server = build_test_server(subscriptions, ResultsStore())
    with pytest.raises(RuntimeError, match="already serves resources/subscribe"):
        ResourceSubscriptions().install(server)


async def test_publishing_reaches_subscribers_through_an_injected_bus() -> None:
    """Updates arriving on a shared bus from elsewhere reach this server's subscribers too."""
    bus = InMemorySubscriptionBus()
    subscriptions = ResourceSubscriptions(bus=bus)
    lowlevel = _sdk.lowlevel_server(build_test_server(subscriptions, ResultsStore()))
    inbox = UpdateInbox()
    async with anyio.create_task_group() as tg:
        await tg.start(subscriptions.run)
        async with Client(lowlevel, mode="legacy", message_handler=inbox) as client:
            await legacy_subscribe(client, CHECKOUT)

            await ResourceSubscriptions(bus=bus).publish(CHECKOUT)  # e.g. another replica

            assert await inbox.wait_for(CHECKOUT) == [CHECKOUT]
        tg.cancel_scope.cancel()
