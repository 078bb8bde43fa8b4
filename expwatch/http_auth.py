"""The MCP endpoint over HTTP: loopback by default, a bearer token required elsewhere,
and no way in for a web page the user happens to visit.

`check_exposure` refuses to serve a non-loopback address without `[mcp] auth_token`;
`BearerAuth` wraps the endpoint's ASGI app so that every request must carry
`Authorization: Bearer <token>`. Neither ever puts the token in a message or a log line.
`OriginGuard` refuses browser requests from other origins and, on a loopback endpoint,
requests naming another host (DNS rebinding); `guard_endpoint` puts the layers together,
with CORS answers for the origins allowed.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import SecretStr
from starlette.middleware.cors import CORSMiddleware
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


def guard_endpoint(
    app: ASGIApp, *, host: str, token: SecretStr | None, allowed_origins: Iterable[str] = ()
) -> ASGIApp:
    """`app` as served on `host`: the origin and host checks outermost, then CORS answers
    for the allowed origins (a browser's preflight carries no token, so it is answered
    before the token check), then the token check when there is a token."""
    allowed = frozenset(allowed_origins)
    inner = app if token is None else BearerAuth(app, token=token)
    cors = CORSMiddleware(
        inner,
        allow_origins=sorted(allowed),
        allow_origin_regex=_LOOPBACK_ORIGIN,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["authorization", "content-type", "mcp-protocol-version", "mcp-session-id"],
        expose_headers=["mcp-session-id"],
    )
    return OriginGuard(cors, allowed_origins=allowed, check_host=is_loopback(host))


_LOOPBACK_ORIGIN = r"https?://(localhost|127(\.\d{1,3}){3}|\[::1\])(:\d{1,5})?"


def _host_of(authority: str) -> str:
    """The host of a Host header or an origin's authority, without port or brackets."""
    return urlsplit(f"//{authority}").hostname or ""


class _Gate:
    """A pure ASGI wrapper that refuses some HTTP and WebSocket requests before they reach
    `app`; everything else, the lifespan included, passes through untouched, streaming
    responses too. Subclasses say why a request is refused (`_problem`) and how (`_refuse`)."""

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        problem = self._problem(scope)
        if problem is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            self._log(scope, problem)
            await send({"type": "websocket.close", "code": 1008, "reason": "refused"})
        else:
            self._log(scope, problem)
            await self._refuse(send, problem)

    def _problem(self, scope: Scope) -> str | None:
        raise NotImplementedError

    def _log(self, scope: Scope, problem: str) -> None:
        raise NotImplementedError

    async def _refuse(self, send: Send, problem: str) -> None:
        raise NotImplementedError


class OriginGuard(_Gate):
    """A pure ASGI wrapper against requests a web page makes on the user's behalf.

    - An `Origin` header (browsers send it on cross-origin and on POST requests) must be a
      loopback origin or one of `allowed_origins`; MCP clients that are not browsers send
      none. The MCP transport specification asks servers to validate it.
    - With `check_host` (a loopback endpoint), the `Host` header must name a loopback
      address: a page on a name the attacker re-points at 127.0.0.1 (DNS rebinding) still
      sends its own name as the host.

    Refused requests get 403 with a JSON body saying why; WebSockets are closed (1008).
    """

    def __init__(self, app: ASGIApp, *, allowed_origins: frozenset[str], check_host: bool) -> None:
        self.app = app
        self._allowed_origins = allowed_origins
        self._check_host = check_host

    def _log(self, scope: Scope, problem: str) -> None:
        logger.warning("MCP HTTP request refused: %s", problem)

    async def _refuse(self, send: Send, problem: str) -> None:
        await _send_json(send, 403, {"error": "forbidden", "message": problem})

    def _problem(self, scope: Scope) -> str | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin")
        if origin is not None and origin not in self._allowed_origins:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not is_loopback(parts.hostname or ""):
                return (
                    f"origin {origin!r} is not allowed (add it to mcp.allowed_origins to let "
                    "that web page use this endpoint)"
                )
        host = headers.get("host")
        if self._check_host and host is not None and not is_loopback(_host_of(host)):
            return (
                f"host {host!r} is not a loopback name on a loopback endpoint (a DNS "
                "rebinding attempt, or a proxy that should pass Host through)"
            )
        return None


async def _send_json(
    send: Send, status: int, payload: dict[str, str], headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BearerAuth(_Gate):
    """HTTP and WebSocket requests without `Authorization: Bearer <token>` are answered 401
    (WebSockets closed) before they reach `app`."""

    def __init__(self, app: ASGIApp, *, token: SecretStr) -> None:
        self.app = app
        self._token = token

    def _log(self, scope: Scope, problem: str) -> None:
        client = scope.get("client")
        logger.info(
            "MCP HTTP request refused (%s) from %s",
            problem,
            f"{client[0]}:{client[1]}" if client else "an unknown client",
        )

    async def _refuse(self, send: Send, problem: str) -> None:
        challenge = 'Bearer realm="expwatch"'
        if problem == "wrong token":
            challenge += ', error="invalid_token"'
        await _send_json(
            send,
            401,
            {"error": "unauthorized", "message": f"{problem}: send Authorization: Bearer <token>"},
            [(b"www-authenticate", challenge.encode())],
        )

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
