"""The system of record: experiments, deduplicated snapshots, metric rows and the event log."""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol, TypeVar

import anyio
from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from . import rows, schema
from .backfill import days_done, history_order, live_since, newest_backfilled, record_day
from .database import Database
from .errors import UnknownExperiment
from .feed import ChangeCursor, Changes, changes_after, feed_end
from .health import StoreHealth
from .outbox import Outbox
from .overview import ExperimentSummary, experiment_summaries
from .records import (
    BackfillOutcome,
    Detection,
    Event,
    EventKind,
    Experiment,
    MetricPoint,
    PollOutcome,
    Snapshot,
    StoredSnapshot,
    WatchState,
)
from .retention import PruneReport, checkpoint, prune_snapshots
from .state import RuntimeState, save_cursor

T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Detector(Protocol):
    """Derives events from what changed. Called inside the write transaction of a poll.

    It returns the events, or a `Detection` that also carries the snapshot to store in place
    of `current` (the same results with the detector's own assessment added); deduplication
    always compares the snapshots as the platform gave them.
    """

    def __call__(
        self,
        *,
        before: Experiment | None,
        after: Experiment,
        previous: Snapshot | None,
        current: Snapshot | None,
    ) -> Sequence[Event] | Detection: ...


@dataclass(kw_only=True)
class _PollPlan:
    """One poll on its way into the store: what the store holds of its experiment, and what
    recording it writes."""

    experiment: Experiment
    record: dict[str, Any]
    """`experiment` as JSON, dumped once for the insert or update."""
    snapshot: Snapshot | None
    current_hash: str | None
    known: rows.KnownExperiment | None
    before: Experiment | None
    is_new: bool
    """The snapshot differs from the newest stored one (by the platform's own content)."""
    needs_detector: bool
    experiment_pk: int | None
    snapshot_id: int | None
    events: Sequence[Event] = ()

    @classmethod
    def of(
        cls,
        experiment: Experiment,
        snapshot: Snapshot | None,
        known: Mapping[tuple[str, str], rows.KnownExperiment],
    ) -> _PollPlan:
        row = known.get((experiment.source, experiment.experiment_id))
        # A row only a backfill wrote was never watched: its first poll is a first sighting.
        before = Experiment.model_validate(row.record) if row and row.is_live else None
        current_hash = snapshot.content_hash() if snapshot else None
        is_new = snapshot is not None and current_hash != (row.latest_hash if row else None)
        return cls(
            experiment=experiment,
            record=experiment.model_dump(mode="json"),
            snapshot=snapshot,
            current_hash=current_hash,
            known=row,
            before=before,
            is_new=is_new,
            needs_detector=is_new or before != experiment,
            experiment_pk=row.pk if row else None,
            snapshot_id=row.latest_snapshot_id if row else None,
        )

    @property
    def pk(self) -> int:
        assert self.experiment_pk is not None, "the experiment's row is inserted first"
        return self.experiment_pk

    def run_detector(self, detect: Detector, stored: Mapping[int, StoredSnapshot]) -> None:
        """Run the detector with the previous experiment and snapshot beside the new ones."""
        latest_id = self.known.latest_snapshot_id if self.known else None
        latest = stored.get(latest_id) if latest_id is not None else None
        previous = latest.snapshot if latest else None
        detected = detect(
            before=self.before,
            after=self.experiment,
            previous=previous,
            current=self.snapshot if self.is_new else previous,
        )
        if isinstance(detected, Detection):
            self.events = detected.events
            if self.is_new and detected.snapshot is not None:
                self.snapshot = detected.snapshot  # assessed; deduplicated by the raw hash
        else:
            self.events = detected


def _distinct_runs(
    polls: Sequence[tuple[Experiment, Snapshot | None]],
) -> Iterator[list[tuple[Experiment, Snapshot | None]]]:
    """`polls` cut into consecutive runs without a repeated experiment: a run is recorded as
    a set, and a repeat must see the poll before it."""
    run: list[tuple[Experiment, Snapshot | None]] = []
    keys: set[tuple[str, str]] = set()
    for experiment, snapshot in polls:
        key = (experiment.source, experiment.experiment_id)
        if key in keys:
            yield run
            run, keys = [], set()
        run.append((experiment, snapshot))
        keys.add(key)
    if run:
        yield run


