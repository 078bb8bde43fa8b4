"""The detector: our verdict alerts once per phase; the platform's flips are information;
every other event compares two consecutive observations, and a first sighting is a baseline."""

from __future__ import annotations

from datetime import UTC, datetime

from store import (
    Decision,
    Detection,
    Event,
    EventKind,
    Experiment,
    HealthCheck,
    HealthStatus,
    MetricResult,
    MetricRole,
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
    phase="0",
    variations=(
        Variation(variation_id="a", name="A", weight=0.5),
        Variation(variation_id="b", name="B", weight=0.5),
    ),
)


def arm(variation_id: str, users: int, rate: float, verdict: Verdict) -> VariationResult:
    conversions = round(users * rate)
    mean = conversions / users
    return VariationResult(
        variation_id=variation_id,
        variation_name=variation_id.upper(),
        users=users,
        numerator=conversions,
        mean=mean,
        stddev=(mean * (1 - mean)) ** 0.5,
        platform_verdict=verdict,
    )


def metric(
    metric_id: str,
    users: int,
    rate_b: float,
    *,
    role: MetricRole = MetricRole.GOAL,
    higher_is_better: bool = True,
    platform: Verdict = Verdict.INCONCLUSIVE,
    users_b: int | None = None,
) -> MetricResult:
    """A conversion metric: 10 % in the control `a`, `rate_b` in the treatment `b`."""
    return MetricResult(
        metric_id=metric_id,
        metric_name=metric_id.title(),
        role=role,
        higher_is_better=higher_is_better,
        variations=(
            arm("a", users, 0.10, Verdict.BASELINE),
            arm("b", users if users_b is None else users_b, rate_b, platform),
        ),
    )


def snapshot(
    users: int,
    rate_b: float,
    *,
    phase: str = "0",
    platform: Verdict,
    users_b: int | None = None,
    also: tuple[MetricResult, ...] = (),
    health: tuple[HealthCheck, ...] = (),
) -> Snapshot:
    return Snapshot(
        source="gb",
        experiment_id="exp_d",
        phase=phase,
        upstream_updated_at=WHEN,
        total_users=users + (users if users_b is None else users_b),
        metrics=(metric("conv", users, rate_b, platform=platform, users_b=users_b), *also),
        health_checks=health,
    )


def detect(
    previous: Snapshot | None,
    current: Snapshot | None,
    *,
    before: Experiment | None = EXPERIMENT,
    after: Experiment = EXPERIMENT,
) -> Detection:
    return ChangeDetector(clock=lambda: WHEN, policy=StatsPolicy())(
        before=before, after=after, previous=previous, current=current
    )


def kinds(detection: Detection) -> list[EventKind]:
    return [e.kind for e in detection.events]


def assessed(current: Snapshot, previous: Snapshot | None = None) -> Snapshot:
    """`current` as the store keeps it: with our assessment."""
    snapshot = detect(previous, current).snapshot
    assert snapshot is not None
    return snapshot


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


def test_a_harmed_guardrail_regresses_in_place_of_significance_once_per_phase() -> None:
    """A lower-is-better guardrail that rises crosses to lost: one guardrail_regressed, carrying
    both verdicts and our interval, and no significance_changed for that crossing."""
    errors = metric("errors", 20_000, 0.12, role=MetricRole.GUARDRAIL, higher_is_better=False)
    first = detect(
        snapshot(20_000, 0.10, platform=Verdict.INCONCLUSIVE),
        snapshot(20_000, 0.10, platform=Verdict.INCONCLUSIVE, also=(errors,)),
    )
    assert kinds(first) == [EventKind.METRIC_ADDED, EventKind.GUARDRAIL_REGRESSED]
    regressed = first.events[1]
    assert (regressed.metric_id, regressed.variation_id) == ("errors", "b")
    assert (regressed.before, regressed.after) == (None, "lost")
    assert regressed.details["metric_role"] == "guardrail"
    assert regressed.details["verdict_by"] == "expwatch"
    assert regressed.details["platform_verdict"] == "inconclusive"
    assert regressed.details["absolute_ci_low"] > 0  # the harmful direction: errors went up
    assert first.snapshot is not None
    again = metric("errors", 21_000, 0.12, role=MetricRole.GUARDRAIL, higher_is_better=False)
    later = detect(
        first.snapshot, snapshot(21_000, 0.10, platform=Verdict.INCONCLUSIVE, also=(again,))
    )
    assert later.events == ()


