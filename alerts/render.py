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
                f"{event.before or 'not judged'} → {event.after} (expwatch, anytime-valid).",
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
            severity = "success" if event.after == "won" else "warning"
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
