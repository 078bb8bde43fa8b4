"""The MCP change notifier and backfilled history: a history update, never news."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import anyio
import pytest

from mcp_server import ResourceNotifier, ResponseCache
from store import Event, Experiment, MetricResult, Snapshot, Store, VariationResult, sqlite_url

pytestmark = pytest.mark.anyio


def nothing(**_: object) -> Sequence[Event]:
    """A detector that finds nothing worth an event."""
    return []


def snapshot(users: float, at: datetime) -> Snapshot:
    return Snapshot(
        source="sg",
        experiment_id="exp_a",
        upstream_updated_at=at,
        metrics=(
            MetricResult(
                metric_id="conv",
                variations=(
                    VariationResult(variation_id="v0", users=users),
                    VariationResult(variation_id="v1", users=users),
                ),
            ),
        ),
    )


async def test_backfilled_history_is_announced_on_the_history_resource_only(
    tmp_path: Path,
) -> None:
    """A backfilled day tells subscribers to re-read the experiment's history, not its
    results or the index; a live poll afterwards announces its results as usual."""
    store = await Store.open(sqlite_url(tmp_path / "notify.db"))
    published: list[str] = []

    async def publish(uri: str) -> None:
        published.append(uri)

    experiment = Experiment(source="sg", experiment_id="exp_a", name="A", status="active")
    notifier = ResourceNotifier(store, cache=ResponseCache(ttl_seconds=300), publish=publish)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(notifier.run)
            await store.record_backfill(
                experiment,
                date(2026, 3, 2),
                [snapshot(100, datetime(2026, 3, 3, tzinfo=UTC))],
                detect=nothing,
            )
            with anyio.fail_after(10):
                await notifier.settled()
            after_backfill = list(published)
            await store.record_poll(
                experiment, snapshot(200, datetime(2026, 3, 20, tzinfo=UTC)), detect=nothing
            )
            with anyio.fail_after(10):
                await notifier.settled()
            tg.cancel_scope.cancel()
    finally:
        await store.aclose()
    assert after_backfill == ["experiments://exp_a/history"]
    assert "experiments://exp_a/results" in published[len(after_backfill) :]
