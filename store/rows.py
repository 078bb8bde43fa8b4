"""Row-level helpers of the store: reading and writing records inside a connection.

The write helpers take whole sets (a page of polls is a few statements, not a few per
experiment) and are built once at import, so SQLAlchemy compiles each statement once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from . import schema
from .records import Event, Experiment, Snapshot, StoredSnapshot

CHUNK = 500
"""Ids per `IN (...)` list: far below the bound-parameter limits of SQLite and PostgreSQL."""


async def experiment_row(
    conn: AsyncConnection, source: str | None, experiment_id: str
) -> RowMapping | None:
    x = schema.experiments
    query = select(x).where(x.c.experiment_id == experiment_id)
    if source is not None:
        query = query.where(x.c.source == source)
    result = await conn.execute(query.order_by(x.c.id).limit(1))
    return result.mappings().first()


@dataclass(frozen=True, slots=True)
class KnownExperiment:
    """An experiment's row as a poll finds it: its key, last record and newest snapshot."""

    pk: int
    record: dict[str, Any]
    latest_snapshot_id: int | None
    latest_hash: str | None
    is_live: bool = True
    """The live watcher has checked it (or it has live results); False for a row only a
    backfill has written, whose first live poll is then a first sighting."""


_x, _s = schema.experiments, schema.snapshots
_KNOWN = (
    select(
        _x.c.id,
        _x.c.experiment_id,
        _x.c.record,
        _x.c.latest_snapshot_id,
        _s.c.content_hash,
        _x.c.last_checked_at,
    )
    .select_from(_x.outerjoin(_s, _s.c.id == _x.c.latest_snapshot_id))
    .where(
        _x.c.source == bindparam("source"), _x.c.experiment_id.in_(bindparam("ids", expanding=True))
    )
)
_SNAPSHOTS = select(_s).where(_s.c.id.in_(bindparam("ids", expanding=True)))
_INSERT_EXPERIMENTS = insert(_x).returning(_x.c.id, _x.c.source, _x.c.experiment_id)
_INSERT_SNAPSHOTS = insert(_s).returning(_s.c.id, _s.c.experiment_pk)
_INSERT_METRIC_RESULTS = insert(schema.metric_results)
_UPDATE_EXPERIMENTS = (
    update(_x)
    .where(_x.c.id == bindparam("pk"))
    .values(
        name=bindparam("new_name"),
        status=bindparam("new_status"),
        record=bindparam("new_record", type_=_x.c.record.type),
        upstream_updated_at=bindparam(
            "new_upstream_updated_at", type_=_x.c.upstream_updated_at.type
        ),
        last_checked_at=bindparam("new_last_checked_at", type_=_x.c.last_checked_at.type),
        latest_snapshot_id=bindparam("new_latest_snapshot_id"),
    )
)
_SET_LATEST_SNAPSHOTS = (
    update(_x)
    .where(_x.c.id == bindparam("pk"))
    .values(latest_snapshot_id=bindparam("new_latest_snapshot_id"))
)
# Ordered RETURNING: event ids follow the order of the log (SQLite runs these row by row).
_INSERT_EVENTS = insert(schema.events).returning(schema.events.c.id, sort_by_parameter_order=True)


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


async def known_experiments(
    conn: AsyncConnection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], KnownExperiment]:
    """The rows of the experiments of `keys` ((source, experiment id)) the store has, each
    with its newest snapshot's content hash, by key."""
    by_source: dict[str, list[str]] = {}
    for source, experiment_id in keys:
        by_source.setdefault(source, []).append(experiment_id)
    known = {}
    for source, experiment_ids in by_source.items():
        for chunk in _chunks(experiment_ids):
            result = await conn.execute(_KNOWN, {"source": source, "ids": list(chunk)})
            for pk, experiment_id, record, latest_id, digest, checked_at in result:
                known[(source, experiment_id)] = KnownExperiment(
                    pk=pk,
                    record=record,
                    latest_snapshot_id=latest_id,
                    latest_hash=digest,
                    is_live=checked_at is not None or latest_id is not None,
                )
    return known


async def snapshot_records(
    conn: AsyncConnection, snapshot_ids: Sequence[int]
) -> dict[int, StoredSnapshot]:
    """The snapshots of `snapshot_ids`, by id."""
    found = {}
    for chunk in _chunks(sorted(set(snapshot_ids))):
        result = await conn.execute(_SNAPSHOTS, {"ids": list(chunk)})
        for row in result.mappings():
            found[row["id"]] = stored_snapshot(row)
    return found


