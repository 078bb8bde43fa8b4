"""Shared fakes for the tests: a manual clock, a real HTTP receiver, a real SMTP server."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import anyio
import httpx
from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from expwatch.serving import serve_asgi


class ManualClock:
    """A clock that moves only when the test says so; `sleep` waits for `advance`."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self._moved = anyio.Event()
        self._slept = anyio.Event()
        self.sleep_calls = 0
        self._wakes: list[datetime] = []

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._moved.set()
        self._moved = anyio.Event()

    async def sleep(self, seconds: float) -> None:
        wake_at = self._now + timedelta(seconds=seconds)
        self.sleep_calls += 1
        self._slept.set()
        self._slept = anyio.Event()
        self._wakes.append(wake_at)
        try:
            while self._now < wake_at:
                await self._moved.wait()
        finally:
            self._wakes.remove(wake_at)

    @property
    def sleepers(self) -> int:
        """How many tasks sleep on this clock right now."""
        return len(self._wakes)

    @property
    def next_wake_at(self) -> datetime | None:
        """When the earliest sleeper wakes; None when nobody sleeps on this clock."""
        return min(self._wakes, default=None)

    async def run_until(self, end: datetime) -> None:
        """Virtual time: whenever every task is blocked and one sleeps on this clock, jump to
        the earliest sleeper's wake time (never past `end`), until the clock reaches `end`."""
        while self._now < end:
            await anyio.wait_all_tasks_blocked()
            wake = self.next_wake_at
            if wake is None:
                continue  # someone is busy (e.g. in the database): let it get to a sleep
            target = min(wake, end)
            if target > self._now:
                self.advance((target - self._now).total_seconds())

    async def wait_for_sleep_calls(self, count: int) -> None:
        """Wait until `sleep` has been called `count` times in all (bounded by the caller)."""
        while self.sleep_calls < count:
            await self._slept.wait()


class Collector:
    """Items that arrive from another task or thread, with a bounded wait for a count."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._lock = threading.Lock()
        self._arrived = threading.Event()

    def add(self, item: Any) -> None:
        with self._lock:
            self.items.append(item)
        self._arrived.set()

    async def wait_for(self, count: int, *, timeout_seconds: float = 10.0) -> list[Any]:
        """Wait (without sleeping) until at least `count` items arrived."""
        with anyio.fail_after(timeout_seconds):
            while True:
                with self._lock:
                    if len(self.items) >= count:
                        return list(self.items)
                    self._arrived.clear()
                await anyio.to_thread.run_sync(self._arrived.wait, 0.5)


@dataclass
class HttpReceiver:
    """A real HTTP endpoint on loopback that records every JSON body posted to it."""

    port: int = 0
    bodies: Collector = field(default_factory=Collector)
    status_code: int = 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    text_replies: dict[str, str] = field(default_factory=dict)
    """Path prefix → a plain-text body to answer with (Slack's webhook answers "ok")."""

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            path = request.url.path
            self.bodies.add({"path": path, "json": await request.json()})
            for prefix, text in self.text_replies.items():
                if path.startswith(prefix):
                    return PlainTextResponse(text, status_code=self.status_code)
            return JSONResponse({"ok": self.status_code < 400}, status_code=self.status_code)

        return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


@asynccontextmanager
async def http_receiver() -> AsyncIterator[HttpReceiver]:
    receiver = HttpReceiver()
    async with anyio.create_task_group() as tg:
        receiver.port = await tg.start(
            lambda task_status: serve_asgi(receiver.app(), port=0, task_status=task_status)
        )
        yield receiver
        tg.cancel_scope.cancel()


class _SmtpHandler:
    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.collector.add(message)
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    port: int
    messages: Collector

    def mailto_url(self, *, to: str = "team@example.com") -> str:
        return f"mailto://127.0.0.1:{self.port}?from=expwatch@example.com&to={to}&name=expwatch"


@contextmanager
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd, in its own thread) on a free loopback port."""
    collector = Collector()
    with socket.socket() as probe:  # aiosmtpd checks its own port, so it cannot take port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(_SmtpHandler(collector), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(port=port, messages=collector)
    finally:
        controller.stop()


class HostRouter(httpx.AsyncBaseTransport):
    """Sends each request to the in-process ASGI app registered for its host name."""

    def __init__(self, apps: dict[str, Any]) -> None:
        self._transports = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transports[request.url.host].handle_async_request(request)
