"""MCP over HTTP: loopback by default, a bearer token required on every request once set,
and a refusal to listen elsewhere without one."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from expwatch import open_app
from expwatch.config import McpSettings, Settings, StoreSettings, load_config
from expwatch.http_auth import BearerAuth, is_loopback
from store import ConfigError

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tok_s3cr3t_bearer_0123456789abcdef"
WAIT_SECONDS = 20
"""Bound on every wait: generous, since a timeout only ever means a failure."""
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@asynccontextmanager
async def mcp_endpoint(
    tmp_path: Path, *, token: str | None, allowed_origins: tuple[str, ...] = ()
) -> AsyncIterator[str]:
    """expwatch's MCP endpoint on a loopback port (no sources), yielding its URL."""
    settings = Settings(
        store=StoreSettings(path=tmp_path / "auth.db"),
        mcp=McpSettings(
            auth_token=SecretStr(token) if token else None, allowed_origins=list(allowed_origins)
        ),
    )
    async with open_app(settings) as app, anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: app.run(
                watch=False, mcp_http=("127.0.0.1", 0), task_status=task_status
            )
        )
        yield f"http://127.0.0.1:{port}/mcp"
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_with_a_token_requests_without_it_or_with_another_get_401_and_never_see_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without an Authorization header, with another scheme, or with a wrong token, the
    endpoint answers 401 with a Bearer challenge and a small JSON body; the token shows in no
    answer and no log line."""
    caplog.set_level(logging.DEBUG)
    with anyio.fail_after(WAIT_SECONDS):
        async with (
            mcp_endpoint(tmp_path, token=TOKEN) as url,
            httpx.AsyncClient(timeout=WAIT_SECONDS) as http,
        ):
            attempts = {
                "none": {},
                "basic": {"Authorization": f"Basic {TOKEN}"},
                "empty": {"Authorization": "Bearer"},
                "wrong": {"Authorization": "Bearer tok_wrong_0123456789abcdef"},
                "prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
            }
            for name, headers in attempts.items():
                response = await http.post(url, json=INITIALIZE, headers=MCP_HEADERS | headers)
                assert response.status_code == 401, name
                assert response.headers["www-authenticate"].startswith("Bearer"), name
                assert response.json()["error"] == "unauthorized", name
                assert TOKEN not in response.text and TOKEN[:-1] not in response.text
            assert 'error="invalid_token"' in response.headers["www-authenticate"]
            # The right token gets through to the MCP server itself.
            response = await http.post(
                url,
                json=INITIALIZE,
                headers=MCP_HEADERS | {"Authorization": f"bearer {TOKEN}"},
            )
            assert response.status_code == 200, response.text
    assert "MCP HTTP request refused (no bearer token)" in caplog.text
    assert "MCP HTTP request refused (wrong token)" in caplog.text
    assert TOKEN[:-1] not in caplog.text


@pytest.mark.anyio
async def test_a_client_with_the_token_lists_tools_and_reads_the_watcher_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real MCP client over streamable HTTP that sends the bearer token initializes, lists
    the tools and reads watcher://status through the wrapper (lifespan and streamed answers
    pass through); the token is logged nowhere."""
    caplog.set_level(logging.DEBUG)
    with anyio.fail_after(WAIT_SECONDS):
        async with (
            mcp_endpoint(tmp_path, token=TOKEN) as url,
            httpx2.AsyncClient(
                headers={"Authorization": f"Bearer {TOKEN}"}, timeout=WAIT_SECONDS
            ) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            tools = {t.name for t in (await client.list_tools()).tools}
            status = await client.read_resource("watcher://status")
    assert {"watcher_status", "get_experiments"} <= tools
    [content] = status.contents
    assert isinstance(content, types.TextResourceContents)
    assert "sources" in json.loads(content.text)
    assert TOKEN not in caplog.text


@pytest.mark.anyio
async def test_on_loopback_without_a_token_no_header_is_needed(tmp_path: Path) -> None:
    """With no token configured the loopback endpoint serves requests as before."""
    with anyio.fail_after(WAIT_SECONDS):
        async with (
            mcp_endpoint(tmp_path, token=None) as url,
            httpx.AsyncClient(timeout=WAIT_SECONDS) as http,
        ):
            response = await http.post(url, json=INITIALIZE, headers=MCP_HEADERS)
    assert response.status_code == 200, response.text


@pytest.mark.anyio
async def test_serving_a_non_loopback_host_without_a_token_is_refused_before_binding(
    tmp_path: Path,
) -> None:
    """App.run with mcp_http on 0.0.0.0 and no token raises a ConfigError naming
    mcp.auth_token and the host, before anything starts."""
    settings = load_config(_config(tmp_path))
    async with open_app(settings) as app:
        with anyio.fail_after(WAIT_SECONDS), pytest.raises(ConfigError) as caught:
            await app.run(watch=False, mcp_http=("0.0.0.0", 0))
    message = str(caught.value)
    assert caught.value.key == "mcp.auth_token"
    assert "mcp.auth_token" in message and "'0.0.0.0'" in message
    assert str(tmp_path / "expwatch.toml") in message


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "expwatch.toml"
    path.write_text(f'[store]\npath = "cli.db"\n{extra}')
    return path


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["mcp", "--transport", "http", "--host", "0.0.0.0", "--port", "0"], ""),
        (["run", "--mcp-http"], '[mcp]\nhost = "0.0.0.0"\nport = 0\n'),
    ],
    ids=["mcp", "run"],
)
async def test_the_cli_refuses_a_non_loopback_host_without_a_token_with_exit_code_2(
    tmp_path: Path, args: list[str], extra: str
) -> None:
    """`expwatch mcp --transport http --host 0.0.0.0` and `expwatch run --mcp-http` on
    0.0.0.0 without a token exit 2 with a message naming mcp.auth_token, before the store
    is opened."""
    config = _config(tmp_path, extra)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPWATCH_")}
    with anyio.fail_after(WAIT_SECONDS):
        result = await anyio.run_process(
            [sys.executable, "-m", "expwatch", *args, "--config", str(config)],
            env=env,
            cwd=ROOT,
            check=False,
        )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "mcp.auth_token" in stderr and "0.0.0.0" in stderr and str(config) in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "cli.db").exists()


