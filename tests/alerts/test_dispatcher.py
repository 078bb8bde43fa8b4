"""Delivery through real targets: a Slack-compatible HTTP receiver (Apprise's own Slack plugin
pointed at it), a `json://` receiver and an SMTP server, all on loopback. Time is a manual
clock shared by the store and the dispatcher, so retries, digests and quiet hours are
tested without sleeping."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apprise.plugins.slack import NotifySlack

from alerts import (
    AlertDispatcher,
    AlertPolicy,
    AlertRule,
    AlertTarget,
    Level,
    QuietHours,
    RateLimit,
)
from store import DeliveryStatus, Event, EventKind, Store, sqlite_url
from tests.alerts.samples import URL, one_of_each_kind
from tests.helpers import HttpReceiver, ManualClock, http_receiver, smtp_server

pytestmark = pytest.mark.anyio

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def timed_store(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Store]:
    store = await Store.open(sqlite_url(tmp_path / "alerts.db"), clock=clock.now)
    yield store
    await store.aclose()


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    async with http_receiver() as r:
        yield r


@pytest.fixture
def slack_at(receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Apprise's Slack plugin posts to `webhook_url`; point it at the receiver, which
    answers as Slack's webhook does."""
    receiver.text_replies["/slack/"] = "ok"
    monkeypatch.setattr(NotifySlack, "webhook_url", f"{receiver.url}/slack")
    yield "slack://T0001/B0002/xoxsecrettoken123/#experiments"


def dispatcher(store: Store, *targets: AlertTarget, **kw: object) -> AlertDispatcher:
    kw.setdefault("retry_jitter", 0.0)
    return AlertDispatcher(store, targets, **kw)  # type: ignore[arg-type]


def srm(experiment_id: str = "exp_checkout") -> Event:
    return one_of_each_kind()[EventKind.SRM_DETECTED].model_copy(
        update={"experiment_id": experiment_id}
    )


def significance(experiment_id: str = "exp_checkout") -> Event:
    return one_of_each_kind()[EventKind.SIGNIFICANCE_CHANGED].model_copy(
        update={"experiment_id": experiment_id}
    )


async def test_every_kind_reaches_slack_email_and_the_webhook_in_their_own_format(
    timed_store: Store, receiver: HttpReceiver, slack_at: str
) -> None:
    """Each event kind produces, per channel: the JSON Slack would receive (mrkdwn with the
    experiment linked), an email whose subject says what happened with plain-text and HTML
    parts, and the documented JSON document inside Apprise's envelope."""
    with smtp_server() as smtp:
        d = dispatcher(
            timed_store,
            AlertTarget("slack", slack_at),
            AlertTarget("mail", smtp.mailto_url()),
            AlertTarget("hook", f"json://127.0.0.1:{receiver.port}/hook"),
            policy=AlertPolicy(rate_limit=RateLimit(None, None)),
        )
        await d.start_cursor()
        stored = await timed_store.record_events(list(one_of_each_kind().values()))
        assert await d.deliver_pending() == 3 * len(EventKind)
        bodies = await receiver.bodies.wait_for(2 * len(EventKind))
        mails = await smtp.messages.wait_for(len(EventKind))
    slack = [b for b in bodies if b["path"].startswith("/slack/")]
    hooks = [b["json"] for b in bodies if b["path"] == "/hook"]
    assert len(slack) == len(hooks) == len(mails) == len(EventKind)
    assert all(b["path"] == "/slack/T0001/B0002/xoxsecrettoken123" for b in slack)
    by_id = {e.id: e for e in stored}
    for post, hook, mail in zip(slack, hooks, mails, strict=True):
        document = hook["expwatch"]
        event = by_id[document["event_id"]]
        assert document["schema"] == "expwatch.alert/v1"
        assert document["kind"] == event.kind.value
        assert hook["title"] == mail["Subject"] == document["title"]
        [attachment] = post["json"]["attachments"]
        text = attachment["text"]
        assert f"expwatch event #{event.id}" in text
        assert post["json"]["channel"] == "#experiments"
        if event.experiment_id:
            # The experiment's name links to the platform, in Slack's own link syntax.
            assert f"<{URL}|Checkout redesign>" in text, text
        plain = mail.get_body(("plain",)).get_content()
        html = mail.get_body(("html",)).get_content()
        assert f"expwatch event #{event.id}" in plain and f"#{event.id}" in html
    significance_post = next(
        p
        for p, h in zip(slack, hooks, strict=True)
        if h["expwatch"]["kind"] == "significance_changed"
    )
    text = significance_post["json"]["attachments"][0]["text"]
    assert "Conversion" in text and "Treatment" in text and "+6.20 %" in text
    assert await timed_store.outbox.deliveries(status=DeliveryStatus.PENDING) == []


