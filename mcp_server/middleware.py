"""FastMCP middleware: response caching, per-client rate limiting and an audit log.

Add them outermost first, so the audit log sees every outcome (rate-limit rejections and
cache hits included) and cached answers still count against a client's rate::

    FastMCP(
        ...,
        middleware=[
            AuditLogMiddleware(),
            ClientRateLimitMiddleware(per_minute=120, burst=20),
            ResponseCacheMiddleware(cache, tools=frozenset({"get_experiment_results"})),
        ],
    )

Each middleware acts only on tool calls, resource reads and prompt gets; the handshake,
discovery, listings, pings and subscriptions pass straight through.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote

from fastmcp.prompts import PromptResult
from fastmcp.resources import ResourceResult
from fastmcp.resources.base import InputRequiredResourceResult
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.server.middleware.rate_limiting import RateLimitError
from fastmcp.tools import InputRequiredToolResult, ToolResult
from mcp import types as mt
from pydantic import BaseModel

from . import _sdk
from .cache import CacheKey, ResponseCache

__all__ = [
    "STDIO_CLIENT_ID",
    "AuditLogMiddleware",
    "ClientRateLimitMiddleware",
    "ClientRateLimited",
    "ResponseCacheMiddleware",
    "identify_client",
    "redact_secrets",
]

MessageT = TypeVar("MessageT")
ResultT = TypeVar("ResultT", bound=BaseModel)

ClientIdentifier = Callable[[MiddlewareContext[Any]], str]

STDIO_CLIENT_ID = "stdio"
"""The client of a process served over stdio (or in memory): there is only one."""

_EXPERIMENT_URI = re.compile(r"^experiments://(?P<experiment_id>[^/?#]+)/")


def identify_client(context: MiddlewareContext[Any]) -> str:
    """Who sent a request, as a stable id for rate limits and the audit log.

    - Streamable HTTP, handshake-era session: `session:<MCP session id>`, the id the server
      negotiated for the connection (never the request's `mcp-session-id` header, which a
      2026-07-28 request may carry with any value).
    - Streamable HTTP, 2026-07-28 protocol: every request is its own connection with no
      session, so the best remaining key is the peer: `address:<remote host>`.
    - stdio and in-memory transports: `STDIO_CLIENT_ID`, one client per process.
    """
    fastmcp_context = context.fastmcp_context
    request_context = fastmcp_context.request_context if fastmcp_context is not None else None
    if request_context is None or request_context.request is None:
        return STDIO_CLIENT_ID
    session_id = _sdk.session_connection(request_context.session).session_id
    if session_id is not None:
        return f"session:{session_id}"
    peer = request_context.request.client
    return f"address:{peer.host if peer is not None else 'unknown'}"


# -- response caching --------------------------------------------------------------------------


class ResponseCacheMiddleware(Middleware):
    """Answers repeated tool calls (of the named, read-only `tools`) and resource reads from
    `cache`, tagged with the experiment they are about so events invalidate them.

    An entry's experiment is the `experiment_id` argument of a tool call or the `{id}` of an
    `experiments://{id}/...` URI; anything else (`experiments://index`, a tool without an
    experiment) is global and dropped by every invalidation. Errors, raised or returned as
    error results, are never cached; neither are multi-round-trip (input-required) legs nor
    task-augmented calls. Hits are copies, so no caller can alter a stored answer.
    """

    def __init__(self, cache: ResponseCache, *, tools: frozenset[str]) -> None:
        self._cache = cache
        self._tools = tools

    async def on_call_tool(
        self,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        message = context.message
        if message.name not in self._tools or message.task is not None:
            return await call_next(context)
        arguments = message.arguments or {}
        experiment_id = arguments.get("experiment_id")
        return await self._answer(
            context,
            call_next,
            key=("tools/call", message.name, _canonical_json(arguments)),
            experiment_id=experiment_id if isinstance(experiment_id, str) else None,
            kind=ToolResult,
            is_cacheable=_is_cacheable_tool_result,
        )

    async def on_read_resource(
        self,
        context: MiddlewareContext[mt.ReadResourceRequestParams],
        call_next: CallNext[mt.ReadResourceRequestParams, ResourceResult],
    ) -> ResourceResult:
        await self.check_resource_access(context)
        uri = str(context.message.uri)
        matched = _EXPERIMENT_URI.match(uri)
        return await self._answer(
            context,
            call_next,
            key=("resources/read", uri, "null"),
            experiment_id=unquote(matched["experiment_id"]) if matched else None,
            kind=ResourceResult,
            is_cacheable=_is_cacheable_resource_result,
        )

    async def _answer(
        self,
        context: MiddlewareContext[MessageT],
        call_next: CallNext[MessageT, ResultT],
        *,
        key: CacheKey,
        experiment_id: str | None,
        kind: type[ResultT],
        is_cacheable: Callable[[ResultT], bool],
    ) -> ResultT:
        if not self._cache.is_enabled or _is_continuation(context):
            return await call_next(context)
        cached = self._cache.lookup(key, kind)
        if cached is not None:
            return cached.model_copy(deep=True)
        generation = self._cache.generation
        result = await call_next(context)
        if is_cacheable(result):
            self._cache.store(
                key,
                result.model_copy(deep=True),
                experiment_id=experiment_id,
                generation=generation,
            )
        return result


def _canonical_json(arguments: dict[str, Any]) -> str:
    return json.dumps(
        arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )


def _is_continuation(context: MiddlewareContext[Any]) -> bool:
    """A later leg of a multi-round-trip request (SEP-2322): it answers a question and must
    reach the handler, and its answer must not be served to a fresh request."""
    fastmcp_context = context.fastmcp_context
    return fastmcp_context is not None and (
        fastmcp_context.input_responses is not None or fastmcp_context.request_state is not None
    )


def _is_cacheable_tool_result(result: ToolResult) -> bool:
    # A task-augmented call answers with a task acknowledgement, not a ToolResult.
    return (
        isinstance(result, ToolResult)
        and not isinstance(result, InputRequiredToolResult)
        and not result.is_error
    )


def _is_cacheable_resource_result(result: ResourceResult) -> bool:
    return isinstance(result, ResourceResult) and not isinstance(
        result, InputRequiredResourceResult
    )


# -- rate limiting -----------------------------------------------------------------------------


class ClientRateLimited(RateLimitError):
    """A client used up its rate limit; it may try again after `retry_after_seconds`.

    A fastmcp `RateLimitError`, so it reaches the client as an MCP error (code -32000)
    carrying the message."""

    def __init__(self, *, client_id: str, retry_after_seconds: float, limit: str) -> None:
        self.client_id = client_id
        self.retry_after_seconds = retry_after_seconds
        super().__init__(
            f"Rate limit exceeded for client {client_id}: the limit is {limit}. "
            f"Retry in {retry_after_seconds:.1f} s."
        )


class ClientRateLimitMiddleware(Middleware):
    """A token bucket per client (see `identify_client`): `burst` calls at once, refilled at
    `per_minute` calls a minute. Tool calls, resource reads and prompt gets count; nothing
    else does. Past the limit a call fails with `ClientRateLimited`, saying when to retry.

    Buckets of the `max_clients` most recently seen clients are kept; a forgotten client
    starts again with a full bucket. (fastmcp's `RateLimitingMiddleware` limits every
    request, including the handshake and listings, reads the wall clock directly and keeps
    a bucket per client forever.)
    """

    def __init__(
        self,
        *,
        per_minute: float,
        burst: int,
        max_clients: int = 10_000,
        get_client_id: ClientIdentifier = identify_client,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not per_minute > 0:
            raise ValueError(f"per_minute must be more than 0, not {per_minute}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst}")
        if max_clients < 1:
            raise ValueError(f"max_clients must be at least 1, not {max_clients}")
        self.per_minute = per_minute
        self.burst = burst
        self.max_clients = max_clients
        self._get_client_id = get_client_id
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """client id → (tokens, when they were counted), least recently seen first."""

    async def on_call_tool(
        self,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        self._take_token(context)
        return await call_next(context)

    async def on_read_resource(
        self,
        context: MiddlewareContext[mt.ReadResourceRequestParams],
        call_next: CallNext[mt.ReadResourceRequestParams, ResourceResult],
    ) -> ResourceResult:
        self._take_token(context)
        await self.check_resource_access(context)
        return await call_next(context)

    async def on_get_prompt(
        self,
        context: MiddlewareContext[mt.GetPromptRequestParams],
        call_next: CallNext[mt.GetPromptRequestParams, PromptResult],
    ) -> PromptResult:
        self._take_token(context)
        return await call_next(context)

    def _take_token(self, context: MiddlewareContext[Any]) -> None:
        client_id = self._get_client_id(context)
        now = self._clock()
        per_second = self.per_minute / 60
        tokens, counted_at = self._buckets.pop(client_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - counted_at) * per_second)
        admitted = tokens >= 1
        self._buckets[client_id] = (tokens - 1 if admitted else tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        if not admitted:
            raise ClientRateLimited(
                client_id=client_id,
                # Rounded up to a tenth, so retrying when told is never too early.
                retry_after_seconds=math.ceil((1 - tokens) / per_second * 10) / 10,
                limit=f"{self.per_minute:g} calls per minute in bursts of up to {self.burst}",
            )


# -- audit log ---------------------------------------------------------------------------------

SECRET_MARKERS = ("key", "token", "secret", "password", "authorization")
"""An argument whose name contains one of these (in any case) is logged as `***`."""

REDACTED = "***"


def redact_secrets(value: object) -> object:
    """`value` with the values of secret-looking keys replaced by `***`, at any depth."""
    if isinstance(value, dict):
        return {
            key: REDACTED
            if any(marker in str(key).lower() for marker in SECRET_MARKERS)
            else redact_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_secrets(item) for item in value]
    return value


class AuditLogMiddleware(Middleware):
    """One INFO record per tool call, resource read and prompt get on `logger_name`.

    The record's `audit` attribute (`extra=`) holds `client`, `method`, `name` (tool,
    prompt or resource URI), `arguments` (secrets redacted, see `redact_secrets`),
    `duration_ms` and `outcome`: "ok", "error_result" for a tool result flagged as an error,
    or the class name of the exception the call raised. The message text says the same, so
    text and JSON logs both show it. Results are never logged.
    """

    def __init__(
        self,
        *,
        logger_name: str = "expwatch.audit",
        get_client_id: ClientIdentifier = identify_client,
    ) -> None:
        self._logger = logging.getLogger(logger_name)
        self._get_client_id = get_client_id

    async def on_call_tool(
        self,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        message = context.message
        return await self._audit(context, call_next, "tools/call", message.name, message.arguments)

    async def on_read_resource(
        self,
        context: MiddlewareContext[mt.ReadResourceRequestParams],
        call_next: CallNext[mt.ReadResourceRequestParams, ResourceResult],
    ) -> ResourceResult:
        await self.check_resource_access(context)
        return await self._audit(
            context, call_next, "resources/read", str(context.message.uri), None
        )

    async def on_get_prompt(
        self,
        context: MiddlewareContext[mt.GetPromptRequestParams],
        call_next: CallNext[mt.GetPromptRequestParams, PromptResult],
    ) -> PromptResult:
        message = context.message
        return await self._audit(context, call_next, "prompts/get", message.name, message.arguments)

    async def _audit(
        self,
        context: MiddlewareContext[MessageT],
        call_next: CallNext[MessageT, ResultT],
        method: str,
        name: str,
        arguments: dict[str, Any] | dict[str, str] | None,
    ) -> ResultT:
        client_id = self._get_client_id(context)
        started = time.perf_counter()
        try:
            result = await call_next(context)
        except BaseException as exc:  # recorded, then re-raised (cancellation included)
            self._record(client_id, method, name, arguments, started, type(exc).__name__)
            raise
        is_error_result = isinstance(result, ToolResult) and result.is_error
        self._record(
            client_id, method, name, arguments, started, "error_result" if is_error_result else "ok"
        )
        return result

    def _record(
        self,
        client_id: str,
        method: str,
        name: str,
        arguments: dict[str, Any] | dict[str, str] | None,
        started: float,
        outcome: str,
    ) -> None:
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        redacted = redact_secrets(arguments or {})
        audit = {
            "client": client_id,
            "method": method,
            "name": name,
            "arguments": redacted,
            "duration_ms": duration_ms,
            "outcome": outcome,
        }
        self._logger.info(
            "%s %s client=%s outcome=%s duration_ms=%.3f arguments=%s",
            method,
            name,
            client_id,
            outcome,
            duration_ms,
            json.dumps(redacted, sort_keys=True, ensure_ascii=False, default=str),
            extra={"audit": audit},
        )
