"""Retention: prune old snapshots without losing what history queries and events need."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, text, union

from . import schema
from .database import Database

BATCH = 500


@dataclass(frozen=True)
class PruneReport:
    snapshots_deleted: int
    metric_rows_deleted: int


def _day(column: Any, *, is_sqlite: bool) -> Any:
    if is_sqlite:
        return func.date(column)
    return func.date_trunc("day", func.timezone("UTC", column))


async def prune_snapshots(database: Database, *, older_than: datetime) -> PruneReport:
    """Delete snapshots fetched before `older_than` (and their metric rows), keeping every
    snapshot an event refers to, each experiment's latest, and the first and last snapshot
    of every day. Works in small transactions so the watcher is never held up for long."""
    s, e, x, m = schema.snapshots, schema.events, schema.experiments, schema.metric_results
    day = _day(s.c.fetched_at, is_sqlite=database.is_sqlite)
    keep = union(
        select(e.c.snapshot_id).where(e.c.snapshot_id.is_not(None)),
        select(x.c.latest_snapshot_id).where(x.c.latest_snapshot_id.is_not(None)),
        select(func.min(s.c.id)).group_by(s.c.experiment_pk, day),
        select(func.max(s.c.id)).group_by(s.c.experiment_pk, day),
    ).subquery()
    doomed = (
        select(s.c.id)
        .where(s.c.fetched_at < older_than, s.c.id.not_in(select(keep.c[0])))
        .order_by(s.c.id)
        .limit(BATCH)
    )
    snapshots_deleted = metric_rows_deleted = 0
    while True:
        async with database.write() as conn:
            ids = list(await conn.scalars(doomed))
            if not ids:
                break
            result = await conn.execute(delete(m).where(m.c.snapshot_id.in_(ids)))
            metric_rows_deleted += result.rowcount
            result = await conn.execute(delete(s).where(s.c.id.in_(ids)))
            snapshots_deleted += result.rowcount
    if database.is_sqlite and snapshots_deleted:
        await checkpoint(database)
    return PruneReport(snapshots_deleted=snapshots_deleted, metric_rows_deleted=metric_rows_deleted)


async def checkpoint(database: Database, *, vacuum: bool = False) -> None:
    """Fold the SQLite write-ahead log back into the database file (and, with `vacuum`,
    give freed pages back to the file system; that rewrites the file and blocks writers)."""
    if not database.is_sqlite:
        return
    async with database.autocommit() as conn:
        if vacuum:
            await conn.execute(text("VACUUM"))
        await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
