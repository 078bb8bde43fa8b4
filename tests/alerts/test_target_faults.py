"""An hour of failing alert targets on a manual clock: Slack answering 500 and then not at
all, an SMTP server refusing mail and then gone, a webhook that works throughout. Events
keep coming; when the targets come back, each has every alert exactly once."""

from __future__ import annotations

import email
import email.policy
import re
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiosmtpd.controller import Controller
from apprise.plugins.slack import NotifySlack
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from alerts import AlertDispatcher, AlertPolicy, AlertTarget, AppriseNotifier, RateLimit
from expwatch.serving import serve_asgi
from store import DeliveryStatus, Event, EventKind, Store, sqlite_url
from tests.alerts.samples import one_of_each_kind
from tests.helpers import HttpReceiver, ManualClock, http_receiver

pytestmark = pytest.mark.anyio

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EVENT_EVERY_MINUTES = 5
OUTAGE_MINUTES = 60
EVENT_ID = re.compile(r"expwatch event #(\d+)")


@dataclass
class FlakySlack:
    """A Slack webhook on loopback whose answer the test chooses: "ok", a 500, or none
    (the request is held until the client gives up)."""

    mode: str = "ok"
    answered: list[tuple[str, int | None]] = field(default_factory=list)
    """(the message's text, the status answered or None when held)."""
    release: anyio.Event = field(default_factory=anyio.Event)
    port: int = 0

    def app(self) -> Starlette:
        async def post(request: Request) -> Response:
            text = (await request.json())["attachments"][0]["text"]
            if self.mode == "hang":
                self.answered.append((text, None))
                await self.release.wait()  # set at the end, so the server can stop
                return PlainTextResponse("too late", status_code=504)
            status = 500 if self.mode == "500" else 200
            self.answered.append((text, status))
            return PlainTextResponse("ok" if status == 200 else "internal_error", status)

        return Starlette(routes=[Route("/{path:path}", post, methods=["POST"])])

    def accepted(self) -> list[int]:
        return [int(EVENT_ID.findall(text)[0]) for text, status in self.answered if status == 200]


class RefusingSmtp:
    """aiosmtpd handler: accepts mail, or refuses it at DATA with a permanent error."""

    def __init__(self) -> None:
        self.refuse = False
        self.accepted: list[EmailMessage] = []
        self.refused = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            self.refused += 1
            return "554 5.7.1 Message rejected: relay is over quota"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.accepted.append(message)
        return "250 Message accepted for delivery"


@contextmanager
def smtp_on(port: int, handler: RefusingSmtp) -> Iterator[None]:
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield
    finally:
        controller.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def slack(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FlakySlack]:
    flaky = FlakySlack()
    async with anyio.create_task_group() as tg:
        flaky.port = await tg.start(
            lambda task_status: serve_asgi(flaky.app(), port=0, task_status=task_status)
        )
        monkeypatch.setattr(NotifySlack, "webhook_url", f"http://127.0.0.1:{flaky.port}/slack")
        yield flaky
        flaky.release.set()
        tg.cancel_scope.cancel()


@pytest.fixture
async def webhook() -> AsyncIterator[HttpReceiver]:
    async with http_receiver() as receiver:
        yield receiver


