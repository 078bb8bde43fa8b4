"""The MCP face of expwatch: a FastMCP server, its cache and its resource subscriptions."""

from mcp_server.cache import ResponseCache
from mcp_server.notifier import ResourceNotifier
from mcp_server.server import RESULTS_URI, build_server, results_uri
from mcp_server.subscriptions import ResourceSubscriptions

__all__ = [
    "RESULTS_URI",
    "ResourceNotifier",
    "ResourceSubscriptions",
    "ResponseCache",
    "build_server",
    "results_uri",
]
