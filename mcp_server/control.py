"""What the MCP server may ask of the watcher, without depending on it.

The composition root (`expwatch.app`) adapts the supervisor to `WatcherControl`; the MCP
server only sees this protocol, so `mcp_server` keeps depending on `store` alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from store import Event


@dataclass(frozen=True)
class RefreshOutcome:
    """What polling one experiment on demand did."""

    fetched: bool
    """The platform answered and the answer was recorded."""
    new_snapshot: bool
    events: tuple[Event, ...] = ()
    error: str | None = None
    """Why the poll failed, when it did (the platform's error, a timeout, an open breaker)."""


class WatcherControl(Protocol):
    async def refresh(self, source: str, experiment_id: str) -> RefreshOutcome:
        """Poll one experiment now, through its source's budget and breaker."""
        ...
