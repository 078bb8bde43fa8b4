"""Text longer than its column: the same outcome on SQLite (which ignores column sizes) and
PostgreSQL (which refuses the whole transaction). Names and status words are clipped by the
records; an id is never clipped, and the store refuses it before writing anything."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from store import (
    ID_LENGTH,
    NAME_LENGTH,
    STATUS_LENGTH,
    Event,
    EventKind,
    Experiment,
    MetricResult,
    PayloadError,
    Snapshot,
    Store,
    Variation,
    VariationResult,
    Verdict,
    clip,
)
from store.schema import experiments as experiments_table
from store.schema import snapshots as snapshots_table

pytestmark = pytest.mark.anyio

WHEN = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LONG_NAME = "Caisse en une page — é😀 " * 25 + "ñ" * 60
"""660 characters, many of them several bytes long in UTF-8: a column counts characters."""
LONG_STATUS = "running (" + "waiting on the warehouse " * 2 + ")"
LONG_ID = "met_" + "x" * (ID_LENGTH - 3)
"""One character longer than the store keeps."""


def experiment(experiment_id: str = "exp_long", **changes: object) -> Experiment:
    fields: dict[str, object] = {
        "source": "gb",
        "experiment_id": experiment_id,
        "name": LONG_NAME,
        "status": LONG_STATUS,
        "phase": LONG_STATUS,
        "detailed_status": LONG_STATUS,
        "variations": (
            Variation(variation_id="v0", name="Control"),
            Variation(variation_id="v1", name=LONG_NAME),
        ),
        **changes,
    }
    return Experiment.model_validate(fields)


def snapshot(experiment_id: str = "exp_long", metric_id: str = "met_conv") -> Snapshot:
    return Snapshot(
        source="gb",
        experiment_id=experiment_id,
        upstream_updated_at=WHEN,
        phase=LONG_STATUS,
        metrics=(
            MetricResult(
                metric_id=metric_id,
                metric_name=LONG_NAME,
                variations=(
                    VariationResult(
                        variation_id="v0", users=100, platform_verdict=Verdict.BASELINE
                    ),
                    VariationResult(variation_id="v1", variation_name=LONG_NAME, users=100),
                ),
            ),
        ),
    )


class Calls:
    """A detector that derives nothing and counts its calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(
        self,
        *,
        before: Experiment | None,
        after: Experiment,
        previous: Snapshot | None,
        current: Snapshot | None,
    ) -> Sequence[Event]:
        self.count += 1
        return []


def test_clipping_keeps_whole_characters_ends_in_an_ellipsis_and_is_idempotent() -> None:
    """A clipped text is at most the limit in characters, ends in "…", and clips to itself."""
    clipped = clip(LONG_NAME, NAME_LENGTH)
    assert len(clipped) <= NAME_LENGTH and clipped.endswith("…")
    assert LONG_NAME.startswith(clipped[:-1])
    assert clip(clipped, NAME_LENGTH) == clipped
    assert clip("running", STATUS_LENGTH) == "running"
    assert clip("x" * STATUS_LENGTH, STATUS_LENGTH) == "x" * STATUS_LENGTH


async def test_an_absurd_name_and_status_are_recorded_clipped_on_every_database(
    store: Store,
) -> None:
    """A 660-character name and a 60-character status are stored (PostgreSQL used to refuse
    the whole write) and read back clipped, in the columns and in the records alike; polling
    the same payload again changes nothing."""
    assert len(LONG_NAME) > NAME_LENGTH and len(LONG_STATUS) > STATUS_LENGTH
    calls = Calls()
    first = await store.record_poll(experiment(), snapshot(), detect=calls)
    assert first.is_new_snapshot
    stored, latest = await store.current("exp_long")
    name, status = clip(LONG_NAME, NAME_LENGTH), clip(LONG_STATUS, STATUS_LENGTH)
    assert stored.name == name and stored.status == status and stored.phase == status
    assert stored.detailed_status == status and stored.variations[1].name == name
    assert latest is not None and latest.snapshot.phase == status
    [metric] = latest.snapshot.metrics
    assert metric.metric_name == name and metric.variations[1].variation_name == name
    async with store.database.read() as conn:
        row = (await conn.execute(select(experiments_table))).mappings().one()
        phase = await conn.scalar(select(snapshots_table.c.phase))
    assert (row["name"], row["status"], phase) == (name, status, status)
    again = await store.record_poll(experiment(), snapshot(), detect=calls)
    assert not again.is_new_snapshot and calls.count == 1


