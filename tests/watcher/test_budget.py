"""The per-source request budget, driven by a manual clock."""

from __future__ import annotations

import itertools
from bisect import bisect_left
from datetime import datetime, timedelta
from functools import partial

import anyio
import pytest
from anyio.abc import TaskGroup, TaskStatus
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import ManualClock
from watcher.budget import RateBudget

pytestmark = pytest.mark.anyio

MINUTE = timedelta(seconds=60)


class RecordingClock(ManualClock):
    """A manual clock that also remembers when its latest sleeper will wake."""

    last_wake_at: datetime | None = None

    async def sleep(self, seconds: float) -> None:
        self.last_wake_at = self.now() + timedelta(seconds=seconds)
        await super().sleep(seconds)


async def take(
    budget: RateBudget,
    clock: ManualClock,
    log: list[tuple[str, datetime]],
    label: str,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Acquire one token and log when; `started` as the caller enters `acquire`."""
    task_status.started()  # the caller is queued before its starter resumes
    await budget.acquire()
    log.append((label, clock.now()))


async def start_in_order(
    tg: TaskGroup,
    budget: RateBudget,
    clock: ManualClock,
    log: list[tuple[str, datetime]],
    labels: list[str],
) -> None:
    """Start one waiter per label, each parked in `acquire` before the next one arrives."""
    for label in labels:
        await tg.start(partial(take, budget, clock, log, label))


def busiest_minute(grants: list[datetime]) -> int:
    """The most grants in any half-open 60-second window (the busiest starts at a grant)."""
    return max((bisect_left(grants, g + MINUTE) - i for i, g in enumerate(grants)), default=0)


async def test_an_unlimited_budget_grants_at_once_and_counts() -> None:
    """Without a rate every acquire returns immediately, never sleeping on the clock."""
    clock = ManualClock()
    budget = RateBudget(None, clock=clock)
    with anyio.fail_after(5):
        for _ in range(1000):
            await budget.acquire()
    assert budget.granted == 1000 and clock.sleep_calls == 0
    assert budget.available is None and budget.rate_per_minute is None
    assert budget.interval_seconds is None and budget.next_token_at is None


async def test_an_unlimited_budget_still_honours_the_platforms_pause() -> None:
    """A 429's Retry-After holds back even a source without a rate of its own."""
    clock = ManualClock()
    budget = RateBudget(None, clock=clock)
    resume = clock.now() + timedelta(seconds=30)
    budget.pause_until(resume)
    assert budget.available == 0 and budget.next_token_at == resume
    log: list[tuple[str, datetime]] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await start_in_order(tg, budget, clock, log, ["a"])
            await clock.wait_for_sleep_calls(1)
            clock.advance(29.999999)
            await anyio.wait_all_tasks_blocked()
            assert log == []
            clock.advance(0.000001)
    assert log == [("a", resume)]
    assert budget.paused_until is None and budget.available is None


async def test_a_steady_rate_spaces_grants_exactly_one_interval_apart() -> None:
    """At 60 per minute the first token is free and the next is due exactly 1 s later."""
    clock = ManualClock()
    budget = RateBudget(60, clock=clock)
    start = clock.now()
    assert budget.available == 1 and budget.burst == 1 and budget.interval_seconds == 1.0
    await budget.acquire()
    assert budget.available == 0 and budget.next_token_at == start + timedelta(seconds=1)
    log: list[tuple[str, datetime]] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await start_in_order(tg, budget, clock, log, ["second"])
            await clock.wait_for_sleep_calls(1)
            assert budget.waiting == 1
            clock.advance(0.999999)
            await anyio.wait_all_tasks_blocked()
            assert log == [] and budget.granted == 1
            clock.advance(0.000001)
    assert log == [("second", start + timedelta(seconds=1))]
    assert budget.granted == 2 and budget.waiting == 0


async def test_a_burst_is_granted_at_once_and_refills_to_its_size_only() -> None:
    """burst=3 grants three immediately; a long idle spell refills three, not more."""
    clock = ManualClock()
    budget = RateBudget(60, burst=3, clock=clock)
    for _ in range(3):
        await budget.acquire()
    assert clock.sleep_calls == 0 and budget.available == 0
    clock.advance(1.5)
    assert budget.available == 1
    clock.advance(600)
    assert budget.available == 3 and budget.next_token_at is None


async def test_waiters_are_served_first_come_first_served() -> None:
    """Five parked callers get the next five tokens in their order of arrival, 1 s apart."""
    clock = ManualClock()
    budget = RateBudget(60, clock=clock)
    start = clock.now()
    await budget.acquire()
    log: list[tuple[str, datetime]] = []
    labels = ["a", "b", "c", "d", "e"]
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await start_in_order(tg, budget, clock, log, labels)
            assert budget.waiting == 5
            for parked in range(1, len(labels)):
                clock.advance(1)
                await clock.wait_for_sleep_calls(parked + 1)  # the next in line is parked
            clock.advance(1)
    assert log == [(label, start + timedelta(seconds=i + 1)) for i, label in enumerate(labels)]


async def test_a_late_caller_does_not_take_a_token_due_to_an_earlier_waiter() -> None:
    """A caller arriving just as the head's token falls due queues behind it (no barging)."""
    clock = ManualClock()
    budget = RateBudget(60, clock=clock)
    start = clock.now()
    await budget.acquire()
    log: list[tuple[str, datetime]] = []

    async def tick_when_second_sleeps() -> None:
        await clock.wait_for_sleep_calls(2)
        clock.advance(1)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await start_in_order(tg, budget, clock, log, ["early"])
            tg.start_soon(tick_when_second_sleeps)
            clock.advance(1)  # the early waiter's token is due, but it has not run yet
            assert budget.available == 1
            await budget.acquire()
            log.append(("late", clock.now()))
    assert log == [("early", start + timedelta(seconds=1)), ("late", start + timedelta(seconds=2))]


async def test_a_cancelled_waiter_takes_nothing_and_hands_on_its_place() -> None:
    """Cancelling the head of the line leaves the token to the next caller, on time."""
    clock = ManualClock()
    budget = RateBudget(60, clock=clock)
    start = clock.now()
    await budget.acquire()
    log: list[tuple[str, datetime]] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            async with anyio.create_task_group() as doomed:
                await doomed.start(partial(take, budget, clock, log, "cancelled"))
                await start_in_order(tg, budget, clock, log, ["next"])
                assert budget.waiting == 2
                doomed.cancel_scope.cancel()
            assert budget.waiting == 1
            clock.advance(1)
    assert log == [("next", start + timedelta(seconds=1))]
    assert budget.granted == 2


async def test_a_cancelled_caller_takes_no_free_token() -> None:
    """An acquire inside a cancelled scope raises before taking the available token."""
    budget = RateBudget(60, clock=ManualClock())
    with anyio.CancelScope() as scope:
        scope.cancel()
        await budget.acquire()
    assert scope.cancelled_caught and budget.granted == 0 and budget.available == 1


async def test_a_pause_holds_every_caller_until_its_end_and_only_extends() -> None:
    """pause_until blocks grants until the moment; an earlier pause does not shorten it."""
    clock = ManualClock()
    budget = RateBudget(60, burst=2, clock=clock)
    start = clock.now()
    await budget.acquire()  # a token is left, but the platform says 429 ...
    budget.pause_until(start + timedelta(seconds=10))
    budget.pause_until(start + timedelta(seconds=5))  # ... an earlier reset changes nothing
    assert budget.paused_until == start + timedelta(seconds=10) and budget.available == 0
    log: list[tuple[str, datetime]] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await start_in_order(tg, budget, clock, log, ["a", "b", "c"])
            clock.advance(6)
            budget.pause_until(start + timedelta(seconds=20))  # a later one extends it
            clock.advance(4)
            await clock.wait_for_sleep_calls(2)  # the first in line woke and slept on
            assert log == [] and budget.granted == 1
            clock.advance(10)
            await clock.wait_for_sleep_calls(3)  # two served from the refilled bucket
            assert budget.waiting == 1
            clock.advance(1)
    # the bucket refilled during the pause: two at its end, then one per interval
    at = start + timedelta(seconds=20)
    assert log == [("a", at), ("b", at), ("c", at + timedelta(seconds=1))]


async def test_pause_for_counts_retry_after_seconds_from_the_clocks_now() -> None:
    """pause_for(30) pauses until now + 30 s; a negative Retry-After pauses nothing."""
    clock = ManualClock()
    budget = RateBudget(60, clock=clock)
    budget.pause_for(-5)
    assert budget.paused_until is None and budget.available == 1
    budget.pause_for(30)
    assert budget.paused_until == clock.now() + timedelta(seconds=30)
    clock.advance(30)
    assert budget.paused_until is None and budget.available == 1


async def test_a_clock_stepping_back_delays_by_at_most_one_interval() -> None:
    """After the wall clock jumps back an hour, the next token is one interval away."""
    clock = ManualClock()
    budget = RateBudget(60, clock=clock)
    await budget.acquire()
    clock.advance(-3600)
    assert budget.next_token_at == clock.now() + timedelta(seconds=1)
    clock.advance(1)
    with anyio.fail_after(5):
        await budget.acquire()
    assert budget.granted == 2 and clock.sleep_calls == 0


def test_nonsense_options_are_refused() -> None:
    """A rate must be positive and a burst at least one."""
    for rate in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="rate_per_minute"):
            RateBudget(rate, clock=ManualClockStub())
    with pytest.raises(ValueError, match="burst"):
        RateBudget(60, burst=0, clock=ManualClockStub())


