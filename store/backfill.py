"""Backfilled history: snapshots and events read from a platform after the fact.

A backfill records, for one experiment, the snapshots a platform computed on past days, each
at the time the platform computed it (`fetched_at` = that time), flagged `backfilled`, with the
events the detector derives from them, also flagged. The rules that keep history apart from
the live watch:

- Only what the platform computed *before the experiment's first live snapshot* is recorded
  (`live_since`): the live series and its detector state start there, untouched. A snapshot at
  or after that time is left out.
- Backfilled snapshots form their own chain: each is compared with the backfilled snapshot
  before it (by time), never with a live one, and an experiment's latest snapshot, record and
  `last_checked_at` are never changed. An experiment only a backfill has written is inserted
  unchecked (`last_checked_at` NULL), so the watcher still treats its first live poll as a
  first sighting.
- Each day is recorded in one transaction together with its row in `backfill_days`, so an
  interrupted backfill resumes at the first day not done, and a day is never recorded twice.
- Backfilled events are never alerted (the alert rules skip them) and the MCP change feed
  announces them as history only (see `store.feed`).

History queries list backfilled points first, in time order, then the live ones in the order
they were recorded (`history_order`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, case, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from . import rows, schema
from .records import BackfillOutcome, Detection, Event, Experiment, Snapshot, StoredSnapshot

if TYPE_CHECKING:
    from .store import Detector

__all__ = ["days_done", "history_order", "live_since", "newest_backfilled", "record_day"]


def history_order(
    table: Any, id_column: Any, *, descending: bool = False
) -> tuple[ColumnElement[Any], ...]:
    """ORDER BY for a history series of `table` (snapshots, metric rows or events): backfilled
    rows first, by the time the platform computed them, then live rows in recorded order
    (`descending`: the same order, newest first)."""
    when = table.c.occurred_at if table is schema.events else table.c.fetched_at
    keys = (table.c.backfilled, case((table.c.backfilled, when), else_=None), id_column)
    if descending:
        return (keys[0].asc(), keys[1].desc(), keys[2].desc())
    return (keys[0].desc(), keys[1].asc(), keys[2].asc())


async def live_since(conn: AsyncConnection, experiment_pk: int | None) -> datetime | None:
    """When the platform computed the experiment's first live snapshot (when it was fetched,
    if the platform did not say); None before its first live results."""
    if experiment_pk is None:
        return None
    s = schema.snapshots
    row = (
        await conn.execute(
            select(s.c.upstream_updated_at, s.c.fetched_at)
            .where(s.c.experiment_pk == experiment_pk, s.c.backfilled.is_(False))
            .order_by(s.c.id)
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    computed: datetime = row.upstream_updated_at or row.fetched_at
    return computed


async def newest_backfilled(conn: AsyncConnection, experiment_pk: int) -> int | None:
    """The id of the experiment's newest backfilled snapshot, if it has any."""
    s = schema.snapshots
    found = await conn.scalar(
        select(s.c.id)
        .where(s.c.experiment_pk == experiment_pk, s.c.backfilled)
        .order_by(s.c.fetched_at.desc(), s.c.id.desc())
        .limit(1)
    )
    return None if found is None else int(found)


async def days_done(conn: AsyncConnection, source: str, experiment_id: str) -> set[date]:
    """The days of the experiment's history a backfill has finished."""
    t = schema.backfill_days
    result = await conn.scalars(
        select(t.c.day).where(t.c.source == source, t.c.experiment_id == experiment_id)
    )
    return set(result)


async def record_day(
    conn: AsyncConnection,
    experiment: Experiment,
    day: date,
    snapshots: Sequence[Snapshot],
    *,
    detect: Detector,
    also_done: Sequence[date] = (),
    now: datetime,
) -> BackfillOutcome:
    """Within `conn`'s transaction: record the snapshots the platform computed on `day`
    (each with its `upstream_updated_at`), and mark `day` and `also_done` (earlier days
    without results) as done. A day already done writes nothing."""
    key = (experiment.source, experiment.experiment_id)
    if day in await days_done(conn, *key):
        return BackfillOutcome(day=day, already_done=True)
    known = (await rows.known_experiments(conn, [key])).get(key)
    pk = known.pk if known else await _insert_unchecked(conn, experiment, now)
    cutoff = await live_since(conn, known.pk if known else None)
    recorded = 0
    events: list[Event] = []
    for snapshot in sorted(snapshots, key=_computed_at):
        computed = _computed_at(snapshot)
        if cutoff is not None and computed >= cutoff:
            continue  # the live series covers it
        previous = await _backfilled_before(conn, pk, computed)
        digest = snapshot.content_hash()
        if previous is not None and previous.content_hash == digest:
            continue  # the platform's results did not change
        detected = detect(
            before=None,
            after=experiment,
            previous=previous.snapshot if previous else None,
            current=snapshot,
        )
        found: Sequence[Event]
        if isinstance(detected, Detection):
            found, stored = detected.events, detected.snapshot or snapshot
        else:
            found, stored = detected, snapshot
        ids = await rows.insert_snapshots(conn, [(pk, stored, digest)], computed, backfilled=True)
        snapshot_id = ids[pk]
        events += await rows.insert_events(
            conn,
            [e.model_copy(update={"snapshot_id": snapshot_id, "backfilled": True}) for e in found],
            now,
        )
        recorded += 1
    t = schema.backfill_days
    finished = await days_done(conn, *key)
    done = [d for d in sorted({day, *also_done}) if d not in finished]
    await conn.execute(
        insert(t),
        [
            {
                "source": experiment.source,
                "experiment_id": experiment.experiment_id,
                "day": d,
                "snapshots": recorded if d == day else 0,
                "completed_at": now,
            }
            for d in done
        ],
    )
    return BackfillOutcome(day=day, snapshots=recorded, events=tuple(events))


def _computed_at(snapshot: Snapshot) -> datetime:
    assert snapshot.upstream_updated_at is not None, "backfilled snapshots carry their time"
    return snapshot.upstream_updated_at


async def _insert_unchecked(conn: AsyncConnection, experiment: Experiment, now: datetime) -> int:
    """An experiment only the backfill knows: inserted as never checked by the watcher."""
    x = schema.experiments
    row = {
        "source": experiment.source,
        "experiment_id": experiment.experiment_id,
        "name": experiment.name,
        "status": experiment.status,
        "record": experiment.model_dump(mode="json"),
        "upstream_updated_at": experiment.upstream_updated_at,
        "first_seen_at": now,
        "last_checked_at": None,
    }
    rows.check_fits(x, row, source=experiment.source, experiment_id=experiment.experiment_id)
    pk = await conn.scalar(insert(x).values(**row).returning(x.c.id))
    assert pk is not None
    return int(pk)


async def _backfilled_before(
    conn: AsyncConnection, experiment_pk: int, at: datetime
) -> StoredSnapshot | None:
    """The newest backfilled snapshot computed at or before `at`: what the detector compares
    with, and what an unchanged snapshot repeats."""
    s = schema.snapshots
    row = (
        (
            await conn.execute(
                select(s)
                .where(s.c.experiment_pk == experiment_pk, s.c.backfilled, s.c.fetched_at <= at)
                .order_by(s.c.fetched_at.desc(), s.c.id.desc())
                .limit(1)
            )
        )
        .mappings()
        .first()
    )
    return rows.stored_snapshot(row) if row is not None else None
