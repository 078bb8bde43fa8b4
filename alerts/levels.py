"""How urgent an event is, and the Apprise notify type that follows from it.

`level_of(event)` gives the `Level` that routing rules, rate limits and quiet hours decide by;
`notify_type_of` turns a level into Apprise's notify type ("failure", "warning", "success",
"info"). The renderer, the rules and the dispatcher all read levels from here.

| level    | events                                                                        |
|----------|-------------------------------------------------------------------------------|
| critical | srm_detected, guardrail_regressed, source_unavailable, alert_delivery_failed; |
|          | health_check_changed to failed (GrowthBook status: to Unhealthy)              |
| warning  | significance_changed to lost; results_stale turning stale; source_error;      |
|          | health_check_changed to warning (GrowthBook status: to No data)               |
| info     | everything else: significance_changed to won, platform_verdict_changed,       |
|          | srm_cleared, status_changed, decision_made, phase_started, metric_added,      |
|          | metric_removed, results_stale updating again, source_recovered, health        |
|          | checks passing or waiting                                                     |

`notify_type` follows the level: critical is "failure", warning "warning", info "success"
for good news (a win, a clear, a recovery, results updating again) and "info" otherwise.
"""

from __future__ import annotations

from enum import StrEnum

from store import Event, EventKind

GROWTHBOOK_STATUS = "growthbook_status"
"""The health check key of GrowthBook's detailed status (see watcher.detect)."""


class Level(StrEnum):
    """How urgent an alert is: routing rules, rate limits and quiet hours decide by it."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


LEVEL_RANK = {Level.CRITICAL: 0, Level.WARNING: 1, Level.INFO: 2}
"""Sort order by urgency: the most urgent level first."""


def level_of(event: Event) -> Level:
    """How urgent `event` is (the table in this module's docstring)."""
    match event.kind:
        case (
            EventKind.SRM_DETECTED
            | EventKind.GUARDRAIL_REGRESSED
            | EventKind.SOURCE_UNAVAILABLE
            | EventKind.ALERT_DELIVERY_FAILED
        ):
            return Level.CRITICAL
        case EventKind.HEALTH_CHECK_CHANGED:
            gb = event.details.get("check_type") == GROWTHBOOK_STATUS
            if event.after == ("Unhealthy" if gb else "failed"):
                return Level.CRITICAL
            if event.after == ("No data" if gb else "warning"):
                return Level.WARNING
            return Level.INFO
        case EventKind.SIGNIFICANCE_CHANGED:
            return Level.WARNING if event.after == "lost" else Level.INFO
        case EventKind.RESULTS_STALE:
            return Level.WARNING if event.after is True else Level.INFO
        case EventKind.SOURCE_ERROR:
            return Level.WARNING
        case _:
            return Level.INFO


def is_good_news(event: Event) -> bool:
    """A win, a clear, a recovery, results updating again or a health check passing."""
    match event.kind:
        case EventKind.SIGNIFICANCE_CHANGED:
            return bool(event.after == "won")
        case EventKind.SRM_CLEARED | EventKind.SOURCE_RECOVERED:
            return True
        case EventKind.RESULTS_STALE:
            return event.after is False
        case EventKind.HEALTH_CHECK_CHANGED:
            if event.details.get("check_type") == GROWTHBOOK_STATUS:
                return event.after not in ("Unhealthy", "No data")
            return bool(event.after == "passed")
        case _:
            return False


def notify_type_of(level: Level, *, good_news: bool = False) -> str:
    """Apprise's notify type for `level` (the paragraph under the table above)."""
    if level is Level.CRITICAL:
        return "failure"
    if level is Level.WARNING:
        return "warning"
    return "success" if good_news else "info"