def test_a_token_that_is_short_or_has_spaces_is_a_config_error_that_hides_it(
    tmp_path: Path,
) -> None:
    """auth_token must be long enough and sendable in a header; the error does not quote it."""
    for bad in ("short_s3cr3t", "has a space s3cr3t 0123456789"):
        path = _config(tmp_path, f'[mcp]\nauth_token = "{bad}"\n')
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert "mcp.auth_token" in str(caught.value) and "s3cr3t" not in str(caught.value)
    settings = load_config(_config(tmp_path, f'[mcp]\nauth_token = "{TOKEN}"\n'))
    assert settings.mcp.auth_token is not None and TOKEN not in repr(settings)


def test_the_token_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EXPWATCH_MCP__AUTH_TOKEN sets [mcp] auth_token."""
    monkeypatch.setenv("EXPWATCH_MCP__AUTH_TOKEN", TOKEN)
    token = load_config(_config(tmp_path)).mcp.auth_token
    assert token is not None and token.get_secret_value() == TOKEN


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.20", False),
        ("example.com", False),
    ],
)
def test_only_loopback_addresses_count_as_loopback(host: str, loopback: bool) -> None:
    """127.0.0.0/8, ::1 and localhost are loopback; wildcards, LAN addresses and other
    names are not."""
    assert is_loopback(host) is loopback


@pytest.mark.anyio
async def test_a_websocket_without_the_token_is_closed_before_the_app_sees_it() -> None:
    """The wrapper guards WebSocket connections too, closing them with 1008."""
    reached: list[str] = []
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(message)

    guarded = BearerAuth(app, token=SecretStr(TOKEN))
    await guarded({"type": "websocket", "headers": []}, receive, send)
    assert reached == [] and sent[0]["type"] == "websocket.close" and sent[0]["code"] == 1008
    headers = [(b"authorization", f"Bearer {TOKEN}".encode())]
    await guarded({"type": "websocket", "headers": headers}, receive, send)
    await guarded({"type": "lifespan"}, receive, send)
    assert reached == ["websocket", "lifespan"]


INSPECTOR = "https://inspector.example.com"


@pytest.mark.anyio
@pytest.mark.parametrize("token", [None, TOKEN], ids=["no-token", "token"])
async def test_web_pages_of_other_origins_and_rebound_host_names_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, token: str | None
) -> None:
    """A page on another origin, or one reaching the loopback port through a DNS name it
    re-pointed at 127.0.0.1, gets 403 before the server (or the token check) sees it, with
    or without a token; loopback origins, configured origins and requests without an Origin
    (every non-browser client) get through."""
    caplog.set_level(logging.INFO)
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    with anyio.fail_after(WAIT_SECONDS):
        async with (
            mcp_endpoint(tmp_path, token=token, allowed_origins=(INSPECTOR,)) as url,
            httpx.AsyncClient(timeout=WAIT_SECONDS) as http,
        ):
            port = httpx.URL(url).port
            refused = {
                "evil origin": {"Origin": "https://evil.example"},
                "null origin": {"Origin": "null"},
                "look-alike": {"Origin": "http://localhost.evil.example"},
                "rebound host": {"Host": f"attacker.example:{port}"},
                "rebound host, loopback origin": {
                    "Host": f"attacker.example:{port}",
                    "Origin": f"http://127.0.0.1:{port}",
                },
            }
            for name, headers in refused.items():
                response = await http.post(
                    url, json=INITIALIZE, headers=MCP_HEADERS | auth | headers
                )
                assert response.status_code == 403, name
                assert response.json()["error"] == "forbidden", name
            allowed = {
                "no origin": {},
                "loopback origin": {"Origin": "http://localhost:6274"},
                "configured origin": {"Origin": INSPECTOR},
                "ipv6 loopback host": {"Host": f"[::1]:{port}"},
            }
            for name, headers in allowed.items():
                response = await http.post(
                    url, json=INITIALIZE, headers=MCP_HEADERS | auth | headers
                )
                assert response.status_code == 200, (name, response.text)
            # A refusal does not bypass the token: the right origin without it is still 401.
            if token:
                response = await http.post(
                    url, json=INITIALIZE, headers=MCP_HEADERS | {"Origin": INSPECTOR}
                )
                assert response.status_code == 401
    assert "origin 'https://evil.example' is not allowed" in caplog.text
    assert "host 'attacker.example:" in caplog.text


@pytest.mark.anyio
async def test_a_browser_preflight_from_an_allowed_origin_is_answered_without_the_token(
    tmp_path: Path,
) -> None:
    """CORS: a preflight carries no Authorization header, so it is answered (allowing the
    Authorization and MCP headers, exposing Mcp-Session-Id) before the token is checked;
    the request that follows still needs the token. Other origins get no CORS answer."""
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, mcp-protocol-version",
    }
    with anyio.fail_after(WAIT_SECONDS):
        async with (
            mcp_endpoint(tmp_path, token=TOKEN, allowed_origins=(INSPECTOR,)) as url,
            httpx.AsyncClient(timeout=WAIT_SECONDS) as http,
        ):
            answer = await http.options(url, headers={"Origin": INSPECTOR, **preflight})
            assert answer.status_code == 200, answer.text
            assert answer.headers["access-control-allow-origin"] == INSPECTOR
            assert "authorization" in answer.headers["access-control-allow-headers"].lower()
            local = await http.options(
                url, headers={"Origin": "http://127.0.0.1:6274", **preflight}
            )
            assert local.headers["access-control-allow-origin"] == "http://127.0.0.1:6274"
            evil = await http.options(url, headers={"Origin": "https://evil.example", **preflight})
            assert evil.status_code == 403
            assert "access-control-allow-origin" not in evil.headers
            response = await http.post(
                url,
                json=INITIALIZE,
                headers=MCP_HEADERS | {"Origin": INSPECTOR, "Authorization": f"Bearer {TOKEN}"},
            )
            assert response.status_code == 200
            assert response.headers["access-control-allow-origin"] == INSPECTOR
            assert "mcp-session-id" in response.headers["access-control-expose-headers"].lower()


@pytest.mark.parametrize(
    "origin", ["inspector.example.com", "https://x.example/path", "ftp://x.example", "https://"]
)
def test_an_allowed_origin_must_be_scheme_host_and_port(tmp_path: Path, origin: str) -> None:
    config = tmp_path / "expwatch.toml"
    config.write_text(f"[mcp]\nallowed_origins = [{json.dumps(origin)}]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert "mcp.allowed_origins" in str(caught.value) and "is not an origin" in str(caught.value)
