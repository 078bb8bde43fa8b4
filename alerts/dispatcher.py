"""Deliver alerts through the outbox: route each event once, send each row until the
target confirms it, resume after crashes.

Two kinds of task run side by side:
- the router tails the event log; for each alerting event it decides the targets (rules),
  and per target whether the alert is due now, batched into a digest, held for quiet hours
  or suppressed by a rate limit, and commits those rows with its cursor (store.outbox);
- one sender per target sends the rows that are due, oldest first: a row is claimed before
  the send and marked delivered only after Apprise reports success; failures are retried
  with exponential backoff until `give_up_after`, then marked failed with an
  `alert_delivery_failed` event (which alerts the other targets).

An email about a metric turning significant, a guardrail regressing or a sample-ratio
mismatch carries the chart of it as a PNG attachment (`charts.load_event_chart`, drawn as of
the event's snapshot); other channels get text only.
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import anyio
import apprise
from anyio.abc import TaskStatus
from apprise.attachment.memory import AttachMemory

from charts import CHARTED_KINDS, load_event_chart, to_png
from store import (
    Delivery,
    DeliveryError,
    Event,
    EventKind,
    Experiment,
    ExperimentNotFound,
    NewDelivery,
    Store,
    StoreError,
    UnknownExperiment,
)

from .render import Attachment, Message, level_of, render, render_digest
from .rules import AlertPolicy, AlertTarget, Channel

logger = logging.getLogger(__name__)

ROUTER_CURSOR = "alerts:router"
LEGACY_CURSOR_PREFIX = "alerts:"
"""Before the outbox, each target kept its own cursor `alerts:<name>`."""
HOUR = timedelta(hours=1)


class Notifier(Protocol):
    """Sends one message to one target; returns only once the target confirmed it and
    raises DeliveryError (with a reason free of secrets) otherwise."""

    async def send(self, target: AlertTarget, message: Message) -> None: ...


def redact(text: str, url: str) -> str:
    """`text` with every secret-looking part of `url` (password, user, path segments,
    query values) masked: Apprise's log lines may quote the URL they failed on."""
    parts = urlsplit(url)
    secrets = {parts.password, parts.username}
    secrets.update(p for p in re.split(r"[/:@]", parts.netloc + parts.path) if len(p) >= 6)
    secrets.update(v for _, _, v in (q.partition("=") for q in parts.query.split("&")) if v)
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        for form in {secret, unquote(secret)}:
            text = text.replace(form, "****")
    return text


class AppriseNotifier:
    """Sends through Apprise, in the format of the target's channel, bounded in time
    (Apprise's own worker threads keep the event loop free)."""

    def __init__(self, *, timeout_seconds: float = 30.0) -> None:
        self.timeout_seconds = timeout_seconds

    async def send(self, target: AlertTarget, message: Message) -> None:
        sender = apprise.Apprise()
        if not sender.add(target.url):
            raise DeliveryError(f"alert target {target.name!r} has an invalid Apprise URL")
        body, body_format = message.markdown, apprise.NotifyFormat.MARKDOWN
        attach = None
        match target.channel:
            case Channel.EMAIL:
                body, body_format = message.html, apprise.NotifyFormat.HTML
                if message.attachments:
                    attach = apprise.AppriseAttachment()
                    for a in message.attachments:
                        # Apprise's AttachMemory is untyped.
                        memory = AttachMemory(  # type: ignore[no-untyped-call]
                            content=a.data, name=a.name, mimetype=a.mime_type
                        )
                        attach.add(memory)
            case Channel.JSON:
                body, body_format = message.body, apprise.NotifyFormat.TEXT
                # Apprise's JSON envelope {version, title, message, type, ...} gains our
                # documented `expwatch` object (docs/alert-payload.md).
                for plugin in sender:
                    extras = getattr(plugin, "payload_extras", None)
                    if isinstance(extras, dict):
                        extras["expwatch"] = message.document
        with anyio.move_on_after(self.timeout_seconds + 5) as scope:
            result = await sender.async_notify(
                body=body,
                title=message.title,
                notify_type=message.notify_type,
                body_format=body_format,
                attach=attach,
                timeout=self.timeout_seconds,
            )
        if scope.cancelled_caught:
            raise DeliveryError(f"alert target {target.name!r} timed out", outcome_unknown=True)
        if not result:
            raise DeliveryError(
                f"alert target {target.name!r} did not accept the message: "
                + redact(_reason(result), target.url),
                outcome_unknown=_timed_out(result),
            )


