"""The per-source circuit breaker, driven by a manual clock."""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta

import anyio
import pytest
from anyio.abc import TaskStatus
from pydantic import ValidationError

from store import PayloadError, SourceError, SourceUnavailable
from tests.helpers import ManualClock
from watcher.breaker import BreakerOpen, BreakerState, CircuitBreaker, CircuitState

pytestmark = pytest.mark.anyio

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def down() -> SourceUnavailable:
    return SourceUnavailable("GrowthBook did not answer", source="gb", status_code=503)


def only_unavailability(exc: Exception) -> bool:
    return isinstance(exc, SourceUnavailable)


async def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(SourceUnavailable):
            async with breaker.call():
                raise down()


async def succeed(breaker: CircuitBreaker) -> None:
    async with breaker.call():
        pass


async def hold_a_call(
    breaker: CircuitBreaker, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Enter a call and stay in it until cancelled."""
    async with breaker.call():
        task_status.started()
        await anyio.sleep_forever()


async def test_the_breaker_opens_after_the_threshold_of_consecutive_failures() -> None:
    """Four failures leave it closed, a success resets the count, five in a row open it."""
    clock = ManualClock()
    breaker = CircuitBreaker("gb", failure_threshold=5, clock=clock)
    await fail(breaker, 4)
    assert breaker.state is CLOSED and breaker.snapshot().consecutive_failures == 4
    await succeed(breaker)
    assert breaker.snapshot().consecutive_failures == 0
    await fail(breaker, 4)
    assert breaker.state is CLOSED
    await fail(breaker)
    state = breaker.snapshot()
    assert state.state is OPEN and state.consecutive_failures == 5
    assert state.opened_at == clock.now()
    assert state.open_until == clock.now() + timedelta(seconds=60)
    assert state.last_error == "SourceUnavailable: GrowthBook did not answer"


async def test_an_open_breaker_refuses_without_running_the_call_and_says_until_when() -> None:
    """While open, call() raises BreakerOpen (a SourceError) naming the source and the end."""
    clock = ManualClock()
    breaker = CircuitBreaker("gb", failure_threshold=1, cooldown_seconds=60, clock=clock)
    await fail(breaker)
    clock.advance(59.999999)
    ran = False
    with pytest.raises(BreakerOpen) as refused:
        async with breaker.call():
            ran = True
    assert not ran
    error = refused.value
    assert isinstance(error, SourceError) and error.source == "gb" and not error.probing
    assert error.until == clock.now() + timedelta(microseconds=1)
    assert "'gb'" in str(error) and error.until.isoformat() in str(error)


async def test_after_the_cooldown_exactly_one_probe_goes_through_and_success_closes() -> None:
    """Of several concurrent callers one probes; the others are refused until it succeeds."""
    clock = ManualClock()
    breaker = CircuitBreaker("gb", failure_threshold=2, cooldown_seconds=60, clock=clock)
    await fail(breaker, 2)
    clock.advance(60)
    probe_may_finish = anyio.Event()

    async def probe(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with breaker.call():
            task_status.started()
            await probe_may_finish.wait()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(probe)
            assert breaker.state is HALF_OPEN
            for _ in range(3):
                with pytest.raises(BreakerOpen) as refused:
                    await succeed(breaker)
                assert refused.value.probing and "probe" in str(refused.value)
            probe_may_finish.set()
    state = breaker.snapshot()
    assert state == BreakerState(last_error="SourceUnavailable: GrowthBook did not answer")
    await succeed(breaker)
    await succeed(breaker)


async def test_a_failed_probe_reopens_with_a_growing_cooldown_up_to_the_cap() -> None:
    """Each failed probe doubles the cooldown (60, 120, 240, …) until 900 s; the outage's
    start is kept."""
    clock = ManualClock()
    breaker = CircuitBreaker(
        "gb", failure_threshold=1, cooldown_seconds=60, max_cooldown_seconds=900, clock=clock
    )
    outage_start = clock.now()
    await fail(breaker)
    cooldowns = []
    for _ in range(6):
        state = breaker.snapshot()
        assert state.open_until is not None
        wait = state.open_until - clock.now()
        cooldowns.append(wait.total_seconds())
        clock.advance(wait.total_seconds())
        await fail(breaker)  # the probe
    assert cooldowns == [60, 120, 240, 480, 900, 900]
    state = breaker.snapshot()
    assert state.state is OPEN and state.failed_probes == 6 and state.opened_at == outage_start
    assert state.consecutive_failures == 7


async def test_a_growth_of_one_keeps_the_cooldown_fixed_and_huge_counts_hit_the_cap() -> None:
    """cooldown_growth=1 never grows; an enormous number of failed probes cannot overflow."""
    fixed = CircuitBreaker("gb", cooldown_growth=1, clock=ManualClock())
    assert [fixed.cooldown_after(n) for n in (0, 1, 50)] == [60, 60, 60]
    grows = CircuitBreaker("gb", clock=ManualClock())
    assert grows.cooldown_after(100_000) == 900


async def test_a_cancelled_call_in_the_closed_state_counts_as_nothing() -> None:
    """A cancelled call neither resets nor adds to the consecutive failures."""
    breaker = CircuitBreaker("gb", failure_threshold=3, clock=ManualClock())
    await fail(breaker, 2)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(hold_a_call, breaker)
            tg.cancel_scope.cancel()
    assert breaker.state is CLOSED and breaker.snapshot().consecutive_failures == 2
    await fail(breaker)
    assert breaker.state is OPEN


async def test_a_cancelled_probe_leaves_the_breaker_open_with_the_probe_available() -> None:
    """Cancelling the half-open probe returns to open, and the very next caller may probe."""
    clock = ManualClock()
    transitions: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        "gb",
        failure_threshold=1,
        clock=clock,
        on_transition=lambda before, after, state: transitions.append((before, after)),
    )
    await fail(breaker)
    clock.advance(60)
    before = breaker.snapshot()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(hold_a_call, breaker)
            assert breaker.state is HALF_OPEN
            tg.cancel_scope.cancel()
    assert breaker.snapshot() == before
    await succeed(breaker)  # no wait: the probe is available again
    assert breaker.state is CLOSED
    assert transitions == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


async def test_an_exception_the_caller_does_not_count_means_the_source_answered() -> None:
    """With counts= only for unavailability, a payload error resets failures and closes a
    half-open breaker; a per-call counts= overrides the breaker's own."""
    clock = ManualClock()
    breaker = CircuitBreaker("gb", failure_threshold=2, counts=only_unavailability, clock=clock)
    await fail(breaker)
    with pytest.raises(PayloadError):
        async with breaker.call():
            raise PayloadError("results: field required", source="gb")
    assert breaker.state is CLOSED and breaker.snapshot().consecutive_failures == 0
    for _ in range(2):
        with pytest.raises(PayloadError):
            async with breaker.call(counts=lambda exc: True):
                raise PayloadError("results: field required", source="gb")
    assert breaker.state is OPEN
    clock.advance(60)
    with pytest.raises(PayloadError):
        async with breaker.call():
            raise PayloadError("results: field required", source="gb")
    assert breaker.state is CLOSED


async def test_a_failing_predicate_still_counts_the_call_as_failed() -> None:
    """If counts= itself raises, the call is a failure and the predicate's error surfaces."""

    def broken(exc: Exception) -> bool:
        raise RuntimeError("bad predicate")

    breaker = CircuitBreaker("gb", failure_threshold=1, counts=broken, clock=ManualClock())
    with pytest.raises(RuntimeError, match="bad predicate"):
        async with breaker.call():
            raise down()
    assert breaker.state is OPEN


async def test_outcomes_of_calls_admitted_before_a_transition_are_ignored() -> None:
    """A call that started while closed and ends after the breaker opened changes nothing,
    whether it succeeds or fails."""
    clock = ManualClock()
    breaker = CircuitBreaker("gb", failure_threshold=1, clock=clock)
    release = anyio.Event()

    async def slow_call(
        error: Exception | None, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        with contextlib.suppress(SourceUnavailable):
            async with breaker.call():
                task_status.started()
                await release.wait()
                if error is not None:
                    raise error

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(slow_call, None)
            await tg.start(slow_call, down())
            await fail(breaker)
            opened = breaker.snapshot()
            release.set()
    assert breaker.snapshot() == opened


async def test_a_restored_open_breaker_refuses_until_its_cooldown_then_probes_once() -> None:
    """After a restart the stored open state still refuses; once its cooldown has passed,
    one probe is allowed, and a stored half-open state resumes with the probe available."""
    clock = ManualClock()
    original = CircuitBreaker("gb", failure_threshold=1, clock=clock)
    await fail(original)
    stored = original.snapshot().model_dump_json()

    restored = CircuitBreaker(
        "gb", failure_threshold=1, clock=clock, state=BreakerState.model_validate_json(stored)
    )
    assert restored.snapshot() == original.snapshot()
    with pytest.raises(BreakerOpen):
        await succeed(restored)
    clock.advance(3600)
    restarted = CircuitBreaker(
        "gb", failure_threshold=1, clock=clock, state=BreakerState.model_validate_json(stored)
    )
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(hold_a_call, restarted)
            with pytest.raises(BreakerOpen):
                await succeed(restarted)  # one probe only
            in_flight = restarted.snapshot()
            tg.cancel_scope.cancel()
    assert in_flight.state is HALF_OPEN
    after_crash = CircuitBreaker("gb", clock=clock, state=in_flight)
    assert after_crash.state is OPEN
    await succeed(after_crash)
    assert after_crash.state is CLOSED


async def test_every_transition_is_reported_with_the_state_to_persist() -> None:
    """The callback sees each transition in order, with the snapshot after it; failures
    below the threshold and stale outcomes are not transitions."""
    clock = ManualClock()
    seen: list[tuple[str, str, BreakerState]] = []
    breaker = CircuitBreaker(
        "gb",
        failure_threshold=2,
        clock=clock,
        on_transition=lambda before, after, state: seen.append((before, after, state)),
    )
    await fail(breaker)
    assert seen == []
    await fail(breaker)
    clock.advance(60)
    await fail(breaker)
    clock.advance(120)
    await succeed(breaker)
    assert [(before, after) for before, after, _ in seen] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert [state.state for _, _, state in seen] == [OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]
    assert seen[-1][2] == breaker.snapshot()
    assert seen[2][2].failed_probes == 1


async def test_a_failing_transition_callback_is_logged_and_does_not_mask_the_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An observer's bug is logged; the breaker still opens and the call's error surfaces."""

    def broken(before: str, after: str, state: BreakerState) -> None:
        raise RuntimeError("store is down")

    breaker = CircuitBreaker("gb", failure_threshold=1, clock=ManualClock(), on_transition=broken)
    with caplog.at_level(logging.ERROR, logger="watcher.breaker"):
        await fail(breaker)
    assert breaker.state is OPEN
    assert "on_transition failed" in caplog.text and "store is down" in caplog.text


async def test_nonsense_options_and_states_are_refused() -> None:
    """Thresholds, cooldowns and growth are checked; an open state needs its end."""
    clock = ManualClock()
    for options, word in [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"cooldown_seconds": -1}, "cooldown_seconds"),
        ({"cooldown_seconds": 60, "max_cooldown_seconds": 30}, "max_cooldown_seconds"),
        ({"cooldown_growth": 0.5}, "cooldown_growth"),
    ]:
        with pytest.raises(ValueError, match=word):
            CircuitBreaker("gb", clock=clock, **options)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="open_until"):
        BreakerState(state=CircuitState.OPEN)
