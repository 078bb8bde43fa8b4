"""Realistic events of every kind, as the detector and the supervisor write them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from store import Event, EventKind

WHEN = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
URL = "https://app.growthbook.io/experiment/exp_checkout"
EXPERIMENT = {"experiment_name": "Checkout redesign", "url": URL}
VERDICT = {
    "metric_name": "Conversion",
    "metric_role": "primary",
    "variation_name": "Treatment",
    "relative_change": 0.062,
    "relative_ci_low": 0.021,
    "relative_ci_high": 0.103,
    "absolute_change": 0.0062,
    "absolute_ci_low": 0.0021,
    "absolute_ci_high": 0.0103,
    "p_value": 0.004,
    "alpha": 0.05,
    "platform_verdict": "won",
    "platform_chance_to_win": 0.991,
}


def _event(kind: EventKind, **fields: Any) -> Event:
    details = {**EXPERIMENT, **fields.pop("details", {})}
    fields.setdefault("experiment_id", "exp_checkout")
    if fields["experiment_id"] is None:
        details = fields.pop("details_override", {})
    return Event(kind=kind, source="gb", details=details, occurred_at=WHEN, **fields)


def one_of_each_kind() -> dict[EventKind, Event]:
    """One event per kind; the test of each channel iterates over all of them."""
    events = {
        EventKind.SIGNIFICANCE_CHANGED: _event(
            EventKind.SIGNIFICANCE_CHANGED,
            metric_id="met_conv",
            variation_id="v1",
            before="inconclusive",
            after="won",
            details=VERDICT,
        ),
        EventKind.SRM_DETECTED: _event(
            EventKind.SRM_DETECTED,
            before=0.4,
            after=0.0002,
            details={
                "threshold": 0.001,
                "chi_square_p_value": 0.0001,
                "users": {"v0": 5210, "v1": 4790},
                "expected_weights": {"v0": 0.5, "v1": 0.5},
            },
        ),
        EventKind.SRM_CLEARED: _event(
            EventKind.SRM_CLEARED,
            before=0.0002,
            after=0.3,
            details={"threshold": 0.001, "users": {"v0": 5010, "v1": 4990}},
        ),
        EventKind.PLATFORM_VERDICT_CHANGED: _event(
            EventKind.PLATFORM_VERDICT_CHANGED,
            metric_id="met_conv",
            variation_id="v1",
            before="inconclusive",
            after="won",
            details={**VERDICT, "engine": "frequentist", "our_verdict": "inconclusive"},
        ),
        EventKind.GUARDRAIL_REGRESSED: _event(
            EventKind.GUARDRAIL_REGRESSED,
            metric_id="met_errors",
            variation_id="v1",
            before="inconclusive",
            after="lost",
            details={
                **VERDICT,
                "metric_name": "Checkout errors",
                "metric_role": "guardrail",
                "platform_verdict": "inconclusive",
            },
        ),
        EventKind.STATUS_CHANGED: _event(
            EventKind.STATUS_CHANGED, before="running", after="stopped"
        ),
        EventKind.DECISION_MADE: _event(
            EventKind.DECISION_MADE,
            variation_id="v1",
            before=None,
            after={"outcome": "won", "variation_id": "v1"},
            details={"variation_name": "Treatment", "status": "stopped"},
        ),
        EventKind.PHASE_STARTED: _event(
            EventKind.PHASE_STARTED,
            before="0",
            after="1",
            details={"expected_weights": {"v0": 0.5, "v1": 0.5}},
        ),
        EventKind.METRIC_ADDED: _event(
            EventKind.METRIC_ADDED,
            metric_id="met_rev",
            before=None,
            after="secondary",
            details={"metric_name": "Revenue", "metric_role": "secondary"},
        ),
        EventKind.METRIC_REMOVED: _event(
            EventKind.METRIC_REMOVED,
            metric_id="met_rev",
            before="secondary",
            after=None,
            details={"metric_name": "Revenue", "metric_role": "secondary"},
        ),
        EventKind.HEALTH_CHECK_CHANGED: _event(
            EventKind.HEALTH_CHECK_CHANGED,
            before="Healthy",
            after="Unhealthy",
            details={"check_type": "growthbook_status"},
        ),
        EventKind.SOURCE_ERROR: _event(
            EventKind.SOURCE_ERROR,
            before=None,
            after="payload error: results.metrics[0].variations is not a list",
        ),
        EventKind.SOURCE_RECOVERED: _event(
            EventKind.SOURCE_RECOVERED,
            experiment_id=None,
            before="open",
            after="closed",
            details_override={"last_error": "HTTP 503"},
        ),
        EventKind.SOURCE_UNAVAILABLE: _event(
            EventKind.SOURCE_UNAVAILABLE,
            experiment_id=None,
            before="closed",
            after="open",
            details_override={
                "until": "2026-03-01T12:05:00+00:00",
                "reason": "HTTP 503 from /api/v1/experiments",
                "consecutive_failures": 5,
            },
        ),
        EventKind.RESULTS_STALE: _event(
            EventKind.RESULTS_STALE,
            before=False,
            after=True,
            details={
                "results_updated_at": "2026-02-27T12:00:00+00:00",
                "age_seconds": 172800,
                "stale_after_seconds": 86400,
            },
        ),
        EventKind.ALERT_DELIVERY_FAILED: _event(
            EventKind.ALERT_DELIVERY_FAILED,
            before=None,
            after="failed",
            details={
                "target": "pager",
                "event_id": 3,
                "event_kind": "srm_detected",
                "attempts": 9,
                "first_attempt_at": "2026-02-28T12:00:00+00:00",
                "last_error": "alert target 'pager' did not accept the message: HTTP 500",
            },
        ),
    }
    assert set(events) == set(EventKind), "a new EventKind needs a sample here"
    return events
