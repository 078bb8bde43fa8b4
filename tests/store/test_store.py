from __future__ import annotations

import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from store import (
    Detection,
    Event,
    EventKind,
    Experiment,
    MetricResult,
    PollOutcome,
    Snapshot,
    Store,
    StoreError,
    UnknownExperiment,
    Variation,
    VariationResult,
    Verdict,
    sqlite_url,
)

pytestmark = pytest.mark.anyio

WHEN = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EXPERIMENT = Experiment(
    source="gb",
    experiment_id="exp_checkout",
    name="Checkout",
    status="running",
    variations=(
        Variation(variation_id="v0", name="Control"),
        Variation(variation_id="v1", name="B"),
    ),
)


def snapshot(users: float, chance: float) -> Snapshot:
    verdict = Verdict.WON if chance > 0.95 else Verdict.INCONCLUSIVE
    return Snapshot(
        source="gb",
        experiment_id="exp_checkout",
        upstream_updated_at=WHEN,
        engine="bayesian",
        total_users=2 * users,
        srm_p_value=0.5,
        metrics=(
            MetricResult(
                metric_id="met_conv",
                metric_name="Conversion",
                variations=(
                    VariationResult(
                        variation_id="v0", users=users, platform_verdict=Verdict.BASELINE
                    ),
                    VariationResult(
                        variation_id="v1",
                        users=users,
                        relative_change=0.1,
                        chance_to_win=chance,
                        platform_verdict=verdict,
                    ),
                ),
            ),
        ),
    )


def note(kind: EventKind = EventKind.STATUS_CHANGED) -> Event:
    return Event(kind=kind, source="gb", experiment_id="exp_checkout", occurred_at=WHEN)


class RecordingDetector:
    def __init__(self, events_per_call: int = 1) -> None:
        self.calls: list[tuple[Snapshot | None, Snapshot | None]] = []
        self.events_per_call = events_per_call

    def __call__(
        self,
        *,
        before: Experiment | None,
        after: Experiment,
        previous: Snapshot | None,
        current: Snapshot | None,
    ) -> Sequence[Event]:
        self.calls.append((previous, current))
        return [note() for _ in range(self.events_per_call)]


async def test_an_unchanged_poll_writes_no_snapshot_and_calls_no_detector(store: Store) -> None:
    """Polling the same results twice keeps one snapshot and derives no second set of events."""
    detector = RecordingDetector()
    first = await store.record_poll(EXPERIMENT, snapshot(100, 0.5), detect=detector)
    second = await store.record_poll(EXPERIMENT, snapshot(100, 0.5), detect=detector)
    assert first.is_new_snapshot and not second.is_new_snapshot
    assert second.snapshot_id == first.snapshot_id
    assert await store.snapshot_count() == 1
    assert len(detector.calls) == 1


async def test_a_changed_poll_gives_the_detector_the_previous_and_current_snapshot(
    store: Store,
) -> None:
    """The detector sees exactly the two snapshots it has to compare."""
    detector = RecordingDetector()
    await store.record_poll(EXPERIMENT, snapshot(100, 0.5), detect=detector)
    outcome = await store.record_poll(EXPERIMENT, snapshot(200, 0.97), detect=detector)
    previous, current = detector.calls[-1]
    assert previous is not None and previous.total_users == 200
    assert current is not None and current.total_users == 400
    assert outcome.is_new_snapshot and len(outcome.events) == 1
    assert await store.snapshot_count("exp_checkout") == 2


async def test_events_get_increasing_ids_and_are_read_back_in_order(store: Store) -> None:
    """The log hands out ordered ids and events_after pages through them."""
    await store.record_poll(EXPERIMENT, snapshot(100, 0.5), detect=RecordingDetector(3))
    stored = await store.record_events([note(EventKind.SOURCE_ERROR)])
    ids = [e.id for e in await store.events_after(0)]
    assert ids == sorted(ids) and len(ids) == 4 and ids[-1] == stored[0].id
    assert [e.id for e in await store.events_after(ids[1], limit=1)] == [ids[2]]
    assert await store.last_event_id() == ids[-1]


async def test_a_failing_detector_leaves_neither_snapshot_nor_events(store: Store) -> None:
    """One transaction per poll: an error half-way writes nothing."""

    def explode(**_: object) -> Sequence[Event]:
        raise RuntimeError("boom")

    await store.record_poll(EXPERIMENT, snapshot(100, 0.5), detect=RecordingDetector())
    with pytest.raises(RuntimeError):
        await store.record_poll(EXPERIMENT, snapshot(200, 0.5), detect=explode)
    assert await store.snapshot_count() == 1
    assert len(await store.events_after(0)) == 1
    latest = await store.latest_snapshot("exp_checkout")
    assert latest is not None and latest.snapshot.total_users == 200


