"""A bounded cache of MCP responses, tagged by experiment and invalidated by events."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

CacheKey = tuple[str, ...]
"""What a response is stored under; the first element names its kind (an MCP method), so
different kinds of response never collide."""

ValueT = TypeVar("ValueT")


@dataclass(frozen=True, slots=True)
class _Entry:
    stored_at: float
    experiment_id: str | None
    value: object


class ResponseCache:
    """Responses kept for `ttl_seconds`, each tagged with its experiment (or none: global).

    The TTL only bounds staleness for changes that produce no event: every event for an
    experiment calls `invalidate`, which drops that experiment's entries and every global
    one (an index lists all experiments). `ttl_seconds=0` disables caching. At most
    `max_entries` are kept; beyond that the least recently used entry is dropped.

    Stored values are shared between callers, so store only values nobody mutates
    (`ResponseCacheMiddleware` stores and hands out copies).
    """

    def __init__(
        self,
        *,
        ttl_seconds: float = 300.0,
        max_entries: int = 2048,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_seconds < 0:
            raise ValueError(f"ttl_seconds must be 0 (no caching) or more, not {ttl_seconds}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._generation = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def is_enabled(self) -> bool:
        return self.ttl_seconds > 0

    @property
    def generation(self) -> int:
        """Changes on every invalidation. Read it before computing a response and pass it to
        `store`, so a response computed while an event arrived is not kept."""
        return self._generation

    def lookup(self, key: CacheKey, kind: type[ValueT]) -> ValueT | None:
        """The fresh value stored under `key` if it is a `kind`, else None (a miss)."""
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.stored_at >= self.ttl_seconds:
            del self._entries[key]
            entry = None
        if entry is None or not isinstance(entry.value, kind):
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry.value

    def store(
        self, key: CacheKey, value: object, *, experiment_id: str | None, generation: int
    ) -> None:
        """Keep `value` under `key`, tagged with `experiment_id` (None: a global entry),
        unless caching is disabled or the cache was invalidated since `generation`."""
        if not self.is_enabled or generation != self._generation:
            return
        self._entries[key] = _Entry(self._clock(), experiment_id, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, experiment_id: str) -> None:
        """Forget every response about one experiment, and every global response."""
        self._generation += 1
        stale = [
            key
            for key, entry in self._entries.items()
            if entry.experiment_id is None or entry.experiment_id == experiment_id
        ]
        for key in stale:
            del self._entries[key]

    def invalidate_all(self) -> None:
        """Forget every response."""
        self._generation += 1
        self._entries.clear()
