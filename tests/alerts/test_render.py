"""Each kind of event reads as what happened, where, before → after, and what to do next."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from alerts import Message, render
from store import Event, EventKind

WHEN = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def event(kind: EventKind, *, experiment_id: str | None = "exp_checkout", **fields: Any) -> Event:
    details = {"experiment_name": "Checkout redesign"} if experiment_id else {}
    details.update(fields.pop("details", {}))
    return Event(
        id=7,
        kind=kind,
        source="gb",
        experiment_id=experiment_id,
        details=details,
        occurred_at=WHEN,
        **fields,
    )


def test_a_regressed_guardrail_names_metric_variation_numbers_and_the_way_out() -> None:
    """guardrail_regressed is a failure naming the guardrail, the variation, our interval, the
    platform's verdict, and advice to stop or roll back."""
    message = render(
        event(
            EventKind.GUARDRAIL_REGRESSED,
            metric_id="met_errors",
            variation_id="v1",
            before="inconclusive",
            after="lost",
            details={
                "metric_name": "Checkout errors",
                "metric_role": "guardrail",
                "variation_name": "Treatment",
                "relative_change": 0.2,
                "relative_ci_low": 0.05,
                "relative_ci_high": 0.35,
                "p_value": 0.001,
                "alpha": 0.05,
                "platform_verdict": "inconclusive",
            },
        )
    )
    assert message.title == "Checkout redesign: guardrail Checkout errors regressed for Treatment"
    assert message.severity == "failure"
    assert "Checkout errors (guardrail), variation Treatment: inconclusive → lost" in message.body
    assert "+20.00 % (confidence sequence +5.00 % … +35.00 %)" in message.body
    assert "Platform says: inconclusive." in message.body
    assert "Consider stopping the experiment or rolling back Treatment." in message.body
    assert "(expwatch event #7, 2026-03-01 12:00 UTC)" in message.body


def test_a_decision_names_the_outcome_the_variation_and_the_rollout() -> None:
    """decision_made shows the decision before → after and what to roll out."""
    message = render(
        event(
            EventKind.DECISION_MADE,
            variation_id="v1",
            before=None,
            after={"outcome": "won", "variation_id": "v1"},
            details={"variation_name": "Treatment", "status": "stopped"},
        )
    )
    assert message.title == "Checkout redesign: decision recorded: won (Treatment)"
    assert "Decision: none → won (v1) (status stopped)." in message.body
    assert "roll out Treatment to everyone, then stop or archive" in message.body
    assert message.severity == "info"


def test_a_decision_without_a_variation_advises_the_control() -> None:
    """An abandoned experiment names no variation: the advice is to give everyone the decision."""
    message = render(
        event(
            EventKind.DECISION_MADE,
            before={"outcome": "won", "variation_id": "v1"},
            after={"outcome": "abandoned", "variation_id": None},
        )
    )
    assert message.title == "Checkout redesign: decision recorded: abandoned"
    assert "Decision: won (v1) → abandoned" in message.body
    assert "(usually the control)" in message.body


@pytest.mark.parametrize(
    ("kind", "before", "after", "title", "advice"),
    [
        (
            EventKind.METRIC_ADDED,
            None,
            "Revenue",
            "Checkout redesign: metric Revenue added",
            "Revenue (secondary, id met_revenue): absent → Revenue.",
        ),
        (
            EventKind.METRIC_REMOVED,
            "Revenue",
            None,
            "Checkout redesign: metric Revenue removed",
            "add the metric back in the experiment's analysis settings",
        ),
    ],
)
def test_a_metric_entering_or_leaving_the_results_is_named(
    kind: EventKind, before: str | None, after: str | None, title: str, advice: str
) -> None:
    """metric_added / metric_removed name the metric, its role and id, before → after."""
    message = render(
        event(
            kind,
            metric_id="met_revenue",
            before=before,
            after=after,
            details={"metric_name": "Revenue", "metric_role": "secondary"},
        )
    )
    assert message.title == title and message.severity == "info"
    assert advice in message.body


