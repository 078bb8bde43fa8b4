"""The supervisor: polls every source on its own schedule, spends each request well, records
what it sees, and never falls over.

One cycle of a source:
1. its circuit breaker decides whether the source is called at all (an open breaker skips the
   cycle until its cooldown is over; then the listing is the single probe);
2. list the experiments (pages first), apply the watch rules (filters, explicit ids, the
   run-time watch list);
3. fetch results only for experiments that are due: their upstream version changed, they have
   not been checked for `refresh_unchanged_seconds` (running) or `finished_poll_interval_seconds`
   (stopped, decided, drafts), or they are watched explicitly without a version to compare;
   archived experiments get one final snapshot and are then left alone. When a source can read
   many experiments' results per request (GrowthBook's portfolio endpoint) and that costs fewer
   requests than fetching the due ones one by one, it is used. A watched experiment last
   recorded running that the listing no longer shows (a status filter drops it when it stops)
   is fetched on its own once more, so its stop or decision is recorded; one the platform no
   longer knows is reported once and left alone until it is listed again;
4. record each poll in one transaction (shielded from cancellation, so a shutdown never leaves
   half a poll), then flag results that stopped updating (`results_stale`).

Every request goes through the source's `RateBudget` and retry policy (see
`watcher.upstream`); the least recently checked experiments go first, so none is starved.
Failures are isolated per experiment; a source's own failures drive its breaker, whose state is
persisted and whose transitions are events (`source_unavailable`, `source_recovered`).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream
from pydantic import BaseModel, ConfigDict

from store import (
    Event,
    EventKind,
    Experiment,
    ExperimentNotFound,
    PayloadError,
    Snapshot,
    SourceError,
    SourceRejected,
    SourceUnavailable,
    Store,
    StoreError,
    WatchState,
    leaves,
)

from .assess import StatsPolicy
from .breaker import BreakerOpen, BreakerState, CircuitBreaker, CircuitState
from .budget import RateBudget
from .clock import Clock
from .detect import ChangeDetector

logger = logging.getLogger(__name__)

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
PORTFOLIO_PAGE_SIZE = 100
STORE_RETRY_SECONDS = 5.0
"""First retry of a cycle the database failed; doubles up to the poll interval."""


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


def counts_against_source(exc: Exception) -> bool:
    """Failures that say the source itself is unwell: unreachable, slow, 5xx, 429, or a key
    it refuses. A missing experiment or a bad payload is that experiment's problem."""
    if isinstance(exc, SourceUnavailable | TimeoutError):
        return True
    return isinstance(exc, SourceRejected) and exc.status_code in (401, 403)


class _Runtime:
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


