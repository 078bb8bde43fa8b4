"""The outbox on SQLite and PostgreSQL: routing with the cursor, claiming, confirmation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from store import DeliveryStatus, Event, EventKind, NewDelivery, Store

pytestmark = pytest.mark.anyio

WHEN = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def event(experiment_id: str) -> Event:
    return Event(
        kind=EventKind.SRM_DETECTED,
        source="gb",
        experiment_id=experiment_id,
        after=0.0001,
        occurred_at=WHEN,
    )


async def test_routing_is_committed_with_the_cursor_and_never_twice(store: Store) -> None:
    a, b = await store.record_events([event("exp_a"), event("exp_b")])
    assert a.id is not None and b.id is not None
    now = store.outbox.now()
    routed = [
        NewDelivery(a.id, "slack", "exp_a", "critical", now),
        NewDelivery(a.id, "mail", "exp_a", "critical", now + timedelta(hours=1), batched=True),
        NewDelivery(b.id, "slack", "exp_b", "info", now, suppressed_reason="rate limit: x"),
    ]
    assert await store.outbox.route(routed, cursor="alerts:router", position=b.id) == 3
    assert await store.outbox.route(routed, cursor="alerts:router", position=b.id) == 0
    assert await store.cursor("alerts:router") == b.id
    [due] = await store.outbox.due("slack")
    assert (due.event_id, due.status, due.attempts) == (a.id, DeliveryStatus.PENDING, 0)
    assert await store.outbox.due("mail") == []
    assert await store.outbox.next_due_at("mail") == now + timedelta(hours=1)
    [suppressed] = await store.outbox.deliveries(status=DeliveryStatus.SUPPRESSED)
    assert suppressed.reason == "rate limit: x"
    assert await store.outbox.count_since("slack", now - timedelta(hours=1)) == 1
    assert await store.outbox.count_since("slack", now, experiment_id="exp_b") == 0


async def test_claims_count_attempts_and_flag_a_send_never_confirmed(store: Store) -> None:
    [a] = await store.record_events([event("exp_a")])
    assert a.id is not None
    now = store.outbox.now()
    await store.outbox.route(
        [NewDelivery(a.id, "hook", "exp_a", "critical", now)], cursor="r", position=a.id
    )
    [row] = await store.outbox.due("hook")
    [first] = await store.outbox.claim([row.id])
    assert (first.status, first.attempts, first.possible_duplicate) == (
        DeliveryStatus.SENDING,
        1,
        False,
    )
    [again] = await store.outbox.claim([row.id])  # as after a crash mid-send
    assert (again.attempts, again.possible_duplicate) == (2, True)
    await store.outbox.retry([row.id], error="HTTP 500 " * 200, at=now + timedelta(minutes=5))
    assert await store.outbox.due("hook") == []
    [summary] = await store.outbox.summary()
    assert summary.counts["pending"] == 1 and summary.oldest_pending_at is not None
    assert summary.last_error is not None and len(summary.last_error) == 1000
    await store.outbox.delivered([row.id])
    [done] = await store.outbox.deliveries()
    assert done.status is DeliveryStatus.DELIVERED and done.delivered_at is not None
    [summary] = await store.outbox.summary()
    assert summary.counts["delivered"] == 1 and summary.last_delivered_at == done.delivered_at


async def test_a_failing_target_keeps_one_retry_time_for_old_and_new_rows(store: Store) -> None:
    """After a failed attempt every waiting row of the target moves to its retry time
    (rows due later, like a digest's, keep theirs); new rows routed meanwhile join the
    retry instead of going out at once; an attempt whose outcome is unknown (a timeout)
    comes back flagged as a possible duplicate."""
    a, b, c, d = await store.record_events([event(f"exp_{x}") for x in "abcd"])
    now = store.outbox.now()
    later = now + timedelta(hours=2)
    retry_at = now + timedelta(minutes=5)
    await store.outbox.route(
        [
            NewDelivery(a.id or 0, "hook", "exp_a", "critical", now),
            NewDelivery(b.id or 0, "hook", "exp_b", "critical", now),
            NewDelivery(c.id or 0, "hook", "exp_c", "info", later, batched=True),
        ],
        cursor="r",
        position=c.id or 0,
    )
    [first] = await store.outbox.claim([(await store.outbox.due("hook"))[0].id])
    await store.outbox.retry([first.id], error="timed out", at=retry_at, outcome_unknown=True)
    await store.outbox.postpone("hook", at=retry_at)
    assert await store.outbox.due("hook") == []
    await store.outbox.route(
        [NewDelivery(d.id or 0, "hook", "exp_d", "critical", now)], cursor="r", position=d.id or 0
    )
    assert await store.outbox.due("hook") == []
    waiting = {r.event_id: r.due_at for r in await store.outbox.deliveries(target="hook")}
    assert waiting == {a.id: retry_at, b.id: retry_at, c.id: later, d.id: retry_at}
    [again] = await store.outbox.claim([first.id])
    assert again.possible_duplicate and again.attempts == 2