def event_for(minute: int) -> Event:
    kinds = [EventKind.SRM_DETECTED, EventKind.SIGNIFICANCE_CHANGED, EventKind.STATUS_CHANGED]
    event = one_of_each_kind()[kinds[(minute // EVENT_EVERY_MINUTES) % len(kinds)]]
    return event.model_copy(update={"experiment_id": f"exp_{minute:02d}"})


def mail_event_id(message: EmailMessage) -> int:
    body = message.get_body(("plain",))
    assert body is not None
    return int(EVENT_ID.findall(body.get_content())[0])


async def test_an_hour_of_failing_targets_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, slack: FlakySlack, webhook: HttpReceiver
) -> None:
    """Minutes 0-30: Slack answers 500 and the SMTP server rejects every message (554).
    Minutes 30-60: Slack holds every request past the send timeout and the SMTP server is
    down (connection refused). An event every 5 minutes. Throughout, the webhook gets each
    alert the minute it happens, and the failing targets are tried on the backoff schedule
    only (never more than once per step). Then both come back: each gets every alert
    exactly once, oldest first, and the outbox holds nothing undelivered."""
    clock = ManualClock(START)
    store = await Store.open(sqlite_url(tmp_path / "alerts.db"), clock=clock.now)
    handler = RefusingSmtp()
    smtp_port = free_port()
    mail_url = f"mailto://127.0.0.1:{smtp_port}?from=expwatch@example.com&to=team@example.com"
    d = AlertDispatcher(
        store,
        [
            AlertTarget("slack", "slack://T0001/B0002/xoxsecrettoken123/#experiments"),
            AlertTarget("mail", mail_url),
            AlertTarget("hook", f"json://127.0.0.1:{webhook.port}/hook"),
        ],
        policy=AlertPolicy(rate_limit=RateLimit(None, None)),
        notifier=AppriseNotifier(timeout_seconds=1.0),
        retry_initial_seconds=30,
        retry_max_seconds=600,
        retry_jitter=0.0,
    )
    recorded: list[int] = []
    try:
        await d.start_cursor()
        with smtp_on(smtp_port, handler):
            slack.mode, handler.refuse = "500", True
            for minute in range(OUTAGE_MINUTES // 2):
                await _minute(d, store, clock, minute, recorded, webhook)
        # The SMTP server is gone now; Slack stops answering.
        slack.mode = "hang"
        for minute in range(OUTAGE_MINUTES // 2, OUTAGE_MINUTES):
            await _minute(d, store, clock, minute, recorded, webhook)

        attempts = len(slack.answered)
        assert handler.refused >= 3 and attempts >= 6
        # Backoff, not hammering: 60 one-minute passes, far fewer attempts per target.
        assert attempts <= 12 and handler.refused <= 8
        assert slack.accepted() == [] and handler.accepted == []
        for target in ("slack", "mail"):
            [summary] = [s for s in await store.outbox.summary() if s.target == target]
            assert summary.counts["delivered"] == 0
            assert summary.last_error, target

        # Recovery: both answer again; the backlog drains at the next due time.
        slack.mode, handler.refuse = "ok", False
        with smtp_on(smtp_port, handler):
            for _ in range(4):
                due = [await store.outbox.next_due_at(t) for t in ("slack", "mail")]
                if not any(due):
                    break
                latest = max(t for t in due if t is not None)
                clock.advance(max(0.0, (latest - clock.now()).total_seconds()))
                await d.deliver_pending()
    finally:
        await store.aclose()

    assert len(recorded) == OUTAGE_MINUTES // EVENT_EVERY_MINUTES
    assert slack.accepted() == recorded  # every alert once, oldest first
    assert [mail_event_id(m) for m in handler.accepted] == recorded
    hooks = [b["json"]["expwatch"]["event_id"] for b in webhook.bodies.items]
    assert hooks == recorded
    held = [text for text, status in slack.answered if status is None]
    flagged = [text for text, status in slack.answered if status == 200 and "duplicate" in text]
    # A request the target held past the timeout may have reached it: its alert goes out
    # again flagged as a possible duplicate; nothing else is flagged.
    held_ids = {int(EVENT_ID.findall(text)[0]) for text in held}
    assert held_ids and len(held) >= 2
    assert {int(EVENT_ID.findall(text)[0]) for text in flagged} == held_ids
    undelivered = [
        r
        for status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.FAILED)
        for r in await _deliveries(tmp_path, status)
    ]
    assert undelivered == []


async def _minute(
    d: AlertDispatcher,
    store: Store,
    clock: ManualClock,
    minute: int,
    recorded: list[int],
    webhook: HttpReceiver,
) -> None:
    """One simulated minute: maybe an event, one delivery pass, and the webhook has every
    alert so far (a failing target never holds back a healthy one)."""
    if minute % EVENT_EVERY_MINUTES == 0:
        [stored] = await store.record_events([event_for(minute)])
        assert stored.id is not None
        recorded.append(stored.id)
    await d.deliver_pending()
    hooks = await webhook.bodies.wait_for(len(recorded))
    assert [b["json"]["expwatch"]["event_id"] for b in hooks] == recorded
    clock.advance(60)


async def _deliveries(tmp_path: Path, status: DeliveryStatus) -> list[Any]:
    store = await Store.open(sqlite_url(tmp_path / "alerts.db"))
    try:
        return list(await store.outbox.deliveries(status=status))
    finally:
        await store.aclose()
