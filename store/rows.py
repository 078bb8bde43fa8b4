"""Row-level helpers of the store: reading and writing single records inside a connection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from . import schema
from .records import Event, Experiment, Snapshot, StoredSnapshot


async def experiment_row(
    conn: AsyncConnection, source: str | None, experiment_id: str
) -> RowMapping | None:
    x = schema.experiments
    query = select(x).where(x.c.experiment_id == experiment_id)
    if source is not None:
        query = query.where(x.c.source == source)
    result = await conn.execute(query.order_by(x.c.id).limit(1))
    return result.mappings().first()


async def insert_experiment(conn: AsyncConnection, experiment: Experiment, now: datetime) -> int:
    result = await conn.execute(
        insert(schema.experiments)
        .values(
            source=experiment.source,
            experiment_id=experiment.experiment_id,
            name=experiment.name,
            status=experiment.status,
            record=experiment.model_dump(mode="json"),
            upstream_updated_at=experiment.upstream_updated_at,
            first_seen_at=now,
        )
        .returning(schema.experiments.c.id)
    )
    return int(result.scalar_one())


async def snapshot_hash(conn: AsyncConnection, snapshot_id: int | None) -> str | None:
    if snapshot_id is None:
        return None
    s = schema.snapshots
    digest = await conn.scalar(select(s.c.content_hash).where(s.c.id == snapshot_id))
    return None if digest is None else str(digest)


async def snapshot_record(conn: AsyncConnection, snapshot_id: int | None) -> StoredSnapshot | None:
    if snapshot_id is None:
        return None
    s = schema.snapshots
    row = (await conn.execute(select(s).where(s.c.id == snapshot_id))).mappings().one()
    return StoredSnapshot(
        id=row["id"],
        fetched_at=row["fetched_at"],
        last_checked_at=row["fetched_at"],
        content_hash=row["content_hash"],
        snapshot=Snapshot.model_validate(row["record"]),
    )


async def insert_snapshot(
    conn: AsyncConnection, experiment_pk: int, snapshot: Snapshot, digest: str, now: datetime
) -> int:
    result = await conn.execute(
        insert(schema.snapshots)
        .values(
            experiment_pk=experiment_pk,
            content_hash=digest,
            fetched_at=now,
            upstream_updated_at=snapshot.upstream_updated_at,
            phase=snapshot.phase,
            record=snapshot.model_dump(mode="json"),
        )
        .returning(schema.snapshots.c.id)
    )
    snapshot_id = int(result.scalar_one())
    rows: list[dict[str, Any]] = [
        {
            "snapshot_id": snapshot_id,
            "experiment_pk": experiment_pk,
            "metric_id": metric.metric_id,
            "variation_id": v.variation_id,
            "fetched_at": now,
            "upstream_updated_at": snapshot.upstream_updated_at,
            "users": v.users,
            "mean": v.mean,
            "relative_change": v.relative_change,
            "ci_low": v.ci_low,
            "ci_high": v.ci_high,
            "p_value": v.p_value,
            "chance_to_win": v.chance_to_win,
            "platform_verdict": v.platform_verdict.value,
            "our_verdict": v.ours.verdict.value if v.ours and v.ours.verdict else None,
            "our_p_value": v.ours.running_p_value if v.ours else None,
            "absolute_change": v.ours.absolute_change if v.ours else None,
            "absolute_ci_low": v.ours.absolute_ci_low if v.ours else None,
            "absolute_ci_high": v.ours.absolute_ci_high if v.ours else None,
        }
        for metric in snapshot.metrics
        for v in metric.variations
    ]
    if rows:
        await conn.execute(insert(schema.metric_results), rows)
    return snapshot_id


async def insert_events(
    conn: AsyncConnection, events: Sequence[Event], now: datetime
) -> list[Event]:
    stored = []
    for event in events:
        values = event.model_dump(mode="json", exclude={"id", "recorded_at"})
        values["occurred_at"] = event.occurred_at
        values["recorded_at"] = now
        result = await conn.execute(
            insert(schema.events).values(**values).returning(schema.events.c.id)
        )
        stored.append(event.model_copy(update={"id": int(result.scalar_one()), "recorded_at": now}))
    return stored


def event_from_row(row: RowMapping) -> Event:
    return Event.model_validate(dict(row))
