"""A request budget per source: a token bucket that every poller of one source shares.

The bucket is kept as a generic cell rate algorithm (GCRA): one "theoretical arrival time"
(`_tat`) instead of a float token count, so every figure is exact `datetime`/`timedelta`
arithmetic on the injected clock (microsecond resolution, no drift). A token is due at
``_tat - (burst - 1) × interval``; taking one moves ``_tat`` on by one interval.

Staying inside a platform's fixed-window limit
----------------------------------------------
GrowthBook allows 60 requests per fixed minute. A bucket of rate ``r`` per minute and burst
``b`` grants at most ``b + ceil(60 / interval) - 1 = r + b - 1`` requests in any 60-second
window (a full bucket at the window's start, then one per interval). So:

- with the default ``burst=1`` (requests evenly spaced ``60 / r`` seconds apart) a source
  configured with the platform's limit ``r = L`` never exceeds ``L`` in *any* 60-second window,
  sliding or fixed;
- with ``burst=b`` configure ``r ≤ L - (b - 1)`` to keep the same guarantee.

The interval is rounded *up* to the microsecond, so rounding can only make the budget slower.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import datetime, timedelta

import anyio
from anyio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled

from .clock import Clock

_MINUTE_MICROSECONDS = 60_000_000


class RateBudget:
    """Requests allowed to one source: `rate_per_minute` on average, `burst` at once.

    `rate_per_minute=None` means no limit of our own, but a `pause_until` from the platform
    (a 429 with Retry-After) still holds everyone back. Waiters are served first come, first
    served: a caller never takes a token while an earlier caller is still waiting.
    """

    def __init__(
        self, rate_per_minute: float | None, *, burst: int | None = None, clock: Clock
    ) -> None:
        if rate_per_minute is not None and not (
            math.isfinite(rate_per_minute) and rate_per_minute > 0
        ):
            raise ValueError(
                f"rate_per_minute must be a positive number or None (unlimited), "
                f"not {rate_per_minute!r}"
            )
        if burst is not None and burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        self._rate = rate_per_minute
        self._burst = 1 if burst is None else burst
        self._interval = (
            None
            if rate_per_minute is None
            else timedelta(microseconds=max(1, math.ceil(_MINUTE_MICROSECONDS / rate_per_minute)))
        )
        self._clock = clock
        self._tat: datetime | None = None  # None: never used, the bucket is full
        self._seen: datetime | None = None  # the latest clock reading, to notice steps back
        self._paused_until: datetime | None = None
        self._queue: deque[anyio.Event] = deque()
        self._granted = 0

    # -- figures for a status view -------------------------------------------------------

    @property
    def rate_per_minute(self) -> float | None:
        """The configured rate; None when unlimited."""
        return self._rate

    @property
    def burst(self) -> int:
        """How many tokens the bucket holds when full."""
        return self._burst

    @property
    def interval_seconds(self) -> float | None:
        """Seconds between two tokens (60 / rate, rounded up to the microsecond)."""
        return None if self._interval is None else self._interval.total_seconds()

    @property
    def available(self) -> int | None:
        """Tokens that could be taken right now (0 while paused); None when unlimited."""
        now = self._now()
        if self._interval is None:
            return 0 if self._is_paused(now) else None
        if self._is_paused(now):
            return 0
        tat = self._tat_or(now)
        if tat <= now:
            return self._burst
        owed = -((now - tat) // self._interval)  # ceil((tat - now) / interval)
        return max(0, self._burst - owed)

    @property
    def paused_until(self) -> datetime | None:
        """The end of the platform's pause, while it lasts."""
        now = self._now()
        return self._paused_until if self._is_paused(now) else None

    @property
    def next_token_at(self) -> datetime | None:
        """When the next token becomes available; None when one is available now."""
        now = self._now()
        ready = self._ready_at(now)
        return ready if ready > now else None

    @property
    def waiting(self) -> int:
        """Callers parked in `acquire`."""
        return len(self._queue)

    @property
    def granted(self) -> int:
        """Tokens handed out since the budget was made."""
        return self._granted

    # -- operations -----------------------------------------------------------------------

    def pause_until(self, moment: datetime) -> None:
        """Grant nothing before `moment` (the platform's Retry-After / RateLimit-Reset).

        A later pause extends the current one; an earlier one never shortens it.
        """
        if self._paused_until is None or moment > self._paused_until:
            self._paused_until = moment

    def pause_for(self, seconds: float) -> None:
        """`pause_until` the clock's now plus `seconds` (a Retry-After in seconds)."""
        self.pause_until(self._now() + timedelta(seconds=max(0.0, seconds)))

    async def acquire(self) -> None:
        """Wait (on the clock) until a token is available, in arrival order, and take it.

        Cancelling a waiter takes nothing and hands its place to the next in line.
        """
        await checkpoint_if_cancelled()
        now = self._now()
        if not self._queue and self._ready_at(now) <= now:
            self._grant(now)
            await cancel_shielded_checkpoint()
            return
        turn = anyio.Event()
        self._queue.append(turn)
        try:
            if self._queue[0] is not turn:
                await turn.wait()  # set when every earlier caller got a token or left
            while True:
                now = self._now()
                ready = self._ready_at(now)
                if ready <= now:
                    self._grant(now)
                    return
                await self._clock.sleep((ready - now).total_seconds())
        finally:
            was_first = self._queue[0] is turn
            self._queue.remove(turn)
            if was_first and self._queue:
                self._queue[0].set()

    # -- internals ------------------------------------------------------------------------

    def _is_paused(self, now: datetime) -> bool:
        return self._paused_until is not None and now < self._paused_until

    def _now(self) -> datetime:
        """The clock's time; if the wall clock stepped back, the schedule steps back with it
        (treating the gap as no time at all), so a jump back cannot stall the budget."""
        now = self._clock.now()
        if self._tat is not None and self._seen is not None and now < self._seen:
            self._tat -= self._seen - now
        self._seen = now
        return now

    def _tat_or(self, now: datetime) -> datetime:
        return now if self._tat is None else self._tat

    def _ready_at(self, now: datetime) -> datetime:
        """The first moment a token may be taken (`now` or earlier when one is ready)."""
        ready = now
        if self._interval is not None:
            ready = self._tat_or(now) - (self._burst - 1) * self._interval
        if self._paused_until is not None:
            ready = max(ready, self._paused_until)
        return ready

    def _grant(self, now: datetime) -> None:
        if self._interval is not None:
            self._tat = max(self._tat_or(now), now) + self._interval
        self._granted += 1
