"""Backfilled history in the store: recorded at the platform's time, once per day, apart from
the live series, and listed before it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta

import pytest

from store import (
    ChangeCursor,
    Event,
    EventKind,
    Experiment,
    MetricResult,
    Snapshot,
    Store,
    VariationResult,
    Verdict,
)

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 3, 20, 9, 0, tzinfo=UTC)
DAY_1 = date(2026, 3, 2)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def experiment() -> Experiment:
    return Experiment(source="sg", experiment_id="exp_a", name="A", status="active")


def computed(day: date, hours: float = 0) -> datetime:
    """The end of `day` (when a Pulse day is complete), plus `hours`."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1, hours=hours)


def snapshot(users: float, verdict: Verdict, at: datetime | None) -> Snapshot:
    return Snapshot(
        source="sg",
        experiment_id="exp_a",
        upstream_updated_at=at,
        total_users=2 * users,
        metrics=(
            MetricResult(
                metric_id="conv",
                variations=(
                    VariationResult(
                        variation_id="v0", users=users, platform_verdict=Verdict.BASELINE
                    ),
                    VariationResult(variation_id="v1", users=users, platform_verdict=verdict),
                ),
            ),
        ),
    )


class Detector:
    """Significance transitions of conv / v1, at the snapshot's own time; remembers what
    it was shown."""

    def __init__(self) -> None:
        self.calls: list[tuple[Experiment | None, Snapshot | None, Snapshot | None]] = []

    def __call__(
        self,
        *,
        before: Experiment | None,
        after: Experiment,
        previous: Snapshot | None,
        current: Snapshot | None,
    ) -> Sequence[Event]:
        self.calls.append((before, previous, current))
        if current is None or current is previous:
            return []
        old = previous.metrics[0].variations[1].platform_verdict if previous else None
        new = current.metrics[0].variations[1].platform_verdict
        if old == new or (old is None and not new.is_significant):
            return []
        return [
            Event(
                kind=EventKind.SIGNIFICANCE_CHANGED,
                source="sg",
                experiment_id="exp_a",
                metric_id="conv",
                variation_id="v1",
                before=old,
                after=new,
                occurred_at=current.upstream_updated_at or NOW,
            )
        ]


@pytest.fixture
async def clocked_store(database_url: str) -> AsyncIterator[Store]:
    store = await Store.open(database_url, clock=Clock())
    yield store
    await store.aclose()


async def test_each_day_is_recorded_once_at_the_time_the_platform_computed_it(
    clocked_store: Store,
) -> None:
    """A day's snapshot is kept at its computed time and flagged; a day already done writes
    nothing; an unchanged snapshot on the next day is deduplicated, the day still done."""
    store, detect = clocked_store, Detector()
    first = await store.record_backfill(
        experiment(), DAY_1, [snapshot(100, Verdict.INCONCLUSIVE, computed(DAY_1))], detect=detect
    )
    again = await store.record_backfill(
        experiment(), DAY_1, [snapshot(999, Verdict.WON, computed(DAY_1))], detect=detect
    )
    day_2 = DAY_1 + timedelta(days=1)
    same = await store.record_backfill(
        experiment(),
        day_2,
        [snapshot(100, Verdict.INCONCLUSIVE, computed(DAY_1))],
        detect=detect,
    )
    assert (first.snapshots, again.already_done, same.snapshots) == (1, True, 0)
    assert await store.backfill_days("sg", "exp_a") == {DAY_1, day_2}
    stored = await store.latest_snapshot("exp_a")
    assert stored is not None and stored.backfilled and stored.fetched_at == computed(DAY_1)
    assert stored.snapshot.metrics[0].variations[1].users == 100
    assert await store.snapshot_count("exp_a") == 1


