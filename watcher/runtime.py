"""The supervisor's memory of one source while it runs (`SourceRuntime`): what the store knows
of each experiment, what the last listing and cycle showed, which experiments are stale, gone
or chased, and the source's circuit breaker, built here with the failures that count against
the source (`counts_against_source`); and that memory as a `SourceStatus` (`source_status`).
"""

from __future__ import annotations

from datetime import datetime

import anyio

from store import SourceRejected, SourceUnavailable, WatchState

from .breaker import BreakerState, CircuitBreaker, CircuitState
from .clock import Clock
from .polling import Source, SourcePolicy, SourceStatus


def counts_against_source(exc: Exception) -> bool:
    """Failures that say the source itself is unwell: unreachable, slow, 5xx, 429, or a key
    it refuses. A missing experiment or a bad payload is that experiment's problem."""
    if isinstance(exc, SourceUnavailable | TimeoutError):
        return True
    return isinstance(exc, SourceRejected) and exc.status_code in (401, 403)


class SourceRuntime:
    """The supervisor's per-source state."""

    def __init__(self, source: Source, policy: SourcePolicy, clock: Clock) -> None:
        self.source = source
        self.policy = policy
        self.clock = clock
        self.transitions: list[tuple[CircuitState, CircuitState, BreakerState]] = []
        self.breaker = self.make_breaker(None)
        self.known: dict[str, WatchState] = {}
        """What the store knows of each experiment, loaded by `Supervisor.start`."""
        self.listed_versions: dict[str, str | None] = {}
        self.stale: set[str] = set()
        self.first_seen: set[str] = set()
        """Experiments recorded for the first time in the current cycle."""
        self.gone: set[str] = set()
        """Experiments that left the listing and that the platform no longer knows (deleted,
        or out of the key's reach): not asked for again until the listing shows them."""
        self.chased: set[str] = set()
        """Experiments that left the listing but still run (moved out of the source's
        filters): fetched once, then left alone until the listing shows them again."""
        self.last_cycle_at: datetime | None = None
        self.last_cycle: str | None = None
        self.last_success_at: datetime | None = None
        self.watched = 0
        self.listed = 0
        self.database_error: str | None = None
        self.lock = anyio.Lock()

    def make_breaker(self, state: BreakerState | None) -> CircuitBreaker:
        """The source's breaker, resuming `state`; transitions queue up for the supervisor
        to persist and record."""
        policy = self.policy
        return CircuitBreaker(
            self.source.name,
            clock=self.clock,
            failure_threshold=policy.failure_threshold,
            cooldown_seconds=policy.cooldown_seconds,
            max_cooldown_seconds=max(policy.max_cooldown_seconds, policy.cooldown_seconds),
            counts=counts_against_source,
            state=state,
            on_transition=lambda before, after, s: self.transitions.append((before, after, s)),
        )


def source_status(rt: SourceRuntime) -> SourceStatus:
    """The source's breaker, budget and last cycle, as far as its runtime knows them (what
    fails right now is the failure log's: see `FailureLog.status_of`)."""
    budget = rt.source.budget
    return SourceStatus(
        name=rt.source.name,
        breaker=rt.breaker.snapshot(),
        rate_per_minute=budget.rate_per_minute if budget else None,
        requests=budget.granted if budget else 0,
        waiting=budget.waiting if budget else 0,
        paused_until=budget.paused_until if budget else None,
        last_cycle_at=rt.last_cycle_at,
        last_cycle=rt.last_cycle,
        last_success_at=rt.last_success_at,
        listed=rt.listed,
        watched=rt.watched,
        stale=len(rt.stale),
        database_error=rt.database_error,
    )