async def test_an_id_longer_than_the_store_keeps_is_refused_before_anything_is_written(
    store: Store,
) -> None:
    """A metric id one character too long: a PayloadError naming it (not a database
    failure) on both databases, nothing of the page written, and the database still works."""
    polls = [
        (experiment("exp_fine"), snapshot("exp_fine")),
        (experiment("exp_bad"), snapshot("exp_bad", metric_id=LONG_ID)),
    ]
    with pytest.raises(PayloadError, match=r"metric id 'met_x.*201 characters") as caught:
        await store.record_polls(polls, detect=Calls())
    assert caught.value.source == "gb" and caught.value.experiment_id == "exp_bad"
    assert await store.experiments() == []
    await store.record_polls(polls[:1], detect=Calls())
    assert [e.experiment_id for e in await store.experiments()] == ["exp_fine"]


async def test_an_experiment_id_too_long_is_refused_without_naming_it_as_the_experiment(
    store: Store,
) -> None:
    """An experiment id past the limit is refused; the error does not carry it as its
    experiment (a source_error keyed by it could not be stored either)."""
    with pytest.raises(PayloadError, match="experiment id") as caught:
        await store.record_poll(experiment("exp_" + "x" * ID_LENGTH), None, detect=Calls())
    assert caught.value.experiment_id is None
    assert await store.experiments() == []


async def test_an_event_with_an_id_too_long_is_refused_and_the_log_keeps_working(
    store: Store,
) -> None:
    """Events are bounded too: one naming a variation id past the limit is refused as a
    PayloadError, and the next event is recorded."""
    event = Event(
        kind=EventKind.DECISION_MADE,
        source="gb",
        experiment_id="exp_long",
        variation_id="v" * (ID_LENGTH + 1),
        after={"outcome": "won"},
        occurred_at=WHEN,
    )
    with pytest.raises(PayloadError, match="variation id"):
        await store.record_events([event])
    [stored] = await store.record_events([event.model_copy(update={"variation_id": "v1"})])
    assert stored.id is not None and [e.id for e in await store.events_after(0)] == [stored.id]


async def test_a_nul_character_is_stored_alike_on_every_database(store: Store) -> None:
    """PostgreSQL refuses NUL in text and in JSONB, where SQLite keeps it: a NUL in a name,
    a status, a metric name or an event's details is stored as U+FFFD on both, read back so,
    and polling the same payload again writes nothing new."""
    nul_name, nul_status = "Check\x00out", "run\x00ning"
    polled = experiment(name=nul_name, status=nul_status, phase=nul_status)
    current = snapshot().model_copy(
        update={
            "metrics": (snapshot().metrics[0].model_copy(update={"metric_name": "Conver\x00sion"}),)
        }
    )
    calls = Calls()
    assert (await store.record_poll(polled, current, detect=calls)).is_new_snapshot
    [event] = await store.record_events(
        [
            Event(
                kind=EventKind.SOURCE_ERROR,
                source="gb",
                experiment_id="exp_long",
                after="bad\x00payload",
                details={"error": "x\x00y", "nested": ["\x00"]},
                occurred_at=WHEN,
            )
        ]
    )
    stored, latest = await store.current("exp_long")
    assert stored.name == "Check\ufffdout" and stored.status == "run\ufffdning"
    assert latest is not None
    assert latest.snapshot.metrics[0].metric_name == "Conver\ufffdsion"
    [read] = await store.events_after(event.id - 1 if event.id else 0)
    assert read.after == "bad\ufffdpayload"
    assert read.details["error"] == "x\ufffdy" and read.details["nested"] == ["\ufffd"]
    assert not (await store.record_poll(polled, current, detect=calls)).is_new_snapshot