def test_a_guardrail_regresses_only_in_its_harmful_direction() -> None:
    """A higher-is-better guardrail that falls regresses; one that improves as strongly does not,
    and a goal metric that is lost stays a significance_changed."""
    falling = metric("retention", 20_000, 0.08, role=MetricRole.GUARDRAIL)
    improving = metric("latency", 20_000, 0.08, role=MetricRole.GUARDRAIL, higher_is_better=False)
    detection = detect(
        None, snapshot(20_000, 0.08, platform=Verdict.INCONCLUSIVE, also=(falling, improving))
    )
    assert [(e.kind, e.metric_id, e.after) for e in detection.events] == [
        (EventKind.SIGNIFICANCE_CHANGED, "conv", "lost"),
        (EventKind.GUARDRAIL_REGRESSED, "retention", "lost"),
    ]


def test_a_decision_alerts_once_with_the_decision_before_and_after() -> None:
    """A decision recorded on a known experiment is one decision_made; seeing it again is not."""
    decided = EXPERIMENT.model_copy(
        update={"status": "stopped", "decision": Decision(outcome="won", variation_id="b")}
    )
    detection = detect(None, None, after=decided)
    assert kinds(detection) == [EventKind.STATUS_CHANGED, EventKind.DECISION_MADE]
    decision = detection.events[1]
    assert decision.before is None
    assert decision.after == {"outcome": "won", "variation_id": "b"}
    assert decision.variation_id == "b" and decision.details["variation_name"] == "B"
    assert detect(None, None, before=decided, after=decided).events == ()


def test_a_changed_decision_alerts_and_a_withdrawn_one_does_not() -> None:
    """From won to launched is a new decision; a decision the platform no longer reports is
    unknown, not a change."""
    won = EXPERIMENT.model_copy(update={"decision": Decision(outcome="won", variation_id="b")})
    launched = EXPERIMENT.model_copy(
        update={"decision": Decision(outcome="launched", variation_id="b")}
    )
    [event] = detect(None, None, before=won, after=launched).events
    assert event.kind is EventKind.DECISION_MADE
    assert (event.before, event.after) == (
        {"outcome": "won", "variation_id": "b"},
        {"outcome": "launched", "variation_id": "b"},
    )
    assert detect(None, None, before=launched, after=EXPERIMENT).events == ()


DECIDED = EXPERIMENT.model_copy(
    update={
        "status": "stopped",
        "phase": "2",
        "detailed_status": "Unhealthy",
        "decision": Decision(outcome="won", variation_id="b"),
    }
)
FAILING = (HealthCheck(name="Balance", status=HealthStatus.FAILED, check_type="balance"),)


def test_a_first_sighting_alerts_nothing_the_platform_already_shows() -> None:
    """An experiment never seen before, already stopped, decided, in a later phase, unhealthy
    and failing a check, is a baseline: only the platform's win is recorded (information, not
    an alert), and the next poll is quiet."""
    results = snapshot(2_000, 0.115, phase="2", platform=Verdict.WON, health=FAILING)
    first = detect(None, results, before=None, after=DECIDED)
    assert kinds(first) == [EventKind.PLATFORM_VERDICT_CHANGED]
    assert first.snapshot is not None
    assert detect(None, None, before=None, after=DECIDED).events == ()
    later = snapshot(2_100, 0.115, phase="2", platform=Verdict.WON, health=FAILING)
    assert detect(first.snapshot, later, before=DECIDED, after=DECIDED).events == ()


def test_a_first_sighting_still_reports_what_only_expwatch_judges() -> None:
    """Our own verdicts and SRM test are news even at first sight: they fire once, and the
    next poll, resuming them, is quiet."""
    results = snapshot(20_000, 0.13, phase="2", platform=Verdict.WON, users_b=22_000)
    first = detect(None, results, before=None, after=DECIDED)
    assert kinds(first) == [
        EventKind.SIGNIFICANCE_CHANGED,
        EventKind.PLATFORM_VERDICT_CHANGED,
        EventKind.SRM_DETECTED,
    ]
    later = snapshot(21_000, 0.13, phase="2", platform=Verdict.WON, users_b=23_000)
    assert detect(first.snapshot, later, before=DECIDED, after=DECIDED).events == ()


