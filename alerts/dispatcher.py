"""Deliver every event to every alert target, at least once, resuming after crashes.

Each target has its own cursor in the store, advanced only after that target confirmed an
event, so a target that is down receives everything once it is back, and a restart resends
only what was not confirmed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import apprise
from anyio.abc import TaskStatus

from store import DeliveryError, Event, EventKind, Store

from .render import Message, render

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertTarget:
    """A named Apprise URL. The URL holds credentials: it is never logged or stored."""

    name: str
    url: str = field(repr=False)

    @property
    def cursor_name(self) -> str:
        return f"alerts:{self.name}"


class Notifier(Protocol):
    """Sends one message to one target; returns only once the target confirmed it."""

    async def send(self, target: AlertTarget, message: Message) -> None: ...


class AppriseNotifier:
    """Sends through Apprise, bounded in time; Apprise's own threads keep the loop free."""

    def __init__(self, *, timeout_seconds: float = 30.0) -> None:
        self.timeout_seconds = timeout_seconds

    async def send(self, target: AlertTarget, message: Message) -> None:
        sender = apprise.Apprise()
        if not sender.add(target.url):
            raise DeliveryError(f"alert target {target.name!r} has an invalid Apprise URL")
        result = await sender.async_notify(
            body=message.body,
            title=message.title,
            notify_type=message.severity,
            timeout=self.timeout_seconds,
        )
        if not result:
            raise DeliveryError(f"alert target {target.name!r} did not accept the message")


def is_valid_apprise_url(url: str) -> bool:
    """Whether Apprise understands `url` (checked at start-up, before anything runs)."""
    return bool(apprise.Apprise().add(url))


class AlertDispatcher:
    """Tails the event log and delivers each event to each target."""

    def __init__(
        self,
        store: Store,
        targets: Sequence[AlertTarget],
        *,
        notifier: Notifier | None = None,
        event_kinds: Iterable[EventKind] | None = None,
        poll_interval_seconds: float = 1.0,
        retry_initial_seconds: float = 1.0,
        retry_max_seconds: float = 300.0,
        shutdown_grace_seconds: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._store = store
        self.targets = list(targets)
        self._notifier = notifier or AppriseNotifier()
        self.event_kinds = frozenset(event_kinds) if event_kinds is not None else None
        """Kinds that alert (None: all); other events are passed over."""
        self.poll_interval_seconds = poll_interval_seconds
        self.retry_initial_seconds = retry_initial_seconds
        self.retry_max_seconds = retry_max_seconds
        self.shutdown_grace_seconds = shutdown_grace_seconds
        self._sleep = sleep

    async def start_cursors(self) -> None:
        """Give a target seen for the first time a cursor at the end of the log.

        A new target receives what happens from now on, not the whole history.
        """
        last = await self._store.last_event_id()
        for target in self.targets:
            if await self._store.cursor(target.cursor_name) is None:
                await self._store.save_cursor(target.cursor_name, last)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Deliver forever, one task per target."""
        await self.start_cursors()
        async with anyio.create_task_group() as tg:
            for target in self.targets:
                tg.start_soon(self._run_target, target)
            task_status.started()

    async def deliver_pending(self) -> int:
        """One pass over every target; returns how many deliveries were confirmed."""
        await self.start_cursors()
        delivered = 0
        for target in self.targets:
            try:
                delivered += await self._deliver(target)
            except DeliveryError as exc:
                logger.warning("%s", exc)
        return delivered

    async def _run_target(self, target: AlertTarget) -> None:
        backoff = self.retry_initial_seconds
        while True:
            try:
                await self._deliver(target)
                backoff = self.retry_initial_seconds
            except DeliveryError as exc:
                logger.warning("%s; retrying in %.0f s", exc, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.retry_max_seconds)
                continue
            position = await self._store.cursor(target.cursor_name) or 0
            await self._store.wait_for_events(
                position, poll_interval_seconds=self.poll_interval_seconds
            )

    async def _deliver(self, target: AlertTarget) -> int:
        delivered = 0
        position = await self._store.cursor(target.cursor_name) or 0
        while events := await self._store.events_after(position):
            for event in events:
                assert event.id is not None
                if self.event_kinds is not None and event.kind not in self.event_kinds:
                    position = event.id
                    await self._store.save_cursor(target.cursor_name, position)
                    continue
                # A send the target confirmed must be marked, even while shutting down,
                # or it would go out twice; the shield is bounded by the send timeout.
                with anyio.CancelScope(shield=True) as scope:
                    scope.deadline = anyio.current_time() + self.shutdown_grace_seconds
                    await self._send(target, event)
                    await self._store.save_cursor(target.cursor_name, event.id)
                if scope.cancelled_caught:
                    raise DeliveryError(f"delivery to {target.name!r} cut off at shutdown")
                position = event.id
                delivered += 1
        return delivered

    async def _send(self, target: AlertTarget, event: Event) -> None:
        message = render(event)
        try:
            await self._notifier.send(target, message)
        except DeliveryError:
            raise
        except Exception as exc:  # a notifier's own failure must not stop the dispatcher
            logger.exception("alert target %s failed", target.name)
            raise DeliveryError(
                f"alert target {target.name!r} failed: {type(exc).__name__}"
            ) from exc
        logger.info("alert %s event #%s delivered to %s", event.kind.value, event.id, target.name)
