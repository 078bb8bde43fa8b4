"""The detector: our verdict alerts once per phase; the platform's flips are information."""

from __future__ import annotations

from datetime import UTC, datetime

from store import (
    Detection,
    EventKind,
    Experiment,
    MetricResult,
    Snapshot,
    Variation,
    VariationResult,
    Verdict,
)
from watcher import ChangeDetector, StatsPolicy

WHEN = datetime(2026, 5, 1, tzinfo=UTC)
EXPERIMENT = Experiment(
    source="gb",
    experiment_id="exp_d",
    name="D",
    status="running",
    variations=(
        Variation(variation_id="a", name="A", weight=0.5),
        Variation(variation_id="b", name="B", weight=0.5),
    ),
)


def snapshot(users: int, rate_b: float, *, phase: str = "0", platform: Verdict) -> Snapshot:
    def arm(variation_id: str, rate: float, verdict: Verdict) -> VariationResult:
        return VariationResult(
            variation_id=variation_id,
            users=users,
            numerator=round(users * rate),
            mean=round(users * rate) / users,
            stddev=((round(users * rate) / users) * (1 - round(users * rate) / users)) ** 0.5,
            platform_verdict=verdict,
        )

    return Snapshot(
        source="gb",
        experiment_id="exp_d",
        phase=phase,
        upstream_updated_at=WHEN,
        metrics=(
            MetricResult(
                metric_id="conv",
                variations=(arm("a", 0.10, Verdict.BASELINE), arm("b", rate_b, platform)),
            ),
        ),
    )


def detect(previous: Snapshot | None, current: Snapshot) -> Detection:
    return ChangeDetector(clock=lambda: WHEN, policy=StatsPolicy())(
        before=EXPERIMENT, after=EXPERIMENT, previous=previous, current=current
    )


def test_a_strong_effect_alerts_once_and_the_verdict_then_stays() -> None:
    """Our significance fires on the first crossing only; later polls keep the verdict quietly."""
    first = detect(None, snapshot(20_000, 0.13, platform=Verdict.WON))
    assert [e.kind for e in first.events] == [
        EventKind.SIGNIFICANCE_CHANGED,
        EventKind.PLATFORM_VERDICT_CHANGED,
    ]
    significance = first.events[0]
    assert significance.after == "won" and significance.details["verdict_by"] == "expwatch"
    assert significance.details["absolute_ci_low"] > 0
    assert first.snapshot is not None
    second = detect(first.snapshot, snapshot(21_000, 0.13, platform=Verdict.WON))
    assert second.events == ()
    assert second.snapshot is not None
    [_, b] = second.snapshot.metrics[0].variations
    assert b.ours is not None and b.ours.verdict is Verdict.WON


def test_a_platform_call_on_a_small_effect_is_information_not_significance() -> None:
    """A fixed-horizon 'won' from the platform does not make our verdict significant."""
    detection = detect(
        snapshot(2_000, 0.10, platform=Verdict.INCONCLUSIVE),
        snapshot(2_100, 0.115, platform=Verdict.WON),
    )
    assert [e.kind for e in detection.events] == [EventKind.PLATFORM_VERDICT_CHANGED]
    assert detection.events[0].details["our_verdict"] == "inconclusive"


def test_too_few_users_give_no_verdict_and_no_nan() -> None:
    """Below the minimum sample our verdict is None with a reason, never a NaN."""
    detection = detect(None, snapshot(50, 0.5, platform=Verdict.INCONCLUSIVE))
    assert detection.events == ()
    assert detection.snapshot is not None
    [_, b] = detection.snapshot.metrics[0].variations
    assert b.ours is not None and b.ours.verdict is None and "fewer than" in (b.ours.reason or "")
    assert detection.snapshot.content_hash()  # serializable: no NaN reached the record


def test_a_new_phase_starts_a_new_sequence() -> None:
    """After a phase change the earlier crossing does not carry over."""
    crossed = detect(None, snapshot(20_000, 0.13, platform=Verdict.WON)).snapshot
    assert crossed is not None
    restarted = detect(crossed, snapshot(300, 0.10, phase="1", platform=Verdict.INCONCLUSIVE))
    assert restarted.snapshot is not None
    [_, b] = restarted.snapshot.metrics[0].variations
    assert b.ours is not None and b.ours.verdict is Verdict.INCONCLUSIVE
