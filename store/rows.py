"""Row-level helpers of the store: reading and writing records inside a connection.

The write helpers take whole sets (a page of polls is a few statements, not a few per
experiment) and are built once at import, so SQLAlchemy compiles each statement once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from . import schema
from .errors import PayloadError
from .records import ID_LENGTH, Event, Experiment, Snapshot, StoredSnapshot, clip

CHUNK = 500
"""Ids per `IN (...)` list: far below the bound-parameter limits of SQLite and PostgreSQL."""


def _bounds(table: Table) -> dict[str, int]:
    return {
        column.name: column.type.length
        for column in table.columns
        if isinstance(column.type, schema.SafeString) and column.type.length is not None
    }


_BOUNDS = {
    table.name: _bounds(table)
    for table in (schema.experiments, schema.snapshots, schema.metric_results, schema.events)
}
"""The bounded text columns of the tables a poll writes, by table: what PostgreSQL enforces."""


def check_fits(
    table: Table, row: Mapping[str, Any], *, source: str, experiment_id: str | None
) -> None:
    """A PayloadError when a value of `row` is longer than its column of `table`.

    PostgreSQL refuses such a write, and with it the whole transaction (to the watcher, a
    database outage that never ends), while SQLite keeps it: both refuse it here instead,
    before anything is written, as that experiment's error. Names and status words never
    get here too long (the records clip them); what does is an id, which must not be
    clipped."""
    for column, limit in _BOUNDS[table.name].items():
        value = row.get(column)
        if isinstance(value, str) and len(value) > limit:
            raise PayloadError(
                f"the {column.replace('_', ' ')} {clip(value, 60)!r} is {len(value)} "
                f"characters long, longer than the {limit} the store keeps: expwatch cannot "
                f"record this until the platform sends a shorter one",
                source=source,
                experiment_id=(
                    experiment_id
                    if experiment_id is not None and len(experiment_id) <= ID_LENGTH
                    else None
                ),
            )


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
    values = []
    for experiment, record in experiments:
        row = {
            "source": experiment.source,
            "experiment_id": experiment.experiment_id,
            "name": experiment.name,
            "status": experiment.status,
            "record": record,
            "upstream_updated_at": experiment.upstream_updated_at,
            "first_seen_at": now,
            "last_checked_at": now,
        }
        check_fits(
            schema.experiments,
            row,
            source=experiment.source,
            experiment_id=experiment.experiment_id,
        )
        values.append(row)
    result = await conn.execute(_INSERT_EXPERIMENTS, values)
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
    for _, snapshot, _ in snapshots:  # every row checked before the first is written
        where = {"source": snapshot.source, "experiment_id": snapshot.experiment_id}
        check_fits(schema.snapshots, {"phase": snapshot.phase}, **where)
        for metric in snapshot.metrics:
            for v in metric.variations:
                row = {"metric_id": metric.metric_id, "variation_id": v.variation_id}
                check_fits(schema.metric_results, row, **where)
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
        check_fits(schema.events, row, source=event.source, experiment_id=event.experiment_id)
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
