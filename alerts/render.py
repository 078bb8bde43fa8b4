"""Turn an event into what people and programs read, once per channel.

`render(event)` gives a `Message`: a one-line `title` (also the email subject), a plain-text
`body`, a CommonMark `markdown` body (Slack and other markdown services: Apprise converts it
to Slack mrkdwn), an `html` body for email (inline styles only; Apprise derives the plain-text
part from it), Apprise's `notify_type`, the `level`, and the JSON webhook `document`
(schema `expwatch.alert/v1`, documented in docs/alert-payload.md). `render_digest(events)`
gives one message for a batch (digest mode, quiet hours). Every message names the event id
("expwatch event #N") so receivers can de-duplicate; `possible_duplicate=True` (a resend
after a crash between sending and confirming) says so in every channel.

Each event reads as: the experiment (linked to the platform's UI when the event has a URL),
what happened, the facts (metric, variation, estimate and interval, our verdict and the
platform's, or the kind's own facts), and what to do next.

Levels (`level_of`), for routing rules, rate limits and quiet hours:

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

Escaping: plain text is left as it is (titles are made one line). In markdown, user text
(experiment, metric, variation and check names, error messages) is backslash-escaped where
CommonMark would read it as markup: backslash, backtick, `*`, `[`, `]`, `<`, `>`, `~`, `_`
at a word's edge (not inside `exp_checkout`), `&` starting an entity, and block markers where
the text starts a line. In HTML it goes through `html.escape`. Only http(s) URLs are linked,
percent-encoded so they cannot break out of a link.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlsplit

from store import Event, EventKind

_SCHEMA = "expwatch.alert/v1"
_DIGEST_SCHEMA = "expwatch.alert.digest/v1"
_GROWTHBOOK_STATUS = "growthbook_status"
"""The health check key of GrowthBook's detailed status (see watcher.detect)."""


class Level(StrEnum):
    """How urgent an alert is: routing rules, rate limits and quiet hours decide by it."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


_RANK = {Level.CRITICAL: 0, Level.WARNING: 1, Level.INFO: 2}


@dataclass(frozen=True)
class Message:
    """One alert, written for every channel."""

    title: str
    """One line: what happened (also the email subject)."""
    body: str
    """Plain text."""
    markdown: str
    """CommonMark, for Slack and markdown-capable services."""
    html: str
    """A self-contained HTML fragment with inline styles, for email."""
    notify_type: str
    """Apprise's notify type: "info" | "success" | "warning" | "failure"."""
    level: Level
    document: dict[str, Any] = field(repr=False)
    """The JSON webhook payload: `expwatch.alert/v1` or `expwatch.alert.digest/v1`."""


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
            gb = event.details.get("check_type") == _GROWTHBOOK_STATUS
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


def _is_good_news(event: Event) -> bool:
    match event.kind:
        case EventKind.SIGNIFICANCE_CHANGED:
            return bool(event.after == "won")
        case EventKind.SRM_CLEARED | EventKind.SOURCE_RECOVERED:
            return True
        case EventKind.RESULTS_STALE:
            return event.after is False
        case EventKind.HEALTH_CHECK_CHANGED:
            if event.details.get("check_type") == _GROWTHBOOK_STATUS:
                return event.after not in ("Unhealthy", "No data")
            return bool(event.after == "passed")
        case _:
            return False


def _notify_type(level: Level, *, good_news: bool = False) -> str:
    if level is Level.CRITICAL:
        return "failure"
    if level is Level.WARNING:
        return "warning"
    return "success" if good_news else "info"


# -- words -------------------------------------------------------------------------------------


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


def _per_variation(value: object, unit: str) -> str:
    """{"v0": 0.5, "v1": 0.5} as "v0 50 %, v1 50 %" (unit "share") or user counts."""
    if not isinstance(value, dict) or not value:
        return "n/a"

    def one(v: object) -> str:
        if not isinstance(v, int | float):
            return "n/a"
        return f"{v * 100:.3g} %" if unit == "share" else f"{v:,.0f}"

    return ", ".join(f"{k} {one(v)}" for k, v in value.items())


def _platform_says(verdict: object, chance_to_win: object, p_value: object) -> str:
    """The platform's verdict with the number it decided by."""
    text = str(verdict or "n/a")
    if isinstance(chance_to_win, int | float):
        text += f" (chance to beat control {chance_to_win:.1%})"
    if isinstance(p_value, int | float):
        text += f" (p-value {p_value:.3g})"
    return text


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- what each kind says -----------------------------------------------------------------------


