"""The timeline every scenario runs on: analysis refreshes at a fixed period from a start."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True, kw_only=True)
class Timeline:
    """Refresh index i = floor((now - start) / refresh_seconds), 0 before the start."""

    start: datetime
    refresh_seconds: float

    def __post_init__(self) -> None:
        if self.start.utcoffset() is None:
            raise ValueError(f"scenario start must be timezone-aware, got {self.start!r}")
        object.__setattr__(self, "start", self.start.astimezone(UTC))
        if not (math.isfinite(self.refresh_seconds) and self.refresh_seconds > 0):
            raise ValueError(
                f"refresh_seconds must be a positive number of seconds, got {self.refresh_seconds}"
            )

    @property
    def _period(self) -> timedelta:
        return timedelta(seconds=self.refresh_seconds)

    def refresh_index(self, now: datetime) -> int:
        """floor((now - start) / refresh_seconds), and 0 before the start."""
        if now.utcoffset() is None:
            raise ValueError(f"the clock must return timezone-aware datetimes, got {now!r}")
        elapsed = now - self.start
        if elapsed <= timedelta(0):
            return 0
        return elapsed // self._period

    def refresh_time(self, index: int) -> datetime:
        """When refresh `index` happened: start + index * refresh_seconds."""
        return self.start + self._period * index


def check_unique_ids(ids: Sequence[str]) -> None:
    """Refuse a scenario whose experiments share an id."""
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"experiment ids must be unique, repeated: {', '.join(duplicates)}")


class FixedWindowLimiter:
    """Requests per key in fixed windows: a key's window opens at its first request and
    lasts `window`; `hit` counts a request and says whether it went beyond `limit`."""

    def __init__(self, *, limit: int, window: timedelta) -> None:
        self.limit = limit
        self.window = window
        self._windows: dict[str, tuple[datetime, int]] = {}

    def hit(self, key: str, now: datetime) -> tuple[bool, int, datetime]:
        """Count a request: (beyond the limit?, requests in this window, when it ends)."""
        started, count = self._windows.get(key, (now, 0))
        if now >= started + self.window:
            started, count = now, 0
        count += 1
        self._windows[key] = (started, count)
        return count > self.limit, count, started + self.window