def test_a_new_phase_says_the_statistics_restart() -> None:
    """phase_started shows the phases and the new weights, and that earlier alerts are past."""
    message = render(
        event(
            EventKind.PHASE_STARTED,
            before="0",
            after="1",
            details={"expected_weights": {"v0": 0.5, "v1": 0.5}},
        )
    )
    assert message.title == "Checkout redesign: phase 1 started"
    assert "Phase 0 → 1; expected weights: {'v0': 0.5, 'v1': 0.5}." in message.body
    assert "restarts its verdicts and SRM check" in message.body


def test_stale_results_warn_once_and_fresh_ones_clear() -> None:
    """results_stale after=True warns with the age and what to check; after=False clears."""
    details = {
        "results_updated_at": "2026-02-27T12:00:00+00:00",
        "stale_after_seconds": 86_400,
        "age_seconds": 172_800,
    }
    stale = render(event(EventKind.RESULTS_STALE, before=False, after=True, details=details))
    assert stale.title == "Checkout redesign: results are stale"
    assert stale.severity == "warning"
    assert "Results fresh → stale: last updated 2026-02-27T12:00:00+00:00" in stale.body
    assert "(2.0 days ago; stale after 1.0 days)" in stale.body
    assert "scheduled updates" in stale.body
    fresh = render(event(EventKind.RESULTS_STALE, before=True, after=False, details=details))
    assert fresh.title == "Checkout redesign: results are updating again"
    assert fresh.severity == "success" and "scheduled updates" not in fresh.body


def test_an_unavailable_source_says_until_when_why_and_what_to_check() -> None:
    """source_unavailable names the source, the breaker, the reason, the pause and the key."""
    message = render(
        event(
            EventKind.SOURCE_UNAVAILABLE,
            experiment_id=None,
            before="closed",
            after="open",
            details={
                "until": "2026-03-01T12:05:00+00:00",
                "reason": "HTTP 503 from /api/v1/experiments",
                "consecutive_failures": 5,
            },
        )
    )
    assert message.title == "expwatch: source gb unavailable"
    assert message.severity == "failure"
    assert (
        "Circuit breaker closed → open after 5 consecutive failures: "
        "HTTP 503 from /api/v1/experiments." in message.body
    )
    assert "Polling paused until 2026-03-01T12:05:00+00:00" in message.body
    assert "the source's api_key" in message.body


def test_a_recovered_source_says_what_was_failing() -> None:
    """source_recovered after the breaker closes names the last error and the breaker change."""
    message = render(
        event(
            EventKind.SOURCE_RECOVERED,
            experiment_id=None,
            before="half_open",
            after="closed",
            details={"last_error": "HTTP 503"},
        )
    )
    assert message.title == "expwatch: source gb recovered"
    assert "Was failing: HTTP 503." in message.body
    assert "half_open → closed; polling has resumed." in message.body
    assert message.severity == "success"


@pytest.mark.parametrize(
    ("before", "after", "severity", "advice"),
    [
        ("No data", "Unhealthy", "failure", "health tab"),
        ("Ready for review", "No data", "warning", "receives traffic"),
        ("Unhealthy", "Ready for review", "success", None),
    ],
)
def test_growthbook_status_reads_as_a_health_change(
    before: str, after: str, severity: str, advice: str | None
) -> None:
    """A growthbook_status health change shows the detailed statuses and advice when unhealthy."""
    message = render(
        event(
            EventKind.HEALTH_CHECK_CHANGED,
            before=before,
            after=after,
            details={"check": "GrowthBook status", "check_type": "growthbook_status"},
        )
    )
    assert message.title == f"Checkout redesign: GrowthBook status is now {after}"
    assert f"GrowthBook status: {before} → {after}." in message.body
    assert message.severity == severity
    if advice is not None:
        assert advice in message.body


def test_a_status_change_shows_the_detailed_status_when_known() -> None:
    """status_changed reads before → after, with the platform's detailed status beside it."""
    message = render(
        event(
            EventKind.STATUS_CHANGED,
            before="running",
            after="stopped",
            details={"detailed_status": "Won"},
        )
    )
    assert message.title == "Checkout redesign: status is now stopped"
    assert "Status: running → stopped (Won)." in message.body


@pytest.mark.parametrize("kind", list(EventKind))
def test_every_kind_has_its_own_message(kind: EventKind) -> None:
    """No kind falls back to the generic "name: kind" message."""
    message: Message = render(event(kind, before="x", after="y"))
    assert message.title != f"Checkout redesign: {kind.value}"