async def test_a_batch_of_polls_is_recorded_as_one_transaction(store: Store) -> None:
    """record_polls records each poll as record_poll would, and all or nothing: a detector
    failing on the second poll leaves the first unwritten too."""
    other = EXPERIMENT.model_copy(update={"experiment_id": "exp_other"})
    other_snapshot = snapshot(50, 0.5).model_copy(update={"experiment_id": "exp_other"})
    calls = 0

    def fails_second(**kwargs: object) -> Sequence[Event]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("boom")
        return [note()]

    with pytest.raises(RuntimeError):
        await store.record_polls(
            [(EXPERIMENT, snapshot(100, 0.5)), (other, other_snapshot)], detect=fails_second
        )
    assert await store.snapshot_count() == 0 and await store.events_after(0) == []
    outcomes = await store.record_polls(
        [(EXPERIMENT, snapshot(100, 0.5)), (other, other_snapshot)], detect=RecordingDetector()
    )
    assert [o.is_new_snapshot for o in outcomes] == [True, True]
    assert [len(o.events) for o in outcomes] == [1, 1]
    again = await store.record_polls(
        [(EXPERIMENT, snapshot(100, 0.5)), (other, other_snapshot)], detect=RecordingDetector()
    )
    assert [o.is_new_snapshot for o in again] == [False, False]
    assert await store.snapshot_count() == 2


class AssessingDetector:
    """Like the watcher's detector: events on every call, and new results stored with an
    assessment the platform's content hash does not cover."""

    def __init__(self) -> None:
        self.calls: list[tuple[Experiment | None, Experiment, Snapshot | None, Snapshot | None]]
        self.calls = []

    def __call__(
        self,
        *,
        before: Experiment | None,
        after: Experiment,
        previous: Snapshot | None,
        current: Snapshot | None,
    ) -> Detection:
        self.calls.append((before, after, previous, current))
        is_new = current is not None and current is not previous
        kind = EventKind.SIGNIFICANCE_CHANGED if is_new else EventKind.STATUS_CHANGED
        event = Event(
            kind=kind, source=after.source, experiment_id=after.experiment_id, occurred_at=WHEN
        )
        if current is None or not is_new:
            return Detection(events=(event,))
        assessed = current.model_copy(update={"engine": f"assessed {current.total_users:g}"})
        return Detection(events=(event, event), snapshot=assessed)


def poll(
    experiment_id: str, users: float | None = None, *, status: str = "running"
) -> tuple[Experiment, Snapshot | None]:
    experiment = EXPERIMENT.model_copy(update={"experiment_id": experiment_id, "status": status})
    if users is None:
        return experiment, None
    return experiment, snapshot(users, 0.5).model_copy(update={"experiment_id": experiment_id})


