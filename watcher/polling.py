"""What the supervisor polls and what it tells: the `Source` protocols a platform implements,
the rules and policy each source is polled by (`WatchRules`, `SourcePolicy`), what a cycle
reports (`CycleReport`) and how a source stands (`SourceStatus`), and the experiment statuses
polling tells apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from anyio.streams.memory import MemoryObjectSendStream
from pydantic import BaseModel, ConfigDict

from store import Event, Experiment, PayloadError, Snapshot

from .breaker import BreakerState
from .budget import RateBudget

FINISHED_STATUSES = frozenset(
    {
        "stopped",
        "archived",
        "decision_made",
        "abandoned",
        "experiment_stopped",
        "assignment_stopped",
        "draft",
        "setup",
    }
)
"""Statuses whose results change rarely or never (GrowthBook and Statsig spellings)."""
RUNNING_STATUSES = frozenset({"running", "active"})
NOT_ENDED_STATUSES = RUNNING_STATUSES | {"draft", "setup"}
"""Statuses an experiment leaves when it stops or is decided: one last recorded with such a
status that drops out of the source's (status-filtered) listing is fetched once more."""


class Source(Protocol):
    """An experimentation platform, as the supervisor uses it."""

    name: str
    budget: RateBudget | None

    async def list_experiments(self) -> list[Experiment]: ...

    async def fetch_results(self, experiment: Experiment) -> tuple[Experiment, Snapshot | None]: ...


@runtime_checkable
class PortfolioSource(Protocol):
    """A source that reads the latest results of many experiments per request: it sends them
    to `pages` page by page, in order, and closes it (so memory holds a few pages, whatever
    the size of the portfolio)."""

    async def read_portfolio(
        self,
        experiments: Mapping[str, Experiment],
        pages: MemoryObjectSendStream[dict[str, Snapshot | PayloadError]],
    ) -> None: ...


@dataclass(frozen=True, kw_only=True)
class WatchRules:
    """Which experiments of a source are watched, beyond the source's own listing filters
    (status, project): `tags` (any of them; empty: every experiment), `include` (ids watched
    whatever the filters say, even when the listing does not show them), `exclude` (ids never
    watched). The run-time watch list (`expwatch watch` / `unwatch`) adds to both."""

    tags: frozenset[str] = frozenset()
    include: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()


@dataclass(frozen=True, kw_only=True)
class SourcePolicy:
    """How one source is polled."""

    rules: WatchRules = WatchRules()
    max_concurrency: int = 8
    failure_threshold: int = 5
    cooldown_seconds: float = 60.0
    max_cooldown_seconds: float = 900.0
    stale_after_seconds: float | None = 86400.0
    """Flag a running experiment whose newest results are older than this (None: never)."""
    use_portfolio: bool = True
    """Read many experiments' results per request where the source can and it is cheaper."""


@dataclass
class CycleReport:
    """What one poll cycle did."""

    experiments: int = 0
    fetched: int = 0
    new_snapshots: int = 0
    requests: int = 0
    skipped_sources: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"{self.experiments} experiments, {self.fetched} fetched, "
            f"{self.new_snapshots} new snapshots, {len(self.events)} events, "
            f"{len(self.errors)} errors"
        )
        if self.skipped_sources:
            text += f", paused: {', '.join(self.skipped_sources)}"
        return text


def merge_reports(into: CycleReport, part: CycleReport) -> None:
    """Add what `part` did to `into` (one source's cycle to the whole poll's)."""
    into.experiments += part.experiments
    into.fetched += part.fetched
    into.new_snapshots += part.new_snapshots
    into.requests += part.requests
    into.skipped_sources.extend(part.skipped_sources)
    into.events.extend(part.events)
    into.errors.extend(part.errors)


class SourceStatus(BaseModel):
    """One source as `expwatch status` and the MCP status resource show it. The supervisor
    saves it in the store after every cycle, so another process can show it too."""

    model_config = ConfigDict(frozen=True)

    name: str
    breaker: BreakerState
    rate_per_minute: float | None
    """The source's request budget (None: unlimited)."""
    requests: int
    """Requests granted since the watcher started."""
    waiting: int
    """Requests waiting for a token right now."""
    paused_until: datetime | None
    """Until when a 429's Retry-After pauses every request to the source."""
    last_cycle_at: datetime | None
    last_cycle: str | None
    last_success_at: datetime | None = None
    """When a cycle last completed with the source answering (its listing read); how far
    behind the store may be is the time since."""
    listed: int
    watched: int
    stale: int
    """Watched experiments whose results stopped updating."""
    failing: dict[str, str] = {}
    """What fails right now, in the words of its `source_error` event: by experiment id, ""
    for the source itself (its listing). Empty while everything works."""
    database_error: str | None = None
    """Why this source's cycles cannot be recorded right now (the database is full, locked,
    read-only…); None while it works. Live only: never saved, it could not be."""
