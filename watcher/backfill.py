"""Backfill: reconstruct an experiment's history from the platforms that keep it.

Statsig serves Pulse as of any past day (`pulse_results?date=`); GrowthBook serves every
stored snapshot through its bulk-results endpoint, when the self-hosted server enables it
(`EXPERIMENT_BULK_RESULTS_ENABLED`). A source that can do either offers `history()`: the
experiment as it is now, the days it ran, and a reader of one day's snapshots
(`ExperimentHistory`).

The backfill goes day by day, oldest first, through the source's own HTTP client, rate budget
and retry policy (so it never asks more of a platform than the source is configured for), and
records each day in one transaction with the mark that it is done (`Store.record_backfill`):
an interrupted backfill (Ctrl-C, a crash, an outage) resumes at the first day not done, and
no day is recorded twice.

Which days: from `since` (default: the day the experiment, or GrowthBook's current phase,
started) to the day before today (`until` at the latest; a day still running is the live
watcher's), stopping where the experiment ended and at the day of its first live snapshot.
Within a day, only snapshots the platform computed *before* the first live snapshot are kept
(`store.backfill`): the live series and the live detector's state are left as they are, and
backfilled history is never alerted. A day the platform has no results for is marked done
only once a later day brought results (the days before an experiment's first results are
empty for good; the latest days may not be computed yet, and are read again next time).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Protocol, runtime_checkable

import anyio

from store import (
    Experiment,
    ExperimentNotFound,
    HistoryUnavailable,
    Snapshot,
    SourceError,
    Store,
    StoreError,
)

from .budget import RateBudget
from .clock import Clock
from .detect import ChangeDetector
from .polling import WatchRules
from .runtime import counts_against_source

logger = logging.getLogger(__name__)

__all__ = [
    "BackfillJob",
    "BackfillReport",
    "BackfillStatus",
    "Backfiller",
    "DayDone",
    "ExperimentHistory",
    "ExperimentReport",
    "HistorySource",
]

ReadDay = Callable[[date], Awaitable[list[Snapshot]]]


@dataclass(frozen=True, kw_only=True)
class ExperimentHistory:
    """What a platform can tell of one experiment's past."""

    experiment: Experiment
    """The experiment as the platform describes it now."""
    started_on: date | None
    """The first day it ran (of the phase whose history is read); None if it never started."""
    ended_on: date | None = None
    """The last day it ran, once it stopped."""
    read_day: ReadDay
    """The snapshots the platform computed on a day, oldest first, each with the time it
    computed them (`upstream_updated_at`); empty when it has none for that day."""


@runtime_checkable
class HistorySource(Protocol):
    """A source whose platform serves past results."""

    name: str
    budget: RateBudget | None

    async def list_experiments(self) -> list[Experiment]: ...

    async def history(self, experiment_id: str) -> ExperimentHistory:
        """The experiment's history reader; HistoryUnavailable when the platform serves no
        history to this source (it may also come from the first day read)."""
        ...


class BackfillStatus(StrEnum):
    DONE = "done"
    """Every day that can be backfilled now is recorded."""
    FAILED = "failed"
    """Stopped by an error; the days recorded stay, a new run resumes after them."""
    UNSUPPORTED = "unsupported"
    """The platform serves no history to this source."""
    NOT_FOUND = "not_found"
    """The platform has no such experiment."""
    INTERRUPTED = "interrupted"
    """Cancelled (Ctrl-C) while it ran; the days recorded stay."""


@dataclass(frozen=True, kw_only=True)
class BackfillJob:
    """One experiment to backfill: its source, and from which day (None: its start)."""

    source: str
    experiment_id: str
    since: date | None = None


@dataclass(frozen=True, kw_only=True)
class DayDone:
    """Progress: one day of one experiment read (and recorded, unless it is held back as
    possibly not computed yet)."""

    job: BackfillJob
    day: date
    days_read: int
    """Days of this experiment read so far in this run."""
    days_total: int
    """Days of this experiment this run reads."""
    snapshots: int
    events: int


@dataclass(kw_only=True)
class ExperimentReport:
    """What a run did for one experiment."""

    source: str
    experiment_id: str
    status: BackfillStatus = BackfillStatus.DONE
    first_day: date | None = None
    last_day: date | None = None
    """The days the experiment's backfillable history spans (None: nothing to backfill)."""
    days_already_done: int = 0
    days_recorded: int = 0
    """Days recorded in this run (with or without results)."""
    days_pending: int = 0
    """Latest days without results yet, left for a later run."""
    snapshots: int = 0
    events: int = 0
    error: str | None = None


