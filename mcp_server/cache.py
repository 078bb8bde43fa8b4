"""A small cache of rendered responses, invalidated per experiment by events."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable


class ResponseCache:
    """Rendered responses keyed by (experiment, view), each kept for `ttl_seconds`.

    The TTL only bounds staleness for changes that produce no event; every event for an
    experiment drops that experiment's entries at once.
    """

    def __init__(
        self, *, ttl_seconds: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: dict[tuple[str, str], tuple[float, str]] = {}
        self.hits = 0
        self.misses = 0

    async def get_or_render(
        self, experiment_id: str, view: str, render: Callable[[], Awaitable[str]]
    ) -> str:
        key = (experiment_id, view)
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None and now - entry[0] < self.ttl_seconds:
            self.hits += 1
            return entry[1]
        self.misses += 1
        text = await render()
        if self.ttl_seconds > 0:
            self._entries[key] = (now, text)
        return text

    def invalidate(self, experiment_id: str) -> None:
        """Forget every rendered view of one experiment."""
        for key in [k for k in self._entries if k[0] == experiment_id]:
            del self._entries[key]