class ManualClockStub:
    """A clock for constructor checks that never run (ManualClock needs an event loop)."""

    def now(self) -> datetime:
        raise AssertionError("not used")

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("not used")


async def drive(
    budget: RateBudget, clock: RecordingClock, *, consumers: int, steps: list[tuple[str, int]]
) -> list[datetime]:
    """Greedy consumers acquire in a loop while the clock follows `steps`; the grant times.

    A step is ("next", 0): jump to the moment the next token is due (the tightest schedule),
    ("advance", µs) or ("pause", µs): the platform pauses the budget for that long.
    Between steps every consumer is parked: one asleep on the clock until its token is due,
    the others in line behind it.
    """
    grants: list[datetime] = []

    async def consume() -> None:
        while True:
            await budget.acquire()
            grants.append(clock.now())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(consumers):
                tg.start_soon(consume)
            await clock.wait_for_sleep_calls(1)
            for kind, microseconds in steps:
                if kind == "pause":
                    budget.pause_until(clock.now() + timedelta(microseconds=microseconds))
                    continue
                due = budget.next_token_at
                assert due is not None, "greedy consumers left a token unused"
                if kind == "next":
                    clock.advance((due - clock.now()).total_seconds())
                else:
                    clock.advance(microseconds / 1_000_000)
                assert clock.last_wake_at is not None
                if clock.now() >= clock.last_wake_at:  # the sleeper wakes; wait for the next
                    await clock.wait_for_sleep_calls(clock.sleep_calls + 1)
            tg.cancel_scope.cancel()
    assert grants == sorted(grants)
    return grants