async def test_rules_route_by_tag_and_untagged_targets_hear_everything(
    timed_store: Store, receiver: HttpReceiver
) -> None:
    """SRM goes to the on-call targets, significance of exp_checkout to its team's channel,
    and a target without tags receives both."""
    hook = f"json://127.0.0.1:{receiver.port}"
    d = dispatcher(
        timed_store,
        AlertTarget("oncall", f"{hook}/oncall", tags=frozenset({"oncall"})),
        AlertTarget("checkout", f"{hook}/checkout", tags=frozenset({"team-checkout"})),
        AlertTarget("everything", f"{hook}/all"),
        policy=AlertPolicy(
            rules=(
                AlertRule(tags=frozenset({"oncall"}), levels=frozenset({Level.CRITICAL})),
                AlertRule(
                    tags=frozenset({"team-checkout"}),
                    kinds=frozenset({EventKind.SIGNIFICANCE_CHANGED}),
                    experiments=frozenset({"exp_checkout"}),
                ),
            )
        ),
    )
    await d.start_cursor()
    await timed_store.record_events([srm(), significance(), significance("exp_other")])
    assert await d.deliver_pending() == 5
    bodies = await receiver.bodies.wait_for(5)
    routed = sorted(
        (b["path"], b["json"]["expwatch"]["kind"], b["json"]["expwatch"]["experiment"]["id"])
        for b in bodies
    )
    assert routed == [
        ("/all", "significance_changed", "exp_checkout"),
        ("/all", "significance_changed", "exp_other"),
        ("/all", "srm_detected", "exp_checkout"),
        ("/checkout", "significance_changed", "exp_checkout"),
        ("/oncall", "srm_detected", "exp_checkout"),
    ]


async def test_a_target_down_for_hours_receives_everything_once_it_is_back(
    timed_store: Store, receiver: HttpReceiver, clock: ManualClock
) -> None:
    """Failures retry with exponential backoff on the clock; recovery delivers the backlog,
    in order, each event once."""
    receiver.status_code = 500
    d = dispatcher(
        timed_store,
        AlertTarget("hook", f"json://127.0.0.1:{receiver.port}/a"),
        retry_initial_seconds=60,
        retry_max_seconds=1800,
    )
    await d.start_cursor()
    stored = await timed_store.record_events([srm(), significance(), srm("exp_other")])
    attempts = 0
    for _ in range(8):  # about three hours of outage
        assert await d.deliver_pending() == 0
        attempts += 1
        next_due = await timed_store.outbox.next_due_at("hook")
        assert next_due is not None and next_due > clock.now()
        clock.advance((next_due - clock.now()).total_seconds())
    waits = [60 * 2**i for i in range(5)] + [1800] * 3
    assert clock.now() - START == timedelta(seconds=sum(waits))
    receiver.status_code = 200
    assert await d.deliver_pending() == 3
    assert await d.deliver_pending() == 0
    bodies = await receiver.bodies.wait_for(attempts + 3)
    accepted = [b["json"]["expwatch"]["event_id"] for b in bodies[attempts:]]
    assert accepted == [e.id for e in stored]
    assert all(not b["json"]["expwatch"]["possible_duplicate"] for b in bodies)
    [summary] = await timed_store.outbox.summary()
    assert summary.counts["delivered"] == 3 and summary.counts["pending"] == 0


