"""The MCP endpoint over HTTP: loopback by default, a bearer token required elsewhere.

`check_exposure` refuses to serve a non-loopback address without `[mcp] auth_token`;
`BearerAuth` wraps the endpoint's ASGI app so that every request must carry
`Authorization: Bearer <token>`. Neither ever puts the token in a message or a log line.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from pathlib import Path

from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from store import ConfigError

logger = logging.getLogger(__name__)

_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z) and "localhost"."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # another name: it may resolve anywhere
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_exposure(host: str, token: SecretStr | None, *, config_path: Path | None) -> None:
    """Raise ConfigError if MCP over HTTP would listen on `host`, not a loopback address,
    without a bearer token: anyone who can reach the port could read every experiment and
    change the watch list."""
    if token is not None or is_loopback(host):
        return
    where = str(config_path) if config_path else "the environment"
    raise ConfigError(
        f"refusing to serve MCP over HTTP on {host!r} (not a loopback address) without a "
        f"bearer token: set mcp.auth_token in {where} (or EXPWATCH_MCP__AUTH_TOKEN), or "
        "listen on 127.0.0.1",
        path=str(config_path) if config_path else None,
        key="mcp.auth_token",
    )


class BearerAuth:
    """A pure ASGI wrapper: HTTP and WebSocket requests without `Authorization: Bearer
    <token>` are answered 401 (WebSockets closed) before they reach `app`; everything else,
    the lifespan included, passes through untouched, streaming responses too."""

    def __init__(self, app: ASGIApp, *, token: SecretStr) -> None:
        self.app = app
        self._token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        problem = self._problem(scope)
        if problem is None:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        logger.info(
            "MCP HTTP request refused (%s) from %s",
            problem,
            f"{client[0]}:{client[1]}" if client else "an unknown client",
        )
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})
            return
        challenge = 'Bearer realm="expwatch"'
        if problem == "wrong token":
            challenge += ', error="invalid_token"'
        body = json.dumps(
            {"error": "unauthorized", "message": f"{problem}: send Authorization: Bearer <token>"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", challenge.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _problem(self, scope: Scope) -> str | None:
        """Why the request is refused, or None when it carries the token."""
        values = [v for k, v in scope["headers"] if k == b"authorization"]
        if not values:
            return "no bearer token"
        scheme, _, presented = values[0].partition(b" ")
        if scheme.lower() != b"bearer" or not presented.strip():
            return "no bearer token"
        expected = self._token.get_secret_value().encode()
        if len(values) > 1 or not hmac.compare_digest(presented.strip(), expected):
            return "wrong token"
        return None
