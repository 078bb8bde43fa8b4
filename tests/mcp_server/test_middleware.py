"""The caching, rate-limiting and audit middleware, end to end through real FastMCP clients.

The server here is a tiny FastMCP server built for these tests, not expwatch's: its tools and
resources count how often they really compute, so a test can tell a cached answer from a
fresh one. Clients talk to it in memory, or over streamable HTTP on loopback where a test
needs several distinct clients.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools import ToolResult
from mcp import types
from mcp.shared.exceptions import MCPError

from expwatch.serving import serve_asgi
from mcp_server.cache import ResponseCache
from mcp_server.middleware import (
    STDIO_CLIENT_ID,
    AuditLogMiddleware,
    ClientRateLimitMiddleware,
    ResponseCacheMiddleware,
    redact_secrets,
)

pytestmark = pytest.mark.anyio

WAIT_SECONDS = 10
"""Bound on every wait: generous, since a timeout only ever means a failure."""

CACHED_TOOLS = frozenset({"experiment_results", "flaky_results", "failing_results", "status"})
AUDIT_LOGGER = "expwatch.audit"


class FakeClock:
    """A monotonic clock that moves only when the test advances it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Backend:
    """What the test server computes its answers from; counts every computation."""

    def __init__(self) -> None:
        self.computed: Counter[str] = Counter()
        self.while_computing: Callable[[], None] = lambda: None

    def compute(self, what: str) -> str:
        self.computed[what] += 1
        self.while_computing()
        return f"{what}, computation {self.computed[what]}"


def build_server(backend: Backend, middleware: Sequence[Middleware]) -> FastMCP:
    server = FastMCP("middleware-test", middleware=list(middleware))

    @server.tool
    def experiment_results(experiment_id: str) -> str:
        """Results of one experiment."""
        return backend.compute(f"results {experiment_id}")

    @server.tool
    def status() -> str:
        """A global answer: it belongs to no experiment."""
        return backend.compute("status")

    @server.tool
    def flaky_results(experiment_id: str) -> str:
        """Fails the first time, like an upstream that was briefly unavailable."""
        answer = backend.compute(f"flaky {experiment_id}")
        if backend.computed[f"flaky {experiment_id}"] == 1:
            raise ToolError("upstream unavailable; retry")
        return answer

    @server.tool
    def failing_results(experiment_id: str) -> ToolResult:
        """Reports failure as an error result instead of raising."""
        return ToolResult(content=backend.compute(f"failing {experiment_id}"), is_error=True)

    @server.tool
    def publish(experiment_id: str, api_key: str) -> str:
        """A write, with a credential among its arguments."""
        return backend.compute(f"publish {experiment_id}")

    @server.resource("experiments://{experiment_id}/results")
    def results_resource(experiment_id: str) -> str:
        return backend.compute(f"resource {experiment_id}")

    @server.resource("experiments://index")
    def index_resource() -> str:
        return backend.compute("index")

    @server.prompt
    def summarize(experiment_id: str) -> str:
        """Ask for a summary of one experiment."""
        return f"Summarize experiment {experiment_id}."

    return server


def cached_server(backend: Backend, cache: ResponseCache) -> FastMCP:
    return build_server(backend, [ResponseCacheMiddleware(cache, tools=CACHED_TOOLS)])


async def results_text(client: Client[Any], experiment_id: str) -> str:
    result = await client.call_tool("experiment_results", {"experiment_id": experiment_id})
    assert isinstance(result.data, str)
    return result.data


async def resource_text(client: Client[Any], uri: str) -> str:
    (content,) = await client.read_resource(uri)
    assert isinstance(content, types.TextResourceContents)
    return content.text


def audit_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [record.audit for record in caplog.records if record.name == AUDIT_LOGGER]  # type: ignore[attr-defined]  # set through extra=


# -- caching -----------------------------------------------------------------------------------


