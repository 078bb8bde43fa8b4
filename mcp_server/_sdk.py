"""The one module that touches private FastMCP / MCP SDK internals.

FastMCP 4.1 implements neither resource-subscription mechanism (PrefectHQ/fastmcp#3641), so
expwatch serves them itself on FastMCP's underlying SDK server. Reaching that server, and the
SDK connection behind a request, needs two private attributes. Everything private goes through
the small functions below; each one says exactly what it relies on and fails with
`SdkSeamError` (naming the installed versions and what to update) instead of an obscure
`AttributeError` deep inside a request. `tests/mcp_server/test_sdk_seams.py` exercises every
function here against the installed packages, and `pyproject.toml` pins fastmcp and mcp to the
minor versions these seams were checked against.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastmcp import FastMCP
from mcp.server.connection import Connection
from mcp.server.lowlevel.server import Server
from mcp.server.session import ServerSession

__all__ = ["SdkSeamError", "installed_versions", "lowlevel_server", "session_connection"]


class SdkSeamError(RuntimeError):
    """A FastMCP or MCP SDK internal that `mcp_server._sdk` relies on is missing or changed."""

    def __init__(self, internal: str, problem: str) -> None:
        self.internal = internal
        super().__init__(
            f"{internal}: {problem} ({installed_versions()}). mcp_server/_sdk.py relies on this "
            "private internal; adapt _sdk.py to the installed versions or pin fastmcp/mcp back "
            "to the versions in pyproject.toml."
        )


def installed_versions() -> str:
    """The installed fastmcp and mcp versions, for error messages."""
    found = []
    for distribution in ("fastmcp", "mcp"):
        try:
            found.append(f"{distribution} {version(distribution)}")
        except PackageNotFoundError:
            found.append(f"{distribution} not installed")
    return ", ".join(found)


def lowlevel_server(server: FastMCP[Any]) -> Server[Any]:
    """The SDK server that FastMCP serves its MCP traffic through.

    Relies on: `FastMCP.__init__` storing its `mcp.server.lowlevel.Server` (a FastMCP
    subclass, `fastmcp.server.low_level.LowLevelServer`) in the PRIVATE attribute
    `_mcp_server`, and every FastMCP transport (stdio, streamable HTTP, in-memory) serving
    that same object, so handlers added to it with the public `add_request_handler` are live
    on all of them. fastmcp's own in-memory transport reads the same attribute.
    """
    lowlevel = getattr(server, "_mcp_server", None)
    if not isinstance(lowlevel, Server):
        raise SdkSeamError(
            "FastMCP._mcp_server",
            f"expected an mcp.server.lowlevel.Server, found {type(lowlevel).__name__}",
        )
    return lowlevel


def session_connection(session: ServerSession) -> Connection:
    """The per-client `Connection` behind a request's `ServerSession`.

    Relies on: `mcp.server.session.ServerSession` (a new object for every request in mcp 2.x)
    keeping the connection it was built for in the PRIVATE attribute `_connection`. The
    `Connection` is the stable per-client object (one per stdio process or stateful HTTP
    session, one per request on stateless HTTP and at 2026-07-28); its `exit_stack`,
    `has_standalone_channel` and `send_resource_updated` are public SDK API. FastMCP reads the
    same attribute (fastmcp.server.context).
    """
    connection = getattr(session, "_connection", None)
    if not isinstance(connection, Connection):
        raise SdkSeamError(
            "ServerSession._connection",
            f"expected an mcp.server.connection.Connection, found {type(connection).__name__}",
        )
    return connection