def test_the_same_results_recorded_again_fire_nothing() -> None:
    """Re-recording a snapshot, as a new object or the very same one, changes nothing."""
    errors = metric("errors", 20_000, 0.12, role=MetricRole.GUARDRAIL, higher_is_better=False)
    raw = snapshot(20_000, 0.13, platform=Verdict.WON, users_b=22_000, also=(errors,))
    first = detect(None, raw)
    assert set(kinds(first)) == {
        EventKind.SIGNIFICANCE_CHANGED,
        EventKind.GUARDRAIL_REGRESSED,
        EventKind.PLATFORM_VERDICT_CHANGED,
        EventKind.SRM_DETECTED,
    }
    assert first.snapshot is not None
    assert detect(first.snapshot, raw.model_copy()).events == ()
    assert detect(first.snapshot, first.snapshot) == Detection()


def test_metrics_added_and_removed_are_named_before_and_after() -> None:
    """A metric new to the phase's results is metric_added (after = its name); one gone is
    metric_removed (before = its name)."""
    revenue = metric("revenue", 2_000, 0.10)
    without = assessed(snapshot(2_000, 0.10, platform=Verdict.INCONCLUSIVE))
    with_revenue = snapshot(2_100, 0.10, platform=Verdict.INCONCLUSIVE, also=(revenue,))
    [added] = detect(without, with_revenue).events
    assert added.kind is EventKind.METRIC_ADDED and added.metric_id == "revenue"
    assert (added.before, added.after) == (None, "Revenue")
    [removed] = detect(
        assessed(with_revenue), snapshot(2_200, 0.10, platform=Verdict.INCONCLUSIVE)
    ).events
    assert removed.kind is EventKind.METRIC_REMOVED and removed.metric_id == "revenue"
    assert (removed.before, removed.after) == ("Revenue", None)
    assert removed.details["metric_role"] == "goal"


def test_no_metric_change_without_two_metric_sets_of_one_phase() -> None:
    """The first results, results without metrics yet, and a new phase's results are compared
    with no earlier set of metrics, so none of them adds or removes a metric."""
    revenue = metric("revenue", 2_000, 0.10)
    base = assessed(snapshot(2_000, 0.10, platform=Verdict.INCONCLUSIVE))
    assert (
        detect(None, snapshot(2_000, 0.10, platform=Verdict.INCONCLUSIVE, also=(revenue,))).events
        == ()
    )
    empty = base.model_copy(update={"metrics": (), "our_srm": None, "total_users": 0.0})
    assert detect(base, empty).events == ()
    assert (
        detect(empty, snapshot(2_100, 0.10, platform=Verdict.INCONCLUSIVE, also=(revenue,))).events
        == ()
    )
    next_phase = snapshot(300, 0.10, phase="1", platform=Verdict.INCONCLUSIVE, also=(revenue,))
    assert detect(base, next_phase).events == ()


def test_a_new_phase_alerts_once_whether_results_follow_at_once_or_later() -> None:
    """The experiment's phase decides: one phase_started when it changes, none when its
    results catch up at a later poll, and statistics restart with those results."""
    crossed = assessed(snapshot(20_000, 0.13, platform=Verdict.INCONCLUSIVE))
    phase_1 = EXPERIMENT.model_copy(update={"phase": "1"})
    restarted = snapshot(300, 0.10, phase="1", platform=Verdict.INCONCLUSIVE)
    together = detect(crossed, restarted, after=phase_1)
    assert kinds(together) == [EventKind.PHASE_STARTED]
    started = together.events[0]
    assert (started.before, started.after) == ("0", "1")
    assert started.details["expected_weights"] == {"a": 0.5, "b": 0.5}
    assert kinds(detect(crossed, None, after=phase_1)) == [EventKind.PHASE_STARTED]
    caught_up = detect(crossed, restarted, before=phase_1, after=phase_1)
    assert caught_up.events == ()
    assert caught_up.snapshot is not None
    [_, b] = caught_up.snapshot.metrics[0].variations
    assert b.ours is not None and b.ours.verdict is Verdict.INCONCLUSIVE


