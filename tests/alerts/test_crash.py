"""A crash between send and confirmation: a real dispatcher process is SIGKILLed while the
receiver holds its request, after the message arrived and before the answer. The restart
sends that alert once more, flagged as a possible duplicate of the same event id."""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from alerts import AlertDispatcher, AlertTarget
from expwatch.serving import serve_asgi
from store import DeliveryStatus, EventKind, Store, sqlite_url
from tests.alerts.samples import one_of_each_kind
from tests.helpers import Collector

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys, anyio
from alerts import AlertDispatcher, AlertTarget
from store import Store

async def main() -> None:
    store = await Store.open(sys.argv[1])
    target = AlertTarget("hook", f"json://127.0.0.1:{sys.argv[2]}/a")
    await AlertDispatcher(store, [target]).deliver_pending()

anyio.run(main)
"""


@asynccontextmanager
async def holding_receiver() -> AsyncIterator[tuple[int, Collector, anyio.Event]]:
    """Records each posted body at once, and answers only once `release` is set."""
    bodies = Collector()
    release = anyio.Event()

    async def receive(request: Request) -> JSONResponse:
        bodies.add(await request.json())
        await release.wait()
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])
    async with anyio.create_task_group() as tg:
        port = await tg.start(lambda task_status: serve_asgi(app, port=0, task_status=task_status))
        yield port, bodies, release
        release.set()
        tg.cancel_scope.cancel()


async def test_sigkill_between_send_and_mark_costs_one_flagged_duplicate(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "crash.db")
    store = await Store.open(url)
    try:
        async with holding_receiver() as (port, bodies, release):
            target = AlertTarget("hook", f"json://127.0.0.1:{port}/a")
            await AlertDispatcher(store, [target]).start_cursor()
            [event] = await store.record_events([one_of_each_kind()[EventKind.SRM_DETECTED]])
            async with await anyio.open_process(
                [sys.executable, "-c", CHILD, url, str(port)], cwd=ROOT
            ) as child:
                [first] = await bodies.wait_for(1, timeout_seconds=60)
                child.send_signal(signal.SIGKILL)
                assert await child.wait() == -signal.SIGKILL
            release.set()
            [row] = await store.outbox.deliveries()
            assert row.status is DeliveryStatus.SENDING  # sent, never confirmed
            assert await AlertDispatcher(store, [target]).deliver_pending() == 1
            both = await bodies.wait_for(2)
    finally:
        await store.aclose()
    assert len(both) == 2
    second = both[1]
    assert first["expwatch"]["event_id"] == second["expwatch"]["event_id"] == event.id
    assert first["expwatch"]["possible_duplicate"] is False
    assert second["expwatch"]["possible_duplicate"] is True
    assert second["title"].startswith("[possible duplicate]")
    store = await Store.open(url)
    try:
        [row] = await store.outbox.deliveries()
    finally:
        await store.aclose()
    assert (row.status, row.attempts) == (DeliveryStatus.DELIVERED, 2)
