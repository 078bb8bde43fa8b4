"""What each kind of event says, before it is written for any channel.

`wording_of(event)` gives a `Wording`: the headline (what happened, for the title), the
plain-text sentences, the labelled facts (metric, variation, estimate and interval, our
verdict and the platform's, or the kind's own facts) and what to do next. Numbers, shares,
durations and decisions are put into words here; escaping them for markdown or HTML is
`alerts.markup`'s job, and laying them out per channel is `alerts.render`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from store import Event, EventKind

from .levels import GROWTHBOOK_STATUS


def experiment_name(event: Event) -> str:
    """The experiment's name, else its id, else the source (events about no experiment)."""
    return str(event.details.get("experiment_name") or event.experiment_id or event.source)


def is_test(event: Event) -> bool:
    """`event` is the sample of `expwatch alerts test`, not a recorded one."""
    # Only True: SRM events carry "test": "sequential multinomial (anytime-valid)".
    return event.details.get("test") is True


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


# -- what each kind says -----------------------------------------------------------------------


@dataclass
class Wording:
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
    the experiment, if any, is linked in its `EXPERIMENT_FACT` fact."""


EXPERIMENT_FACT = "Experiment"
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


def _significance(event: Event) -> Wording:
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
    return Wording(f"{metric} is now {event.after} for {variation}", lines, facts, step)


def _guardrail(event: Event) -> Wording:
    metric, variation = _names(event)
    lines, facts = _verdict_parts(event, "expwatch, anytime-valid, in the harmful direction")
    step = f"consider stopping the experiment or rolling back {variation}."
    return Wording(f"guardrail {metric} regressed for {variation}", lines, facts, step)


def _platform_verdict(event: Event) -> Wording:
    d = event.details
    metric, variation = _names(event)
    ours = d.get("our_verdict") or "not enough data"
    engine = f" ({d['engine']})" if d.get("engine") else ""
    platform = _platform_says(event.after, d.get("chance_to_win"), d.get("p_value"))
    estimate = _percent(d.get("relative_change"))
    interval = f"{_percent(d.get('ci_low'))} … {_percent(d.get('ci_high'))}"
    return Wording(
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


def _srm(event: Event) -> Wording:
    d = event.details
    detected = event.kind is EventKind.SRM_DETECTED
    users = _per_variation(d.get("users"), "users")
    weights = _per_variation(d.get("expected_weights"), "share")
    sequential = f"{_number(event.after)} (threshold {d.get('threshold')})"
    return Wording(
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


def _health(event: Event) -> Wording:
    d = event.details
    if d.get("check_type") == GROWTHBOOK_STATUS:
        steps = {
            "Unhealthy": "open the experiment's health tab in GrowthBook (sample ratio, "
            "multiple exposures) before trusting its results.",
            "No data": "check that the experiment receives traffic and that its data source "
            "and exposure query still return rows.",
        }
        change = f"{event.before} → {event.after}"
        return Wording(
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
    return Wording(
        f"{check} is now {event.after}",
        [f"Health check {check}: {change}."],
        [("Health check", check), ("Status", change)],
        step,
    )


def _status(event: Event) -> Wording:
    detailed = event.details.get("detailed_status")
    change = f"{event.before} → {event.after}"
    facts = [("Status", change)]
    if detailed:
        facts.append(("Detailed status", str(detailed)))
    return Wording(
        f"status is now {event.after}",
        [f"Status: {change}{f' ({detailed})' if detailed else ''}."],
        facts,
    )


def _decision_made(event: Event) -> Wording:
    d = event.details
    variation = d.get("variation_name") or event.variation_id
    outcome = event.after.get("outcome") if isinstance(event.after, dict) else event.after
    change = f"{_decision(event.before)} → {_decision(event.after)}"
    facts = [("Decision", change)]
    if variation:
        facts.append(("Variation", str(variation)))
    facts.append(("Status", str(d.get("status", "n/a"))))
    return Wording(
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


def _phase(event: Event) -> Wording:
    weights = _per_variation(event.details.get("expected_weights"), "share")
    return Wording(
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


def _metric_set(event: Event) -> Wording:
    added = event.kind is EventKind.METRIC_ADDED
    metric, _ = _names(event)
    role = event.details.get("metric_role", "metric")
    return Wording(
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


def _stale(event: Event) -> Wording:
    d = event.details
    stale = event.after is True
    change = f"{_freshness(event.before)} → {_freshness(event.after)}"
    updated = d.get("results_updated_at", "n/a")
    age = _duration(d.get("age_seconds"))
    limit = _duration(d.get("stale_after_seconds"))
    return Wording(
        f"results {'are stale' if stale else 'are updating again'}",
        [f"Results {change}: last updated {updated} ({age} ago; stale after {limit})."],
        [("Results", change), ("Last updated", f"{updated} ({age} ago)"), ("Stale after", limit)],
        "check the experiment's scheduled updates and its data source on the platform; "
        "verdicts will not move until results update."
        if stale
        else None,
    )


def _source_error(event: Event) -> Wording:
    d = event.details
    where = f" for {experiment_name(event)}" if event.experiment_id else ""
    lines = [f"Error: {event.after}"]
    facts = [("Source", event.source)]
    if event.experiment_id:
        facts.append((EXPERIMENT_FACT, experiment_name(event)))
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
    return Wording(f"source {event.source} failing{where}", lines, facts, step, about_source=True)


def _source_unavailable(event: Event) -> Wording:
    d = event.details
    failures = d.get("consecutive_failures", "repeated")
    reason = d.get("reason") or "n/a"
    until = d.get("until", "n/a")
    return Wording(
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


def _source_recovered(event: Event) -> Wording:
    where = f" for {experiment_name(event)}" if event.experiment_id else ""
    error = event.details.get("last_error") or event.before or "n/a"
    facts = [("Source", event.source)]
    if event.experiment_id:
        facts.append((EXPERIMENT_FACT, experiment_name(event)))
    if event.after:
        facts.append(("Circuit breaker", f"{event.before} → {event.after}"))
    facts.append(("Was failing", str(error)))
    return Wording(
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


def _delivery_failed(event: Event) -> Wording:
    d = event.details
    target = str(d.get("target", "a target"))
    undelivered = f"expwatch event #{d.get('event_id', '?')} ({d.get('event_kind', 'n/a')})"
    attempts = f"{d.get('attempts', 'n/a')} attempts since {d.get('first_attempt_at', 'n/a')}"
    error = str(d.get("last_error") or "n/a")
    return Wording(
        f"alerts to {target} failed",
        [
            f"{undelivered} could not be delivered to {target} after {attempts}.",
            f"Last error: {error}.",
        ],
        [
            ("Target", target),
            ("Undelivered", undelivered),
            *[(EXPERIMENT_FACT, experiment_name(event))] * (event.experiment_id is not None),
            ("Attempts", attempts),
            ("Last error", error),
        ],
        f"check the target's Apprise URL ([alerts.targets.{target}] url; expwatch "
        "check-config validates it), its credentials and the service's status.",
        about_source=True,
    )


_KINDS: dict[EventKind, Callable[[Event], Wording]] = {
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


def wording_of(event: Event) -> Wording:
    """What `event` says; a kind without words of its own shows its before → after."""
    if (words := _KINDS.get(event.kind)) is not None:
        return words(event)
    change = f"{event.before} → {event.after}"  # a kind added to the store before its words
    return Wording(event.kind.value, [change], [("Change", change)])