async def test_a_repeated_tool_call_is_answered_from_the_cache() -> None:
    """The second identical call returns an equal result without running the tool."""
    backend, cache = Backend(), ResponseCache(clock=FakeClock())
    async with Client(cached_server(backend, cache)) as client:
        first = await client.call_tool("experiment_results", {"experiment_id": "exp-a"})
        second = await client.call_tool("experiment_results", {"experiment_id": "exp-a"})
    assert backend.computed["results exp-a"] == 1
    assert second.content == first.content
    assert second.structured_content == first.structured_content
    assert second.data == first.data == "results exp-a, computation 1"
    assert (cache.hits, cache.misses) == (1, 1)


async def test_different_arguments_are_cached_separately() -> None:
    """A call for another experiment is not answered with the first experiment's result."""
    backend, cache = Backend(), ResponseCache(clock=FakeClock())
    async with Client(cached_server(backend, cache)) as client:
        assert await results_text(client, "exp-a") == "results exp-a, computation 1"
        assert await results_text(client, "exp-b") == "results exp-b, computation 1"
    assert backend.computed == Counter({"results exp-a": 1, "results exp-b": 1})


async def test_a_repeated_resource_read_is_answered_from_the_cache() -> None:
    """Reading the same resource twice reads it once and returns equal contents."""
    backend, cache = Backend(), ResponseCache(clock=FakeClock())
    async with Client(cached_server(backend, cache)) as client:
        first = await client.read_resource("experiments://exp-a/results")
        second = await client.read_resource("experiments://exp-a/results")
    assert backend.computed["resource exp-a"] == 1
    assert second == first


async def test_invalidating_an_experiment_recomputes_only_that_experiment() -> None:
    """After invalidate(a), a's tool and resource answers are recomputed while b's stay cached."""
    backend, cache = Backend(), ResponseCache(clock=FakeClock())
    async with Client(cached_server(backend, cache)) as client:
        for experiment_id in ("exp-a", "exp-b"):
            await results_text(client, experiment_id)
            await resource_text(client, f"experiments://{experiment_id}/results")
        cache.invalidate("exp-a")
        assert await results_text(client, "exp-a") == "results exp-a, computation 2"
        assert await results_text(client, "exp-b") == "results exp-b, computation 1"
        assert await resource_text(client, "experiments://exp-a/results") == (
            "resource exp-a, computation 2"
        )
        assert await resource_text(client, "experiments://exp-b/results") == (
            "resource exp-b, computation 1"
        )


async def test_global_entries_are_dropped_by_any_invalidation() -> None:
    """The index resource and a tool without experiment_id are recomputed after any event."""
    backend, cache = Backend(), ResponseCache(clock=FakeClock())
    async with Client(cached_server(backend, cache)) as client:
        await resource_text(client, "experiments://index")
        await client.call_tool("status", {})
        await resource_text(client, "experiments://index")
        await client.call_tool("status", {})
        assert backend.computed == Counter({"index": 1, "status": 1})
        cache.invalidate("exp-z")
        assert await resource_text(client, "experiments://index") == "index, computation 2"
        assert (await client.call_tool("status", {})).data == "status, computation 2"


async def test_invalidate_all_drops_every_entry() -> None:
    """invalidate_all() makes every experiment's next call recompute."""
    backend, cache = Backend(), ResponseCache(clock=FakeClock())
    async with Client(cached_server(backend, cache)) as client:
        await results_text(client, "exp-a")
        await results_text(client, "exp-b")
        cache.invalidate_all()
        assert len(cache) == 0
        assert await results_text(client, "exp-a") == "results exp-a, computation 2"
        assert await results_text(client, "exp-b") == "results exp-b, computation 2"