class Supervisor:
    """Owns the polling of every source.

    A failing experiment is recorded as a `source_error` event when the failure starts (or its
    reason changes) and as `source_recovered` when it ends; the others keep going. These
    warning states, the stale flags and the breakers are restored from the store on start, so
    a restart repeats none of their events.
    """

    def __init__(
        self,
        store: Store,
        sources: Sequence[Source],
        *,
        clock: Clock,
        poll_interval_seconds: float = 300.0,
        poll_timeout_seconds: float = 60.0,
        refresh_unchanged_seconds: float = 3600.0,
        finished_poll_interval_seconds: float = 6 * 3600.0,
        jitter: float = 0.1,
        policy: StatsPolicy | None = None,
        source_policies: Mapping[str, SourcePolicy] | None = None,
        detector: ChangeDetector | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self.poll_interval_seconds = poll_interval_seconds
        self.poll_timeout_seconds = poll_timeout_seconds
        self.refresh_unchanged_seconds = refresh_unchanged_seconds
        self.finished_poll_interval_seconds = finished_poll_interval_seconds
        self.jitter = jitter
        self._random = random.Random()
        self._detector = detector or ChangeDetector(clock=clock.now, policy=policy)
        policies = source_policies or {}
        self._runtimes = [_Runtime(s, policies.get(s.name, SourcePolicy()), clock) for s in sources]
        self._failing: dict[tuple[str, str | None], str] = {}
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore what the store knows of each experiment, the breakers and the warning
        states (idempotent)."""
        if self._started:
            return
        saved = await self._store.state.sources()
        for rt in self._runtimes:
            rt.known = await self._store.watch_states(rt.source.name)
            state = saved.get(rt.source.name, {}).get("breaker")
            if state:
                rt.breaker = rt.make_breaker(BreakerState.model_validate(state))
            last_success = saved.get(rt.source.name, {}).get("status", {}).get("last_success_at")
            if last_success:
                rt.last_success_at = datetime.fromisoformat(last_success)
        errors = await self._store.latest_events(
            [EventKind.SOURCE_ERROR, EventKind.SOURCE_RECOVERED]
        )
        self._failing = {
            key: str(event.after)
            for key, event in errors.items()
            if event.kind is EventKind.SOURCE_ERROR
        }
        for rt in self._runtimes:  # reported gone: not asked again after a restart either
            rt.gone = {
                experiment_id
                for (source, experiment_id), event in errors.items()
                if source == rt.source.name
                and experiment_id
                and event.kind is EventKind.SOURCE_ERROR
                and event.details.get("gone") is True
            }
        stale = await self._store.latest_events([EventKind.RESULTS_STALE])
        for rt in self._runtimes:
            rt.stale = {
                experiment_id
                for (source, experiment_id), event in stale.items()
                if source == rt.source.name and experiment_id and event.after is True
            }
        self._started = True

    async def run(
        self,
        *,
        on_cycle: Callable[[CycleReport], None] | None = None,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Poll every source forever, each on its own jittered interval."""
        await self.start()
        async with anyio.create_task_group() as tg:
            for rt in self._runtimes:
                tg.start_soon(self._source_loop, rt, on_cycle)
            task_status.started()

    async def _source_loop(
        self, rt: _Runtime, on_cycle: Callable[[CycleReport], None] | None
    ) -> None:
        retry_seconds: float | None = None
        while True:
            report = CycleReport()
            failure: StoreError | None = None
            try:
                await self._cycle(rt, report)
            except* StoreError as group:
                failure = _first_store_error(group)
            except* Exception as group:
                # A bug of ours, not the platform's or the database's: the daemon keeps
                # watching; the traceback goes to the log, and the next cycle tries again.
                logger.error(
                    "poll cycle of %s failed unexpectedly",
                    rt.source.name,
                    exc_info=group,
                    extra={"source": rt.source.name},
                )
                report.errors.append(f"unexpected failure: {_describe(group)}")
            if failure is None:
                retry_seconds = None
                delay = self._next_interval()
                self._store_works(rt)
            else:
                retry_seconds = self._store_retry_seconds(retry_seconds)
                delay = retry_seconds
                report.errors.append(str(failure))
                self._store_failed(rt, failure, retry_seconds)
            logger.info(
                "poll cycle of %s: %s",
                rt.source.name,
                report.summary(),
                extra={"source": rt.source.name},
            )
            if on_cycle is not None:
                on_cycle(report)
            await self._clock.sleep(delay)

    def _store_retry_seconds(self, previous: float | None) -> float:
        """When to retry a cycle the database failed: soon, then doubling up to the poll
        interval (a cycle it failed wrote nothing, so the next one redoes all of it)."""
        first = max(1.0, min(STORE_RETRY_SECONDS, self.poll_interval_seconds))
        if previous is None:
            return first
        return min(previous * 2, max(first, self.poll_interval_seconds))

    def _store_failed(self, rt: _Runtime, error: StoreError, retry_seconds: float) -> None:
        """The database failed this cycle (rolled back): say so once per outage, in the logs
        and in the status, and not against the source (its breaker never saw it)."""
        rt.database_error = str(error)
        self._store.health.failed(
            f"polling {rt.source.name}", error, retry_in_seconds=retry_seconds
        )

    def _store_works(self, rt: _Runtime) -> None:
        rt.database_error = None
        self._store.health.recovered(f"polling {rt.source.name}")

    def _next_interval(self) -> float:
        spread = self.poll_interval_seconds * self.jitter
        return max(0.0, self.poll_interval_seconds + self._random.uniform(-spread, spread))

    async def poll_once(self) -> CycleReport:
        """One cycle over every source, concurrently; returns what it did."""
        await self.start()
        report = CycleReport()
        async with anyio.create_task_group() as tg:
            for rt in self._runtimes:
                tg.start_soon(self._cycle, rt, report)
        return report

    def status(self) -> list[SourceStatus]:
        """Each source's breaker, budget and last cycle."""
        return [self._status_of(rt) for rt in self._runtimes]

    def _status_of(self, rt: _Runtime) -> SourceStatus:
        failing = {
            experiment_id or "": reason
            for (source, experiment_id), reason in self._failing.items()
            if source == rt.source.name
        }
        return _status(rt).model_copy(update={"failing": failing})

    async def refresh_experiment(self, source: str, experiment_id: str) -> CycleReport:
        """Poll one experiment now, whatever its schedule (the MCP `refresh_experiment`
        tool): through the source's breaker and budget, recorded and detected as in a cycle.
        Nothing fetched and no error means the breaker refused the call. Raises KeyError for
        a source that is not configured."""
        await self.start()
        rt = next((r for r in self._runtimes if r.source.name == source), None)
        if rt is None:
            raise KeyError(source)
        known = rt.known.get(experiment_id)
        experiment = (
            known.experiment
            if known
            else Experiment(
                source=source, experiment_id=experiment_id, name=experiment_id, status=""
            )
        )
        report = CycleReport()
        await self._poll_experiment(rt, experiment, anyio.CapacityLimiter(1), report)
        return report

    # -- one cycle of one source ------------------------------------------------------------

    async def _cycle(self, rt: _Runtime, report: CycleReport) -> None:
        async with rt.lock:  # a source's cycles never overlap (run loop and refresh_now)
            mine = CycleReport()
            granted_before = rt.source.budget.granted if rt.source.budget else 0
            store_failed = False
            try:
                await self._cycle_unlocked(rt, mine)
            except BaseException as exc:
                store_failed = _is_store_failure(exc)
                raise
            finally:
                mine.requests = (rt.source.budget.granted if rt.source.budget else 0) - (
                    granted_before
                )
                rt.last_cycle_at = self._clock.now()
                rt.last_cycle = mine.summary()
                _merge(report, mine)
                if not store_failed:  # saving would fail too (or wait out the lock again)
                    with anyio.CancelScope(shield=True):
                        await self._save_state(rt)

    async def _cycle_unlocked(self, rt: _Runtime, report: CycleReport) -> None:
        source = rt.source
        try:
            # No deadline over the whole listing: a large portfolio at a low rate budget takes
            # as long as it takes; each page has its own (request_timeout_seconds).
            async with rt.breaker.call():
                listed = await source.list_experiments()
        except BreakerOpen:
            report.skipped_sources.append(source.name)
            return
        except (SourceError, TimeoutError) as exc:
            await self._failed(rt, None, exc, report)
            return
        except Exception as exc:  # a parser bug: this cycle fails, the daemon goes on
            logger.exception("unexpected failure listing %s", source.name)
            await self._failed(rt, None, exc, report)
            return
        finally:
            await self._flush_transitions(rt, report)
        await self._recovered(rt, None, report)
        rt.listed = len(listed)
        listed_ids = {e.experiment_id for e in listed}
        rt.gone -= listed_ids
        rt.chased -= listed_ids
        include, exclude = await self._watch_sets(rt)
        watched = self._watched(rt, listed, include, exclude)
        rt.watched = len(watched)
        report.experiments += len(watched)
        due = self._due(rt, watched)
        departed = self._departed(rt, listed_ids, include, exclude)
        await self._fetch(rt, due, report, departed=departed)
        await self._check_staleness(rt, watched, report)
        rt.last_success_at = self._clock.now()

    async def _watch_sets(self, rt: _Runtime) -> tuple[set[str], set[str]]:
        """(ids watched whatever the filters say, ids never watched): the rules and the
        run-time watch list."""
        rules = rt.policy.rules
        entries = await self._store.state.watch_list(rt.source.name)
        include = set(rules.include) | {e.experiment_id for e in entries if e.is_watched}
        exclude = (set(rules.exclude) | {e.experiment_id for e in entries if not e.is_watched}) - {
            e.experiment_id for e in entries if e.is_watched
        }
        return include, exclude

    def _is_kept(self, rt: _Runtime, experiment: Experiment, include: set[str]) -> bool:
        tags = rt.policy.rules.tags
        return not tags or bool(tags & set(experiment.tags)) or experiment.experiment_id in include

    def _watched(
        self, rt: _Runtime, listed: list[Experiment], include: set[str], exclude: set[str]
    ) -> list[Experiment]:
        """The listed experiments the rules keep, plus explicitly watched ones not listed."""
        kept = [
            e for e in listed if e.experiment_id not in exclude and self._is_kept(rt, e, include)
        ]
        seen = {e.experiment_id for e in listed}
        for experiment_id in sorted(include - seen - exclude):
            known = rt.known.get(experiment_id)
            kept.append(
                known.experiment.model_copy(update={"upstream_version": None})
                if known
                else Experiment(
                    source=rt.source.name,
                    experiment_id=experiment_id,
                    name=experiment_id,
                    status="",
                )
            )
        return kept

    def _due(self, rt: _Runtime, watched: list[Experiment]) -> list[Experiment]:
        """The experiments whose results are worth a request now, least recently checked
        first."""
        now = self._clock.now()
        due: list[tuple[datetime | None, Experiment]] = []
        for experiment in watched:
            known = rt.known.get(experiment.experiment_id)
            if known is None or known.last_checked_at is None:
                due.append((None, experiment))
                continue
            if experiment.status == "archived" and known.experiment.status == "archived":
                continue  # its final snapshot is recorded
            listed_before = rt.listed_versions.get(
                experiment.experiment_id, known.experiment.upstream_version
            )
            if experiment.upstream_version is None or experiment.upstream_version != listed_before:
                due.append((known.last_checked_at, experiment))
                continue
            interval = (
                self.finished_poll_interval_seconds
                if experiment.status in FINISHED_STATUSES
                else self.refresh_unchanged_seconds
            )
            if now - known.last_checked_at >= timedelta(seconds=interval):
                due.append((known.last_checked_at, experiment))
        due.sort(key=lambda item: (item[0] is not None, item[0] or now))
        return [experiment for _, experiment in due]

    def _departed(
        self, rt: _Runtime, listed_ids: set[str], include: set[str], exclude: set[str]
    ) -> list[Experiment]:
        """Watched experiments last recorded running (or not started) that the listing no
        longer shows. A listing filtered by status (GrowthBook's `running`, Statsig's
        `active`) drops an experiment the moment it stops or is decided, so each is fetched
        on its own once more, until its recorded status says it ended: that poll records
        the `status_changed` and `decision_made`. One the platform no longer knows is
        reported once and left alone (`gone`), as is one that still runs (`chased`: it left
        for another reason, a project or tag that no longer matches)."""
        departed = []
        for experiment_id in sorted(rt.known):
            experiment = rt.known[experiment_id].experiment
            if (
                experiment.status not in NOT_ENDED_STATUSES
                or experiment_id in listed_ids
                or experiment_id in include  # watched explicitly: `_watched` has it already
                or experiment_id in exclude
                or experiment_id in rt.gone
                or experiment_id in rt.chased
                or not self._is_kept(rt, experiment, include)
            ):
                continue
            # No version: fetched one by one, never through a (status-filtered) portfolio.
            departed.append(experiment.model_copy(update={"upstream_version": None}))
        return departed

    async def _fetch(
        self,
        rt: _Runtime,
        due: list[Experiment],
        report: CycleReport,
        *,
        departed: Sequence[Experiment] = (),
    ) -> None:
        if not due and not departed:
            return
        listed_due = {e.experiment_id: e for e in due if e.upstream_version is not None}
        if (
            rt.policy.use_portfolio
            and isinstance(rt.source, PortfolioSource)
            and len(listed_due) > _portfolio_pages(rt.listed)
        ):
            await self._read_portfolio(rt, listed_due, report)
            # What the portfolio did not settle (a failed read) is fetched one by one.
            due = [e for e in due if e.upstream_version is None or e.experiment_id in listed_due]
        limiter = anyio.CapacityLimiter(max(1, rt.policy.max_concurrency))
        async with anyio.create_task_group() as tg:
            for experiment in due:
                tg.start_soon(self._poll_experiment, rt, experiment, limiter, report)
            for experiment in departed:
                tg.start_soon(self._poll_departed, rt, experiment, limiter, report)

    async def _read_portfolio(
        self, rt: _Runtime, listed_due: dict[str, Experiment], report: CycleReport
    ) -> None:
        """Record the experiments of `listed_due` from the source's portfolio, page by page,
        removing each one settled; listed experiments absent from every page have no results
        yet. After a failed read, the rest stay in `listed_due`."""
        source = rt.source
        assert isinstance(source, PortfolioSource)
        pages_out, pages_in = anyio.create_memory_object_stream[dict[str, Snapshot | PayloadError]](
            1
        )
        failures: list[SourceError] = []

        async def read_pages() -> None:
            # Reads the next pages while the previous one is being recorded.
            async with pages_out:  # the source closes it too; a failed read must not hang us
                try:
                    await source.read_portfolio(dict(listed_due), pages_out)
                except SourceError as exc:
                    failures.append(exc)  # raised below, outside the task group
                except Exception as exc:  # a parser bug: fall back to one by one
                    logger.exception("unexpected failure reading the portfolio of %s", source.name)
                    failures.append(
                        SourceError(f"unexpected failure: {_describe(exc)}", source=source.name)
                    )

        try:
            async with rt.breaker.call():
                async with anyio.create_task_group() as tg, pages_in:
                    tg.start_soon(read_pages)
                    async for page in pages_in:
                        polls: list[tuple[Experiment, Experiment, Snapshot | None]] = []
                        for experiment_id, found in page.items():
                            experiment = listed_due.pop(experiment_id, None)
                            if experiment is None:
                                continue  # not due: unchanged, or not watched
                            if isinstance(found, PayloadError):
                                await self._failed(rt, experiment_id, found, report)
                            else:
                                polls.append((experiment, experiment, found))
                        await self._record_many(rt, polls, report)
                if failures:
                    raise failures[0]
            no_results = [(e, e, None) for e in listed_due.values()]
            listed_due.clear()
            await self._record_many(rt, no_results, report)
        except BreakerOpen:
            return
        except (SourceError, TimeoutError) as exc:
            logger.warning(
                "source %s: portfolio read failed (%s); fetching the rest one by one",
                rt.source.name,
                _reason(exc, self.poll_timeout_seconds),
                extra={"source": rt.source.name},
            )
        finally:
            await self._flush_transitions(rt, report)

    async def _poll_departed(
        self,
        rt: _Runtime,
        experiment: Experiment,
        limiter: anyio.CapacityLimiter,
        report: CycleReport,
    ) -> None:
        """`_poll_experiment` for an experiment that left the listing (see `_departed`)."""
        current = await self._poll_experiment(rt, experiment, limiter, report, departed=True)
        if current is not None and current.status in NOT_ENDED_STATUSES:
            rt.chased.add(experiment.experiment_id)

    async def _poll_experiment(
        self,
        rt: _Runtime,
        experiment: Experiment,
        limiter: anyio.CapacityLimiter,
        report: CycleReport,
        *,
        departed: bool = False,
    ) -> Experiment | None:
        """Fetch and record one experiment; returns it as fetched (None: it failed). With
        `departed`, a platform that no longer knows the experiment is reported once, and the
        experiment is not asked for again until it is listed."""
        async with limiter:
            try:
                async with rt.breaker.call():
                    with _deadline(self.poll_timeout_seconds):
                        current, snapshot = await rt.source.fetch_results(experiment)
            except BreakerOpen:
                return None  # the source went down during this cycle; the breaker says when
            except ExperimentNotFound as exc:
                if departed:
                    await self._gone(rt, experiment, exc, report)
                else:
                    await self._failed(rt, experiment.experiment_id, exc, report)
                return None
            except (SourceError, TimeoutError) as exc:
                await self._failed(rt, experiment.experiment_id, exc, report)
                return None
            except Exception as exc:  # isolate one experiment from the rest
                logger.exception(
                    "unexpected failure polling %s",
                    experiment.experiment_id,
                    extra={"source": rt.source.name, "experiment": experiment.experiment_id},
                )
                await self._failed(rt, experiment.experiment_id, exc, report)
                return None
            finally:
                await self._flush_transitions(rt, report)
        await self._record(rt, experiment, current, snapshot, report)
        return current

    async def _gone(
        self, rt: _Runtime, experiment: Experiment, exc: ExperimentNotFound, report: CycleReport
    ) -> None:
        """A departed experiment the platform answers "not found" for: one `source_error`
        saying so (its text the same however often it is seen, so never repeated), then
        left alone until the listing shows it again (`source_recovered` then)."""
        experiment_id = experiment.experiment_id
        code = f" (HTTP {exc.status_code})" if exc.status_code else ""
        gone = ExperimentNotFound(
            f"experiment {experiment_id!r} of source {rt.source.name!r} not found{code}: it "
            f"left the listing while {experiment.status}, and the platform no longer knows it "
            "(deleted, or out of the API key's reach); expwatch stops polling it until it is "
            "listed again",
            source=rt.source.name,
            experiment_id=experiment_id,
            status_code=exc.status_code,
        )
        await self._failed(rt, experiment_id, gone, report, details={"gone": True})
        rt.gone.add(experiment_id)

    async def _record(
        self,
        rt: _Runtime,
        listed: Experiment,
        current: Experiment,
        snapshot: Snapshot | None,
        report: CycleReport,
    ) -> None:
        await self._record_many(rt, [(listed, current, snapshot)], report)

    async def _record_many(
        self,
        rt: _Runtime,
        polls: Sequence[tuple[Experiment, Experiment, Snapshot | None]],
        report: CycleReport,
    ) -> None:
        """Record (listed, current, snapshot) polls in one transaction. If recording fails
        for another reason than the database (a poll our detection cannot handle), each poll
        is recorded on its own, and the one that fails is that experiment's source error."""
        if not polls:
            return
        with anyio.CancelScope(shield=True):  # polls are recorded whole, or not at all
            try:
                outcomes = await self._store.record_polls(
                    [(current, snapshot) for _, current, snapshot in polls],
                    detect=self._detector,
                )
            except StoreError:
                raise
            except Exception as exc:
                if len(polls) > 1:
                    for poll in polls:
                        await self._record_many(rt, [poll], report)
                    return
                experiment_id = polls[0][1].experiment_id
                logger.exception(
                    "unexpected failure recording %s",
                    experiment_id,
                    extra={"source": rt.source.name, "experiment": experiment_id},
                )
                await self._failed(rt, experiment_id, exc, report)
                return
            now = self._clock.now()
            for (listed, current, snapshot), outcome in zip(polls, outcomes, strict=True):
                known = rt.known.get(current.experiment_id)
                if known is None:
                    rt.first_seen.add(current.experiment_id)
                updated = known.results_updated_at if known else None
                if outcome.is_new_snapshot and snapshot is not None:
                    updated = snapshot.upstream_updated_at or now
                rt.known[current.experiment_id] = WatchState(
                    experiment=current, last_checked_at=now, results_updated_at=updated
                )
                rt.listed_versions[current.experiment_id] = listed.upstream_version
                report.fetched += 1
                report.new_snapshots += outcome.is_new_snapshot
                report.events.extend(outcome.events)
            # After the memory of every committed poll is up to date: this writes again.
            for _, current, _ in polls:
                await self._recovered(rt, current.experiment_id, report)

    async def _check_staleness(
        self, rt: _Runtime, watched: list[Experiment], report: CycleReport
    ) -> None:
        """`results_stale` once when a running experiment's results stop updating for
        `stale_after_seconds`, and once when they update again."""
        limit = rt.policy.stale_after_seconds
        if limit is None:
            rt.first_seen.clear()
            return
        now = self._clock.now()
        events = []
        flips: list[tuple[str, bool]] = []
        first_seen, rt.first_seen = rt.first_seen, set()
        for experiment in watched:
            known = rt.known.get(experiment.experiment_id)
            if known is None or known.results_updated_at is None:
                continue
            age = (now - known.results_updated_at).total_seconds()
            is_stale = known.experiment.status in RUNNING_STATUSES and age > limit
            was_stale = experiment.experiment_id in rt.stale
            if is_stale == was_stale:
                continue
            if experiment.experiment_id in first_seen:
                # Old results at first sight are the platform's state, not news.
                (rt.stale.add if is_stale else rt.stale.discard)(experiment.experiment_id)
                continue
            flips.append((experiment.experiment_id, is_stale))
            events.append(
                Event(
                    kind=EventKind.RESULTS_STALE,
                    source=rt.source.name,
                    experiment_id=experiment.experiment_id,
                    before=was_stale,
                    after=is_stale,
                    details={
                        "results_updated_at": known.results_updated_at.isoformat(),
                        "stale_after_seconds": limit,
                        "age_seconds": round(age),
                    },
                    occurred_at=now,
                )
            )
        if events:
            with anyio.CancelScope(shield=True):
                report.events.extend(await self._store.record_events(events))
        for experiment_id, is_stale in flips:  # once recorded, or the next cycle would not
            (rt.stale.add if is_stale else rt.stale.discard)(experiment_id)

    # -- failures and the breaker -------------------------------------------------------------

    async def _flush_transitions(self, rt: _Runtime, report: CycleReport) -> None:
        """Persist the breaker and record its openings and closings as events."""
        if not rt.transitions:
            return
        transitions, rt.transitions = rt.transitions, []
        now = self._clock.now()
        events = []
        closed = False
        for before, after, state in transitions:
            if after is CircuitState.OPEN and before is CircuitState.CLOSED:
                assert state.open_until is not None
                events.append(
                    Event(
                        kind=EventKind.SOURCE_UNAVAILABLE,
                        source=rt.source.name,
                        before=before.value,
                        after=after.value,
                        details={
                            "until": state.open_until.isoformat(),
                            "reason": state.last_error,
                            "consecutive_failures": state.consecutive_failures,
                        },
                        occurred_at=now,
                    )
                )
            elif after is CircuitState.CLOSED:
                closed = True
                events.append(
                    Event(
                        kind=EventKind.SOURCE_RECOVERED,
                        source=rt.source.name,
                        before=before.value,
                        after=after.value,
                        details={"last_error": state.last_error},
                        occurred_at=now,
                    )
                )
        with anyio.CancelScope(shield=True):
            try:
                await self._save_state(rt)
                if events:
                    report.events.extend(await self._store.record_events(events))
            except StoreError:
                rt.transitions[:0] = transitions  # the next flush records them
                raise
        if closed:
            self._failing.pop((rt.source.name, None), None)

    async def _save_state(self, rt: _Runtime) -> None:
        """Persist the source's breaker (restored on start) and status (shown by others)."""
        status = self._status_of(rt)
        await self._store.state.save_source(
            rt.source.name,
            {
                "breaker": status.breaker.model_dump(mode="json"),
                "status": status.model_dump(mode="json", exclude={"breaker", "database_error"}),
            },
        )

    async def _failed(
        self,
        rt: _Runtime,
        experiment_id: str | None,
        exc: Exception,
        report: CycleReport,
        *,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        reason = _reason(exc, self.poll_timeout_seconds)
        report.errors.append(reason)
        logger.warning(
            "source %s%s: %s",
            rt.source.name,
            f" / {experiment_id}" if experiment_id else "",
            reason,
            extra={"source": rt.source.name, "experiment": experiment_id},
        )
        key = (rt.source.name, experiment_id)
        if self._failing.get(key) == reason:
            return  # already reported; alert on onset and on change only
        recorded: dict[str, Any] = {
            "error": type(exc).__name__,
            "status_code": getattr(exc, "status_code", None),
            **(details or {}),
        }
        if isinstance(exc, ExperimentNotFound):
            recorded["suggestions"] = exc.suggestions
        await self._record_event(
            rt, report, EventKind.SOURCE_ERROR, experiment_id, after=reason, details=recorded
        )
        self._failing[key] = reason  # once recorded: a failed write is reported next time

    async def _recovered(
        self, rt: _Runtime, experiment_id: str | None, report: CycleReport
    ) -> None:
        key = (rt.source.name, experiment_id)
        reason = self._failing.get(key)
        if reason is None:
            return
        await self._record_event(
            rt, report, EventKind.SOURCE_RECOVERED, experiment_id, before=reason
        )
        self._failing.pop(key, None)

    async def _record_event(
        self,
        rt: _Runtime,
        report: CycleReport,
        kind: EventKind,
        experiment_id: str | None,
        *,
        before: Any = None,
        after: Any = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Record one event about this source (or one of its experiments), now; shielded,
        so a shutdown does not lose it between deciding and writing."""
        event = Event(
            kind=kind,
            source=rt.source.name,
            experiment_id=experiment_id,
            before=before,
            after=after,
            details=details or {},
            occurred_at=self._clock.now(),
        )
        with anyio.CancelScope(shield=True):
            report.events.extend(await self._store.record_events([event]))


def _status(rt: _Runtime) -> SourceStatus:
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


def _is_store_failure(exc: BaseException) -> bool:
    return any(isinstance(e, StoreError) for e in leaves(exc))


def _first_store_error(group: BaseExceptionGroup[StoreError]) -> StoreError:
    return next(e for e in leaves(group) if isinstance(e, StoreError))


def _describe(exc: BaseException) -> str:
    """An unexpected exception in a few words: its type and first line (groups: the first)."""
    exc = leaves(exc)[0]
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first_line[:200]}" if first_line else type(exc).__name__


def _portfolio_pages(experiments: int) -> int:
    return max(1, math.ceil(experiments / PORTFOLIO_PAGE_SIZE))


def _reason(exc: Exception, timeout_seconds: float) -> str:
    if isinstance(exc, TimeoutError):
        return str(exc) or _timed_out(timeout_seconds)
    return str(exc)


def _timed_out(timeout_seconds: float) -> str:
    return f"timed out: no complete answer within {timeout_seconds:g} s (poll_timeout_seconds)"


@contextmanager
def _deadline(timeout_seconds: float) -> Iterator[None]:
    """`anyio.fail_after`, its TimeoutError saying what timed out (the breaker keeps the
    text of the failures it counts, and shows it in the status)."""
    try:
        with anyio.fail_after(timeout_seconds):
            yield
    except TimeoutError as exc:
        raise TimeoutError(_timed_out(timeout_seconds)) from exc


def _merge(into: CycleReport, part: CycleReport) -> None:
    into.experiments += part.experiments
    into.fetched += part.fetched
    into.new_snapshots += part.new_snapshots
    into.requests += part.requests
    into.skipped_sources.extend(part.skipped_sources)
    into.events.extend(part.events)
    into.errors.extend(part.errors)