class Store:
    """Reads and writes the expwatch database.

    Every poll outcome is one transaction (experiment, snapshot, metric rows, events), so a
    crash leaves all of it or none of it. Consumers tail the event log by id with
    `events_after` and `wait_for_events`.
    """

    def __init__(self, database: Database, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.database = database
        self._clock = clock
        self.state = RuntimeState(database, clock=clock, on_change=self._signal)
        """Breaker state and the watch list."""
        self.outbox = Outbox(database, clock=clock, on_change=self._signal)
        """Alert deliveries, per event and target."""
        self.health = StoreHealth(clock=clock)
        """This process's tasks that are failing on the database (it cannot record that)."""
        self._committed = anyio.Event()
        """Set (and replaced) whenever this Store commits something the change feed shows."""

    @classmethod
    async def open(cls, url: str, *, clock: Callable[[], datetime] = utc_now) -> Store:
        """Open (and create, if new) the database at `url`."""
        database = Database(url)
        try:
            await database.migrate()
        except BaseException:
            await database.aclose()
            raise
        return cls(database, clock=clock)

    async def aclose(self) -> None:
        await self.database.aclose()

    # -- writes ---------------------------------------------------------------------------

    async def record_poll(
        self,
        experiment: Experiment,
        snapshot: Snapshot | None,
        *,
        detect: Detector,
    ) -> PollOutcome:
        """Record what one poll saw, in one transaction.

        An unchanged snapshot (same content hash as the latest) writes no snapshot, only the
        time it was checked. Events come from `detect`, which sees the previous experiment
        and snapshot beside the new ones, and are committed with them.
        """
        [outcome] = await self.record_polls([(experiment, snapshot)], detect=detect)
        return outcome

    async def record_polls(
        self, polls: Sequence[tuple[Experiment, Snapshot | None]], *, detect: Detector
    ) -> list[PollOutcome]:
        """Record several polls (of different experiments) in one transaction, each as
        `record_poll` would: a page of a portfolio costs one commit and a few statements,
        not a hundred of each."""
        now = self._clock()
        outcomes: list[PollOutcome] = []
        async with self.database.write() as conn:
            for batch in _distinct_runs(polls):
                outcomes.extend(await self._record_batch(conn, batch, detect, now))
        if any(o.events or o.is_new_snapshot for o in outcomes):
            self._signal()
        return outcomes

    async def _record_batch(
        self,
        conn: AsyncConnection,
        polls: Sequence[tuple[Experiment, Snapshot | None]],
        detect: Detector,
        now: datetime,
    ) -> list[PollOutcome]:
        """Record polls of distinct experiments set by set: one read of what the store holds,
        the detector poll by poll, then one write per table."""
        known = await rows.known_experiments(conn, [(e.source, e.experiment_id) for e, _ in polls])
        plans = [_PollPlan.of(experiment, snapshot, known) for experiment, snapshot in polls]
        # The previous snapshot is parsed only where the detector will need it.
        previous = await rows.snapshot_records(
            conn,
            [
                p.known.latest_snapshot_id
                for p in plans
                if p.needs_detector and p.known and p.known.latest_snapshot_id is not None
            ],
        )
        for plan in plans:
            if plan.needs_detector:
                plan.run_detector(detect, previous)
        pks = await rows.insert_experiments(
            conn, [(p.experiment, p.record) for p in plans if p.known is None], now
        )
        for plan in plans:
            if plan.known is None:
                plan.experiment_pk = pks[(plan.experiment.source, plan.experiment.experiment_id)]
        snapshot_ids = await rows.insert_snapshots(
            conn,
            [
                (p.pk, p.snapshot, p.current_hash)
                for p in plans
                if p.is_new and p.snapshot is not None and p.current_hash is not None
            ],
            now,
        )
        for plan in plans:
            if plan.is_new:
                plan.snapshot_id = snapshot_ids[plan.pk]
        # First sightings were inserted as seen now; they only need their new snapshot.
        await rows.update_experiments(
            conn,
            [(p.pk, p.experiment, p.record, p.snapshot_id) for p in plans if p.known is not None],
            now,
        )
        await rows.set_latest_snapshots(
            conn,
            {p.pk: p.snapshot_id for p in plans if p.known is None and p.snapshot_id is not None},
        )
        events = [
            e if p.snapshot_id is None else e.model_copy(update={"snapshot_id": p.snapshot_id})
            for p in plans
            for e in p.events
        ]
        stored = iter(await rows.insert_events(conn, events, now))
        return [
            PollOutcome(
                snapshot_id=p.snapshot_id,
                is_new_snapshot=p.is_new,
                events=tuple(next(stored) for _ in p.events),
            )
            for p in plans
        ]

    async def record_events(self, events: Sequence[Event]) -> list[Event]:
        """Append events that belong to no snapshot (source errors, recoveries)."""
        async with self.database.write() as conn:
            stored = await rows.insert_events(conn, events, self._clock())
        if stored:
            self._signal()
        return stored

    async def record_backfill(
        self,
        experiment: Experiment,
        day: date,
        snapshots: Sequence[Snapshot],
        *,
        detect: Detector,
        also_done: Sequence[date] = (),
    ) -> BackfillOutcome:
        """Record one day of an experiment's history, in one transaction: the snapshots the
        platform computed that day (each at its `upstream_updated_at`), the events `detect`
        derives from them, and `day` (with `also_done`, earlier days without results) as
        done. See `store.backfill` for what is left out and why."""
        async with self.database.write() as conn:
            outcome = await record_day(
                conn,
                experiment,
                day,
                snapshots,
                detect=detect,
                also_done=also_done,
                now=self._clock(),
            )
        if outcome.snapshots or outcome.events:
            self._signal()
        return outcome

    async def backfill_days(self, source: str, experiment_id: str) -> set[date]:
        """The days of the experiment's history that a backfill has finished."""
        async with self.database.read() as conn:
            return await days_done(conn, source, experiment_id)

    async def live_since(self, source: str, experiment_id: str) -> datetime | None:
        """When the platform computed the experiment's first live snapshot (None before any):
        a backfill records only history older than that."""
        async with self.database.read() as conn:
            row = await rows.experiment_row(conn, source, experiment_id)
            return await live_since(conn, row["id"] if row is not None else None)

    async def save_cursor(self, consumer: str, position: int) -> None:
        """Remember how far `consumer` has processed the event log."""
        async with self.database.write() as conn:
            await save_cursor(conn, consumer, position, self._clock())

    async def prune(self, *, older_than: datetime) -> PruneReport:
        """Retention: see `store.retention.prune_snapshots`."""
        return await prune_snapshots(self.database, older_than=older_than)

    async def checkpoint(self, *, vacuum: bool = False) -> None:
        """Fold SQLite's write-ahead log into the file (and optionally VACUUM)."""
        await checkpoint(self.database, vacuum=vacuum)

    # -- reads ----------------------------------------------------------------------------

    async def cursor(self, consumer: str) -> int | None:
        """Where `consumer` stopped in the event log, or None if it never started."""
        async with self.database.read() as conn:
            position = await conn.scalar(
                select(schema.cursors.c.position).where(schema.cursors.c.consumer == consumer)
            )
        return None if position is None else int(position)

    async def experiments(self) -> list[Experiment]:
        """Every experiment the store has seen, ordered by source and id."""
        async with self.database.read() as conn:
            result = await conn.execute(
                select(schema.experiments.c.record).order_by(
                    schema.experiments.c.source, schema.experiments.c.experiment_id
                )
            )
            return [Experiment.model_validate(r.record) for r in result]

    async def experiment_summaries(
        self, experiment_ids: list[str] | None = None
    ) -> list[ExperimentSummary]:
        """Every experiment (or those of `experiment_ids`) with its latest verdicts, ordered by
        source and id: what an index shows."""
        async with self.database.read() as conn:
            return await experiment_summaries(conn, experiment_ids)

    async def experiment(self, experiment_id: str) -> Experiment:
        """The experiment with this id; UnknownExperiment lists the closest known ids."""
        async with self.database.read() as conn:
            row = await rows.experiment_row(conn, None, experiment_id)
        if row is None:
            raise await self._unknown(experiment_id)
        return Experiment.model_validate(row["record"])

    async def latest_snapshot(self, experiment_id: str) -> StoredSnapshot | None:
        """The newest snapshot of the experiment, or None before its first results."""
        return (await self.current(experiment_id))[1]

    async def current(self, experiment_id: str) -> tuple[Experiment, StoredSnapshot | None]:
        """The experiment and its newest snapshot (None before its first results), read
        together. Before its first live results, the newest backfilled one (if any)."""
        async with self.database.read() as conn:
            row = await rows.experiment_row(conn, None, experiment_id)
            if row is None:
                raise await self._unknown(experiment_id)
            experiment = Experiment.model_validate(row["record"])
            latest_id = row["latest_snapshot_id"]
            if latest_id is None:
                latest_id = await newest_backfilled(conn, row["id"])
            stored = await rows.snapshot_record(conn, latest_id)
            if stored is None:
                return experiment, None
            checked = row["last_checked_at"] or stored.last_checked_at
            return experiment, stored.model_copy(update={"last_checked_at": checked})

    async def snapshot_count(self, experiment_id: str | None = None) -> int:
        query = select(func.count()).select_from(schema.snapshots)
        if experiment_id is not None:
            query = query.join(schema.experiments).where(
                schema.experiments.c.experiment_id == experiment_id
            )
        async with self.database.read() as conn:
            return int(await conn.scalar(query) or 0)

    async def metric_history(
        self,
        experiment_id: str,
        metric_id: str,
        variation_id: str,
        *,
        since: datetime | None = None,
    ) -> list[MetricPoint]:
        """The trajectory of one metric for one variation, oldest first (from `since`)."""
        m = schema.metric_results
        async with self.database.read() as conn:
            row = await rows.experiment_row(conn, None, experiment_id)
            if row is None:
                raise await self._unknown(experiment_id)
            columns = [m.c[name] for name in MetricPoint.model_fields]
            result = await conn.execute(
                select(*columns)
                .where(
                    m.c.experiment_pk == row["id"],
                    m.c.metric_id == metric_id,
                    m.c.variation_id == variation_id,
                    *([m.c.fetched_at >= since] if since is not None else []),
                )
                .order_by(*history_order(m, m.c.snapshot_id))
            )
            names = list(MetricPoint.model_fields)
            # Positional rows and dict-based construction: a trajectory can hold thousands
            # of points, and per-row attribute access dominated the query's time.
            return [MetricPoint(**dict(zip(names, values, strict=True))) for values in result]

    async def snapshot_history(
        self, experiment_id: str, *, since: datetime | None = None, limit: int = 5000
    ) -> list[StoredSnapshot]:
        """The experiment's snapshots, oldest first (from `since`; the newest `limit` of
        them): the series SRM and exposures over time are drawn from."""
        s = schema.snapshots
        async with self.database.read() as conn:
            row = await rows.experiment_row(conn, None, experiment_id)
            if row is None:
                raise await self._unknown(experiment_id)
            result = await conn.execute(
                select(s)
                .where(
                    s.c.experiment_pk == row["id"],
                    *([s.c.fetched_at >= since] if since is not None else []),
                )
                .order_by(*history_order(s, s.c.id, descending=True))
                .limit(limit)
            )
            return [rows.stored_snapshot(r) for r in reversed(result.mappings().all())]

    async def events_after(
        self,
        cursor: int,
        *,
        limit: int = 100,
        experiment_id: str | None = None,
        kinds: Sequence[EventKind] | None = None,
        metric_id: str | None = None,
        since: datetime | None = None,
    ) -> list[Event]:
        """Events with an id greater than `cursor`, oldest first, optionally narrowed to one
        experiment, some kinds, one metric, or those that happened at or after `since`."""
        e = schema.events
        query = _narrowed(
            select(e).where(e.c.id > cursor).order_by(e.c.id).limit(limit),
            experiment_id=experiment_id,
            kinds=kinds,
            metric_id=metric_id,
            since=since,
        )
        return await self._events(query)

    async def history_events(
        self,
        experiment_id: str,
        *,
        kinds: Sequence[EventKind] | None = None,
        metric_id: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        """An experiment's events as history: backfilled ones first, in the order they
        happened, then the live ones in the order of the log (see `store.backfill`)."""
        e = schema.events
        query = _narrowed(
            select(e).order_by(*history_order(e, e.c.id)).limit(limit),
            experiment_id=experiment_id,
            kinds=kinds,
            metric_id=metric_id,
            since=since,
        )
        return await self._events(query)

    async def significance_changes(
        self, experiment_id: str, *, metric_id: str | None = None, limit: int = 1000
    ) -> list[Event]:
        """When metrics became (or stopped being) significant, oldest first (backfilled
        history before live events)."""
        await self.experiment(experiment_id)  # unknown ids get the helpful error
        return await self.history_events(
            experiment_id,
            kinds=[EventKind.SIGNIFICANCE_CHANGED],
            metric_id=metric_id,
            limit=limit,
        )

    async def srm_changes(self, experiment_id: str, *, limit: int = 1000) -> list[Event]:
        """When a sample-ratio mismatch started and cleared, oldest first (backfilled
        history before live events)."""
        await self.experiment(experiment_id)
        return await self.history_events(
            experiment_id, kinds=[EventKind.SRM_DETECTED, EventKind.SRM_CLEARED], limit=limit
        )

    async def snapshot_at(self, experiment_id: str, at: datetime) -> StoredSnapshot | None:
        """The newest snapshot fetched at or before `at`: what expwatch knew then."""
        s = schema.snapshots
        async with self.database.read() as conn:
            row = await rows.experiment_row(conn, None, experiment_id)
            if row is None:
                raise await self._unknown(experiment_id)
            snapshot_id = await conn.scalar(
                select(s.c.id)
                .where(s.c.experiment_pk == row["id"], s.c.fetched_at <= at)
                .order_by(s.c.fetched_at.desc(), s.c.id.desc())
                .limit(1)
            )
            return await rows.snapshot_record(conn, snapshot_id)

    async def experiments_changed_since(self, since: datetime) -> list[Experiment]:
        """Experiments with a new snapshot fetched at or after `since`."""
        x, s = schema.experiments, schema.snapshots
        changed = select(s.c.experiment_pk).where(s.c.fetched_at >= since).distinct()
        async with self.database.read() as conn:
            result = await conn.execute(
                select(x.c.record)
                .where(x.c.id.in_(changed))
                .order_by(x.c.source, x.c.experiment_id)
            )
            return [Experiment.model_validate(r.record) for r in result]

    async def watch_states(self, source: str) -> dict[str, WatchState]:
        """What the supervisor needs to know of each experiment of `source` it has seen, by id:
        its last recorded form, when it was last checked, and when its newest snapshot was
        computed upstream (or fetched)."""
        x, s = schema.experiments, schema.snapshots
        async with self.database.read() as conn:
            result = await conn.execute(
                select(
                    x.c.experiment_id,
                    x.c.record,
                    x.c.last_checked_at,
                    s.c.upstream_updated_at,
                    s.c.fetched_at,
                )
                .select_from(x.outerjoin(s, s.c.id == x.c.latest_snapshot_id))
                # Rows only a backfill wrote are unknown to the watcher until it checks them.
                .where(
                    x.c.source == source,
                    or_(x.c.last_checked_at.is_not(None), x.c.latest_snapshot_id.is_not(None)),
                )
            )
            return {
                r.experiment_id: WatchState(
                    experiment=Experiment.model_validate(r.record),
                    last_checked_at=r.last_checked_at,
                    results_updated_at=r.upstream_updated_at or r.fetched_at,
                )
                for r in result
            }

    async def latest_events(
        self, kinds: Sequence[EventKind], *, source: str | None = None
    ) -> dict[tuple[str, str | None], Event]:
        """The newest event of any of `kinds` per (source, experiment id): the current state of
        a warning that fires when it starts and when it clears."""
        e = schema.events
        newest = (
            select(func.max(e.c.id))
            .where(e.c.kind.in_([k.value for k in kinds]))
            .group_by(e.c.source, e.c.experiment_id)
        )
        if source is not None:
            newest = newest.where(e.c.source == source)
        async with self.database.read() as conn:
            result = await conn.execute(select(e).where(e.c.id.in_(newest)))
            events = [rows.event_from_row(r._mapping) for r in result]
        return {(event.source, event.experiment_id): event for event in events}

    async def last_event_id(self) -> int:
        async with self.database.read() as conn:
            return int(await conn.scalar(select(func.max(schema.events.c.id))) or 0)

    async def wait_for_events(self, after: int, *, poll_interval_seconds: float = 1.0) -> None:
        """Return once the log holds an event with an id greater than `after`.

        Commits made through this Store wake the waiter at once; commits by other
        processes are seen by re-reading every `poll_interval_seconds`.
        """

        async def has_new_events() -> bool | None:
            return await self.last_event_id() > after or None

        await self._wait_until(has_new_events, poll_interval_seconds=poll_interval_seconds)

    async def change_cursor(self) -> ChangeCursor:
        """The end of the change feed: start here to see only what is committed from now on."""
        async with self.database.read() as conn:
            return await feed_end(conn)

    async def changes_after(self, cursor: ChangeCursor, *, limit: int = 1000) -> Changes:
        """What was committed after `cursor` (see `store.feed`); pass `.cursor` back next time."""
        async with self.database.read() as conn:
            return await changes_after(conn, cursor, limit=limit)

    async def wait_for_changes(
        self, cursor: ChangeCursor, *, poll_interval_seconds: float = 1.0
    ) -> Changes:
        """The changes after `cursor`, once there are any. Commits through this Store wake the
        waiter at once; other processes' commits are seen every `poll_interval_seconds`."""

        async def new_changes() -> Changes | None:
            changes = await self.changes_after(cursor)
            return None if changes.is_empty else changes

        return await self._wait_until(new_changes, poll_interval_seconds=poll_interval_seconds)

    async def _wait_until(
        self, check: Callable[[], Awaitable[T | None]], *, poll_interval_seconds: float
    ) -> T:
        """`check()`'s first answer that is not None, asked again after each commit through
        this Store and every `poll_interval_seconds` (for other processes' commits)."""
        while True:
            committed = self._committed  # taken first: a commit during check() still wakes
            found = await check()
            if found is not None:
                return found
            with anyio.move_on_after(poll_interval_seconds):
                await committed.wait()

    # -- helpers --------------------------------------------------------------------------

    async def _events(self, query: Select[Any]) -> list[Event]:
        async with self.database.read() as conn:
            return [rows.event_from_row(r._mapping) for r in await conn.execute(query)]

    def _signal(self) -> None:
        self._committed.set()
        self._committed = anyio.Event()

    async def _unknown(self, experiment_id: str) -> UnknownExperiment:
        async with self.database.read() as conn:
            known = list(await conn.scalars(select(schema.experiments.c.experiment_id)))
        return UnknownExperiment(
            experiment_id, suggestions=difflib.get_close_matches(experiment_id, known, n=3)
        )


def _narrowed(
    query: Select[Any],
    *,
    experiment_id: str | None,
    kinds: Sequence[EventKind] | None,
    metric_id: str | None,
    since: datetime | None,
) -> Select[Any]:
    """An events query narrowed to one experiment, some kinds, one metric, or a start."""
    e = schema.events
    if experiment_id is not None:
        query = query.where(e.c.experiment_id == experiment_id)
    if kinds:
        query = query.where(e.c.kind.in_([k.value for k in kinds]))
    if metric_id is not None:
        query = query.where(e.c.metric_id == metric_id)
    if since is not None:
        query = query.where(e.c.occurred_at >= since)
    return query