async def test_entries_expire_after_the_ttl() -> None:
    """An answer is reused until ttl_seconds have passed on the cache's clock, then recomputed."""
    backend, clock = Backend(), FakeClock()
    cache = ResponseCache(ttl_seconds=60, clock=clock)
    async with Client(cached_server(backend, cache)) as client:
        await results_text(client, "exp-a")
        clock.advance(59.9)
        assert await results_text(client, "exp-a") == "results exp-a, computation 1"
        clock.advance(0.1)
        assert await results_text(client, "exp-a") == "results exp-a, computation 2"


async def test_a_zero_ttl_disables_caching() -> None:
    """With ttl_seconds=0 every call runs the tool."""
    backend, cache = Backend(), ResponseCache(ttl_seconds=0, clock=FakeClock())
    async with Client(cached_server(backend, cache)) as client:
        await results_text(client, "exp-a")
        assert await results_text(client, "exp-a") == "results exp-a, computation 2"
    assert len(cache) == 0


async def test_errors_are_not_cached() -> None:
    """A raised tool error and a returned error result are both recomputed on the next call."""
    backend, cache = Backend(), ResponseCache(clock=FakeClock())
    async with Client(cached_server(backend, cache)) as client:
        with pytest.raises(ToolError, match="upstream unavailable"):
            await client.call_tool("flaky_results", {"experiment_id": "exp-a"})
        retried = await client.call_tool("flaky_results", {"experiment_id": "exp-a"})
        assert retried.data == "flaky exp-a, computation 2"
        for _ in range(2):
            with pytest.raises(ToolError, match="failing exp-a"):
                await client.call_tool("failing_results", {"experiment_id": "exp-a"})
    assert backend.computed["failing exp-a"] == 2
    assert len(cache) == 1  # only the successful flaky_results answer


async def test_tools_outside_the_named_set_are_not_cached() -> None:
    """A tool not named in `tools` (a write) runs on every call."""
    backend, cache = Backend(), ResponseCache(clock=FakeClock())
    async with Client(cached_server(backend, cache)) as client:
        for _ in range(2):
            await client.call_tool("publish", {"experiment_id": "exp-a", "api_key": "k"})
    assert backend.computed["publish exp-a"] == 2


async def test_an_answer_computed_while_its_experiment_changed_is_not_kept() -> None:
    """An event arriving while a call computes keeps that (possibly stale) answer out of the
    cache."""
    backend, cache = Backend(), ResponseCache(clock=FakeClock())
    backend.while_computing = lambda: cache.invalidate("exp-a")
    async with Client(cached_server(backend, cache)) as client:
        await results_text(client, "exp-a")
        backend.while_computing = lambda: None
        assert await results_text(client, "exp-a") == "results exp-a, computation 2"
        assert await results_text(client, "exp-a") == "results exp-a, computation 2"