def _timed_out(result: Any) -> bool:
    """Apprise stopped waiting for the target: it may have taken the message all the same."""
    timeout = apprise.AppriseResultStatus.TIMEOUT
    return getattr(result, "status", None) == timeout or any(
        getattr(attempt, "status", None) == timeout
        for service in getattr(result, "results", ())
        for attempt in getattr(service, "attempts", ())
    )


def _reason(result: Any) -> str:
    """The last warning Apprise logged for a failed send, or its status."""
    status = getattr(getattr(result, "status", None), "name", "FAILURE")
    messages = [
        entry.message
        for service in getattr(result, "results", ())
        for entry in (service.logs() if callable(service.logs) else service.logs)
        if getattr(entry, "level", "") in ("WARNING", "ERROR")
    ]
    return f"{messages[-1][:300]} ({status})" if messages else status


def is_valid_apprise_url(url: str) -> bool:
    """Whether Apprise understands `url` (checked at start-up, before anything runs)."""
    return bool(apprise.Apprise().add(url))


class AlertDispatcher:
    """Routes events into the outbox and sends what falls due, per target."""

    def __init__(
        self,
        store: Store,
        targets: Sequence[AlertTarget],
        *,
        policy: AlertPolicy | None = None,
        notifier: Notifier | None = None,
        poll_interval_seconds: float = 1.0,
        retry_initial_seconds: float = 30.0,
        retry_max_seconds: float = 1800.0,
        retry_jitter: float = 0.2,
        give_up_after: timedelta = timedelta(hours=24),
        shutdown_grace_seconds: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._outbox = store.outbox
        self.targets = list(targets)
        self.policy = policy or AlertPolicy()
        self._notifier = notifier or AppriseNotifier()
        self.poll_interval_seconds = poll_interval_seconds
        self.retry_initial_seconds = retry_initial_seconds
        self.retry_max_seconds = retry_max_seconds
        self.retry_jitter = retry_jitter
        self.give_up_after = give_up_after
        self.shutdown_grace_seconds = shutdown_grace_seconds
        self._rng = rng or random.Random()
        self._wake = {t.name: anyio.Event() for t in self.targets}

    # -- the whole pipeline, once (tests, `expwatch run --once`) ----------------------------

    async def deliver_pending(self) -> int:
        """Route every new event, then send every due row once; returns how many rows the
        targets confirmed. Failures stay in the outbox for the next pass."""
        await self.route_pending()
        delivered = 0
        for target in self.targets:
            delivered += await self.send_due(target)
        return delivered

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Route and deliver forever: one router task and one sender per target."""
        await self.start_cursor()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._run_router)
            for target in self.targets:
                tg.start_soon(self._run_sender, target)
            task_status.started()

    # -- routing ---------------------------------------------------------------------------

    async def start_cursor(self) -> int:
        """The router's position; a new router starts at the end of the log (a new
        installation alerts on what happens from now on), or where the oldest per-target
        cursor of the pre-outbox dispatcher stopped."""
        position = await self._store.cursor(ROUTER_CURSOR)
        if position is not None:
            return position
        legacy = [
            p
            for t in self.targets
            if (p := await self._store.cursor(LEGACY_CURSOR_PREFIX + t.name)) is not None
        ]
        position = min(legacy) if legacy else await self._store.last_event_id()
        await self._store.save_cursor(ROUTER_CURSOR, position)
        return position

    async def route_pending(self) -> int:
        """Route the events after the router's cursor; returns the position reached."""
        position = await self.start_cursor()
        while events := await self._store.events_after(position, limit=500):
            await self._route(events)
            position = events[-1].id or position
        return position

    async def _route(self, events: Sequence[Event]) -> None:
        now = self._outbox.now()
        since = now - HOUR
        experiments: dict[str, Experiment | None] = {}
        routed_overall: Counter[str] = Counter()
        routed_for: Counter[tuple[str, str | None]] = Counter()
        deliveries: list[NewDelivery] = []
        for event in events:
            assert event.id is not None
            if not self.policy.alerts_on(event):
                continue
            level = level_of(event)
            experiment = await self._experiment(event, experiments)
            for target in self.policy.targets_for(event, level, experiment, self.targets):
                key = (target.name, event.experiment_id)
                if target.name not in routed_overall:
                    routed_overall[target.name] = await self._outbox.count_since(target.name, since)
                if key not in routed_for and event.experiment_id is not None:
                    routed_for[key] = await self._outbox.count_since(
                        target.name, since, experiment_id=event.experiment_id
                    )
                decision = self.policy.schedule(
                    target,
                    level,
                    now,
                    sent_for_experiment=routed_for[key],
                    sent_overall=routed_overall[target.name],
                    experiment_id=event.experiment_id,
                )
                if decision.suppressed_reason is None:
                    routed_overall[target.name] += 1
                    routed_for[key] += 1
                else:
                    logger.warning(
                        "alert for event #%s to %s suppressed: %s",
                        event.id,
                        target.name,
                        decision.suppressed_reason,
                    )
                deliveries.append(
                    NewDelivery(
                        event_id=event.id,
                        target=target.name,
                        experiment_id=event.experiment_id,
                        level=level.value,
                        due_at=decision.due_at,
                        batched=decision.batched,
                        suppressed_reason=decision.suppressed_reason,
                    )
                )
        last = events[-1].id
        assert last is not None
        await self._outbox.route(deliveries, cursor=ROUTER_CURSOR, position=last)
        for name in {d.target for d in deliveries}:
            self._wake[name].set()

    async def _experiment(
        self, event: Event, cache: dict[str, Experiment | None]
    ) -> Experiment | None:
        """The experiment an event is about (for project and tag rules), if recorded."""
        if event.experiment_id is None:
            return None
        if event.experiment_id not in cache:
            try:
                cache[event.experiment_id] = await self._store.experiment(event.experiment_id)
            except (ExperimentNotFound, UnknownExperiment):
                cache[event.experiment_id] = None
        return cache[event.experiment_id]

    async def _pause(self, what: str, exc: StoreError, backoff: float) -> float:
        """The database is locked, full or read-only: nothing was half-written (one
        transaction per step), so wait and let the caller try again; the next backoff.
        The store's health logs it once per outage and shows it in the status."""
        self._store.health.failed(what, exc, retry_in_seconds=backoff)
        await anyio.sleep(backoff)
        return min(backoff * 2, 60.0)

    async def _run_router(self) -> None:
        backoff = self.poll_interval_seconds
        while True:
            try:
                position = await self.route_pending()
                self._store.health.recovered("alert routing")
                backoff = self.poll_interval_seconds
                await self._store.wait_for_events(
                    position, poll_interval_seconds=self.poll_interval_seconds
                )
            except StoreError as exc:
                backoff = await self._pause("alert routing", exc, backoff)

    # -- sending ---------------------------------------------------------------------------

    async def send_due(self, target: AlertTarget) -> int:
        """Send the rows of `target` that are due now, oldest first; returns how many were
        confirmed. The first failure ends the pass and moves all the target's waiting rows to
        the same retry time (and the router routes new ones there too): a target that is
        down gets one attempt per backoff step."""
        delivered = 0
        while due := await self._outbox.due(target.name):
            single = [d for d in due if not d.batched]
            batched = [d for d in due if d.batched]
            groups = [[d] for d in single] + ([batched] if batched else [])
            for group in groups:
                retry_at = await self._send_group(target, group)
                if retry_at is not None:
                    await self._outbox.postpone(target.name, at=retry_at)
                    return delivered
                delivered += len(group)
        return delivered

    async def _send_group(self, target: AlertTarget, group: Sequence[Delivery]) -> datetime | None:
        """Claim, send as one message, and mark; if the target did not confirm, when to
        try again (None: confirmed)."""
        ids = [d.id for d in group]
        claimed = await self._outbox.claim(ids)
        events = await self._outbox.events([d.event_id for d in claimed])
        duplicate = any(d.possible_duplicate for d in claimed)
        ordered = [events[d.event_id] for d in claimed if d.event_id in events]
        message = (
            render(ordered[0], possible_duplicate=duplicate)
            if len(ordered) == 1
            else render_digest(ordered, possible_duplicate=duplicate)
        )
        if len(ordered) == 1 and target.channel is Channel.EMAIL:
            message = replace(message, attachments=await self._charts(ordered[0]))
        # A send the target confirmed must be marked, even while shutting down, or it would
        # go out twice; the shield is bounded by the grace period.
        error: str | None = None
        retry_at: datetime | None = None
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + self.shutdown_grace_seconds
            outcome_unknown = False
            try:
                await self._notifier.send(target, message)
            except DeliveryError as exc:
                error, outcome_unknown = str(exc), exc.outcome_unknown
            except Exception as exc:  # a notifier's own failure must not stop the dispatcher
                logger.exception("alert target %s failed", target.name)
                error = f"alert target {target.name!r} failed: {type(exc).__name__}"
            if error is None:
                await self._outbox.delivered(ids)
            else:
                retry_at = await self._failed(
                    target, claimed, events, error, outcome_unknown=outcome_unknown
                )
        if scope.cancelled_caught and error is None:
            logger.warning("alert delivery to %s cut off at shutdown", target.name)
        if error is None:
            logger.info(
                "alert delivered to %s: %s (event%s %s)%s",
                target.name,
                message.title,
                "" if len(claimed) == 1 else "s",
                ", ".join(f"#{d.event_id}" for d in claimed),
                " [possible duplicate]" if duplicate else "",
            )
        return retry_at

    async def _charts(self, event: Event) -> tuple[Attachment, ...]:
        """The chart of what `event` is about, for an email (none for other kinds). A chart
        is a courtesy: whatever stops it from being drawn, the alert goes without it."""
        if event.kind not in CHARTED_KINDS:
            return ()
        try:
            chart = await load_event_chart(self._store, event)
            if chart is None:
                return ()
            png = await anyio.to_thread.run_sync(to_png, chart)
        except (ExperimentNotFound, UnknownExperiment):
            return ()
        except Exception:  # never let a chart hold an alert back
            logger.exception("no chart for the alert about event #%s", event.id)
            return ()
        return (Attachment(name=f"{chart.name}.png", data=png),)

    async def _failed(
        self,
        target: AlertTarget,
        claimed: Sequence[Delivery],
        events: dict[int, Event],
        error: str,
        *,
        outcome_unknown: bool = False,
    ) -> datetime:
        """Retry the rows later, or give up on those too old; returns the retry time."""
        now = self._outbox.now()
        attempts = max(d.attempts for d in claimed)
        expired = [d for d in claimed if now - d.created_at >= self.give_up_after]
        if expired:
            failure_events = [
                _delivery_failed(target, d, events.get(d.event_id), error, now)
                for d in expired
                if (e := events.get(d.event_id)) is None
                or e.kind is not EventKind.ALERT_DELIVERY_FAILED
            ]
            await self._outbox.give_up([d.id for d in expired], error=error, events=failure_events)
            logger.error(
                "gave up alerting %s about event%s %s after %d attempts: %s",
                target.name,
                "" if len(expired) == 1 else "s",
                ", ".join(f"#{d.event_id}" for d in expired),
                attempts,
                error,
            )
        delay = min(self.retry_initial_seconds * 2 ** (attempts - 1), self.retry_max_seconds)
        delay *= 1 - self.retry_jitter * self._rng.random()
        retry_at = now + timedelta(seconds=delay)
        retrying = [d.id for d in claimed if d not in expired]
        if retrying:
            await self._outbox.retry(
                retrying, error=error, at=retry_at, outcome_unknown=outcome_unknown
            )
            logger.warning("%s; retrying in %.0f s", error, delay)
        return retry_at

    async def _run_sender(self, target: AlertTarget) -> None:
        backoff = self.poll_interval_seconds
        while True:
            wake = self._wake[target.name] = anyio.Event()
            try:
                await self.send_due(target)
                next_due = await self._outbox.next_due_at(target.name)
                self._store.health.recovered(f"alerts to {target.name}")
                backoff = self.poll_interval_seconds
            except StoreError as exc:
                # A confirmed send whose mark failed stays `sending`: it goes out once more,
                # flagged as a possible duplicate, when the database is writable again.
                backoff = await self._pause(f"alerts to {target.name}", exc, backoff)
                continue
            wait = self.poll_interval_seconds * 30
            if next_due is not None:
                wait = min(wait, max((next_due - self._outbox.now()).total_seconds(), 0.05))
            with anyio.move_on_after(wait):
                await wake.wait()


def _delivery_failed(
    target: AlertTarget, delivery: Delivery, event: Event | None, error: str, now: datetime
) -> Event:
    return Event(
        kind=EventKind.ALERT_DELIVERY_FAILED,
        source=event.source if event else "expwatch",
        experiment_id=event.experiment_id if event else delivery.experiment_id,
        before=None,
        after="failed",
        details={
            "target": target.name,
            "event_id": delivery.event_id,
            "event_kind": event.kind.value if event else None,
            "attempts": delivery.attempts,
            "first_attempt_at": delivery.created_at.isoformat(),
            "last_error": error[:500],
            **(
                {"experiment_name": event.details["experiment_name"]}
                if event and "experiment_name" in event.details
                else {}
            ),
        },
        occurred_at=now,
    )