async def test_a_mixed_page_recorded_at_once_equals_recording_it_poll_by_poll(
    store: Store, tmp_path: Path
) -> None:
    """New experiments, unchanged and changed results, a changed experiment, experiments
    without results and one experiment twice, in one record_polls call: the detector sees,
    the outcomes say and the store keeps exactly what record_poll one by one gives."""
    history = [poll("exp_changed", 100), poll("exp_same", 100), poll("exp_stops", 100)]
    history.append(poll("exp_waiting"))
    first_results = snapshot(50, 0.5).model_copy(update={"experiment_id": "exp_new"})
    page = [
        (poll("exp_new")[0], first_results),
        poll("exp_same", 100),  # unchanged: no snapshot, no detector
        poll("exp_changed", 200),
        poll("exp_stops", 100, status="stopped"),  # same results, changed experiment
        poll("exp_waiting"),
        poll("exp_fresh"),  # first sight, no results yet
        poll("exp_changed", 300),  # twice in one call: sees the poll before it
    ]
    reference = await Store.open(sqlite_url(tmp_path / "one_by_one.db"))
    try:
        one_by_one, at_once = AssessingDetector(), AssessingDetector()
        for experiment, results in history:
            await reference.record_poll(experiment, results, detect=one_by_one)
            await store.record_poll(experiment, results, detect=at_once)
        expected = [
            await reference.record_poll(experiment, results, detect=one_by_one)
            for experiment, results in page
        ]
        outcomes = await store.record_polls(page, detect=at_once)

        assert at_once.calls == one_by_one.calls
        assert [shape(o) for o in outcomes] == [shape(o) for o in expected]
        ids = [e.id for o in outcomes for e in o.events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        for experiment_id in {experiment.experiment_id for experiment, _ in history + page}:
            assert await kept(store, experiment_id) == await kept(reference, experiment_id)
        assert (await kept(store, "exp_new"))[1:5] == (
            first_results.model_copy(update={"engine": "assessed 100"}),
            first_results.content_hash(),
            1,
            [50],
        )
        assert (await kept(store, "exp_changed"))[3:5] == (3, [100, 200, 300])
        assert (await kept(store, "exp_fresh"))[1:5] == (None, None, 0, [])
        assert [(e.kind, e.experiment_id) for e in await store.events_after(0)] == [
            (e.kind, e.experiment_id) for e in await reference.events_after(0)
        ]
    finally:
        await reference.aclose()


def shape(outcome: PollOutcome) -> tuple[bool, bool, list[tuple[EventKind, bool]]]:
    """An outcome without its ids: a new snapshot or not, one or not, and each event's kind
    and whether it points at the outcome's snapshot."""
    return (
        outcome.is_new_snapshot,
        outcome.snapshot_id is None,
        [(e.kind, e.snapshot_id == outcome.snapshot_id) for e in outcome.events],
    )


async def kept(store: Store, experiment_id: str) -> tuple[object, ...]:
    """What the store holds of one experiment, without ids and times."""
    experiment, latest = await store.current(experiment_id)
    history = await store.metric_history(experiment_id, "met_conv", "v1")
    [state] = [s for s in (await store.watch_states("gb")).values() if s.experiment == experiment]
    return (
        experiment,
        latest.snapshot if latest else None,
        latest.content_hash if latest else None,
        await store.snapshot_count(experiment_id),
        [p.users for p in history],
        state.last_checked_at is not None,
    )


async def test_a_waiting_consumer_wakes_as_soon_as_events_are_committed(store: Store) -> None:
    """In-process tailing needs no polling: the commit itself wakes the waiter."""
    woke = anyio.Event()
    start = await store.last_event_id()

    async def wait() -> None:
        await store.wait_for_events(start, poll_interval_seconds=3600)
        woke.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            assert not woke.is_set()
            await store.record_events([note()])
            await woke.wait()


async def test_a_consumer_in_another_process_sees_events_by_polling(database_url: str) -> None:
    """A second Store on the same database (as a second process would be) picks events up."""
    url = database_url
    writer, reader = await Store.open(url), await Store.open(url)
    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: reader.wait_for_events(0, poll_interval_seconds=0.01))
                await writer.record_events([note()])
        assert [e.kind for e in await reader.events_after(0)] == [EventKind.STATUS_CHANGED]
    finally:
        await writer.aclose()
        await reader.aclose()


async def test_an_unknown_experiment_error_lists_the_closest_ids(store: Store) -> None:
    """A typo'd id is answered with the ids it probably meant."""
    await store.record_poll(EXPERIMENT, None, detect=RecordingDetector(0))
    with pytest.raises(UnknownExperiment, match="exp_checkout"):
        await store.experiment("exp_chekout")


async def test_metric_history_has_one_point_per_distinct_snapshot(store: Store) -> None:
    """The trajectory lists what changed, oldest first, with the platform's verdict."""
    for users, chance in [(100, 0.5), (100, 0.5), (200, 0.9), (300, 0.97)]:
        await store.record_poll(EXPERIMENT, snapshot(users, chance), detect=RecordingDetector(0))
    points = await store.metric_history("exp_checkout", "met_conv", "v1")
    assert [p.users for p in points] == [100, 200, 300]
    assert [p.platform_verdict for p in points][-1] is Verdict.WON


async def test_cursors_remember_where_a_consumer_stopped(store: Store) -> None:
    """A consumer's position survives and can be moved forward."""
    assert await store.cursor("alerts:slack") is None
    await store.save_cursor("alerts:slack", 3)
    await store.save_cursor("alerts:slack", 7)
    assert await store.cursor("alerts:slack") == 7


async def test_a_naive_timestamp_is_refused_as_a_store_error(store: Store) -> None:
    """Times must be timezone-aware; a naive one is a programming error caught at the edge."""
    naive = Event(kind=EventKind.STATUS_CHANGED, source="gb", occurred_at=datetime(2026, 1, 1))
    with pytest.raises(StoreError, match="naive datetime"):
        await store.record_events([naive])


async def test_an_unreachable_database_server_is_a_store_error_saying_what_to_check() -> None:
    """asyncpg raises OSError itself when the server cannot be reached; the store turns it
    into a StoreError naming the server (never the password) and what to check."""
    pytest.importorskip("asyncpg")
    with socket.socket() as probe:  # a port nothing listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        with pytest.raises(StoreError) as caught:
            await Store.open(f"postgresql+asyncpg://expwatch:hunter2@127.0.0.1:{port}/x")
    message = str(caught.value)
    assert f"127.0.0.1:{port}/x" in message and "hunter2" not in message
    assert "Check that the database server runs" in message
