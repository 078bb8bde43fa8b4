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

This module holds the `Supervisor`: its loops, a cycle's orchestration and the fetching. What
it polls through and reports is in `watcher.polling`, its memory of each source in
`watcher.runtime`, what a cycle fetches in `watcher.selection`, the failure bookkeeping in
`watcher.failures`, and the recording of polls and staleness in `watcher.recording`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import anyio
from anyio.abc import TaskStatus

from store import (
    Experiment,
    ExperimentNotFound,
    PayloadError,
    Snapshot,
    SourceError,
    Store,
    StoreError,
    leaves,
)

from .assess import StatsPolicy
from .breaker import BreakerOpen, BreakerState
from .clock import Clock
from .detect import ChangeDetector
from .failures import FailureLog, deadline, describe, failure_reason
from .polling import (
    NOT_ENDED_STATUSES,
    CycleReport,
    PortfolioSource,
    Source,
    SourcePolicy,
    SourceStatus,
    merge_reports,
)
from .recording import Poll, PollRecorder
from .runtime import SourceRuntime
from .selection import (
    portfolio_pages,
    select_departed,
    select_due,
    select_watched,
    watch_sets,
)

logger = logging.getLogger(__name__)

STORE_RETRY_SECONDS = 5.0
"""First retry of a cycle the database failed; doubles up to the poll interval."""


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
        self._failures = FailureLog(store, clock=clock, poll_timeout_seconds=poll_timeout_seconds)
        self._recorder = PollRecorder(
            store,
            clock=clock,
            detector=detector or ChangeDetector(clock=clock.now, policy=policy),
            failures=self._failures,
        )
        policies = source_policies or {}
        self._runtimes = [
            SourceRuntime(s, policies.get(s.name, SourcePolicy()), clock) for s in sources
        ]
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
        await self._failures.restore(self._runtimes)
        await self._recorder.restore(self._runtimes)
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
        self, rt: SourceRuntime, on_cycle: Callable[[CycleReport], None] | None
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
                report.errors.append(f"unexpected failure: {describe(group)}")
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

    def _store_failed(self, rt: SourceRuntime, error: StoreError, retry_seconds: float) -> None:
        """The database failed this cycle (rolled back): say so once per outage, in the logs
        and in the status, and not against the source (its breaker never saw it)."""
        rt.database_error = str(error)
        self._store.health.failed(
            f"polling {rt.source.name}", error, retry_in_seconds=retry_seconds
        )

    def _store_works(self, rt: SourceRuntime) -> None:
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
        return [self._failures.status_of(rt) for rt in self._runtimes]

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

    async def _cycle(self, rt: SourceRuntime, report: CycleReport) -> None:
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
                merge_reports(report, mine)
                if not store_failed:  # saving would fail too (or wait out the lock again)
                    with anyio.CancelScope(shield=True):
                        await self._failures.save_state(rt)

    async def _cycle_unlocked(self, rt: SourceRuntime, report: CycleReport) -> None:
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
            await self._failures.failed(rt, None, exc, report)
            return
        except Exception as exc:  # a parser bug: this cycle fails, the daemon goes on
            logger.exception("unexpected failure listing %s", source.name)
            await self._failures.failed(rt, None, exc, report)
            return
        finally:
            await self._failures.flush_transitions(rt, report)
        await self._failures.recovered(rt, None, report)
        rt.listed = len(listed)
        listed_ids = {e.experiment_id for e in listed}
        rt.gone -= listed_ids
        rt.chased -= listed_ids
        include, exclude = await watch_sets(self._store, rt)
        watched = select_watched(rt, listed, include, exclude)
        rt.watched = len(watched)
        report.experiments += len(watched)
        due = select_due(
            rt,
            watched,
            now=self._clock.now(),
            refresh_unchanged_seconds=self.refresh_unchanged_seconds,
            finished_poll_interval_seconds=self.finished_poll_interval_seconds,
        )
        departed = select_departed(rt, listed_ids, include, exclude)
        await self._fetch(rt, due, report, departed=departed)
        await self._recorder.check_staleness(rt, watched, report)
        rt.last_success_at = self._clock.now()

    async def _fetch(
        self,
        rt: SourceRuntime,
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
            and len(listed_due) > portfolio_pages(rt.listed)
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
        self, rt: SourceRuntime, listed_due: dict[str, Experiment], report: CycleReport
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
                        SourceError(f"unexpected failure: {describe(exc)}", source=source.name)
                    )

        try:
            async with rt.breaker.call():
                async with anyio.create_task_group() as tg, pages_in:
                    tg.start_soon(read_pages)
                    async for page in pages_in:
                        polls: list[Poll] = []
                        for experiment_id, found in page.items():
                            experiment = listed_due.pop(experiment_id, None)
                            if experiment is None:
                                continue  # not due: unchanged, or not watched
                            if isinstance(found, PayloadError):
                                await self._failures.failed(rt, experiment_id, found, report)
                            else:
                                polls.append((experiment, experiment, found))
                        await self._recorder.record_many(rt, polls, report)
                if failures:
                    raise failures[0]
            no_results = [(e, e, None) for e in listed_due.values()]
            listed_due.clear()
            await self._recorder.record_many(rt, no_results, report)
        except BreakerOpen:
            return
        except (SourceError, TimeoutError) as exc:
            logger.warning(
                "source %s: portfolio read failed (%s); fetching the rest one by one",
                rt.source.name,
                failure_reason(exc, self.poll_timeout_seconds),
                extra={"source": rt.source.name},
            )
        finally:
            await self._failures.flush_transitions(rt, report)

    async def _poll_departed(
        self,
        rt: SourceRuntime,
        experiment: Experiment,
        limiter: anyio.CapacityLimiter,
        report: CycleReport,
    ) -> None:
        """`_poll_experiment` for an experiment that left the listing (see `select_departed`)."""
        current = await self._poll_experiment(rt, experiment, limiter, report, departed=True)
        if current is not None and current.status in NOT_ENDED_STATUSES:
            rt.chased.add(experiment.experiment_id)

    async def _poll_experiment(
        self,
        rt: SourceRuntime,
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
                    with deadline(self.poll_timeout_seconds):
                        current, snapshot = await rt.source.fetch_results(experiment)
            except BreakerOpen:
                return None  # the source went down during this cycle; the breaker says when
            except ExperimentNotFound as exc:
                if departed:
                    await self._failures.gone(rt, experiment, exc, report)
                else:
                    await self._failures.failed(rt, experiment.experiment_id, exc, report)
                return None
            except (SourceError, TimeoutError) as exc:
                await self._failures.failed(rt, experiment.experiment_id, exc, report)
                return None
            except Exception as exc:  # isolate one experiment from the rest
                logger.exception(
                    "unexpected failure polling %s",
                    experiment.experiment_id,
                    extra={"source": rt.source.name, "experiment": experiment.experiment_id},
                )
                await self._failures.failed(rt, experiment.experiment_id, exc, report)
                return None
            finally:
                await self._failures.flush_transitions(rt, report)
        await self._recorder.record_many(rt, [(experiment, current, snapshot)], report)
        return current


def _is_store_failure(exc: BaseException) -> bool:
    return any(isinstance(e, StoreError) for e in leaves(exc))


def _first_store_error(group: BaseExceptionGroup[StoreError]) -> StoreError:
    return next(e for e in leaves(group) if isinstance(e, StoreError))