async def test_retries_run_out_into_a_failed_row_and_an_alert_elsewhere(
    timed_store: Store, receiver: HttpReceiver, clock: ManualClock
) -> None:
    """After `give_up_after` the row is failed and visible, and an alert_delivery_failed
    event goes to the other targets, not to the failing one."""
    d = dispatcher(
        timed_store,
        AlertTarget("dead", "json://127.0.0.1:9/never"),
        AlertTarget("hook", f"json://127.0.0.1:{receiver.port}/a"),
        retry_initial_seconds=600,
        give_up_after=timedelta(hours=1),
    )
    await d.start_cursor()
    [event] = await timed_store.record_events([srm()])
    assert await d.deliver_pending() == 1  # the healthy target
    for _ in range(3):
        clock.advance(1800)
        await d.deliver_pending()
    [failed] = await timed_store.outbox.deliveries(status=DeliveryStatus.FAILED)
    assert (failed.target, failed.event_id) == ("dead", event.id)
    assert "did not accept" in (failed.reason or "")
    [notice] = await timed_store.events_after(event.id or 0)
    assert notice.kind is EventKind.ALERT_DELIVERY_FAILED
    assert notice.details["target"] == "dead" and notice.details["event_id"] == event.id
    bodies = await receiver.bodies.wait_for(2)
    assert [b["json"]["expwatch"]["kind"] for b in bodies] == [
        "srm_detected",
        "alert_delivery_failed",
    ]
    assert [r.target for r in await timed_store.outbox.deliveries(event_id=notice.id)] == ["hook"]
    summary = {s.target: s for s in await timed_store.outbox.summary()}
    assert summary["dead"].counts["failed"] == 1
    assert "did not accept" in (summary["dead"].last_error or "")


async def test_rate_limits_suppress_and_record_but_never_hold_back_critical_alerts(
    timed_store: Store, receiver: HttpReceiver, clock: ManualClock
) -> None:
    d = dispatcher(
        timed_store,
        AlertTarget("hook", f"json://127.0.0.1:{receiver.port}/a"),
        policy=AlertPolicy(rate_limit=RateLimit(per_experiment_per_hour=3, global_per_hour=4)),
    )
    await d.start_cursor()
    await timed_store.record_events([significance() for _ in range(4)])
    await timed_store.record_events([significance("exp_b"), significance("exp_c")])
    await timed_store.record_events([srm(), srm("exp_b")])
    assert await d.deliver_pending() == 6
    suppressed = await timed_store.outbox.deliveries(status=DeliveryStatus.SUPPRESSED)
    reasons = [(s.experiment_id, s.reason) for s in suppressed]
    assert reasons == [
        (
            "exp_checkout",
            "rate limit: 3 alerts for exp_checkout to hook in the last hour (limit 3)",
        ),
        ("exp_c", "rate limit: 4 alerts to hook in the last hour (limit 4)"),
    ]
    clock.advance(3601)  # the window moved on
    await timed_store.record_events([significance("exp_c")])
    assert await d.deliver_pending() == 1


async def test_a_digest_target_gets_one_message_per_window(
    timed_store: Store, receiver: HttpReceiver, clock: ManualClock
) -> None:
    d = dispatcher(
        timed_store,
        AlertTarget("hook", f"json://127.0.0.1:{receiver.port}/a", digest=timedelta(minutes=30)),
    )
    await d.start_cursor()
    stored = await timed_store.record_events([srm(), significance(), significance("exp_b")])
    assert await d.deliver_pending() == 0
    clock.advance(30 * 60)
    assert await d.deliver_pending() == 3
    [body] = await receiver.bodies.wait_for(1)
    document = body["json"]["expwatch"]
    assert document["schema"] == "expwatch.alert.digest/v1"
    assert sorted(e["event_id"] for e in document["events"]) == [e.id for e in stored]


