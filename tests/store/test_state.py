"""Run-time state survives a restart: breaker state, the watch list, alert deliveries."""

from __future__ import annotations

import pytest

from store import Store, WatchEntry

pytestmark = pytest.mark.anyio


async def test_source_state_survives_reopening_the_database(database_url: str) -> None:
    """What the watcher saved about a source is there after a restart, replaced not merged."""
    first = await Store.open(database_url)
    await first.state.save_source("gb", {"breaker": "open", "failures": 5})
    await first.state.save_source("gb", {"breaker": "half_open", "failures": 5})
    await first.aclose()
    second = await Store.open(database_url)
    try:
        assert await second.state.sources() == {"gb": {"breaker": "half_open", "failures": 5}}
    finally:
        await second.aclose()


async def test_the_watch_list_records_includes_and_excludes_once(store: Store) -> None:
    """Watching twice is a no-op that says so; unwatching turns the entry into an exclusion
    (it wins over the source's filters), and unwatching twice says so too."""
    assert await store.state.watch("gb", "exp_a")
    assert not await store.state.watch("gb", "exp_a")
    assert await store.state.watch("statsig", "checkout")
    assert await store.state.watch_list("gb") == [WatchEntry("gb", "exp_a", "watch")]
    assert await store.state.unwatch("gb", "exp_a")
    assert not await store.state.unwatch("gb", "exp_a")
    assert await store.state.unwatch("gb", "exp_never_watched")
    entries = await store.state.watch_list()
    assert [(e.source, e.experiment_id, e.is_watched) for e in entries] == [
        ("statsig", "checkout", True),
        ("gb", "exp_a", False),
        ("gb", "exp_never_watched", False),
    ]
