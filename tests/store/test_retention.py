"""Retention keeps what history needs and nothing more."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from store import Event, EventKind, Experiment, MetricResult, Snapshot, Store, VariationResult
from store.retention import checkpoint, prune_snapshots
from store.schema import metric_results, snapshots

pytestmark = pytest.mark.anyio

START = datetime(2026, 4, 1, 0, 30, tzinfo=UTC)
EXPERIMENT = Experiment(source="gb", experiment_id="exp_r", name="R", status="running")


def snapshot(users: int) -> Snapshot:
    return Snapshot(
        source="gb",
        experiment_id="exp_r",
        metrics=(
            MetricResult(
                metric_id="conv",
                variations=(VariationResult(variation_id="v0", users=users),),
            ),
        ),
    )


async def test_pruning_keeps_event_snapshots_daily_bounds_and_the_latest(database_url: str) -> None:
    """Of four snapshots a day for three days, pruning before the last day keeps each day's
    first and last, the one an event points at, and all of the last day; pruning later takes
    the last day's middle ones too."""
    now = START

    def clock() -> datetime:
        return now

    store = await Store.open(database_url, clock=clock)
    try:
        kept_by_event = None
        users = 0
        for day in range(3):
            for poll in range(4):
                now = START + timedelta(days=day, hours=5 * poll)
                users += 1
                alert = day == 1 and poll == 1

                def detect(
                    alert: bool = alert, when: datetime = now, **_: object
                ) -> Sequence[Event]:
                    if not alert:
                        return ()
                    return [Event(kind=EventKind.SRM_DETECTED, source="gb", occurred_at=when)]

                outcome = await store.record_poll(EXPERIMENT, snapshot(users), detect=detect)
                if alert:
                    kept_by_event = outcome.snapshot_id
        assert await store.snapshot_count() == 12
        report = await prune_snapshots(store.database, older_than=START + timedelta(days=2))
        assert report.snapshots_deleted == 3  # day 0: 2 middle ones; day 1: 1 of 2 middle ones
        assert report.metric_rows_deleted == 3
        async with store.database.read() as conn:
            left = list(await conn.scalars(select(snapshots.c.id).order_by(snapshots.c.id)))
            orphans = await conn.scalar(
                select(func.count())
                .select_from(metric_results)
                .where(metric_results.c.snapshot_id.not_in(left))
            )
        assert left == [1, 4, 5, 6, 8, 9, 10, 11, 12] and kept_by_event == 6
        assert orphans == 0
        [event] = await store.events_after(0)
        assert event.snapshot_id == kept_by_event
        history = await store.metric_history("exp_r", "conv", "v0")
        assert [p.users for p in history] == [1, 4, 5, 6, 8, 9, 10, 11, 12]
        # The last day's middle snapshots go once they are old enough; pruning is idempotent.
        assert (await prune_snapshots(store.database, older_than=now)).snapshots_deleted == 2
        assert (await prune_snapshots(store.database, older_than=now)).snapshots_deleted == 0
        await checkpoint(store.database, vacuum=True)
        assert await store.snapshot_count() == 7
    finally:
        await store.aclose()
