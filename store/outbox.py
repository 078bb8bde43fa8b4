"""The alert outbox: one row per (event, target), from routing to confirmed delivery.

The alert router tails the event log and, in ONE transaction, adds a row per target an
event goes to and moves its cursor past the event, so a crash neither loses an alert nor
routes one twice (the (event, target) pair is unique). A sender claims due rows (status
`sending`), sends, and marks them `delivered` only after the target confirmed. A row found
still `sending` when claimed again was interrupted between send and confirmation: it is
sent again, flagged as a possible duplicate, so a crash costs at most one duplicate per
event and target. Rows that fail are retried until their age runs out, then `failed`.
Rows the rules hold back (rate limits) are kept as `suppressed`, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import Row

from . import rows, schema
from .database import Database
from .records import Event
from .state import save_cursor


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    """Waiting for its due time (now, a retry, the end of a digest window or quiet hours)."""
    SENDING = "sending"
    """Claimed by a sender; still so after a crash between send and confirmation."""
    DELIVERED = "delivered"
    FAILED = "failed"
    """Retries ran out; an `alert_delivery_failed` event says so."""
    SUPPRESSED = "suppressed"
    """Held back by a rule (rate limit); `reason` says which."""


@dataclass(frozen=True)
class NewDelivery:
    """A routing decision: send `event_id` to `target` at `due_at` (or record it suppressed)."""

    event_id: int
    target: str
    experiment_id: str | None
    level: str
    due_at: datetime
    batched: bool = False
    """Sent together with the target's other due batched rows, as one digest."""
    suppressed_reason: str | None = None


@dataclass(frozen=True)
class Delivery:
    """One outbox row."""

    id: int
    event_id: int
    target: str
    experiment_id: str | None
    level: str
    status: DeliveryStatus
    batched: bool
    attempts: int
    reason: str | None
    created_at: datetime
    due_at: datetime
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    possible_duplicate: bool = False
    """Set on a claimed row whose previous attempt was cut off before it was confirmed."""


@dataclass(frozen=True)
class TargetSummary:
    """The outbox of one target, as `expwatch status` and the MCP status show it."""

    target: str
    counts: dict[str, int]
    oldest_pending_at: datetime | None
    last_delivered_at: datetime | None
    last_error: str | None


def _delivery(row: Row[Any], *, possible_duplicate: bool = False) -> Delivery:
    r = row._mapping
    return Delivery(
        id=r["id"],
        event_id=r["event_id"],
        target=r["target"],
        experiment_id=r["experiment_id"],
        level=r["level"],
        status=DeliveryStatus(r["status"]),
        batched=bool(r["batched"]),
        attempts=r["attempts"],
        reason=r["reason"],
        created_at=r["created_at"],
        due_at=r["due_at"],
        last_attempt_at=r["last_attempt_at"],
        delivered_at=r["delivered_at"],
        possible_duplicate=possible_duplicate,
    )


_WAITING = (DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value)
"""Rows still to be sent: new, failed and waiting for a retry, or cut off mid-send."""


def _reason(text: str | None) -> str | None:
    return text[:1000] if text else None


