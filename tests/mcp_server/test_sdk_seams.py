"""Guards for the FastMCP / MCP SDK internals that `mcp_server/_sdk.py` relies on.

Each test checks one assumption against the installed packages. If a fastmcp or mcp upgrade
breaks one, the failure says which internal changed and what to update, instead of
subscriptions silently never arriving.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, NoReturn, cast

import pytest
from fastmcp import Client as FastMCPClient
from fastmcp import Context, FastMCP
from mcp import Client
from mcp.server.connection import Connection
from mcp.server.lowlevel.server import Server

from mcp_server import ResourceSubscriptions, _sdk

pytestmark = pytest.mark.anyio

SUBSCRIPTION_METHODS = ("resources/subscribe", "resources/unsubscribe", "subscriptions/listen")


def fail_loudly(broken: _sdk.SdkSeamError) -> NoReturn:
    pytest.fail(f"SDK SEAM BROKEN: {broken}", pytrace=False)


def lowlevel_or_fail(server: FastMCP) -> Server[Any]:
    try:
        return _sdk.lowlevel_server(server)
    except _sdk.SdkSeamError as broken:
        fail_loudly(broken)


def test_fastmcp_keeps_its_sdk_server_in_the_private_mcp_server_attribute() -> None:
    """FastMCP still stores an mcp lowlevel Server as `_mcp_server`."""
    lowlevel = lowlevel_or_fail(FastMCP("seams"))
    if not callable(getattr(lowlevel, "add_request_handler", None)):
        fail_loudly(_sdk.SdkSeamError("Server.add_request_handler", "gone"))


def test_fastmcp_still_lacks_native_resource_subscriptions() -> None:
    """FastMCP still serves none of the subscription methods we install ourselves."""
    lowlevel = lowlevel_or_fail(FastMCP("seams"))
    native = [m for m in SUBSCRIPTION_METHODS if lowlevel.get_request_handler(m) is not None]
    if native:
        pytest.fail(
            f"FastMCP now serves {', '.join(native)} itself ({_sdk.installed_versions()}; "
            "PrefectHQ/fastmcp#3641 may have landed): ResourceSubscriptions.install would "
            "refuse to replace them. Re-evaluate mcp_server/subscriptions.py against it.",
            pytrace=False,
        )


async def test_handlers_added_to_the_sdk_server_are_served_by_fastmcp_transports() -> None:
    """Handlers installed on `_mcp_server` are live through FastMCP's own client transport."""
    server = FastMCP("seams")

    @server.resource("experiments://{experiment_id}/results")
    def results(experiment_id: str) -> str:
        return "{}"

    ResourceSubscriptions().install(server)
    async with FastMCPClient(server, mode="legacy") as client:
        capabilities = client.initialize_result
        resources = capabilities.capabilities.resources if capabilities else None
        if resources is None or resources.subscribe is not True:
            fail_loudly(
                _sdk.SdkSeamError(
                    "FastMCP._mcp_server",
                    "a resources/subscribe handler added to it did not make the server "
                    "advertise resources.subscribe, so FastMCP serves another object",
                )
            )


async def test_a_request_session_exposes_its_connection_as_private_connection() -> None:
    """`ServerSession._connection` is the same `Connection` for every request of a client."""
    server = FastMCP("seams")
    seen: list[Connection] = []

    @server.tool
    async def remember_connection(ctx: Context) -> None:
        try:
            seen.append(_sdk.session_connection(ctx.session))
        except _sdk.SdkSeamError as broken:
            fail_loudly(broken)

    async with Client(lowlevel_or_fail(server), mode="legacy") as client:
        await client.call_tool("remember_connection")
        await client.call_tool("remember_connection")

    assert len(seen) == 2
    if seen[0] is not seen[1]:
        fail_loudly(
            _sdk.SdkSeamError(
                "ServerSession._connection", "differs between two requests of one client"
            )
        )
    for public in ("exit_stack", "has_standalone_channel", "send_resource_updated"):
        if not hasattr(seen[0], public):
            fail_loudly(_sdk.SdkSeamError(f"Connection.{public}", "gone"))


def test_a_missing_internal_is_reported_by_name_with_the_installed_versions() -> None:
    """_sdk raises SdkSeamError naming the internal and versions, not an AttributeError."""
    stand_in = cast(FastMCP, SimpleNamespace())
    with pytest.raises(_sdk.SdkSeamError, match=r"FastMCP\._mcp_server: .*fastmcp \d"):
        _sdk.lowlevel_server(stand_in)
    with pytest.raises(_sdk.SdkSeamError, match=r"ServerSession\._connection"):
        _sdk.session_connection(cast(Any, SimpleNamespace()))
