"""Resource subscriptions for a FastMCP server, in both MCP protocol eras.

FastMCP 4.1 answers `resources/subscribe` and `subscriptions/listen` with "method not found".
`ResourceSubscriptions` serves both on the server's SDK layer:

- Handshake era (2024-11-05 ... 2025-11-25): `resources/subscribe` / `resources/unsubscribe`
  keep a registry keyed by the client's SDK connection; `notifications/resources/updated` is
  pushed on the connection's standalone channel. A connection's subscriptions are released
  when it closes. Stateless HTTP has no standalone channel, so subscribing there is refused
  with an error that points the client to `subscriptions/listen`.
- 2026-07-28: `subscriptions/listen` is served by the SDK's `ListenHandler`; the response to
  the listen request is the stream of events.

One `publish(uri)` reaches both: it goes onto the `SubscriptionBus` (in-process by default, or
a shared one for several replicas), which feeds the listen streams and, through a listener this
class registers, the handshake-era connections. Publishing never waits for a client: every
handshake-era connection has one sender task that delivers the latest set of pending URIs
(repeats coalesce while the client is slow), and each listen stream has its own bounded buffer.

Usage, beside a FastMCP server (stdio; for HTTP run uvicorn on `server.http_app()` instead)::

    subscriptions = ResourceSubscriptions()
    subscriptions.install(server)
    async with anyio.create_task_group() as tg:
        await tg.start(subscriptions.run)  # owns the sender tasks; NOT in the FastMCP lifespan
        tg.start_soon(server.run_stdio_async)
        ...
        await subscriptions.publish("experiments://checkout-42/results")  # after storing

Publish only after the new data is stored: clients re-read the resource when notified.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
from fastmcp import FastMCP
from mcp import types
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    ResourceUpdated,
    ServerEvent,
    SubscriptionBus,
)
from mcp.shared.exceptions import MCPError

from mcp_server import _sdk

__all__ = ["ResourceSubscriptions"]

logger = logging.getLogger(__name__)

_SUBSCRIBE = "resources/subscribe"
_UNSUBSCRIBE = "resources/unsubscribe"
_LISTEN = "subscriptions/listen"


@dataclass(eq=False)
class _Subscriber:
    """One handshake-era connection: its URIs and the updates still to send it."""

    connection: Connection
    uris: set[str] = field(default_factory=set)
    pending: dict[str, None] = field(default_factory=dict)  # an ordered set
    wake: anyio.Event = field(default_factory=anyio.Event)
    sender_scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)


class ResourceSubscriptions:
    """Serves resource subscriptions for FastMCP servers and publishes resource updates.

    `bus` carries published updates to the listen streams and to this object's handshake-era
    connections; pass a shared implementation to fan out across replicas. Install on a server
    with `install`, keep `run` going in a task group the application owns for as long as the
    server serves, and call `publish` whenever a resource changed.
    """

    def __init__(self, *, bus: SubscriptionBus | None = None) -> None:
        self._bus: SubscriptionBus = bus if bus is not None else InMemorySubscriptionBus()
        self._listen = ListenHandler(self._bus)
        self._task_group: anyio.abc.TaskGroup | None = None
        self._subscribers: dict[Connection, _Subscriber] = {}
        self._subscribers_by_uri: dict[str, set[_Subscriber]] = {}
        self._listen_streams_by_uri: dict[str, int] = {}

    def install(self, server: FastMCP[Any]) -> None:
        """Serve `resources/subscribe`, `resources/unsubscribe`, `subscriptions/listen` on `server`.

        The server then advertises `capabilities.resources.subscribe = true`. Raises
        `RuntimeError` if the server already serves one of these methods (installed twice, or a
        FastMCP release that implements subscriptions itself).
        """
        lowlevel = _sdk.lowlevel_server(server)
        served = [m for m in (_SUBSCRIBE, _UNSUBSCRIBE, _LISTEN) if lowlevel.get_request_handler(m)]
        if served:
            raise RuntimeError(
                f"server {server.name!r} already serves {', '.join(served)}: install "
                "ResourceSubscriptions once per server, and only on a FastMCP version that does "
                "not implement subscriptions itself"
            )
        lowlevel.add_request_handler(_SUBSCRIBE, types.SubscribeRequestParams, self._on_subscribe)
        lowlevel.add_request_handler(
            _UNSUBSCRIBE, types.UnsubscribeRequestParams, self._on_unsubscribe
        )
        lowlevel.add_request_handler(
            _LISTEN, types.SubscriptionsListenRequestParams, self._on_listen
        )

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Deliver handshake-era updates until cancelled; start it with `task_group.start(...)`.

        Owns one sender task per subscribed connection. Run it in a task group the application
        owns, never inside a FastMCP lifespan (FastMCP tears lifespans down in a scope of its
        own). Subscription requests of both eras are refused while it is not running. On exit
        it drops the handshake-era subscriptions and ends the open listen streams gracefully.
        """
        if self._task_group is not None:
            raise RuntimeError("ResourceSubscriptions.run() is already running")
        unsubscribe = self._bus.subscribe(self._on_bus_event)
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._task_group = None
            for subscriber in list(self._subscribers.values()):
                self._release(subscriber)
            self._listen.close()
            unsubscribe()

    async def publish(self, uri: str) -> None:
        """Tell every subscriber of exactly `uri`, in both eras, that the resource changed.

        Returns without waiting for any client: slow handshake-era clients get the latest
        pending set of URIs when they catch up, and a listen stream whose client stopped reading
        is ended by the SDK at its buffer cap (the client re-listens and re-reads).
        """
        await self._bus.publish(ResourceUpdated(uri=uri))

    def subscriber_count(self, uri: str) -> int:
        """How many handshake-era connections and open listen streams subscribe to `uri`."""
        return len(self._subscribers_by_uri.get(uri, ())) + self._listen_streams_by_uri.get(uri, 0)

    # -- handshake era -------------------------------------------------------------------------

    async def _on_subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        connection = _sdk.session_connection(ctx.session)
        if not connection.has_standalone_channel:
            raise MCPError(
                types.INVALID_REQUEST,
                "resources/subscribe needs a connection the server can push notifications on, "
                "and this one has none (stateless HTTP: each request is its own connection). "
                "Use subscriptions/listen (protocol 2026-07-28) instead, or connect to a "
                "stateful HTTP or stdio endpoint.",
            )
        task_group = self._require_running()
        subscriber = self._subscribers.get(connection)
        if subscriber is None:
            subscriber = _Subscriber(connection)
            self._subscribers[connection] = subscriber
            connection.exit_stack.callback(self._release, subscriber)
            task_group.start_soon(self._send_updates, subscriber)
        subscriber.uris.add(params.uri)
        self._subscribers_by_uri.setdefault(params.uri, set()).add(subscriber)
        return types.EmptyResult()

    async def _on_unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        subscriber = self._subscribers.get(_sdk.session_connection(ctx.session))
        if subscriber is not None:
            subscriber.uris.discard(params.uri)
            subscriber.pending.pop(params.uri, None)
            self._forget(params.uri, subscriber)
        return types.EmptyResult()

    def _require_running(self) -> anyio.abc.TaskGroup:
        """The task group of `run`, or the MCP error a subscription request gets without it."""
        if self._task_group is None:
            raise MCPError(
                types.INTERNAL_ERROR,
                "resource subscriptions are not being served right now (the server is starting "
                "or stopping); retry shortly.",
            )
        return self._task_group

    def _on_bus_event(self, event: ServerEvent) -> None:
        """Bus listener: queue `event` for the handshake-era subscribers of its URI."""
        if not isinstance(event, ResourceUpdated):
            return
        for subscriber in self._subscribers_by_uri.get(event.uri, ()):
            subscriber.pending[event.uri] = None
            subscriber.wake.set()

    async def _send_updates(self, subscriber: _Subscriber) -> None:
        """The connection's sender: deliver its pending URIs, oldest first, until released."""
        with subscriber.sender_scope:
            while True:
                await subscriber.wake.wait()
                subscriber.wake = anyio.Event()
                batch, subscriber.pending = list(subscriber.pending), {}
                for uri in batch:
                    if uri not in subscriber.uris:  # unsubscribed since it was queued
                        continue
                    try:
                        # Best effort: the SDK drops it (no raise) if the channel is gone.
                        await subscriber.connection.send_resource_updated(uri)
                    except Exception:  # isolates one client: it must not crash the others
                        logger.exception("sending resources/updated for %s failed; dropping", uri)
                        self._release(subscriber)
                        return

    def _release(self, subscriber: _Subscriber) -> None:
        """Drop all of a connection's subscriptions and stop its sender (idempotent)."""
        if self._subscribers.get(subscriber.connection) is subscriber:
            del self._subscribers[subscriber.connection]
        for uri in subscriber.uris:
            self._forget(uri, subscriber)
        subscriber.uris.clear()
        subscriber.pending.clear()
        subscriber.sender_scope.cancel()

    def _forget(self, uri: str, subscriber: _Subscriber) -> None:
        subscribers = self._subscribers_by_uri.get(uri)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._subscribers_by_uri[uri]

    # -- 2026-07-28 ----------------------------------------------------------------------------

    async def _on_listen(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        """Serve one listen stream with the SDK's handler, counting it per URI while it is open."""
        self._require_running()
        uris = set(params.notifications.resource_subscriptions or ())
        counts = self._listen_streams_by_uri
        for uri in uris:
            counts[uri] = counts.get(uri, 0) + 1
        try:
            return await self._listen(ctx, params)
        finally:
            for uri in uris:
                counts[uri] -= 1
                if not counts[uri]:
                    del counts[uri]
