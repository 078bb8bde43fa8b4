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
            lines = [
                f"{metric} ({d.get('metric_role', 'metric')}), variation {variation}: "
                f"{event.before or 'not seen'} → {event.after}.",
                f"Relative change {_percent(d.get('relative_change'))} "
                f"(interval {_percent(d.get('ci_low'))} … {_percent(d.get('ci_high'))}).",
            ]
            if d.get("chance_to_win") is not None:
                lines.append(f"Chance to beat control: {d['chance_to_win']:.1%}.")
            if d.get("p_value") is not None:
                lines.append(f"p-value: {d['p_value']:.4g}.")
            lines.append(f"Verdict by: {d.get('verdict_by', 'platform')} ({d.get('engine', '')}).")
            severity = "success" if event.after == "won" else "warning"
        case EventKind.SRM_DETECTED | EventKind.SRM_CLEARED:
            detected = event.kind is EventKind.SRM_DETECTED
            title = f"{name}: sample ratio mismatch {'detected' if detected else 'cleared'}"
            lines = [
                f"SRM p-value {event.after:.3g} (threshold {d.get('threshold')}).",
                f"Users per variation: {d.get('users')}; expected weights: "
                f"{d.get('expected_weights')}.",
            ]
            if detected:
                lines.append("Check assignment and logging before trusting these results.")
            severity = "failure" if detected else "success"
        case EventKind.STATUS_CHANGED:
            title = f"{name}: status {event.before} → {event.after}"
            lines = [title + "."]
            severity = "info"
        case EventKind.HEALTH_CHECK_CHANGED:
            check = d.get("check", "health check")
            title = f"{name}: {check} is now {event.after}"
            lines = [f"Health check {check}: {event.before or 'not seen'} → {event.after}."]
            severity = (
                "failure"
                if event.after == "failed"
                else ("warning" if event.after == "warning" else "success")
            )
        case EventKind.SOURCE_ERROR:
            title = f"expwatch: source {event.source} failing"
            lines = [f"{event.after}"]
            severity = "failure"
        case _:
            title = f"{name}: {event.kind.value}"
            lines = [f"{event.before} → {event.after}"]
            severity = "info"
    if d.get("url"):
        lines.append(f"Open: {d['url']}")
    lines.append(f"(expwatch event #{event.id}, {event.occurred_at:%Y-%m-%d %H:%M} UTC)")
    return Message(title=title, body="\n".join(lines), severity=severity)