async def test_quiet_hours_hold_all_but_critical_alerts_until_morning(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    clock = ManualClock(datetime(2026, 3, 2, 22, 30, tzinfo=ZoneInfo("Europe/Berlin")))
    store = await Store.open(sqlite_url(tmp_path / "q.db"), clock=clock.now)
    try:
        d = dispatcher(
            store,
            AlertTarget("hook", f"json://127.0.0.1:{receiver.port}/a"),
            policy=AlertPolicy(
                quiet_hours=QuietHours(time(22, 0), time(7, 0), ZoneInfo("Europe/Berlin"))
            ),
        )
        await d.start_cursor()
        await store.record_events([significance(), srm(), significance("exp_b")])
        assert await d.deliver_pending() == 1  # the SRM alert is critical: it goes now
        [held_a, held_b] = await store.outbox.deliveries(status=DeliveryStatus.PENDING)
        assert held_a.due_at == datetime(2026, 3, 3, 6, 0, tzinfo=UTC) == held_b.due_at
        clock.advance(8.5 * 3600 - 60)  # 06:59 Berlin
        assert await d.deliver_pending() == 0
        clock.advance(60)
        assert await d.deliver_pending() == 2
        bodies = await receiver.bodies.wait_for(2)
    finally:
        await store.aclose()
    assert bodies[0]["json"]["expwatch"]["kind"] == "srm_detected"
    assert bodies[1]["json"]["expwatch"]["schema"] == "expwatch.alert.digest/v1"


async def test_restart_delivers_what_was_pending_and_nothing_confirmed_twice(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    url = sqlite_url(tmp_path / "restart.db")
    target = AlertTarget("hook", f"json://127.0.0.1:{receiver.port}/a")
    store = await Store.open(url)
    d = dispatcher(store, target)
    await d.start_cursor()
    await store.record_events([srm()])
    assert await d.deliver_pending() == 1
    await store.record_events([significance(), srm("exp_b")])
    await d.route_pending()  # routed, not sent: then the process stops
    await store.aclose()
    store = await Store.open(url)
    try:
        assert await dispatcher(store, target).deliver_pending() == 2
        bodies = await receiver.bodies.wait_for(3)
    finally:
        await store.aclose()
    assert [b["json"]["expwatch"]["event_id"] for b in bodies] == [1, 2, 3]


async def test_a_notifier_cut_off_between_send_and_confirmation_resends_once_flagged(
    timed_store: Store, receiver: HttpReceiver
) -> None:
    """A row still `sending` when claimed again is sent again, flagged as a possible
    duplicate with its event id; the crash itself is exercised across processes in
    tests/alerts/test_crash.py."""
    d = dispatcher(timed_store, AlertTarget("hook", f"json://127.0.0.1:{receiver.port}/a"))
    await d.start_cursor()
    [event] = await timed_store.record_events([srm()])
    await d.route_pending()
    [row] = await timed_store.outbox.due("hook")
    await timed_store.outbox.claim([row.id])  # as a sender does just before a send
    assert await d.deliver_pending() == 1
    [body] = await receiver.bodies.wait_for(1)
    assert body["json"]["expwatch"]["possible_duplicate"] is True
    assert body["json"]["title"].startswith("[possible duplicate]")
    assert f"#{event.id}" in body["json"]["message"]
    [delivered] = await timed_store.outbox.deliveries(status=DeliveryStatus.DELIVERED)
    assert delivered.attempts == 2


async def test_failure_reasons_never_carry_the_target_url_secrets(timed_store: Store) -> None:
    secret = "hunter2secretpassword"
    d = dispatcher(timed_store, AlertTarget("hook", f"json://admin:{secret}@127.0.0.1:9/path"))
    await d.start_cursor()
    await timed_store.record_events([srm()])
    assert await d.deliver_pending() == 0
    [row] = await timed_store.outbox.deliveries()
    assert row.reason and "hook" in row.reason and secret not in row.reason
    assert not re.search(r"admin", row.reason)
    assert secret not in json.dumps(
        [s.__dict__ for s in await timed_store.outbox.summary()], default=str
    )
