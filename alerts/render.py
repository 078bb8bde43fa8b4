"""Turn an event into the words a person reads."""

from __future__ import annotations

from dataclasses import dataclass

from store import Event, EventKind


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    severity: str  # "info" | "warning" | "failure" | "success" (Apprise notify types)


def _percent(value: object) -> str:
    return f"{value * 100:+.2f} %" if isinstance(value, int | float) else "n/a"


def _number(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) else "n/a"


def _duration(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "n/a"
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} days"
    if seconds >= 3_600:
        return f"{seconds / 3_600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"


def _decision(value: object) -> str:
    """A `decision_made` side: {"outcome", "variation_id"} as words."""
    if not isinstance(value, dict) or not value.get("outcome"):
        return "none"
    variation = value.get("variation_id")
    return f"{value['outcome']} ({variation})" if variation else str(value["outcome"])


def _freshness(stale: object) -> str:
    return "not checked" if stale is None else ("stale" if stale else "fresh")


def _verdict_lines(event: Event, metric: object, variation: object, how: str) -> list[str]:
    """Our verdict with its numbers and the platform's beside it (significance, guardrails)."""
    d = event.details
    return [
        f"{metric} ({d.get('metric_role', 'metric')}), variation {variation}: "
        f"{event.before or 'not judged'} → {event.after} ({how}).",
        f"Relative change {_percent(d.get('relative_change'))} "
        f"(confidence sequence {_percent(d.get('relative_ci_low'))} … "
        f"{_percent(d.get('relative_ci_high'))}); absolute "
        f"{_number(d.get('absolute_change'))} "
        f"({_number(d.get('absolute_ci_low'))} … {_number(d.get('absolute_ci_high'))}).",
        f"Always-valid p-value {_number(d.get('p_value'))} ≤ α {d.get('alpha')}: "
        "safe to act on however often results were checked.",
        f"Platform says: {d.get('platform_verdict', 'n/a')}"
        + (
            f" (chance to beat control {d['platform_chance_to_win']:.1%})"
            if d.get("platform_chance_to_win") is not None
            else ""
        )
        + (
            f" (p-value {d['platform_p_value']:.3g})"
            if d.get("platform_p_value") is not None
            else ""
        )
        + ".",
    ]