@dataclass
class _Parts:
    """What one event says, before it is written for a channel."""

    headline: str
    """What happened, after "<experiment>: " in the title."""
    lines: list[str]
    """The plain-text body's sentences."""
    facts: list[tuple[str, str]]
    """Label and value: the email's table, the markdown's bold-labelled lines."""
    next_step: str | None = None
    about_source: bool = False
    """The event is about a source or expwatch itself: the title starts "expwatch: ", and
    the experiment, if any, is linked in its `_EXPERIMENT` fact."""


_EXPERIMENT = "Experiment"
"""The fact naming the experiment, linked to the platform in markdown and HTML."""


def _names(event: Event) -> tuple[str, str]:
    d = event.details
    metric = d.get("metric_name") or event.metric_id or "metric"
    variation = d.get("variation_name") or event.variation_id or "variation"
    return str(metric), str(variation)


def _verdict_parts(event: Event, how: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Our verdict with its numbers and the platform's beside it (significance, guardrails)."""
    d = event.details
    metric, variation = _names(event)
    role = d.get("metric_role", "metric")
    interval = f"{_percent(d.get('relative_ci_low'))} … {_percent(d.get('relative_ci_high'))}"
    absolute = f"{_number(d.get('absolute_ci_low'))} … {_number(d.get('absolute_ci_high'))}"
    platform = _platform_says(
        d.get("platform_verdict"), d.get("platform_chance_to_win"), d.get("platform_p_value")
    )
    p_value = f"always-valid p-value {_number(d.get('p_value'))} ≤ α {d.get('alpha')}"
    lines = [
        f"{metric} ({role}), variation {variation}: "
        f"{event.before or 'not judged'} → {event.after} ({how}).",
        f"Relative change {_percent(d.get('relative_change'))} (confidence sequence {interval}); "
        f"absolute {_number(d.get('absolute_change'))} ({absolute}).",
        f"{p_value[0].upper()}{p_value[1:]}: safe to act on however often results were checked.",
        f"Platform says: {platform}.",
    ]
    facts = [
        ("Metric", f"{metric} ({role})"),
        ("Variation", variation),
        (
            "Estimate",
            f"{_percent(d.get('relative_change'))} relative, "
            f"{_number(d.get('absolute_change'))} absolute",
        ),
        ("Interval", f"{interval} relative, {absolute} absolute (confidence sequence)"),
        ("Our verdict", f"{event.before or 'not judged'} → {event.after} ({p_value})"),
        ("Platform verdict", platform),
    ]
    return lines, facts


def _significance(event: Event) -> _Parts:
    metric, variation = _names(event)
    lines, facts = _verdict_parts(event, "expwatch, anytime-valid")
    if event.after == "won":
        step: str | None = (
            "check the guardrails and the other metrics, then decide whether to ship "
            f"{variation} and record the decision on the platform."
        )
    elif event.after == "lost":
        step = (
            f"{variation} does worse than the baseline on {metric}: consider stopping it, "
            "unless the loss is a price the team accepted."
        )
    else:
        step = None
    return _Parts(f"{metric} is now {event.after} for {variation}", lines, facts, step)


def _guardrail(event: Event) -> _Parts:
    metric, variation = _names(event)
    lines, facts = _verdict_parts(event, "expwatch, anytime-valid, in the harmful direction")
    step = f"consider stopping the experiment or rolling back {variation}."
    return _Parts(f"guardrail {metric} regressed for {variation}", lines, facts, step)


def _platform_verdict(event: Event) -> _Parts:
    d = event.details
    metric, variation = _names(event)
    ours = d.get("our_verdict") or "not enough data"
    engine = f" ({d['engine']})" if d.get("engine") else ""
    platform = _platform_says(event.after, d.get("chance_to_win"), d.get("p_value"))
    estimate = _percent(d.get("relative_change"))
    interval = f"{_percent(d.get('ci_low'))} … {_percent(d.get('ci_high'))}"
    return _Parts(
        f"platform verdict on {metric} for {variation} is now {event.after}",
        [
            f"The platform's own{engine} verdict changed: {event.before or 'not seen'} → "
            f"{event.after}. expwatch's anytime-valid verdict: {ours}.",
            f"Platform says: {platform}; relative change {estimate} ({interval}).",
        ],
        [
            ("Metric", f"{metric} ({d.get('metric_role', 'metric')})"),
            ("Variation", variation),
            ("Estimate", f"{estimate} relative (the platform's)"),
            ("Interval", f"{interval} (the platform's)"),
            ("Our verdict", f"{ours} (anytime-valid)"),
            ("Platform verdict", f"{event.before or 'not seen'} → {platform}{engine}"),
        ],
        "information only: act on expwatch's verdict, as the platform's fixed-horizon test "
        "fires far more often than it should when results are checked repeatedly.",
    )


def _srm(event: Event) -> _Parts:
    d = event.details
    detected = event.kind is EventKind.SRM_DETECTED
    users = _per_variation(d.get("users"), "users")
    weights = _per_variation(d.get("expected_weights"), "share")
    sequential = f"{_number(event.after)} (threshold {d.get('threshold')})"
    return _Parts(
        f"sample ratio mismatch {'detected' if detected else 'cleared'}",
        [
            f"Sequential SRM p-value {sequential}; "
            f"chi-square {_number(d.get('chi_square_p_value'))}.",
            f"Users per variation: {users}; expected weights: {weights}.",
        ],
        [
            ("Sequential SRM p-value", sequential),
            ("Chi-square p-value", _number(d.get("chi_square_p_value"))),
            ("Users per variation", users),
            ("Expected weights", weights),
        ],
        "check assignment and logging before trusting these results." if detected else None,
    )


def _health(event: Event) -> _Parts:
    d = event.details
    if d.get("check_type") == _GROWTHBOOK_STATUS:
        steps = {
            "Unhealthy": "open the experiment's health tab in GrowthBook (sample ratio, "
            "multiple exposures) before trusting its results.",
            "No data": "check that the experiment receives traffic and that its data source "
            "and exposure query still return rows.",
        }
        change = f"{event.before} → {event.after}"
        return _Parts(
            f"GrowthBook status is now {event.after}",
            [f"GrowthBook status: {change}."],
            [("GrowthBook status", change)],
            steps.get(str(event.after)),
        )
    check = str(d.get("check", "health check"))
    change = f"{event.before or 'not seen'} → {event.after}"
    step = {
        "failed": f"open the experiment's {check} check on the platform before trusting its "
        "results.",
        "warning": f"look at the experiment's {check} check on the platform before relying on "
        "its results.",
    }.get(str(event.after))
    return _Parts(
        f"{check} is now {event.after}",
        [f"Health check {check}: {change}."],
        [("Health check", check), ("Status", change)],
        step,
    )


def _status(event: Event) -> _Parts:
    detailed = event.details.get("detailed_status")
    change = f"{event.before} → {event.after}"
    facts = [("Status", change)]
    if detailed:
        facts.append(("Detailed status", str(detailed)))
    return _Parts(
        f"status is now {event.after}",
        [f"Status: {change}{f' ({detailed})' if detailed else ''}."],
        facts,
    )


def _decision_made(event: Event) -> _Parts:
    d = event.details
    variation = d.get("variation_name") or event.variation_id
    outcome = event.after.get("outcome") if isinstance(event.after, dict) else event.after
    change = f"{_decision(event.before)} → {_decision(event.after)}"
    facts = [("Decision", change)]
    if variation:
        facts.append(("Variation", str(variation)))
    facts.append(("Status", str(d.get("status", "n/a"))))
    return _Parts(
        f"decision recorded: {outcome}" + (f" ({variation})" if variation else ""),
        [f"Decision: {change} (status {d.get('status', 'n/a')})."],
        facts,
        (
            f"roll out {variation} to everyone"
            if variation
            else "give everyone what was decided (usually the control)"
        )
        + ", then stop or archive the experiment so it no longer splits traffic.",
    )


def _phase(event: Event) -> _Parts:
    weights = _per_variation(event.details.get("expected_weights"), "share")
    return _Parts(
        f"phase {event.after} started",
        [
            f"Phase {event.before} → {event.after}; expected weights: {weights}.",
            "expwatch restarts its verdicts and SRM check for the new phase: earlier alerts "
            "describe the previous phase.",
        ],
        [
            ("Phase", f"{event.before} → {event.after}"),
            ("Expected weights", weights),
            ("Statistics", "restarted; earlier alerts describe the previous phase"),
        ],
    )


def _metric_set(event: Event) -> _Parts:
    added = event.kind is EventKind.METRIC_ADDED
    metric, _ = _names(event)
    role = event.details.get("metric_role", "metric")
    return _Parts(
        f"metric {metric} {'added' if added else 'removed'}",
        [
            f"{metric} ({role}, id {event.metric_id}): "
            f"{event.before or 'absent'} → {event.after or 'absent'}.",
            "Its verdicts start with these results." if added else "Its history stays in expwatch.",
        ],
        [
            ("Metric", f"{metric} ({role}, id {event.metric_id})"),
            ("Change", "added to the results" if added else "removed from the results"),
        ],
        None
        if added
        else "if the removal was not intended, add the metric back in the experiment's "
        "analysis settings.",
    )


def _stale(event: Event) -> _Parts:
    d = event.details
    stale = event.after is True
    change = f"{_freshness(event.before)} → {_freshness(event.after)}"
    updated = d.get("results_updated_at", "n/a")
    age = _duration(d.get("age_seconds"))
    limit = _duration(d.get("stale_after_seconds"))
    return _Parts(
        f"results {'are stale' if stale else 'are updating again'}",
        [f"Results {change}: last updated {updated} ({age} ago; stale after {limit})."],
        [("Results", change), ("Last updated", f"{updated} ({age} ago)"), ("Stale after", limit)],
        "check the experiment's scheduled updates and its data source on the platform; "
        "verdicts will not move until results update."
        if stale
        else None,
    )


def _source_error(event: Event) -> _Parts:
    d = event.details
    where = f" for {_experiment_name(event)}" if event.experiment_id else ""
    lines = [f"Error: {event.after}"]
    facts = [("Source", event.source)]
    if event.experiment_id:
        facts.append((_EXPERIMENT, _experiment_name(event)))
    facts.append(("Error", str(event.after)))
    step = (
        "expwatch keeps polling and says when it recovers; if the error persists, check the "
        "source's base_url and api_key in the expwatch configuration."
    )
    if suggestions := d.get("suggestions"):
        known = ", ".join(str(s) for s in suggestions)
        lines.append(f"Closest known experiment ids: {known}.")
        facts.append(("Closest known ids", known))
        step = "check the experiment id in the configuration or the watch list (expwatch watch)."
    return _Parts(f"source {event.source} failing{where}", lines, facts, step, about_source=True)


def _source_unavailable(event: Event) -> _Parts:
    d = event.details
    failures = d.get("consecutive_failures", "repeated")
    reason = d.get("reason") or "n/a"
    until = d.get("until", "n/a")
    return _Parts(
        f"source {event.source} unavailable",
        [
            f"Circuit breaker {event.before} → {event.after} after {failures} consecutive "
            f"failures: {reason}.",
            f"Polling paused until {until}.",
        ],
        [
            ("Source", event.source),
            ("Circuit breaker", f"{event.before} → {event.after}"),
            ("Consecutive failures", str(failures)),
            ("Reason", str(reason)),
            ("Polling paused until", str(until)),
        ],
        "check the platform's status and the source's api_key in the expwatch configuration.",
        about_source=True,
    )


def _source_recovered(event: Event) -> _Parts:
    where = f" for {_experiment_name(event)}" if event.experiment_id else ""
    error = event.details.get("last_error") or event.before or "n/a"
    facts = [("Source", event.source)]
    if event.experiment_id:
        facts.append((_EXPERIMENT, _experiment_name(event)))
    if event.after:
        facts.append(("Circuit breaker", f"{event.before} → {event.after}"))
    facts.append(("Was failing", str(error)))
    return _Parts(
        f"source {event.source} recovered{where}",
        [
            f"Was failing: {error}.",
            f"{event.before} → {event.after}; polling has resumed."
            if event.after
            else "Polling has resumed.",
        ],
        facts,
        about_source=True,
    )


def _delivery_failed(event: Event) -> _Parts:
    d = event.details
    target = str(d.get("target", "a target"))
    undelivered = f"expwatch event #{d.get('event_id', '?')} ({d.get('event_kind', 'n/a')})"
    attempts = f"{d.get('attempts', 'n/a')} attempts since {d.get('first_attempt_at', 'n/a')}"
    error = str(d.get("last_error") or "n/a")
    return _Parts(
        f"alerts to {target} failed",
        [
            f"{undelivered} could not be delivered to {target} after {attempts}.",
            f"Last error: {error}.",
        ],
        [
            ("Target", target),
            ("Undelivered", undelivered),
            *[(_EXPERIMENT, _experiment_name(event))] * (event.experiment_id is not None),
            ("Attempts", attempts),
            ("Last error", error),
        ],
        f"check the target's Apprise URL ([alerts.targets.{target}] url; expwatch "
        "check-config validates it), its credentials and the service's status.",
        about_source=True,
    )


_KINDS: dict[EventKind, Callable[[Event], _Parts]] = {
    EventKind.SIGNIFICANCE_CHANGED: _significance,
    EventKind.GUARDRAIL_REGRESSED: _guardrail,
    EventKind.PLATFORM_VERDICT_CHANGED: _platform_verdict,
    EventKind.SRM_DETECTED: _srm,
    EventKind.SRM_CLEARED: _srm,
    EventKind.HEALTH_CHECK_CHANGED: _health,
    EventKind.STATUS_CHANGED: _status,
    EventKind.DECISION_MADE: _decision_made,
    EventKind.PHASE_STARTED: _phase,
    EventKind.METRIC_ADDED: _metric_set,
    EventKind.METRIC_REMOVED: _metric_set,
    EventKind.RESULTS_STALE: _stale,
    EventKind.SOURCE_ERROR: _source_error,
    EventKind.SOURCE_UNAVAILABLE: _source_unavailable,
    EventKind.SOURCE_RECOVERED: _source_recovered,
    EventKind.ALERT_DELIVERY_FAILED: _delivery_failed,
}


def _parts(event: Event) -> _Parts:
    if (words := _KINDS.get(event.kind)) is not None:
        return words(event)
    change = f"{event.before} → {event.after}"  # a kind added to the store before its words
    return _Parts(event.kind.value, [change], [("Change", change)])


# -- channels ----------------------------------------------------------------------------------

_MD_INLINE = re.compile(r"[\\`*\[\]<>~]|(?<![^\W_])_|_(?![^\W_])|&(?=#?[0-9A-Za-z]+;)")
"""What CommonMark could read as markup: `_` only where it can start or end emphasis (not
inside a word: `exp_checkout` stays as it is), `&` only where it starts an entity."""
_MD_BLOCK_START = re.compile(r"^(?:([#+=-])|(\d+)([.)]))")
_URL_SAFE = ":/?#[]@!$&'()*+,;=%"


def _md(text: str, *, line_start: bool = False) -> str:
    """User text as literal CommonMark; `line_start` when it begins a line (or list item)."""
    escaped = _MD_INLINE.sub(lambda m: "\\" + m.group(0), _one_line(text))
    if line_start:
        escaped = _MD_BLOCK_START.sub(
            lambda m: f"\\{m.group(1)}" if m.group(1) else f"{m.group(2)}\\{m.group(3)}", escaped
        )
    return escaped


def _md_link(label: str, url: str | None) -> str:
    return f"[{_md(label)}](<{url}>)" if url else _md(label)


def _h(text: str) -> str:
    return html.escape(text, quote=True)


def _h_link(label: str, url: str | None, style: str = "color:#0969da") -> str:
    return f'<a href="{_h(url)}" style="{style}">{_h(label)}</a>' if url else _h(label)


def _safe_url(value: object) -> str | None:
    """An http(s) URL, percent-encoded where it could break out of a link; else None."""
    if not isinstance(value, str):
        return None
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return quote(value.strip(), safe=_URL_SAFE)


_COLOURS = {"failure": "#cf222e", "warning": "#9a6700", "success": "#1a7f37", "info": "#0969da"}
_HTML_BOX = (
    "font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;"
    "line-height:1.5;color:#1f2328;max-width:640px"
)
_HTML_NOTICE = "margin:0 0 12px;padding:8px 12px;background:#fff8c5;border:1px solid #d4a72c"
_HTML_LEVEL = "margin:0;font-size:12px;font-weight:bold;letter-spacing:1px"
_HTML_H2 = "margin:0 0 12px;font-size:18px;padding-left:8px"
_HTML_TH = (
    "text-align:left;vertical-align:top;padding:4px 16px 4px 0;color:#59636e;"
    "font-weight:normal;white-space:nowrap"
)
_HTML_SMALL = "margin:16px 0 0;font-size:12px;color:#59636e"
_HTML_BUTTON = (
    "display:inline-block;padding:8px 16px;background:#0969da;color:#ffffff;"
    "text-decoration:none;border-radius:6px;font-weight:bold"
)


def _html_page(
    *,
    level: Level,
    notify_type: str,
    notices: Sequence[str],
    heading: str,
    content: Sequence[str],
    footer: str,
) -> str:
    """The email frame around `content`; `heading`, `content` and `footer` are HTML."""
    colour = _COLOURS[notify_type]
    return "\n".join(
        [
            f'<div style="{_HTML_BOX}">',
            *(f'<p style="{_HTML_NOTICE}">{_h(n)}</p>' for n in notices),
            f'<p style="{_HTML_LEVEL};color:{colour}">{level.value.upper()}</p>',
            f'<h2 style="{_HTML_H2};border-left:4px solid {colour}">{heading}</h2>',
            *content,
            f'<p style="{_HTML_SMALL}">{footer}</p>',
            "</div>",
        ]
    )


def _html_table(facts: Sequence[tuple[str, str]], url: str | None) -> str:
    rows = "".join(
        f'<tr><th style="{_HTML_TH}">{_h(label)}:</th><td style="padding:4px 0">'
        f"{_h_link(value, url if label == _EXPERIMENT else None)}</td></tr>\n"
        for label, value in facts
    )
    return f'<table style="border-collapse:collapse;margin:0 0 12px">\n{rows}</table>'


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _is_test(event: Event) -> bool:
    # Only True: SRM events carry "test": "sequential multinomial (anytime-valid)".
    return event.details.get("test") is True


def _event_name(event: Event) -> str:
    """The name receivers de-duplicate by: "expwatch event #N"."""
    if event.id is not None:
        return f"expwatch event #{event.id}"
    if _is_test(event):
        return "expwatch test alert, not in the event log"
    return "expwatch event not yet recorded"


def _reference(event: Event) -> str:
    """Which event this is and when: "expwatch event #N, <time> UTC"."""
    return f"{_event_name(event)}, {_utc(event.occurred_at):%Y-%m-%d %H:%M} UTC"


def _duplicate_notice(ids: Sequence[int | None], *, digest: bool = False) -> str:
    known = [f"#{i}" for i in ids if i is not None]
    what = "a digest" if digest else "an alert"
    if not known:
        return f"This may repeat {what} already sent."
    return f"This may repeat {what} already sent for expwatch event{'s' * (len(known) > 1)} " + (
        ", ".join(known) + "."
    )


_TEST_NOTICE = (
    "This is a test alert (expwatch alerts test): the experiment and its numbers are "
    "examples; nothing needs doing."
)


def render(event: Event, *, possible_duplicate: bool = False) -> Message:
    """`event` written for every channel; `possible_duplicate` when it may have been sent."""
    parts = _parts(event)
    level = level_of(event)
    notify_type = _notify_type(level, good_news=_is_good_news(event))
    subject = "expwatch" if parts.about_source else _experiment_name(event)
    url = _safe_url(event.details.get("url")) if event.experiment_id is not None else None
    subject_url = None if parts.about_source else url
    test = _is_test(event)
    tags = ["[possible duplicate] "] * possible_duplicate + ["[test] "] * test
    prefix = "".join(tags)
    title = _one_line(f"{prefix}{subject}: {parts.headline}")
    notices = [_TEST_NOTICE] * test + [_duplicate_notice([event.id])] * possible_duplicate
    reference = _reference(event)
    step = parts.next_step

    body = "\n".join(
        [
            *notices,
            *parts.lines,
            *[f"Next: {step}"] * bool(step),
            *[f"Open: {url}"] * bool(url),
            f"({reference})",
        ]
    )
    markdown = "\n".join(
        [
            "".join(f"{_md(tag)} " for tag in tags)
            + f"**{_md_link(subject, subject_url)}**: {_md(parts.headline)}",
            *(f"_{_md(n)}_" for n in notices),
            *(
                f"**{label}:** {_md_link(value, url if label == _EXPERIMENT else None)}"
                for label, value in parts.facts
            ),
            *[f"**Next:** {_md(step or '')}"] * bool(step),
            (f"[Open the experiment](<{url}>) · " if url else "") + _md(reference),
        ]
    )
    content = [_html_table(parts.facts, url)]
    if step:
        content.append(f'<p style="margin:0 0 12px"><strong>Next:</strong> {_h(step)}</p>')
    if url:
        button = _h_link("Open the experiment", url, _HTML_BUTTON)
        content.append(f'<p style="margin:16px 0">{button}</p>')
    html_body = _html_page(
        level=level,
        notify_type=notify_type,
        notices=notices,
        heading=f"{_h(prefix)}{_h_link(subject, subject_url)}: {_h(parts.headline)}",
        content=content,
        footer=(f"Experiment page: {_h_link(url, url)}<br>" if url else "") + _h(reference),
    )
    return Message(
        title=title,
        body=body,
        markdown=markdown,
        html=html_body,
        notify_type=notify_type,
        level=level,
        document=_document(
            event, level=level, title=title, text=body, possible_duplicate=possible_duplicate
        ),
    )


def _experiment_name(event: Event) -> str:
    return str(event.details.get("experiment_name") or event.experiment_id or event.source)


# -- the JSON document -------------------------------------------------------------------------

_VALUES = {
    # value name: detail key, for events judged by expwatch (significance, guardrails)
    "relative_change": "relative_change",
    "relative_ci_low": "relative_ci_low",
    "relative_ci_high": "relative_ci_high",
    "absolute_change": "absolute_change",
    "absolute_ci_low": "absolute_ci_low",
    "absolute_ci_high": "absolute_ci_high",
    "p_value": "p_value",
    "alpha": "alpha",
    "platform_verdict": "platform_verdict",
    "platform_relative_change": "platform_relative_change",
    "platform_relative_ci_low": "platform_ci_low",
    "platform_relative_ci_high": "platform_ci_high",
    "platform_p_value": "platform_p_value",
    "platform_chance_to_win": "platform_chance_to_win",
}
_PLATFORM_VALUES = {
    # value name: detail key, for platform_verdict_changed (the platform's own numbers)
    "platform_relative_change": "relative_change",
    "platform_relative_ci_low": "ci_low",
    "platform_relative_ci_high": "ci_high",
    "platform_p_value": "p_value",
    "platform_chance_to_win": "chance_to_win",
    "our_verdict": "our_verdict",
}


def _json(value: Any) -> Any:
    """`value` as JSON-native types only (non-finite floats become null)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, datetime):
        return _utc(value).isoformat()
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json(v) for v in value]
    return str(value)


def _values(event: Event) -> dict[str, Any]:
    d = event.details
    values: dict[str, Any] = {}
    if event.kind in (EventKind.SIGNIFICANCE_CHANGED, EventKind.GUARDRAIL_REGRESSED):
        values = {name: d.get(key) for name, key in _VALUES.items()}
        values["our_verdict"] = event.after
    elif event.kind is EventKind.PLATFORM_VERDICT_CHANGED:
        values = {name: d.get(key) for name, key in _PLATFORM_VALUES.items()}
        values["platform_verdict"] = event.after
    return {k: v for k, v in _json(values).items() if v is not None}


def _document(
    event: Event, *, level: Level, title: str, text: str, possible_duplicate: bool
) -> dict[str, Any]:
    d = event.details
    experiment: dict[str, Any] | None = None
    if event.experiment_id is not None:
        experiment = {
            "id": event.experiment_id,
            "name": _experiment_name(event),
            "url": _safe_url(d.get("url")),
        }
        if d.get("project"):
            experiment["project"] = str(d["project"])
    metric = variation = None
    if event.metric_id is not None:
        metric = {
            "id": event.metric_id,
            "name": str(d.get("metric_name") or event.metric_id),
            "role": d.get("metric_role"),
        }
    if event.variation_id is not None:
        name = d.get("variation_name") or event.variation_id
        variation = {"id": event.variation_id, "name": str(name)}
    return {
        "schema": _SCHEMA,
        "event_id": event.id,
        "kind": event.kind.value,
        "level": level.value,
        "occurred_at": _json(event.occurred_at),
        "recorded_at": _json(event.recorded_at),
        "source": event.source,
        "experiment": _json(experiment),
        "metric": _json(metric),
        "variation": variation,
        "before": _json(event.before),
        "after": _json(event.after),
        "values": _values(event),
        "title": title,
        "text": text,
        "possible_duplicate": possible_duplicate,
        "test": _is_test(event),
    }


# -- digests -----------------------------------------------------------------------------------


@dataclass
class _Group:
    """The events of one experiment (or of a source, when they name no experiment)."""

    name: str
    url: str | None
    is_experiment: bool
    items: list[tuple[Event, Level, _Parts]] = field(default_factory=list)

    @property
    def rank(self) -> tuple[int, str]:
        return min(_RANK[level] for _, level, _ in self.items), self.name.lower()


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' * (count != 1)}"


def render_digest(events: Sequence[Event], *, possible_duplicate: bool = False) -> Message:
    """One message for a batch: grouped by experiment, the most urgent first, one line per
    event with its id."""
    if not events:
        raise ValueError("render_digest needs at least one event")
    groups: dict[tuple[str, str | None], _Group] = {}
    for event in events:
        named = event.experiment_id is not None
        group = groups.setdefault(
            (event.source, event.experiment_id),
            _Group(_experiment_name(event) if named else f"source {event.source}", None, named),
        )
        group.url = group.url or _safe_url(event.details.get("url"))
        if event.details.get("experiment_name"):
            group.name = str(event.details["experiment_name"])
        group.items.append((event, level_of(event), _parts(event)))
    ordered = sorted(groups.values(), key=lambda g: g.rank)
    for group in ordered:
        group.items.sort(key=lambda item: (_RANK[item[1]], item[0].id or 0))
    levels = [level for group in ordered for _, level, _ in group.items]
    level = min(levels, key=_RANK.__getitem__)
    notify_type = _notify_type(level)
    critical = levels.count(Level.CRITICAL)
    experiments = sum(g.is_experiment for g in ordered)
    sources = len(ordered) - experiments
    where = [_plural(experiments, "experiment")] * bool(experiments) + [
        _plural(sources, "source")
    ] * bool(sources)
    title = (
        "[possible duplicate] " * possible_duplicate
        + f"expwatch digest: {_plural(len(events), 'change')} in {' and '.join(where)}"
        + f" ({critical} critical)" * bool(critical)
    )
    notices = [_duplicate_notice([e.id for e in events], digest=True)] * possible_duplicate
    first, last = (f"{f(_utc(e.occurred_at) for e in events):%Y-%m-%d %H:%M}" for f in (min, max))
    span = first if first == last else f"{first} – {last}"
    footer = f"expwatch digest: {_plural(len(events), 'event')}, {span} UTC"

    text = [*notices]
    markdown = [f"**{_md(title)}**", *(f"_{_md(n)}_" for n in notices)]
    content = []
    for group in ordered:
        text += ["", group.name]
        markdown += ["", f"**{_md_link(group.name, group.url)}**"]
        content.append(
            f'<h3 style="margin:16px 0 4px;font-size:15px">{_h_link(group.name, group.url)}</h3>'
            '\n<ul style="margin:0;padding-left:20px">'
        )
        for event, event_level, parts in group.items:
            tag = "" if event_level is Level.INFO else f"[{event_level.value}] "
            words = f"{parts.headline} ({_event_name(event)})"
            text.append(f"- {tag}{words}")
            markdown.append(f"- {_md(tag + words, line_start=True)}")
            colour = _COLOURS[_notify_type(event_level)]
            badge = f'<strong style="color:{colour}">{_h(tag)}</strong>' if tag else ""
            content.append(f"<li>{badge}{_h(words)}</li>")
        content.append("</ul>")
        if group.url:
            text.append(f"  Open: {group.url}")
    text += ["", f"({footer})"]
    markdown += ["", _md(footer)]
    body = "\n".join(text).lstrip("\n")
    return Message(
        title=title,
        body=body,
        markdown="\n".join(markdown),
        html=_html_page(
            level=level,
            notify_type=notify_type,
            notices=notices,
            heading=_h(title),
            content=content,
            footer=_h(footer),
        ),
        notify_type=notify_type,
        level=level,
        document={
            "schema": _DIGEST_SCHEMA,
            "title": title,
            "text": body,
            "level": level.value,
            "count": len(events),
            "critical": critical,
            "event_ids": [e.id for g in ordered for e, _, _ in g.items],
            "possible_duplicate": possible_duplicate,
            "events": [
                render(e, possible_duplicate=possible_duplicate).document
                for g in ordered
                for e, _, _ in g.items
            ],
        },
    )


def sample_event() -> Event:
    """A realistic significance_changed event for `expwatch alerts test` (marked a test)."""
    return Event(
        id=None,
        kind=EventKind.SIGNIFICANCE_CHANGED,
        source="growthbook",
        experiment_id="exp_sample_checkout",
        metric_id="met_checkout_conversion",
        variation_id="v1",
        before="inconclusive",
        after="won",
        details={
            "test": True,
            "experiment_name": "Checkout redesign (sample)",
            "url": "https://growthbook.example.com/experiment/exp_sample_checkout",
            "metric_name": "Checkout conversion",
            "metric_role": "goal",
            "variation_name": "One-page checkout",
            "verdict_by": "expwatch",
            "relative_change": 0.042,
            "relative_ci_low": 0.011,
            "relative_ci_high": 0.073,
            "absolute_change": 0.0131,
            "absolute_ci_low": 0.0034,
            "absolute_ci_high": 0.0228,
            "p_value": 0.0042,
            "alpha": 0.05,
            "platform_verdict": "won",
            "platform_relative_change": 0.043,
            "platform_ci_low": 0.018,
            "platform_ci_high": 0.068,
            "platform_chance_to_win": 0.991,
            "engine": "bayesian",
            "users": 48_210,
        },
        occurred_at=datetime.now(UTC).replace(microsecond=0),
    )
