"""The MCP face of expwatch: a FastMCP server, its cache and its resource subscriptions."""

from mcp_server.cache import ResponseCache
from mcp_server.control import RefreshOutcome, WatcherControl
from mcp_server.notifier import ResourceNotifier
from mcp_server.reader import NotAvailable, NotFound, PulseReport, Reader
from mcp_server.server import (
    HEALTH_URI,
    HISTORY_URI,
    INDEX_URI,
    METRIC_URI,
    RESULTS_URI,
    STATUS_URI,
    ServerOptions,
    build_server,
    experiment_uris,
    results_uri,
)
from mcp_server.subscriptions import ResourceSubscriptions

__all__ = [
    "HEALTH_URI",
    "HISTORY_URI",
    "INDEX_URI",
    "METRIC_URI",
    "RESULTS_URI",
    "STATUS_URI",
    "NotAvailable",
    "NotFound",
    "PulseReport",
    "Reader",
    "RefreshOutcome",
    "ResourceNotifier",
    "ResourceSubscriptions",
    "ResponseCache",
    "ServerOptions",
    "WatcherControl",
    "build_server",
    "experiment_uris",
    "results_uri",
]
