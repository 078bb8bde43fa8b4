"""Turn what the store commits into cache invalidations and resource-update notifications."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskStatus

from store import ChangeCursor, Changes, Store, StoreError

from .cache import ResponseCache
from .server import HISTORY_URI, INDEX_URI, STATUS_URI, experiment_uris

logger = logging.getLogger(__name__)

TASK = "MCP change notifications"
"""How this task names itself in the store's health (logs and the status)."""


def changed_uris(changes: Changes) -> list[str]:
    """The resources whose content `changes` may have changed. Backfilled history changes
    only an experiment's history resource: it is announced as that, never as new results."""
    uris: list[str] = []
    for experiment_id, metric_ids in changes.metrics.items():
        uris.extend(experiment_uris(experiment_id, metric_ids))
    uris.extend(HISTORY_URI.format(experiment_id=e) for e in changes.history)
    if changes.metrics:
        uris.append(INDEX_URI)
    if changes.sources_changed or any(e.experiment_id is None for e in changes.events):
        uris.append(STATUS_URI)
    return uris


class ResourceNotifier:
    """Tails the store's change feed (events, new snapshots, source states). For each batch
    it first drops the cached views of the experiments concerned, then tells subscribers of
    the changed resources to re-read.

    Keeps no durable cursor: notifications are level triggers ("changed, re-read"), so
    starting at the end of the feed loses nothing a client needs. Commits made through the
    same `Store` wake it at once; another process's commits are seen within
    `poll_interval_seconds`.
    """

    def __init__(
        self,
        store: Store,
        *,
        cache: ResponseCache,
        publish: Callable[[str], Awaitable[None]],
        poll_interval_seconds: float = 1.0,
    ) -> None:
        self._store = store
        self._cache = cache
        self._publish = publish
        self.poll_interval_seconds = poll_interval_seconds
        self._cursor: ChangeCursor | None = None
        self._advanced = anyio.Event()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._cursor = await self._store.change_cursor()
        self._moved()
        task_status.started()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._follow_health)
            await self._follow_changes()

    async def _follow_changes(self) -> None:
        """Publish what is committed; while the database cannot be read, retry with backoff
        (the cursor stays put, so nothing committed meanwhile is missed)."""
        backoff: float | None = None
        while True:
            assert self._cursor is not None
            try:
                if backoff is None:
                    changes = await self._store.wait_for_changes(
                        self._cursor, poll_interval_seconds=self.poll_interval_seconds
                    )
                else:  # one read says whether the database works again
                    changes = await self._store.changes_after(self._cursor)
                    self._store.health.recovered(TASK)
                    backoff = None
            except StoreError as exc:
                backoff = self.poll_interval_seconds if backoff is None else backoff * 2
                backoff = min(backoff, 60.0)
                self._store.health.failed(TASK, exc, retry_in_seconds=backoff)
                await anyio.sleep(backoff)
                continue
            for experiment_id in (*changes.metrics, *changes.history):
                self._cache.invalidate(experiment_id)
            if changes.sources_changed:
                self._cache.invalidate_all()
            for uri in changed_uris(changes):
                await self._publish(uri)
            self._cursor = changes.cursor
            self._moved()

    async def _follow_health(self) -> None:
        """A database outage starting or ending changes the status, which the change feed
        cannot carry (the database is what fails): drop cached answers and tell subscribers."""
        while True:
            await self._store.health.wait_for_change()
            self._cache.invalidate_all()
            await self._publish(STATUS_URI)

    async def settled(self) -> None:
        """Return once everything committed before the call has been published (a barrier
        for tests and tools: after it, no notification about older changes is still due)."""
        target = await self._store.change_cursor()
        while not _covers(self._cursor, target):
            await self._advanced.wait()

    def _moved(self) -> None:
        self._advanced.set()
        self._advanced = anyio.Event()


def _covers(cursor: ChangeCursor | None, target: ChangeCursor) -> bool:
    if cursor is None:
        return False
    sources_seen = target.sources_updated_at is None or (
        cursor.sources_updated_at is not None
        and cursor.sources_updated_at >= target.sources_updated_at
    )
    return cursor.events >= target.events and cursor.snapshots >= target.snapshots and sources_seen