async def insert_experiments(
    conn: AsyncConnection, experiments: Sequence[tuple[Experiment, dict[str, Any]]], now: datetime
) -> dict[tuple[str, str], int]:
    """Insert experiments seen for the first time (each with its record as JSON), checked
    `now`; their ids, by key."""
    if not experiments:
        return {}
    result = await conn.execute(
        _INSERT_EXPERIMENTS,
        [
            {
                "source": experiment.source,
                "experiment_id": experiment.experiment_id,
                "name": experiment.name,
                "status": experiment.status,
                "record": record,
                "upstream_updated_at": experiment.upstream_updated_at,
                "first_seen_at": now,
                "last_checked_at": now,
            }
            for experiment, record in experiments
        ],
    )
    # Correlated by key, not by position: SQLite does not promise RETURNING's row order.
    return {(source, experiment_id): int(pk) for pk, source, experiment_id in result}


async def insert_snapshots(
    conn: AsyncConnection,
    snapshots: Sequence[tuple[int, Snapshot, str]],
    now: datetime,
    *,
    backfilled: bool = False,
) -> dict[int, int]:
    """Insert snapshots ((experiment pk, snapshot, content hash), at most one per experiment)
    and their metric rows, fetched `now`; the new snapshot ids, by experiment pk. Backfilled
    history passes the time the platform computed it as `now`."""
    if not snapshots:
        return {}
    result = await conn.execute(
        _INSERT_SNAPSHOTS,
        [
            {
                "experiment_pk": experiment_pk,
                "content_hash": digest,
                "fetched_at": now,
                "upstream_updated_at": snapshot.upstream_updated_at,
                "phase": snapshot.phase,
                "record": snapshot.model_dump(mode="json"),
                "backfilled": backfilled,
            }
            for experiment_pk, snapshot, digest in snapshots
        ],
    )
    # Correlated by experiment, not by position: SQLite does not promise RETURNING's order.
    snapshot_ids = {int(experiment_pk): int(pk) for pk, experiment_pk in result}
    rows: list[dict[str, Any]] = [
        {
            "snapshot_id": snapshot_ids[experiment_pk],
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
            "backfilled": backfilled,
        }
        for experiment_pk, snapshot, _ in snapshots
        for metric in snapshot.metrics
        for v in metric.variations
    ]
    if rows:
        await conn.execute(_INSERT_METRIC_RESULTS, rows)
    return snapshot_ids


async def update_experiments(
    conn: AsyncConnection,
    updates: Sequence[tuple[int, Experiment, dict[str, Any], int | None]],
    now: datetime,
) -> None:
    """Store what each poll saw ((experiment pk, experiment, its record as JSON, latest
    snapshot id)) and when it was checked."""
    if not updates:
        return
    await conn.execute(
        _UPDATE_EXPERIMENTS,
        [
            {
                "pk": experiment_pk,
                "new_name": experiment.name,
                "new_status": experiment.status,
                "new_record": record,
                "new_upstream_updated_at": experiment.upstream_updated_at,
                "new_last_checked_at": now,
                "new_latest_snapshot_id": snapshot_id,
            }
            for experiment_pk, experiment, record, snapshot_id in updates
        ],
    )


async def set_latest_snapshots(conn: AsyncConnection, latest: Mapping[int, int]) -> None:
    """Point experiments (by pk) at their newest snapshot (by id)."""
    if latest:
        await conn.execute(
            _SET_LATEST_SNAPSHOTS,
            [
                {"pk": pk, "new_latest_snapshot_id": snapshot_id}
                for pk, snapshot_id in latest.items()
            ],
        )


async def snapshot_record(conn: AsyncConnection, snapshot_id: int | None) -> StoredSnapshot | None:
    if snapshot_id is None:
        return None
    s = schema.snapshots
    row = (await conn.execute(select(s).where(s.c.id == snapshot_id))).mappings().one()
    return stored_snapshot(row)


def stored_snapshot(row: RowMapping) -> StoredSnapshot:
    return StoredSnapshot(
        id=row["id"],
        fetched_at=row["fetched_at"],
        last_checked_at=row["fetched_at"],
        content_hash=row["content_hash"],
        snapshot=Snapshot.model_validate(row["record"]),
        backfilled=bool(row["backfilled"]),
    )


async def insert_events(
    conn: AsyncConnection, events: Sequence[Event], now: datetime
) -> list[Event]:
    """Append `events` to the log in order; they come back with their ids."""
    if not events:
        return []
    values = []
    for event in events:
        row = event.model_dump(mode="json", exclude={"id", "recorded_at"})
        row["occurred_at"] = event.occurred_at
        row["recorded_at"] = now
        values.append(row)
    result = await conn.execute(_INSERT_EVENTS, values)
    ids = [int(event_id) for event_id in result.scalars()]
    return [
        event.model_copy(update={"id": event_id, "recorded_at": now})
        for event, event_id in zip(events, ids, strict=True)
    ]


def event_from_row(row: RowMapping) -> Event:
    return Event.model_validate(dict(row))
