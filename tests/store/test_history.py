"""History queries: what changed when, and what expwatch knew at a given time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from store import (
    Event,
    EventKind,
    Experiment,
    MetricResult,
    Snapshot,
    Store,
    UnknownExperiment,
    VariationResult,
    Verdict,
)

pytestmark = pytest.mark.anyio

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = MONDAY

    def __call__(self) -> datetime:
        return self.now


def experiment(experiment_id: str = "exp_a") -> Experiment:
    return Experiment(
        source="gb", experiment_id=experiment_id, name=experiment_id, status="running"
    )


def snapshot(users: float, verdict: Verdict, srm: float, experiment_id: str = "exp_a") -> Snapshot:
    return Snapshot(
        source="gb",
        experiment_id=experiment_id,
        srm_p_value=srm,
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


def transitions(
    *, previous: Snapshot | None, current: Snapshot | None, **_: object
) -> Sequence[Event]:
    """A tiny detector: verdict and SRM transitions of metric conv / variation v1."""
    assert current is not None
    events = []
    old = previous.metrics[0].variations[1].platform_verdict if previous else None
    new = current.metrics[0].variations[1].platform_verdict
    if old != new and (old is not None or new.is_significant):
        events.append(
            Event(
                kind=EventKind.SIGNIFICANCE_CHANGED,
                source="gb",
                experiment_id=current.experiment_id,
                metric_id="conv",
                variation_id="v1",
                before=old,
                after=new,
                occurred_at=MONDAY,
            )
        )
    was = previous is not None and (previous.srm_p_value or 1) < 0.001
    now = (current.srm_p_value or 1) < 0.001
    if was != now:
        events.append(
            Event(
                kind=EventKind.SRM_DETECTED if now else EventKind.SRM_CLEARED,
                source="gb",
                experiment_id=current.experiment_id,
                after=current.srm_p_value,
                occurred_at=MONDAY,
            )
        )
    return events


async def record_story(store: Store, clock: Clock) -> None:
    """Day by day: inconclusive, won (SRM starts), won, inconclusive (SRM clears)."""
    story = [
        (100, Verdict.INCONCLUSIVE, 0.5),
        (200, Verdict.WON, 0.0001),
        (300, Verdict.WON, 0.0002),
        (400, Verdict.INCONCLUSIVE, 0.4),
    ]
    for users, verdict, srm in story:
        await store.record_poll(experiment(), snapshot(users, verdict, srm), detect=transitions)
        clock.now += timedelta(days=1)


@pytest.fixture
async def story(database_url: str) -> tuple[Store, Clock]:
    clock = Clock()
    store = await Store.open(database_url, clock=clock)
    await record_story(store, clock)
    return store, clock


async def test_when_a_metric_became_and_stopped_being_significant(
    story: tuple[Store, Clock],
) -> None:
    """The significance transitions of a metric, in order, each pointing at its snapshot."""
    store, _ = story
    try:
        changes = await store.significance_changes("exp_a", metric_id="conv")
        assert [(c.before, c.after) for c in changes] == [
            ("inconclusive", "won"),
            ("won", "inconclusive"),
        ]
        assert all(c.snapshot_id is not None for c in changes)
        assert await store.significance_changes("exp_a", metric_id="other") == []
    finally:
        await store.aclose()


async def test_when_srm_started_and_cleared(story: tuple[Store, Clock]) -> None:
    """SRM onset and clearance are answered from the event log."""
    store, _ = story
    try:
        kinds = [e.kind for e in await store.srm_changes("exp_a")]
        assert kinds == [EventKind.SRM_DETECTED, EventKind.SRM_CLEARED]
    finally:
        await store.aclose()


async def test_what_did_we_know_on_a_given_day(story: tuple[Store, Clock]) -> None:
    """The snapshot at a time is the newest one fetched at or before it."""
    store, _ = story
    try:
        assert await store.snapshot_at("exp_a", MONDAY - timedelta(seconds=1)) is None
        tuesday_evening = MONDAY + timedelta(days=1, hours=10)
        known = await store.snapshot_at("exp_a", tuesday_evening)
        assert known is not None and known.snapshot.metrics[0].variations[1].users == 200
        with pytest.raises(UnknownExperiment):
            await store.snapshot_at("exp_b", MONDAY)
    finally:
        await store.aclose()


async def test_experiments_changed_since_a_time(story: tuple[Store, Clock]) -> None:
    """Only experiments with a new snapshot since then are listed."""
    store, clock = story
    try:
        await store.record_poll(
            experiment("exp_b"), snapshot(5, Verdict.INCONCLUSIVE, 0.5, "exp_b"), detect=transitions
        )
        changed = await store.experiments_changed_since(clock.now)
        assert [e.experiment_id for e in changed] == ["exp_b"]
        everything = await store.experiments_changed_since(MONDAY)
        assert [e.experiment_id for e in everything] == ["exp_a", "exp_b"]
    finally:
        await store.aclose()


async def test_events_can_be_narrowed_by_kind_metric_and_time(story: tuple[Store, Clock]) -> None:
    """The event query filters combine."""
    store, _ = story
    try:
        srm = await store.events_after(0, kinds=[EventKind.SRM_DETECTED])
        assert len(srm) == 1
        assert await store.events_after(0, since=MONDAY + timedelta(days=9)) == []
        trajectory = await store.metric_history(
            "exp_a", "conv", "v1", since=MONDAY + timedelta(days=2)
        )
        assert [p.users for p in trajectory] == [300, 400]
    finally:
        await store.aclose()
