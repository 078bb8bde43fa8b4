"""A circuit breaker per source: stop calling a platform that keeps failing, probe it later.

    closed ──(failure_threshold consecutive failures)──▶ open
    open ──(cooldown over; the next caller is the probe)──▶ half_open
    half_open ──(probe succeeded)──▶ closed
    half_open ──(probe failed; cooldown × growth, capped)──▶ open
    half_open ──(probe cancelled)──▶ open, with the probe available again at once

While open, and while the single probe is in flight, `call()` refuses with `BreakerOpen`.
The state is a plain `BreakerState` that can be stored and handed back after a restart.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, NonNegativeInt, model_validator

from store import SourceError

from .clock import Clock

logger = logging.getLogger(__name__)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerState(BaseModel):
    """Everything a breaker needs to resume after a restart (`model_dump(mode="json")`).

    `opened_at` is when the current outage began (kept across failed probes); `open_until`
    when the next probe is allowed; `failed_probes` how many probes failed in this outage
    (it sets the grown cooldown); `last_error` the last counted failure, kept after recovery.
    """

    model_config = ConfigDict(frozen=True)

    state: CircuitState = CircuitState.CLOSED
    consecutive_failures: NonNegativeInt = 0
    opened_at: AwareDatetime | None = None
    open_until: AwareDatetime | None = None
    failed_probes: NonNegativeInt = 0
    last_error: str | None = None

    @model_validator(mode="after")
    def _open_has_an_end(self) -> BreakerState:
        if self.state is not CircuitState.CLOSED and self.open_until is None:
            raise ValueError(f"a {self.state.value} breaker state needs open_until")
        return self


class BreakerOpen(SourceError):
    """A call to the source was refused by its circuit breaker.

    `until` is when the breaker lets a probe through; `probing` is True when that moment has
    passed and another caller's probe is in flight (retry once it finishes).
    """

    def __init__(self, name: str, until: datetime, *, probing: bool = False) -> None:
        if probing:
            why = "a probe of the source is in flight; retry when it has finished"
        else:
            why = f"it will be probed again at {until.isoformat()}"
        super().__init__(
            f"source {name!r} is paused after repeated failures (circuit breaker open): {why}",
            source=name,
        )
        self.until = until
        self.probing = probing


def _every_exception(exc: Exception) -> bool:
    return True


TransitionCallback = Callable[[CircuitState, CircuitState, BreakerState], None]


@dataclass(frozen=True)
class _Ticket:
    generation: int
    is_probe: bool


class CircuitBreaker:
    """Guards the calls to one source.

    `counts` decides which exceptions are the source's failures (default: every
    `Exception`); an exception it does not count means the source answered, so it is a
    success. Cancellation (and any other `BaseException`) counts as nothing. An outcome that
    arrives after the breaker has moved on (a call admitted before it opened, or before the
    probe that closed it) is ignored.

    `on_transition(before, after, state)` is called synchronously after every change of
    state; it must not block (push to a memory stream to persist asynchronously). An
    exception it raises is logged and does not disturb the breaker or the call.
    """

    def __init__(
        self,
        name: str,
        *,
        clock: Clock,
        failure_threshold: int = 5,
        cooldown_seconds: float = 60.0,
        max_cooldown_seconds: float = 900.0,
        cooldown_growth: float = 2.0,
        counts: Callable[[Exception], bool] = _every_exception,
        state: BreakerState | None = None,
        on_transition: TransitionCallback | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, not {failure_threshold!r}")
        if cooldown_seconds < 0:
            raise ValueError(f"cooldown_seconds must not be negative, not {cooldown_seconds!r}")
        if max_cooldown_seconds < cooldown_seconds:
            raise ValueError(
                f"max_cooldown_seconds ({max_cooldown_seconds!r}) must be at least "
                f"cooldown_seconds ({cooldown_seconds!r})"
            )
        if cooldown_growth < 1:
            raise ValueError(f"cooldown_growth must be at least 1, not {cooldown_growth!r}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self.max_cooldown_seconds = max_cooldown_seconds
        self.cooldown_growth = cooldown_growth
        self._clock = clock
        self._counts = counts
        self._on_transition = on_transition
        self._generation = 0
        self._state = _resumable(state or BreakerState())

    def snapshot(self) -> BreakerState:
        """The current state, to persist or show."""
        return self._state

    @property
    def state(self) -> CircuitState:
        return self._state.state

    def cooldown_after(self, failed_probes: int) -> float:
        """Seconds the breaker stays open after `failed_probes` failed probes."""
        try:
            grown = self.cooldown_seconds * self.cooldown_growth**failed_probes
        except OverflowError:
            grown = self.max_cooldown_seconds
        return min(grown, self.max_cooldown_seconds)

    @asynccontextmanager
    async def call(
        self, *, counts: Callable[[Exception], bool] | None = None
    ) -> AsyncIterator[None]:
        """Run the body as one call to the source, or raise `BreakerOpen` if refused.

        `counts` overrides the breaker's predicate for this call.
        """
        ticket = self._admit()
        try:
            yield
        except Exception as exc:
            counted = True  # if the predicate itself fails, the call still counts as failed
            try:
                counted = (counts or self._counts)(exc)
            finally:
                if counted:
                    self._failed(ticket, exc)
                else:
                    self._succeeded(ticket)
            raise
        except BaseException:  # anyio.get_cancelled_exc_class(), KeyboardInterrupt, …
            self._abandon(ticket)
            raise
        else:
            self._succeeded(ticket)

    # -- transitions ----------------------------------------------------------------------

    def _admit(self) -> _Ticket:
        current = self._state
        if current.state is CircuitState.CLOSED:
            return _Ticket(self._generation, is_probe=False)
        assert current.open_until is not None  # guaranteed for open and half-open states
        if current.state is CircuitState.HALF_OPEN:
            raise BreakerOpen(self.name, current.open_until, probing=True)
        if self._clock.now() < current.open_until:
            raise BreakerOpen(self.name, current.open_until)
        self._move(current.model_copy(update={"state": CircuitState.HALF_OPEN}))
        return _Ticket(self._generation, is_probe=True)

    def _succeeded(self, ticket: _Ticket) -> None:
        if ticket.generation != self._generation:
            return
        current = self._state
        if current.state is CircuitState.CLOSED:
            if current.consecutive_failures:
                self._state = current.model_copy(update={"consecutive_failures": 0})
            return
        self._move(BreakerState(last_error=current.last_error))

    def _failed(self, ticket: _Ticket, exc: Exception) -> None:
        if ticket.generation != self._generation:
            return
        current = self._state
        now = self._clock.now()
        failures = current.consecutive_failures + 1
        error = f"{type(exc).__name__}: {exc}"
        if current.state is CircuitState.CLOSED:
            if failures < self.failure_threshold:
                self._state = current.model_copy(
                    update={"consecutive_failures": failures, "last_error": error}
                )
                return
            failed_probes = 0
            opened_at = now
        else:
            failed_probes = current.failed_probes + 1
            opened_at = current.opened_at or now
        cooldown = timedelta(seconds=self.cooldown_after(failed_probes))
        self._move(
            BreakerState(
                state=CircuitState.OPEN,
                consecutive_failures=failures,
                opened_at=opened_at,
                open_until=now + cooldown,
                failed_probes=failed_probes,
                last_error=error,
            )
        )

    def _abandon(self, ticket: _Ticket) -> None:
        if ticket.is_probe and ticket.generation == self._generation:
            self._move(self._state.model_copy(update={"state": CircuitState.OPEN}))

    def _move(self, after: BreakerState) -> None:
        before = self._state.state
        self._state = after
        self._generation += 1
        if self._on_transition is None:
            return
        try:
            self._on_transition(before, after.state, after)
        except Exception:  # an observer must not break the breaker nor mask the call's outcome
            logger.exception("circuit breaker %s: on_transition failed", self.name)


def _resumable(state: BreakerState) -> BreakerState:
    """A stored state as a new process should start from it.

    A probe cannot survive a restart, so half-open resumes as open with the probe available
    (its `open_until` has passed).
    """
    if state.state is CircuitState.HALF_OPEN:
        return state.model_copy(update={"state": CircuitState.OPEN})
    return state
