from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest

from alerts import AlertDispatcher, AlertTarget
from store import Event, EventKind, Store
from tests.helpers import http_receiver, smtp_server

pytestmark = pytest.mark.anyio

WHEN = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def srm_event() -> Event:
    return Event(
        kind=EventKind.SRM_DETECTED,
        source="gb",
        experiment_id="exp_checkout",
        before=0.4,
        after=0.0002,
        details={"experiment_name": "Checkout redesign", "threshold": 0.001},
        occurred_at=WHEN,
    )


async def test_each_event_reaches_the_webhook_and_the_mailbox_once(store: Store) -> None:
    """One event, two real targets: one JSON post and one email, and a second pass sends nothing."""
    async with http_receiver() as receiver:
        with smtp_server() as smtp:
            dispatcher = AlertDispatcher(
                store,
                [
                    AlertTarget(name="hook", url=f"json://127.0.0.1:{receiver.port}/alerts"),
                    AlertTarget(name="mail", url=smtp.mailto_url()),
                ],
            )
            await dispatcher.start_cursors()
            [stored] = await store.record_events([srm_event()])
            assert await dispatcher.deliver_pending() == 2
            assert await dispatcher.deliver_pending() == 0
            [post] = await receiver.bodies.wait_for(1)
            [mail] = await smtp.messages.wait_for(1)
    assert post["path"] == "/alerts"
    assert post["json"]["title"] == "Checkout redesign: sample ratio mismatch detected"
    assert f"event #{stored.id}" in post["json"]["message"]
    assert mail["Subject"] == "Checkout redesign: sample ratio mismatch detected"
    assert "Sequential SRM p-value 0.0002" in mail.get_body(("plain", "html")).get_content()
    assert await store.cursor("alerts:hook") == stored.id


async def test_a_target_that_was_down_receives_everything_once_it_is_back(store: Store) -> None:
    """Failed deliveries keep the cursor where it was; recovery delivers the backlog in order."""
    async with http_receiver() as receiver:
        dispatcher = AlertDispatcher(
            store, [AlertTarget(name="hook", url=f"json://127.0.0.1:{receiver.port}/a")]
        )
        await dispatcher.start_cursors()
        await store.record_events([srm_event(), srm_event().model_copy(update={"after": 0.0001})])
        receiver.status_code = 500
        assert await dispatcher.deliver_pending() == 0
        assert await store.cursor("alerts:hook") == 0
        receiver.status_code = 200
        assert await dispatcher.deliver_pending() == 2
        bodies = await receiver.bodies.wait_for(3)
    accepted = [b["json"]["message"] for b in bodies[1:]]
    assert "event #1" in accepted[0] and "event #2" in accepted[1]


async def test_a_new_target_starts_at_the_end_of_the_log(store: Store) -> None:
    """Adding a target does not replay the whole history to it."""
    await store.record_events([srm_event()])
    dispatcher = AlertDispatcher(store, [AlertTarget(name="late", url="json://127.0.0.1:9/x")])
    await dispatcher.start_cursors()
    assert await store.cursor("alerts:late") == 1
    assert await dispatcher.deliver_pending() == 0


async def test_the_running_dispatcher_delivers_as_soon_as_an_event_is_committed(
    store: Store,
) -> None:
    """The daemon's dispatcher is woken by the commit, not by a timer."""
    async with http_receiver() as receiver:
        dispatcher = AlertDispatcher(
            store,
            [AlertTarget(name="hook", url=f"json://127.0.0.1:{receiver.port}/a")],
            poll_interval_seconds=3600,
        )
        async with anyio.create_task_group() as tg:
            await tg.start(dispatcher.run)
            await store.record_events([srm_event()])
            [post] = await receiver.bodies.wait_for(1)
            tg.cancel_scope.cancel()
    assert "sample ratio mismatch" in post["json"]["title"]


def test_an_alert_target_never_shows_its_url() -> None:
    """The URL holds credentials, so it stays out of reprs and logs."""
    target = AlertTarget(name="slack", url="slack://T000/B000/secrettoken")
    assert "secrettoken" not in repr(target)
