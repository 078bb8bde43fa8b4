"""Run-time state that must survive restarts: per-source state (the circuit breaker), the
watch list and the consumers' cursors in the event log."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from . import schema
from .database import Database

WATCH = "watch"
IGNORE = "ignore"


@dataclass(frozen=True)
class WatchEntry:
    """An explicit watch-list entry: `mode` is "watch" (poll it whatever the filters say) or
    "ignore" (never poll it)."""

    source: str
    experiment_id: str
    mode: str

    @property
    def is_watched(self) -> bool:
        return self.mode == WATCH


async def save_cursor(conn: AsyncConnection, consumer: str, position: int, now: datetime) -> None:
    """Within `conn`'s transaction: remember how far `consumer` has processed the event log."""
    t = schema.cursors
    changed = await conn.execute(
        update(t).where(t.c.consumer == consumer).values(position=position, updated_at=now)
    )
    if changed.rowcount == 0:
        await conn.execute(insert(t).values(consumer=consumer, position=position, updated_at=now))


class RuntimeState:
    """Small keyed records, each written in its own short transaction."""

    def __init__(
        self,
        database: Database,
        *,
        clock: Callable[[], datetime],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._database = database
        self._clock = clock
        self._on_change = on_change
        """Called after a source's state is saved (it is part of the change feed)."""

    async def save_source(self, name: str, state: dict[str, Any]) -> None:
        """Replace the saved state of source `name` (e.g. its circuit breaker)."""
        t = schema.sources
        now = self._clock()
        async with self._database.write() as conn:
            changed = await conn.execute(
                update(t).where(t.c.name == name).values(state=state, updated_at=now)
            )
            if changed.rowcount == 0:
                await conn.execute(insert(t).values(name=name, state=state, updated_at=now))
        self._on_change()

    async def sources(self) -> dict[str, dict[str, Any]]:
        """The saved state of every source, by name."""
        async with self._database.read() as conn:
            rows = await conn.execute(select(schema.sources.c.name, schema.sources.c.state))
            return {r.name: dict(r.state) for r in rows}

    async def watch(self, source: str, experiment_id: str) -> bool:
        """Watch an experiment whatever the source's filters say; False if it already was."""
        return await self._set_watch_mode(source, experiment_id, WATCH)

    async def unwatch(self, source: str, experiment_id: str) -> bool:
        """Stop watching an experiment, even one the source's filters match; False if it
        already was not watched this way."""
        return await self._set_watch_mode(source, experiment_id, IGNORE)

    async def _set_watch_mode(self, source: str, experiment_id: str, mode: str) -> bool:
        t = schema.watch_list
        where = (t.c.source == source, t.c.experiment_id == experiment_id)
        async with self._database.write() as conn:
            present = await conn.scalar(select(t.c.mode).where(*where))
            if present == mode:
                return False
            if present is None:
                await conn.execute(
                    insert(t).values(
                        source=source,
                        experiment_id=experiment_id,
                        mode=mode,
                        added_at=self._clock(),
                    )
                )
            else:
                await conn.execute(
                    update(t).where(*where).values(mode=mode, added_at=self._clock())
                )
            return True

    async def watch_list(self, source: str | None = None) -> list[WatchEntry]:
        """Explicit watch-list entries, in the order they were last changed."""
        t = schema.watch_list
        query = select(t.c.source, t.c.experiment_id, t.c.mode).order_by(
            t.c.added_at, t.c.experiment_id
        )
        if source is not None:
            query = query.where(t.c.source == source)
        async with self._database.read() as conn:
            return [
                WatchEntry(r.source, r.experiment_id, r.mode) for r in await conn.execute(query)
            ]
