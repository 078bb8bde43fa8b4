"""The change feed: what was committed since a cursor, for consumers that re-read views.

Three append-or-touch records say that something a reader shows has changed: the event log
(any event), the snapshots table (new results, with or without an event) and the sources
table (a source's saved status, after each cycle and each breaker transition). A
`ChangeCursor` holds a position in each; `changes_after` reads what lies beyond it.
Works across processes: everything is read from the database.

Backfilled history (`store.backfill`) is not news: its snapshots and events change only an
experiment's history, so they are reported apart, in `Changes.history`.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from . import rows, schema
from .records import Event, _Record


class ChangeCursor(_Record):
    """A position in the change feed: the last event id and snapshot id seen, and the
    newest source update time seen."""

    events: int = 0
    snapshots: int = 0
    sources_updated_at: datetime | None = None


class Changes(_Record):
    """What changed after a cursor, and the cursor that follows it."""

    cursor: ChangeCursor
    events: tuple[Event, ...] = ()
    metrics: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    """Experiments with new snapshots or events, each with the metric ids that changed."""
    history: tuple[str, ...] = ()
    """Experiments whose backfilled history grew (and nothing else about them changed)."""
    sources_changed: bool = False

    @property
    def is_empty(self) -> bool:
        return (
            not self.events and not self.metrics and not self.history and not self.sources_changed
        )


async def feed_end(conn: AsyncConnection) -> ChangeCursor:
    """The cursor after everything committed so far."""
    return ChangeCursor(
        events=int(await conn.scalar(select(func.max(schema.events.c.id))) or 0),
        snapshots=int(await conn.scalar(select(func.max(schema.snapshots.c.id))) or 0),
        sources_updated_at=await conn.scalar(select(func.max(schema.sources.c.updated_at))),
    )


async def changes_after(conn: AsyncConnection, cursor: ChangeCursor, *, limit: int) -> Changes:
    """Up to `limit` events and `limit` new snapshots after `cursor`, oldest first."""
    e, s, x, m = schema.events, schema.snapshots, schema.experiments, schema.metric_results
    events = [
        rows.event_from_row(r._mapping)
        for r in await conn.execute(
            select(e).where(e.c.id > cursor.events).order_by(e.c.id).limit(limit)
        )
    ]
    snapshots = list(
        await conn.execute(
            select(s.c.id, x.c.experiment_id, s.c.backfilled)
            .join(x, x.c.id == s.c.experiment_pk)
            .where(s.c.id > cursor.snapshots)
            .order_by(s.c.id)
            .limit(limit)
        )
    )
    # A new snapshot or an event changes its experiment's views, and its metrics' views.
    metrics: dict[str, set[str]] = {}
    history: set[str] = set()
    for event in events:
        if event.experiment_id is not None and event.backfilled:
            history.add(event.experiment_id)
        elif event.experiment_id is not None:
            touched = metrics.setdefault(event.experiment_id, set())
            if event.metric_id:
                touched.add(event.metric_id)
    history.update(r.experiment_id for r in snapshots if r.backfilled)
    by_snapshot = {r.id: r.experiment_id for r in snapshots if not r.backfilled}
    for experiment_id in by_snapshot.values():
        metrics.setdefault(experiment_id, set())
    if by_snapshot:
        for snapshot_id, metric_id in await conn.execute(
            select(m.c.snapshot_id, m.c.metric_id)
            .where(m.c.snapshot_id.in_(list(by_snapshot)))
            .distinct()
        ):
            metrics[by_snapshot[snapshot_id]].add(metric_id)
    sources_at = await conn.scalar(select(func.max(schema.sources.c.updated_at)))
    return Changes(
        cursor=ChangeCursor(
            events=events[-1].id if events and events[-1].id else cursor.events,
            snapshots=snapshots[-1].id if snapshots else cursor.snapshots,
            sources_updated_at=sources_at,
        ),
        events=tuple(events),
        metrics={k: tuple(sorted(v)) for k, v in metrics.items()},
        history=tuple(sorted(history - set(metrics))),
        sources_changed=sources_at != cursor.sources_updated_at,
    )