@pytest.mark.parametrize(
    ("limit", "burst"),
    [(limit, burst) for limit in (1, 7, 11, 60, 61, 100) for burst in (1, 2, 3) if burst <= limit],
)
async def test_the_tightest_schedule_reaches_but_never_exceeds_the_platform_limit(
    limit: int, burst: int
) -> None:
    """With rate = limit - (burst - 1), jumping to each due token for ten minutes, no
    60-second window (sliding, or GrowthBook's fixed minutes) holds more than `limit`
    grants, and the busiest holds exactly `limit`: the budget is safe and not stingy."""
    clock = RecordingClock()
    start = clock.now()
    budget = RateBudget(limit - (burst - 1), burst=burst, clock=clock)
    steps = [("next", 0)] * (10 * (limit - burst + 1))
    grants = await drive(budget, clock, consumers=3, steps=steps)
    assert busiest_minute(grants) == limit
    per_fixed_minute: dict[int, int] = {}
    for g in grants:
        minute = (g - start) // MINUTE
        per_fixed_minute[minute] = per_fixed_minute.get(minute, 0) + 1
    assert max(per_fixed_minute.values()) <= limit


STEP = st.one_of(
    st.tuples(st.just("next"), st.just(0)),
    st.tuples(st.just("advance"), st.integers(1, 30_000_000)),
    st.tuples(st.just("pause"), st.integers(1, 90_000_000)),
)


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 120),
    burst=st.integers(1, 4),
    consumers=st.integers(1, 3),
    steps=st.lists(STEP, min_size=1, max_size=80),
)
async def test_no_sixty_second_window_ever_exceeds_the_limit(
    limit: int, burst: int, consumers: int, steps: list[tuple[str, int]]
) -> None:
    """Whatever the clock and the platform's pauses do, a budget with rate
    limit - (burst - 1) never grants more than `limit` within any 60 seconds; with burst 1
    grants are at least one interval apart."""
    burst = min(burst, limit)
    clock = RecordingClock()
    budget = RateBudget(limit - (burst - 1), burst=burst, clock=clock)
    grants = await drive(budget, clock, consumers=consumers, steps=steps)
    assert grants, "the first token is always free"
    assert busiest_minute(grants) <= limit
    if burst == 1:
        interval = timedelta(seconds=60 / limit)
        assert all(b - a >= interval for a, b in itertools.pairwise(grants))