class StampServings(Middleware):
    """An outer middleware that edits answers in place: counts servings in a result's meta."""

    async def on_call_tool(
        self,
        context: MiddlewareContext[types.CallToolRequestParams],
        call_next: CallNext[types.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        result = await call_next(context)
        assert result.meta is not None
        result.meta["servings"] = result.meta.get("servings", 0) + 1
        return result


async def test_an_outer_middleware_editing_an_answer_does_not_edit_the_cached_one() -> None:
    """Hits are copies: a change made to one served answer is not seen by the next caller."""
    backend, cache = Backend(), ResponseCache(clock=FakeClock())
    middleware = [StampServings(), ResponseCacheMiddleware(cache, tools=CACHED_TOOLS)]
    async with Client(build_server(backend, middleware)) as client:
        for _ in range(3):
            result = await client.call_tool("experiment_results", {"experiment_id": "exp-a"})
            assert result.meta is not None and result.meta["servings"] == 1
    assert backend.computed["results exp-a"] == 1


def test_the_cache_keeps_at_most_max_entries_dropping_the_least_recently_used() -> None:
    """Past max_entries the entry used longest ago goes; recently used ones stay."""
    cache = ResponseCache(max_entries=2, clock=FakeClock())
    for name in ("a", "b"):
        cache.store(("test", name), name, experiment_id=None, generation=cache.generation)
    assert cache.lookup(("test", "a"), str) == "a"
    cache.store(("test", "c"), "c", experiment_id=None, generation=cache.generation)
    assert len(cache) == 2
    assert cache.lookup(("test", "b"), str) is None
    assert cache.lookup(("test", "a"), str) == "a"
    assert cache.lookup(("test", "c"), str) == "c"


# -- rate limiting -----------------------------------------------------------------------------


async def test_the_rate_limit_rejects_a_client_past_its_burst_and_says_when_to_retry() -> None:
    """The (burst+1)th call fails with the limit and a retry time; after it, calls pass again."""
    backend, clock = Backend(), FakeClock()
    limit = ClientRateLimitMiddleware(per_minute=6, burst=3, clock=clock)
    async with Client(build_server(backend, [limit])) as client:
        for _ in range(3):
            await results_text(client, "exp-a")
        with pytest.raises(MCPError) as rejected:
            await results_text(client, "exp-a")
        assert rejected.value.message == (
            f"Rate limit exceeded for client {STDIO_CLIENT_ID}: the limit is 6 calls per minute "
            "in bursts of up to 3. Retry in 10.0 s."
        )
        assert backend.computed["results exp-a"] == 3
        clock.advance(10)
        assert await results_text(client, "exp-a") == "results exp-a, computation 4"


async def test_resource_reads_and_prompt_gets_count_but_listings_do_not() -> None:
    """The handshake, listings and pings are free; a read and a prompt get each use a token."""
    limit = ClientRateLimitMiddleware(per_minute=1, burst=2, clock=FakeClock())
    async with Client(build_server(Backend(), [limit]), mode="legacy") as client:
        for _ in range(3):
            await client.list_tools()
            await client.list_resources()
            await client.list_prompts()
            await client.ping()
        await client.read_resource("experiments://exp-a/results")
        await client.get_prompt("summarize", {"experiment_id": "exp-a"})
        with pytest.raises(MCPError, match="Rate limit exceeded"):
            await client.read_resource("experiments://index")


async def test_the_rate_limit_counts_each_http_session_separately() -> None:
    """Over streamable HTTP, one session using up its burst does not limit another session."""
    backend = Backend()
    limit = ClientRateLimitMiddleware(per_minute=1, burst=2, clock=FakeClock())
    server = build_server(backend, [limit])
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_asgi, server.http_app())
        url = f"http://127.0.0.1:{port}/mcp"
        with anyio.fail_after(WAIT_SECONDS):
            async with Client(url, mode="legacy") as eager, Client(url, mode="legacy") as calm:
                for _ in range(2):
                    await results_text(eager, "exp-a")
                with pytest.raises(MCPError, match="Rate limit exceeded for client session:"):
                    await results_text(eager, "exp-a")
                for _ in range(2):
                    await results_text(calm, "exp-a")
        tg.cancel_scope.cancel()
    assert backend.computed["results exp-a"] == 4


def test_the_rate_limit_rejects_options_that_admit_nothing() -> None:
    """A non-positive rate or a burst below one is refused when the middleware is built."""
    with pytest.raises(ValueError, match="per_minute"):
        ClientRateLimitMiddleware(per_minute=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        ClientRateLimitMiddleware(per_minute=10, burst=0)


# -- audit log ---------------------------------------------------------------------------------


async def test_the_audit_log_records_a_call_with_its_secrets_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One record per call: client, method, name, redacted arguments, duration and outcome."""
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    async with Client(build_server(Backend(), [AuditLogMiddleware()])) as client:
        await client.call_tool("publish", {"experiment_id": "exp-a", "api_key": "sk-live-123"})
    (audit,) = audit_records(caplog)
    duration_ms = audit.pop("duration_ms")
    assert isinstance(duration_ms, float) and duration_ms >= 0
    assert audit == {
        "client": STDIO_CLIENT_ID,
        "method": "tools/call",
        "name": "publish",
        "arguments": {"experiment_id": "exp-a", "api_key": "***"},
        "outcome": "ok",
    }
    (record,) = [r for r in caplog.records if r.name == AUDIT_LOGGER]
    message = record.getMessage()
    assert "sk-live-123" not in message
    for shown in ("tools/call publish", "client=stdio", "outcome=ok", '"api_key": "***"'):
        assert shown in message
    assert "duration_ms=" in message


async def test_the_audit_log_records_reads_prompts_and_failures_but_not_results(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Resource reads and prompt gets are recorded too; a failure records its error class."""
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    async with Client(build_server(Backend(), [AuditLogMiddleware()])) as client:
        await client.read_resource("experiments://exp-a/results")
        await client.get_prompt("summarize", {"experiment_id": "exp-a"})
        with pytest.raises(ToolError):
            await client.call_tool("flaky_results", {"experiment_id": "exp-a"})
        with pytest.raises(ToolError):
            await client.call_tool("failing_results", {"experiment_id": "exp-a"})
    assert [(a["method"], a["name"], a["outcome"]) for a in audit_records(caplog)] == [
        ("resources/read", "experiments://exp-a/results", "ok"),
        ("prompts/get", "summarize", "ok"),
        ("tools/call", "flaky_results", "ToolError"),
        ("tools/call", "failing_results", "error_result"),
    ]
    assert not any("computation" in r.getMessage() for r in caplog.records)


async def test_the_audit_log_sees_rate_limited_and_cached_calls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Outermost, the audit log records a cache hit as ok and a rejection by its error class."""
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    backend = Backend()
    middleware = [
        AuditLogMiddleware(),
        ClientRateLimitMiddleware(per_minute=1, burst=2, clock=FakeClock()),
        ResponseCacheMiddleware(ResponseCache(clock=FakeClock()), tools=CACHED_TOOLS),
    ]
    async with Client(build_server(backend, middleware)) as client:
        for _ in range(2):
            await results_text(client, "exp-a")
        with pytest.raises(MCPError):
            await results_text(client, "exp-a")
    assert backend.computed["results exp-a"] == 1
    assert [a["outcome"] for a in audit_records(caplog)] == ["ok", "ok", "ClientRateLimited"]


async def test_client_ids_follow_the_http_session_or_the_peer_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Handshake-era HTTP clients are told apart by session; 2026-07-28 requests by address."""
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    server = build_server(Backend(), [AuditLogMiddleware()])
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_asgi, server.http_app())
        url = f"http://127.0.0.1:{port}/mcp"
        with anyio.fail_after(WAIT_SECONDS):
            async with Client(url, mode="legacy") as first, Client(url, mode="legacy") as second:
                for client in (first, second, first):
                    await results_text(client, "exp-a")
            async with Client(url) as modern:
                assert modern.protocol_version == "2026-07-28"
                await results_text(modern, "exp-a")
        tg.cancel_scope.cancel()
    clients = [str(a["client"]) for a in audit_records(caplog)]
    assert len(clients) == 4
    assert all(client.startswith("session:") for client in clients[:3])
    assert clients[0] == clients[2] != clients[1]
    assert clients[3] == "address:127.0.0.1"


def test_secrets_are_redacted_at_any_depth_by_key_name() -> None:
    """Keys containing key/token/secret/password/authorization, in any case, are masked."""
    assert redact_secrets(
        {
            "experiment_id": "exp-a",
            "API_KEY": "k",
            "headers": {"Authorization": "Bearer t", "accept": "json"},
            "accounts": [{"password_hint": "p", "name": "n"}],
            "refresh_token": None,
            "client_secret": "s",
        }
    ) == {
        "experiment_id": "exp-a",
        "API_KEY": "***",
        "headers": {"Authorization": "***", "accept": "json"},
        "accounts": [{"password_hint": "***", "name": "n"}],
        "refresh_token": "***",
        "client_secret": "***",
    }