async def test_history_before_the_first_live_snapshot_is_kept_and_the_live_series_untouched(
    clocked_store: Store,
) -> None:
    """With a live snapshot computed on day 5, a backfill keeps only what was computed
    before it, chains its detector on backfilled snapshots only, leaves the experiment's
    latest snapshot alone, and history lists the backfilled points first, in time order."""
    store, detect = clocked_store, Detector()
    live_at = computed(DAY_1 + timedelta(days=4), hours=6)
    live = await store.record_poll(experiment(), snapshot(900, Verdict.WON, live_at), detect=detect)
    assert await store.live_since("sg", "exp_a") == live_at
    days = [DAY_1 + timedelta(days=i) for i in range(6)]
    story = [Verdict.INCONCLUSIVE, Verdict.WON, Verdict.WON, Verdict.INCONCLUSIVE]
    for i, verdict in enumerate(story):
        await store.record_backfill(
            experiment(),
            days[i],
            [snapshot(100 * (i + 1), verdict, computed(days[i]))],
            detect=detect,
        )
    late = await store.record_backfill(
        experiment(),
        days[4],
        [
            snapshot(500, Verdict.WON, computed(days[4], hours=-1)),
            snapshot(600, Verdict.WON, live_at),  # the live one: left to the live series
        ],
        detect=detect,
    )
    assert late.snapshots == 1
    latest = await store.latest_snapshot("exp_a")
    assert latest is not None and latest.id == live.snapshot_id and not latest.backfilled
    users = [p.users for p in await store.metric_history("exp_a", "conv", "v1")]
    assert users == [100, 200, 300, 400, 500, 900]
    points = await store.metric_history("exp_a", "conv", "v1")
    assert [p.backfilled for p in points] == [True] * 5 + [False]
    series = await store.snapshot_history("exp_a", limit=3)
    assert [s.snapshot.total_users for s in series] == [800, 1000, 1800]
    changes = await store.significance_changes("exp_a")
    assert [(c.after, c.backfilled) for c in changes] == [
        ("won", True),
        ("inconclusive", True),
        ("won", True),
        ("won", False),
    ]
    assert [c.occurred_at for c in changes[:3]] == [
        computed(days[1]),
        computed(days[3]),
        computed(days[4], hours=-1),
    ]
    backfilled_calls = detect.calls[1:]
    assert all(before is None for before, _, _ in backfilled_calls)
    assert all(previous is None or previous.total_users < 1800 for _, previous, _ in detect.calls)


async def test_an_experiment_only_a_backfill_wrote_is_new_to_the_watcher(
    clocked_store: Store,
) -> None:
    """A backfill inserts the experiment unchecked: the watcher's state leaves it out, its
    newest backfilled snapshot stands for its results until the first live poll, and that
    poll is a first sighting (no `before`), recorded as the live series' start."""
    store, detect = clocked_store, Detector()
    await store.record_backfill(
        experiment(), DAY_1, [snapshot(100, Verdict.WON, computed(DAY_1))], detect=detect
    )
    assert await store.watch_states("sg") == {}
    _, shown = await store.current("exp_a")
    assert shown is not None and shown.backfilled
    await store.record_poll(experiment(), snapshot(200, Verdict.WON, NOW), detect=detect)
    before, previous, _ = detect.calls[-1]
    assert before is None and previous is None
    assert set(await store.watch_states("sg")) == {"exp_a"}
    _, shown = await store.current("exp_a")
    assert shown is not None and not shown.backfilled


async def test_the_change_feed_reports_backfilled_history_apart_from_news(
    clocked_store: Store,
) -> None:
    """Backfilled snapshots and events land in `Changes.history`, never in the experiments
    whose results changed, and their events carry the backfilled flag."""
    store, detect = clocked_store, Detector()
    cursor: ChangeCursor = await store.change_cursor()
    await store.record_backfill(
        experiment(), DAY_1, [snapshot(100, Verdict.WON, computed(DAY_1))], detect=detect
    )
    changes = await store.changes_after(cursor)
    assert changes.history == ("exp_a",) and changes.metrics == {}
    assert [e.backfilled for e in changes.events] == [True]
    await store.record_poll(experiment(), snapshot(200, Verdict.WON, NOW), detect=detect)
    later = await store.changes_after(changes.cursor)
    assert later.history == () and set(later.metrics) == {"exp_a"}