class Outbox:
    """The outbox table; every method is one short transaction."""

    def __init__(
        self,
        database: Database,
        *,
        clock: Callable[[], datetime],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._database = database
        self._clock = clock
        self._on_change = on_change

    def now(self) -> datetime:
        """The store's clock: routing, due times and ages are all measured on it."""
        return self._clock()

    async def events(self, ids: Sequence[int]) -> dict[int, Event]:
        """The events the rows `ids` carry, by event id."""
        e = schema.events
        async with self._database.read() as conn:
            result = await conn.execute(select(e).where(e.c.id.in_(set(ids))))
            return {r.id: rows.event_from_row(r._mapping) for r in result}

    async def route(self, deliveries: Sequence[NewDelivery], *, cursor: str, position: int) -> int:
        """Add `deliveries` and move `cursor` to `position`, together. A pair already routed
        is left as it was. Returns how many rows were added."""
        t = schema.alert_outbox
        now = self._clock()
        added = 0
        async with self._database.write() as conn:
            if deliveries:
                # A target in backoff (rows that failed, waiting for their retry) gets its
                # new rows at that retry too: one attempt per backoff step, however many
                # events arrive meanwhile.
                retry_at = {
                    r.target: r.due_at
                    for r in await conn.execute(
                        select(t.c.target, func.max(t.c.due_at).label("due_at"))
                        .where(
                            t.c.target.in_({d.target for d in deliveries}),
                            t.c.status.in_(_WAITING),
                            t.c.attempts > 0,
                        )
                        .group_by(t.c.target)
                    )
                }
                existing = {
                    (r.event_id, r.target)
                    for r in await conn.execute(
                        select(t.c.event_id, t.c.target).where(
                            t.c.event_id.in_({d.event_id for d in deliveries})
                        )
                    )
                }
                values = [
                    {
                        "event_id": d.event_id,
                        "target": d.target,
                        "experiment_id": d.experiment_id,
                        "level": d.level,
                        "status": (
                            DeliveryStatus.SUPPRESSED
                            if d.suppressed_reason
                            else DeliveryStatus.PENDING
                        ).value,
                        "batched": d.batched,
                        "attempts": 0,
                        "reason": _reason(d.suppressed_reason),
                        "created_at": now,
                        "due_at": max(d.due_at, retry_at.get(d.target, d.due_at)),
                    }
                    for d in deliveries
                    if (d.event_id, d.target) not in existing
                ]
                if values:
                    await conn.execute(insert(t), values)
                added = len(values)
            await save_cursor(conn, cursor, position, now)
        return added

    async def due(self, target: str, *, limit: int = 100) -> list[Delivery]:
        """Rows of `target` that should be (re)sent now, oldest event first."""
        t = schema.alert_outbox
        query = (
            select(t)
            .where(
                t.c.target == target,
                t.c.status.in_(_WAITING),
                t.c.due_at <= self._clock(),
            )
            .order_by(t.c.event_id)
            .limit(limit)
        )
        async with self._database.read() as conn:
            return [_delivery(r) for r in await conn.execute(query)]

    async def next_due_at(self, target: str) -> datetime | None:
        """When the next row of `target` falls due (None: nothing is waiting)."""
        t = schema.alert_outbox
        query = select(func.min(t.c.due_at)).where(
            t.c.target == target,
            t.c.status.in_(_WAITING),
        )
        async with self._database.read() as conn:
            value = await conn.scalar(query)
        return value if isinstance(value, datetime) else None

    async def claim(self, ids: Sequence[int]) -> list[Delivery]:
        """Mark rows `sending` before their send, counting the attempt. A row that was
        already `sending` comes back flagged as a possible duplicate."""
        t = schema.alert_outbox
        now = self._clock()
        async with self._database.write() as conn:
            before = [_delivery(r) for r in await conn.execute(select(t).where(t.c.id.in_(ids)))]
            await conn.execute(
                update(t)
                .where(t.c.id.in_(ids))
                .values(
                    status=DeliveryStatus.SENDING.value,
                    attempts=t.c.attempts + 1,
                    last_attempt_at=now,
                )
            )
        return sorted(
            (
                replace(
                    d,
                    status=DeliveryStatus.SENDING,
                    attempts=d.attempts + 1,
                    last_attempt_at=now,
                    possible_duplicate=d.status is DeliveryStatus.SENDING,
                )
                for d in before
            ),
            key=lambda d: d.event_id,
        )

    async def delivered(self, ids: Sequence[int]) -> None:
        """The target confirmed these rows."""
        t = schema.alert_outbox
        async with self._database.write() as conn:
            await conn.execute(
                update(t)
                .where(t.c.id.in_(ids))
                .values(
                    status=DeliveryStatus.DELIVERED.value, delivered_at=self._clock(), reason=None
                )
            )

    async def retry(
        self, ids: Sequence[int], *, error: str, at: datetime, outcome_unknown: bool = False
    ) -> None:
        """An attempt failed: try again at `at`. With `outcome_unknown` (the target did not
        answer in time) the rows stay `sending`, so the next attempt is flagged as a
        possible duplicate."""
        t = schema.alert_outbox
        status = DeliveryStatus.SENDING if outcome_unknown else DeliveryStatus.PENDING
        async with self._database.write() as conn:
            await conn.execute(
                update(t)
                .where(t.c.id.in_(ids))
                .values(status=status.value, due_at=at, reason=_reason(error))
            )

    async def postpone(self, target: str, *, at: datetime) -> None:
        """Move every waiting row of `target` due before `at` to `at`, without counting an
        attempt: the target is failing, and its next attempt is at `at`. Rows due later (a
        digest window, quiet hours) keep their time."""
        t = schema.alert_outbox
        async with self._database.write() as conn:
            await conn.execute(
                update(t)
                .where(t.c.target == target, t.c.status.in_(_WAITING), t.c.due_at < at)
                .values(due_at=at)
            )

    async def give_up(
        self, ids: Sequence[int], *, error: str, events: Sequence[Event] = ()
    ) -> list[Event]:
        """Retries ran out: mark the rows failed and append `events` (which say so) in the
        same transaction."""
        t = schema.alert_outbox
        now = self._clock()
        async with self._database.write() as conn:
            await conn.execute(
                update(t)
                .where(t.c.id.in_(ids))
                .values(status=DeliveryStatus.FAILED.value, reason=_reason(error))
            )
            stored = await rows.insert_events(conn, events, now)
        if stored:
            self._on_change()
        return stored

    async def count_since(
        self, target: str, since: datetime, *, experiment_id: str | None = None
    ) -> int:
        """Rows routed to `target` since `since` that were not suppressed (rate limits)."""
        t = schema.alert_outbox
        query = select(func.count()).where(
            t.c.target == target,
            t.c.created_at >= since,
            t.c.status != DeliveryStatus.SUPPRESSED.value,
        )
        if experiment_id is not None:
            query = query.where(t.c.experiment_id == experiment_id)
        async with self._database.read() as conn:
            return int(await conn.scalar(query) or 0)

    async def deliveries(
        self,
        *,
        target: str | None = None,
        status: DeliveryStatus | None = None,
        event_id: int | None = None,
        limit: int = 1000,
    ) -> list[Delivery]:
        """Outbox rows, oldest first, filtered."""
        t = schema.alert_outbox
        query = select(t).order_by(t.c.id).limit(limit)
        if target is not None:
            query = query.where(t.c.target == target)
        if status is not None:
            query = query.where(t.c.status == status.value)
        if event_id is not None:
            query = query.where(t.c.event_id == event_id)
        async with self._database.read() as conn:
            return [_delivery(r) for r in await conn.execute(query)]

    async def summary(self) -> list[TargetSummary]:
        """Per target: rows by status, the oldest waiting row, the last confirmed delivery
        and the last error seen."""
        t = schema.alert_outbox
        async with self._database.read() as conn:
            counts = await conn.execute(
                select(t.c.target, t.c.status, func.count()).group_by(t.c.target, t.c.status)
            )
            times = await conn.execute(
                select(
                    t.c.target,
                    func.min(t.c.created_at).filter(t.c.status.in_(_WAITING)),
                    func.max(t.c.delivered_at),
                ).group_by(t.c.target)
            )
            last_errors = await conn.execute(
                select(t.c.target, t.c.reason).where(
                    t.c.id.in_(
                        select(func.max(t.c.id))
                        .where(
                            or_(
                                t.c.status == DeliveryStatus.FAILED.value,
                                and_(t.c.status.in_(_WAITING), t.c.attempts > 0),
                            )
                        )
                        .group_by(t.c.target)
                    )
                )
            )
            by_target: dict[str, dict[str, int]] = {}
            for target, status, count in counts:
                by_target.setdefault(target, {})[status] = int(count)
            # min/max keep the column's type: aware UTC datetimes on every dialect.
            time_rows = {target: (oldest, last) for target, oldest, last in times}
            error_rows = {r[0]: r[1] for r in last_errors}
        return [
            TargetSummary(
                target=name,
                counts={s.value: by_target[name].get(s.value, 0) for s in DeliveryStatus},
                oldest_pending_at=time_rows[name][0],
                last_delivered_at=time_rows[name][1],
                last_error=error_rows.get(name),
            )
            for name in sorted(by_target)
        ]
