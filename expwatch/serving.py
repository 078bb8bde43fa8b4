"""Serve an ASGI app (the MCP endpoint, the demo's simulator) on a socket we own."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import anyio
import uvicorn
from anyio.abc import TaskStatus
from starlette.types import ASGIApp


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the CLI owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_asgi(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    grace_seconds: float = 3.0,
    ssl_context: ssl.SSLContext | None = None,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` until cancelled, then shut down gracefully within `grace_seconds`.

    The socket is bound before `task_status.started(port)`, so the port (useful with
    `port=0`) accepts connections as soon as the caller learns it. With `ssl_context` (a
    server-side context holding the certificate) it serves HTTPS.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    # Accepted connections inherit this; without it uvicorn's separate header and body
    # writes wait for the peer's delayed ACK (about 40 ms per response on Linux).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    bound_port: int = sock.getsockname()[1]
    tls: dict[str, Any] = {}
    if ssl_context is not None:
        # asyncio does TLS on a plain listening socket, so the context goes to uvicorn
        # (which hands it to loop.create_server), not around the socket. uvicorn >= 0.47.
        tls["ssl_context_factory"] = lambda config, default: ssl_context
    server = _Server(
        uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=max(1, int(grace_seconds)),
            **tls,
        )
    )
    finished = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            with serving_scope:
                try:
                    await server.serve(sockets=[sock])
                finally:
                    finished.set()

        serving_scope = anyio.CancelScope(shield=True)
        tg.start_soon(run)
        task_status.started(bound_port)
        try:
            await finished.wait()
        finally:
            server.should_exit = True
            with anyio.move_on_after(grace_seconds + 1, shield=True):
                await finished.wait()
            serving_scope.cancel()
            sock.close()