def test_without_an_experiment_phase_the_results_phase_decides() -> None:
    """A source whose experiments carry no phase gets phase_started from its results; a phase
    appearing where there was none is not a new phase."""
    unphased = EXPERIMENT.model_copy(update={"phase": ""})
    old = assessed(snapshot(2_000, 0.10, phase="0", platform=Verdict.INCONCLUSIVE))
    new = snapshot(300, 0.10, phase="1", platform=Verdict.INCONCLUSIVE)
    [started] = detect(old, new, before=unphased, after=unphased).events
    assert started.kind is EventKind.PHASE_STARTED and started.details["observed_in"] == "results"
    phased = EXPERIMENT.model_copy(update={"phase": "1"})
    assert detect(old, old, before=unphased, after=phased).events == ()
    no_phase = snapshot(2_100, 0.10, phase="", platform=Verdict.INCONCLUSIVE)
    assert detect(old, no_phase, before=unphased, after=unphased).events == ()


def test_a_new_phase_clears_the_old_phase_srm() -> None:
    """An SRM of the phase that ended is cleared when the new phase's results are balanced."""
    mismatched = assessed(snapshot(10_000, 0.10, platform=Verdict.INCONCLUSIVE, users_b=11_000))
    phase_1 = EXPERIMENT.model_copy(update={"phase": "1"})
    balanced = snapshot(1_000, 0.10, phase="1", platform=Verdict.INCONCLUSIVE)
    detection = detect(mismatched, balanced, after=phase_1)
    assert kinds(detection) == [EventKind.PHASE_STARTED, EventKind.SRM_CLEARED]


def test_a_status_change_carries_the_detailed_status_and_nothing_else_is_a_status_event() -> None:
    """status_changed includes the detailed status when known; a detailed status that only
    appears or disappears, and new tags, url or upstream version, fire nothing."""
    stopped = EXPERIMENT.model_copy(update={"status": "stopped", "detailed_status": "Won"})
    [event] = detect(None, None, after=stopped).events
    assert event.kind is EventKind.STATUS_CHANGED
    assert (event.before, event.after) == ("running", "stopped")
    assert event.details["detailed_status"] == "Won"
    [plain] = detect(None, None, after=EXPERIMENT.model_copy(update={"status": "stopped"})).events
    assert "detailed_status" not in plain.details
    listed = EXPERIMENT.model_copy(update={"detailed_status": None})
    got_one = EXPERIMENT.model_copy(update={"detailed_status": "No data"})
    assert detect(None, None, before=listed, after=got_one).events == ()
    assert detect(None, None, before=got_one, after=listed).events == ()
    cosmetic = EXPERIMENT.model_copy(
        update={"tags": ("checkout",), "url": "https://gb.example/x", "upstream_version": "v2"}
    )
    assert detect(None, None, after=cosmetic).events == ()


def test_growthbook_health_follows_the_detailed_status_when_both_are_known() -> None:
    """To or from "Unhealthy" or "No data" is a growthbook_status health change; other detailed
    statuses and unknown ones are not."""

    def status(detailed: str | None) -> Experiment:
        return EXPERIMENT.model_copy(update={"detailed_status": detailed})

    def changes(old: str | None, new: str | None) -> list[tuple[str, object, object]]:
        events: tuple[Event, ...] = detect(None, None, before=status(old), after=status(new)).events
        return [(e.details["check_type"], e.before, e.after) for e in events]

    assert changes("No data", "Unhealthy") == [("growthbook_status", "No data", "Unhealthy")]
    assert changes("Unhealthy", "Ready for review") == [
        ("growthbook_status", "Unhealthy", "Ready for review")
    ]
    assert changes("Unhealthy", "Unhealthy") == []
    assert changes("Ready for review", "Ship now") == []
    assert changes(None, "Unhealthy") == []
    assert changes("Unhealthy", None) == []