@dataclass(kw_only=True)
class BackfillReport:
    """What a run did."""

    experiments: list[ExperimentReport] = field(default_factory=list)
    requests: int = 0
    """Requests made to the platforms."""

    @property
    def failed(self) -> bool:
        return any(e.status is BackfillStatus.FAILED for e in self.experiments)

    @property
    def unsupported(self) -> bool:
        return any(
            e.status in (BackfillStatus.UNSUPPORTED, BackfillStatus.NOT_FOUND)
            for e in self.experiments
        )


class Backfiller:
    """Plans and runs backfills against the configured sources, recording into `store`."""

    def __init__(
        self,
        store: Store,
        sources: Sequence[HistorySource],
        *,
        clock: Clock,
        detector: ChangeDetector,
        rules: Mapping[str, WatchRules] | None = None,
    ) -> None:
        self._store = store
        self._sources = {s.name: s for s in sources}
        self._clock = clock
        self._detector = detector
        self._rules = rules or {}

    # -- planning -----------------------------------------------------------------------------

    async def source_of(self, experiment_id: str, *, source: str | None = None) -> str:
        """The source to read `experiment_id` from: `source` if given, else the one the store
        knows it from, else the only one configured. LookupError says why none fits."""
        if source is not None:
            if source not in self._sources:
                raise LookupError(
                    f"no source {source!r} in the configuration; sources: "
                    f"{', '.join(sorted(self._sources)) or '(none)'}"
                )
            return source
        known = {
            e.source
            for e in await self._store.experiments()
            if e.experiment_id == experiment_id and e.source in self._sources
        }
        if len(known) == 1:
            return known.pop()
        if not known and len(self._sources) == 1:
            return next(iter(self._sources))
        candidates = sorted(known or self._sources)
        raise LookupError(
            f"experiment {experiment_id!r} could come from several sources "
            f"({', '.join(candidates) or 'none configured'}): name one with --source"
        )

    async def every_experiment(self, *, source: str | None = None) -> list[BackfillJob]:
        """A job for every experiment the sources (or `source`) list now, as the watcher
        would watch them: their listing filters and tags, `exclude` and the ignore list
        applied; explicitly watched ones added."""
        names = [source] if source is not None else sorted(self._sources)
        entries = await self._store.state.watch_list()
        jobs = []
        for name in names:
            rules = self._rules.get(name, WatchRules())
            watched = {e.experiment_id for e in entries if e.source == name and e.is_watched}
            ignored = {e.experiment_id for e in entries if e.source == name and not e.is_watched}
            listed = await self._sources[name].list_experiments()
            ids = [
                e.experiment_id
                for e in listed
                if not rules.tags or rules.tags & set(e.tags) or e.experiment_id in rules.include
            ]
            ids += sorted((rules.include | watched) - set(ids))
            excluded = (rules.exclude | ignored) - watched
            jobs += [BackfillJob(source=name, experiment_id=i) for i in ids if i not in excluded]
        return jobs

    # -- running ------------------------------------------------------------------------------

    async def run(
        self,
        jobs: Sequence[BackfillJob],
        *,
        on_plan: Callable[[BackfillJob, int], None] | None = None,
        on_day: Callable[[DayDone], None] | None = None,
        until: date | None = None,
        report: BackfillReport | None = None,
    ) -> BackfillReport:
        """Backfill `jobs` one after the other; `on_plan(job, days)` once a job knows how many
        days it reads, `on_day` after each day. A source found unavailable (down, refusing
        the key) or without history stops its remaining jobs; the others go on. Returns
        what was done (into `report`, if given: a caller that cancels the run keeps what it
        did); nothing raises but the database failing and cancellation."""
        report = report if report is not None else BackfillReport()
        granted = {name: _granted(s.budget) for name, s in self._sources.items()}
        given_up: dict[str, tuple[BackfillStatus, str]] = {}
        try:
            for job in jobs:
                entry = ExperimentReport(
                    source=job.source,
                    experiment_id=job.experiment_id,
                    status=BackfillStatus.INTERRUPTED,  # until it ends one way or another
                )
                report.experiments.append(entry)
                if job.source in given_up:
                    entry.status, entry.error = given_up[job.source]
                    continue
                try:
                    await self._run_job(job, entry, until=until, on_plan=on_plan, on_day=on_day)
                    entry.status = BackfillStatus.DONE
                except HistoryUnavailable as exc:
                    entry.status, entry.error = BackfillStatus.UNSUPPORTED, str(exc)
                    given_up[job.source] = (entry.status, f"not attempted: {exc}")
                except ExperimentNotFound as exc:
                    entry.status = BackfillStatus.NOT_FOUND
                    entry.error = await self._not_found(job, exc)
                except (SourceError, TimeoutError) as exc:
                    entry.status, entry.error = BackfillStatus.FAILED, _reason(exc)
                    logger.warning(
                        "backfill of %s/%s stopped: %s", job.source, job.experiment_id, exc
                    )
                    if counts_against_source(exc):
                        given_up[job.source] = (
                            BackfillStatus.FAILED,
                            f"not attempted: source {job.source!r} failed ({_reason(exc)})",
                        )
                except StoreError:
                    raise  # every other job would fail on it too
                except Exception as exc:  # a bug of ours: isolate the experiment, go on
                    logger.exception("backfill of %s/%s failed", job.source, job.experiment_id)
                    entry.status = BackfillStatus.FAILED
                    entry.error = f"unexpected failure: {type(exc).__name__}: {exc}"[:500]
        finally:
            report.requests = sum(
                _granted(s.budget) - granted[name] for name, s in self._sources.items()
            )
        return report

    async def _not_found(self, job: BackfillJob, exc: ExperimentNotFound) -> str:
        """The platform does not know the experiment: say so, with the closest ids the source
        lists (read once, if the source has not listed yet) and the store knows."""
        if exc.suggestions:
            return str(exc)
        known = {e.experiment_id for e in await self._store.experiments() if e.source == job.source}
        with contextlib.suppress(SourceError):  # the suggestions are a courtesy
            known |= {e.experiment_id for e in await self._sources[job.source].list_experiments()}
        close = difflib.get_close_matches(job.experiment_id, sorted(known), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return f"{exc}{hint}"

    async def _run_job(
        self,
        job: BackfillJob,
        entry: ExperimentReport,
        *,
        until: date | None,
        on_plan: Callable[[BackfillJob, int], None] | None,
        on_day: Callable[[DayDone], None] | None,
    ) -> None:
        source = self._sources[job.source]
        history = await source.history(job.experiment_id)
        experiment = history.experiment
        days = await self._days(job, history, until=until)
        done = await self._store.backfill_days(job.source, job.experiment_id)
        if days:
            entry.first_day, entry.last_day = days[0], days[-1]
        todo = [d for d in days if d not in done]
        entry.days_already_done = len(days) - len(todo)
        if on_plan is not None:
            on_plan(job, len(todo))
        empty: list[date] = []  # days without results, marked done once a later day has some
        for read, day in enumerate(todo, start=1):
            snapshots = [_timed(s, day) for s in await history.read_day(day)]
            if not snapshots:
                empty.append(day)
                entry.days_pending = len(empty)
            else:
                with anyio.CancelScope(shield=True):  # a day is recorded whole, or not at all
                    outcome = await self._store.record_backfill(
                        experiment, day, snapshots, detect=self._detector, also_done=empty
                    )
                entry.days_recorded += 0 if outcome.already_done else 1 + len(empty)
                entry.snapshots += outcome.snapshots
                entry.events += len(outcome.events)
                empty, entry.days_pending = [], 0
            if on_day is not None:
                on_day(
                    DayDone(
                        job=job,
                        day=day,
                        days_read=read,
                        days_total=len(todo),
                        snapshots=entry.snapshots,
                        events=entry.events,
                    )
                )

    async def _days(
        self, job: BackfillJob, history: ExperimentHistory, *, until: date | None
    ) -> list[date]:
        """The days to read: from `since` (or the start) up to the day before today, `until`,
        the end of the experiment and the day of its first live snapshot, at the latest."""
        first = job.since or history.started_on
        if first is None:
            return []
        last = self._clock.now().astimezone(UTC).date() - timedelta(days=1)
        for bound in (until, history.ended_on):
            if bound is not None:
                last = min(last, bound)
        live = await self._store.live_since(job.source, job.experiment_id)
        if live is not None:
            last = min(last, live.astimezone(UTC).date())
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _timed(snapshot: Snapshot, day: date) -> Snapshot:
    """A snapshot with the time the platform computed it (the end of `day` if it did not
    say)."""
    if snapshot.upstream_updated_at is not None:
        return snapshot
    end = datetime.combine(day + timedelta(days=1), time(0), UTC)
    return snapshot.model_copy(update={"upstream_updated_at": end})


def _granted(budget: RateBudget | None) -> int:
    return budget.granted if budget is not None else 0


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