def render(event: Event) -> Message:
    """A title and a plain-text body for one event; the event id makes it traceable."""
    d = event.details
    name = d.get("experiment_name") or event.experiment_id or event.source
    lines: list[str]
    match event.kind:
        case EventKind.SIGNIFICANCE_CHANGED:
            metric = d.get("metric_name") or event.metric_id
            variation = d.get("variation_name") or event.variation_id
            title = f"{name}: {metric} is now {event.after} for {variation}"
            lines = _verdict_lines(event, metric, variation, "expwatch, anytime-valid")
            severity = "success" if event.after == "won" else "warning"
        case EventKind.GUARDRAIL_REGRESSED:
            metric = d.get("metric_name") or event.metric_id
            variation = d.get("variation_name") or event.variation_id
            title = f"{name}: guardrail {metric} regressed for {variation}"
            lines = [
                *_verdict_lines(
                    event, metric, variation, "expwatch, anytime-valid, in the harmful direction"
                ),
                f"Consider stopping the experiment or rolling back {variation}.",
            ]
            severity = "failure"
        case EventKind.PLATFORM_VERDICT_CHANGED:
            metric = d.get("metric_name") or event.metric_id
            variation = d.get("variation_name") or event.variation_id
            title = f"{name}: platform verdict on {metric} for {variation} is now {event.after}"
            lines = [
                f"The platform's own ({d.get('engine', '')}) verdict changed: "
                f"{event.before or 'not seen'} → {event.after}. expwatch's anytime-valid "
                f"verdict: {d.get('our_verdict') or 'not enough data'}.",
            ]
            severity = "info"
        case EventKind.SRM_DETECTED | EventKind.SRM_CLEARED:
            detected = event.kind is EventKind.SRM_DETECTED
            title = f"{name}: sample ratio mismatch {'detected' if detected else 'cleared'}"
            lines = [
                f"Sequential SRM p-value {_number(event.after)} (threshold {d.get('threshold')}; "
                f"chi-square {_number(d.get('chi_square_p_value'))}).",
                f"Users per variation: {d.get('users')}; expected weights: "
                f"{d.get('expected_weights')}.",
            ]
            if detected:
                lines.append("Check assignment and logging before trusting these results.")
            severity = "failure" if detected else "success"
        case EventKind.HEALTH_CHECK_CHANGED if d.get("check_type") == "growthbook_status":
            title = f"{name}: GrowthBook status is now {event.after}"
            lines = [f"GrowthBook status: {event.before} → {event.after}."]
            if event.after == "Unhealthy":
                lines.append(
                    "Open the experiment's health tab in GrowthBook (sample ratio, multiple "
                    "exposures) before trusting its results."
                )
            elif event.after == "No data":
                lines.append(
                    "Check that the experiment receives traffic and that its data source "
                    "and exposure query still return rows."
                )
            severity = {"Unhealthy": "failure", "No data": "warning"}.get(
                str(event.after), "success"
            )
        case EventKind.HEALTH_CHECK_CHANGED:
            check = d.get("check", "health check")
            title = f"{name}: {check} is now {event.after}"
            lines = [f"Health check {check}: {event.before or 'not seen'} → {event.after}."]
            severity = (
                "failure"
                if event.after == "failed"
                else ("warning" if event.after == "warning" else "success")
            )
        case EventKind.STATUS_CHANGED:
            title = f"{name}: status is now {event.after}"
            detail = f" ({d['detailed_status']})" if d.get("detailed_status") else ""
            lines = [f"Status: {event.before} → {event.after}{detail}."]
            severity = "info"
        case EventKind.DECISION_MADE:
            variation = d.get("variation_name") or event.variation_id
            outcome = event.after.get("outcome") if isinstance(event.after, dict) else event.after
            title = f"{name}: decision recorded: {outcome}" + (
                f" ({variation})" if variation else ""
            )
            lines = [
                f"Decision: {_decision(event.before)} → {_decision(event.after)}"
                f" (status {d.get('status', 'n/a')}).",
                (
                    f"Next: roll out {variation} to everyone"
                    if variation
                    else "Next: give everyone what was decided (usually the control)"
                )
                + ", then stop or archive the experiment so it no longer splits traffic.",
            ]
            severity = "info"
        case EventKind.PHASE_STARTED:
            title = f"{name}: phase {event.after} started"
            lines = [
                f"Phase {event.before} → {event.after}; expected weights: "
                f"{d.get('expected_weights')}.",
                "expwatch restarts its verdicts and SRM check for the new phase: earlier "
                "alerts describe the previous phase.",
            ]
            severity = "info"
        case EventKind.METRIC_ADDED | EventKind.METRIC_REMOVED:
            added = event.kind is EventKind.METRIC_ADDED
            metric = d.get("metric_name") or event.metric_id
            title = f"{name}: metric {metric} {'added' if added else 'removed'}"
            lines = [
                f"{metric} ({d.get('metric_role', 'metric')}, id {event.metric_id}): "
                f"{event.before or 'absent'} → {event.after or 'absent'}.",
                "Its verdicts start with these results."
                if added
                else "Its history stays in expwatch; if the removal was not intended, add the "
                "metric back in the experiment's analysis settings.",
            ]
            severity = "info"
        case EventKind.RESULTS_STALE:
            stale = event.after is True
            title = f"{name}: results {'are stale' if stale else 'are updating again'}"
            lines = [
                f"Results {_freshness(event.before)} → {_freshness(event.after)}: last updated "
                f"{d.get('results_updated_at', 'n/a')} ({_duration(d.get('age_seconds'))} ago; "
                f"stale after {_duration(d.get('stale_after_seconds'))})."
            ]
            if stale:
                lines.append(
                    "Check the experiment's scheduled updates and its data source on the "
                    "platform; verdicts will not move until results update."
                )
            severity = "warning" if stale else "success"
        case EventKind.SOURCE_ERROR:
            title = f"expwatch: source {event.source} failing"
            lines = [f"{event.after}"]
            severity = "failure"
        case EventKind.SOURCE_UNAVAILABLE:
            title = f"expwatch: source {event.source} unavailable"
            lines = [
                f"Circuit breaker {event.before} → {event.after} after "
                f"{d.get('consecutive_failures', 'repeated')} consecutive failures: "
                f"{d.get('reason') or 'n/a'}.",
                f"Polling paused until {d.get('until', 'n/a')}; check the platform's status "
                "and the source's api_key in the expwatch configuration.",
            ]
            severity = "failure"
        case EventKind.SOURCE_RECOVERED:
            where = f" for {event.experiment_id}" if event.experiment_id else ""
            title = f"expwatch: source {event.source} recovered{where}"
            lines = [
                f"Was failing: {d.get('last_error') or event.before or 'n/a'}.",
                f"{event.before} → {event.after}; polling has resumed."
                if event.after
                else "Polling has resumed.",
            ]
            severity = "success"
        case _:
            title = f"{name}: {event.kind.value}"
            lines = [f"{event.before} → {event.after}"]
            severity = "info"
    if d.get("url"):
        lines.append(f"Open: {d['url']}")
    lines.append(f"(expwatch event #{event.id}, {event.occurred_at:%Y-%m-%d %H:%M} UTC)")
    return Message(title=title, body="\n".join(lines), severity=severity)
