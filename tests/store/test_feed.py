"""The change feed and the per-experiment summaries, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from store import Event, Experiment, Snapshot, Store, Verdict
from tests.store.test_store import EXPERIMENT, WHEN, note, snapshot

pytestmark = pytest.mark.anyio


def no_events(
    *,
    before: Experiment | None,
    after: Experiment,
    previous: Snapshot | None,
    current: Snapshot | None,
) -> Sequence[Event]:
    return ()


async def test_a_new_snapshot_without_an_event_is_a_change_of_its_experiment_and_metrics(
    store: Store,
) -> None:
    start = await store.change_cursor()
    assert (await store.changes_after(start)).is_empty
    await store.record_poll(EXPERIMENT, snapshot(100, 0.5), detect=no_events)
    changes = await store.changes_after(start)
    assert changes.metrics == {"exp_checkout": ("met_conv",)}
    assert changes.events == () and not changes.sources_changed
    # The same results again store nothing new: no change.
    await store.record_poll(EXPERIMENT, snapshot(100, 0.5), detect=no_events)
    assert (await store.changes_after(changes.cursor)).is_empty


async def test_events_and_source_states_are_changes(store: Store) -> None:
    start = await store.change_cursor()
    [stored] = await store.record_events([note()])
    await store.record_events(
        [Event(kind=note().kind, source="gb", occurred_at=WHEN, after="closed")]
    )
    changes = await store.changes_after(start)
    assert changes.events[0].id == stored.id and len(changes.events) == 2
    assert changes.metrics == {"exp_checkout": ()}
    await store.state.save_source("gb", {"breaker": {"state": "closed"}})
    later = await store.changes_after(changes.cursor)
    assert later.sources_changed and not later.events and not later.metrics
    assert (await store.changes_after(later.cursor)).is_empty


async def test_changes_are_read_in_bounded_batches(store: Store) -> None:
    start = await store.change_cursor()
    await store.record_events([note() for _ in range(5)])
    first = await store.changes_after(start, limit=3)
    rest = await store.changes_after(first.cursor, limit=3)
    assert len(first.events) == 3 and len(rest.events) == 2
    assert (await store.changes_after(rest.cursor)).is_empty


async def test_waiting_for_changes_wakes_on_a_commit_of_this_store(store: Store) -> None:
    start = await store.change_cursor()
    woke: list[int] = []

    async def wait() -> None:
        changes = await store.wait_for_changes(start, poll_interval_seconds=3600)
        woke.append(len(changes.events))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        await store.record_events([note()])
    assert woke == [1]


async def test_summaries_give_each_experiment_its_latest_treatment_verdicts(store: Store) -> None:
    await store.record_poll(EXPERIMENT, snapshot(100, 0.5), detect=no_events)
    await store.record_poll(EXPERIMENT, snapshot(200, 0.99), detect=no_events)
    other = EXPERIMENT.model_copy(update={"experiment_id": "exp_empty", "name": "Empty"})
    await store.record_poll(other, None, detect=no_events)
    summaries = {s.experiment.experiment_id: s for s in await store.experiment_summaries()}
    checkout = summaries["exp_checkout"]
    assert checkout.snapshots == 2
    [verdict] = checkout.verdicts  # the baseline row is left out
    assert (verdict.metric_id, verdict.variation_id, verdict.platform) == (
        "met_conv",
        "v1",
        Verdict.WON,
    )
    assert checkout.results_updated_at == WHEN
    empty = summaries["exp_empty"]
    assert (empty.snapshots, empty.verdicts, empty.latest_snapshot_id) == (0, (), None)
    assert [
        s.experiment.experiment_id for s in await store.experiment_summaries(["exp_empty"])
    ] == ["exp_empty"]
