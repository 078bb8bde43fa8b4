"""The database's health as the tasks of one process see it.

When the database fails (disk full, locked, read-only, I/O errors) it cannot record that it
is failing, so each task that writes to it (a source's poll loop, alert routing and sending,
retention, MCP notifications) reports here instead: the first failure of an outage is logged
once at ERROR with what to do, the retries quietly, the end once; the status views show the
outages that are going on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import anyio

from .errors import StoreError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreOutage:
    """One task that cannot use the database right now."""

    task: str
    """What failed, in words: "polling gb", "alert routing", "retention"."""
    error: str
    """The last error: the database, the driver's reason and what to do."""
    database: str | None
    reason: str | None
    since: datetime
    failures: int
    """Failed attempts so far."""
    retry_at: datetime
    """When the task tries again."""


class StoreHealth:
    """The outages of this process's tasks, by task name, and their log lines."""

    def __init__(self, *, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._outages: dict[str, StoreOutage] = {}
        self._changed = anyio.Event()

    def failed(self, task: str, error: StoreError, *, retry_in_seconds: float) -> None:
        """`task` failed on the database and will try again in `retry_in_seconds`. Logged at
        ERROR when the outage starts or its reason changes, at DEBUG otherwise."""
        now = self._clock()
        before = self._outages.get(task)
        retry_at = now + timedelta(seconds=retry_in_seconds)
        if before is not None and before.reason == error.reason:
            self._outages[task] = replace(
                before, error=str(error), failures=before.failures + 1, retry_at=retry_at
            )
            logger.debug(
                "%s: still failing (%s); retrying in %.0f s", task, error, retry_in_seconds
            )
            return
        self._outages[task] = StoreOutage(
            task=task,
            error=str(error),
            database=error.database,
            reason=error.reason,
            since=before.since if before else now,
            failures=before.failures + 1 if before else 1,
            retry_at=retry_at,
        )
        logger.error(
            "%s failed: %s Nothing was half-written; retrying in %.0f s, then with backoff, "
            "until the database works again.",
            task,
            _sentence(str(error)),
            retry_in_seconds,
        )
        self._notify()

    def recovered(self, task: str) -> None:
        """`task` used the database again; logs the end of its outage, if it had one."""
        outage = self._outages.pop(task, None)
        if outage is None:
            return
        elapsed = (self._clock() - outage.since).total_seconds()
        logger.warning(
            "%s resumed: the database %s works again after %.0f s (%d failed attempt%s).",
            task,
            outage.database or "",
            elapsed,
            outage.failures,
            "" if outage.failures == 1 else "s",
        )
        self._notify()

    def outages(self) -> list[StoreOutage]:
        """The tasks failing on the database now, oldest outage first."""
        return sorted(self._outages.values(), key=lambda o: (o.since, o.task))

    async def wait_for_change(self) -> None:
        """Return once an outage starts, changes reason or ends."""
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."
