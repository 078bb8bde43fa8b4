"""Turn committed events into cache invalidations and resource-update notifications."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskStatus

from store import Store

from .cache import ResponseCache
from .server import results_uri

logger = logging.getLogger(__name__)


class ResourceNotifier:
    """Tails the event log; for each event, drops the experiment's cached views, then
    tells subscribers of its resources to re-read. Keeps no cursor: notifications are
    level triggers, so starting at the end of the log loses nothing a client needs."""

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

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        position = await self._store.last_event_id()
        task_status.started()
        while True:
            await self._store.wait_for_events(
                position, poll_interval_seconds=self.poll_interval_seconds
            )
            changed: dict[str, None] = {}
            for event in await self._store.events_after(position, limit=1000):
                assert event.id is not None
                position = event.id
                if event.experiment_id is not None:
                    changed[event.experiment_id] = None
            for experiment_id in changed:
                self._cache.invalidate(experiment_id)
                await self._publish(results_uri(experiment_id))
