"""Each kind of event reads as what happened, where, before → after, and what to do next, on
every channel: plain text, markdown (Slack), HTML (email) and the JSON document (webhooks)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apprise
import pytest
from apprise import NotifyFormat
from apprise.conversion import html_to_text, markdown_to_html

from alerts import Message, render
from alerts.render import Level, level_of, render_digest, sample_event
from store import Event, EventKind

WHEN = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
URL = "https://app.growthbook.io/experiment/exp_checkout"
DOC = Path(__file__).resolve().parents[2] / "docs" / "alert-payload.md"
SLACK = apprise.Apprise.instantiate("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#alerts")


def event(kind: EventKind, *, experiment_id: str | None = "exp_checkout", **fields: Any) -> Event:
    details = {"experiment_name": "Checkout redesign"} if experiment_id else {}
    details.update(fields.pop("details", {}))
    return Event(
        id=fields.pop("id", 7),
        kind=kind,
        source="gb",
        experiment_id=experiment_id,
        details=details,
        occurred_at=WHEN,
        **fields,
    )


def slack_text(message: Message) -> str:
    """What Slack receives: Apprise's conversion of the markdown body to mrkdwn."""
    converted: str = SLACK.dialect_convert(message.markdown, NotifyFormat.MARKDOWN)
    return converted


def markdown_text(message: Message) -> str:
    """What a CommonMark service shows, as text: the markdown rendered, then read."""
    return html_to_text(markdown_to_html(message.markdown))


SIGNIFICANCE = {
    "metric_id": "met_conversion",
    "variation_id": "v1",
    "before": "inconclusive",
    "after": "won",
    "details": {
        "url": URL,
        "metric_name": "Checkout conversion",
        "metric_role": "goal",
        "variation_name": "Treatment",
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
        "platform_p_value": 0.0009,
        "engine": "frequentist",
        "users": 48_210,
    },
}

# Each kind with details as the watcher, the supervisor or the dispatcher records them, and
# words each channel must show.
REALISTIC: dict[EventKind, tuple[dict[str, Any], list[str]]] = {
    EventKind.SIGNIFICANCE_CHANGED: (
        SIGNIFICANCE,
        ["Checkout conversion", "Treatment", "+4.20 %", "+1.10 % … +7.30 %", "won", "Next"],
    ),
    EventKind.GUARDRAIL_REGRESSED: (
        {
            "metric_id": "met_errors",
            "variation_id": "v1",
            "before": "inconclusive",
            "after": "lost",
            "details": {
                "url": URL,
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
        },
        ["Checkout errors", "Treatment", "+20.00 %", "lost", "rolling back"],
    ),
    EventKind.PLATFORM_VERDICT_CHANGED: (
        {
            "metric_id": "met_conversion",
            "variation_id": "v1",
            "before": "inconclusive",
            "after": "won",
            "details": {
                "url": URL,
                "metric_name": "Checkout conversion",
                "metric_role": "goal",
                "variation_name": "Treatment",
                "verdict_by": "platform",
                "engine": "bayesian",
                "relative_change": 0.051,
                "ci_low": 0.004,
                "ci_high": 0.098,
                "chance_to_win": 0.973,
                "our_verdict": "inconclusive",
            },
        },
        ["Checkout conversion", "Treatment", "+5.10 %", "97.3%", "inconclusive"],
    ),
    EventKind.SRM_DETECTED: (
        {
            "before": 0.02,
            "after": 0.0004,
            "details": {
                "url": URL,
                "threshold": 0.001,
                "test": "sequential multinomial (anytime-valid)",
                "chi_square_p_value": 0.0001,
                "total_users": 98_940,
                "users": {"v0": 50_210, "v1": 48_730},
                "expected_weights": {"v0": 0.5, "v1": 0.5},
            },
        },
        ["sample ratio mismatch detected", "0.0004", "v0 50,210", "v1 50 %", "assignment"],
    ),
    EventKind.SRM_CLEARED: (
        {
            "before": 0.0004,
            "after": 0.41,
            "details": {"url": URL, "threshold": 0.001, "users": {"v0": 1_200, "v1": 1_180}},
        },
        ["sample ratio mismatch cleared", "0.41"],
    ),
    EventKind.STATUS_CHANGED: (
        {
            "before": "running",
            "after": "stopped",
            "details": {"url": URL, "detailed_status": "Won"},
        },
        ["running → stopped", "Won"],
    ),
    EventKind.DECISION_MADE: (
        {
            "variation_id": "v1",
            "before": None,
            "after": {"outcome": "won", "variation_id": "v1"},
            "details": {"url": URL, "variation_name": "Treatment", "status": "stopped"},
        },
        ["decision recorded: won", "Treatment", "roll out"],
    ),
    EventKind.PHASE_STARTED: (
        {
            "before": "0",
            "after": "1",
            "details": {"url": URL, "expected_weights": {"v0": 0.5, "v1": 0.5}},
        },
        ["phase 1 started", "v0 50 %", "restart"],
    ),
    EventKind.METRIC_ADDED: (
        {
            "metric_id": "met_revenue",
            "after": "Revenue",
            "details": {"url": URL, "metric_name": "Revenue", "metric_role": "secondary"},
        },
        ["metric Revenue added", "met_revenue"],
    ),
    EventKind.METRIC_REMOVED: (
        {
            "metric_id": "met_revenue",
            "before": "Revenue",
            "details": {"url": URL, "metric_name": "Revenue", "metric_role": "secondary"},
        },
        ["metric Revenue removed", "analysis settings"],
    ),
    EventKind.HEALTH_CHECK_CHANGED: (
        {
            "before": "passed",
            "after": "failed",
            "details": {"url": URL, "check": "Exposure balance", "check_type": "exposure"},
        },
        ["Exposure balance is now failed", "passed → failed"],
    ),
    EventKind.RESULTS_STALE: (
        {
            "before": False,
            "after": True,
            "details": {
                "results_updated_at": "2026-02-27T12:00:00+00:00",
                "stale_after_seconds": 86_400,
                "age_seconds": 172_800,
            },
        },
        ["results are stale", "2.0 days", "scheduled updates"],
    ),
    EventKind.SOURCE_ERROR: (
        {
            "after": "HTTP 404 from /api/v1/experiments/exp_checkout",
            "details": {
                "error": "ExperimentNotFound",
                "status_code": 404,
                "suggestions": ["exp_checkout_v2"],
            },
        },
        ["source gb failing", "HTTP 404", "exp_checkout_v2"],
    ),
    EventKind.SOURCE_RECOVERED: (
        {
            "experiment_id": None,
            "before": "half_open",
            "after": "closed",
            "details": {"last_error": "HTTP 503"},
        },
        ["source gb recovered", "HTTP 503", "half_open → closed"],
    ),
    EventKind.SOURCE_UNAVAILABLE: (
        {
            "experiment_id": None,
            "before": "closed",
            "after": "open",
            "details": {
                "until": "2026-03-01T12:05:00+00:00",
                "reason": "HTTP 503 from /api/v1/experiments",
                "consecutive_failures": 5,
            },
        },
        ["source gb unavailable", "HTTP 503", "2026-03-01T12:05:00+00:00", "api_key"],
    ),
    EventKind.ALERT_DELIVERY_FAILED: (
        {
            "experiment_id": None,
            "details": {
                "target": "email",
                "event_id": 41,
                "event_kind": "srm_detected",
                "attempts": 8,
                "first_attempt_at": "2026-03-01T11:00:00+00:00",
                "last_error": "SMTP 535 authentication failed",
            },
        },
        ["alerts to email failed", "#41", "8 attempts", "SMTP 535", "Apprise URL"],
    ),
}


def realistic(kind: EventKind, **changes: Any) -> Event:
    fields = dict(REALISTIC[kind][0])
    return event(kind, **{**fields, **changes})


def test_the_realistic_events_cover_every_kind() -> None:
    """A new EventKind needs a realistic example here, so the tests below cover it."""
    assert set(REALISTIC) == set(EventKind)


@pytest.mark.parametrize("kind", list(EventKind))
def test_every_kind_says_the_essentials_on_every_channel(kind: EventKind) -> None:
    """Plain text, Slack, CommonMark, email (and its text part) and the JSON document all name
    the experiment or source, what happened, the kind's facts and the event id."""
    message = render(realistic(kind))
    essentials = REALISTIC[kind][1]
    about_experiment = not message.title.startswith("expwatch: ")
    assert "\n" not in message.title
    channels = {
        "title and body": f"{message.title}\n{message.body}",
        "slack": slack_text(message),
        "markdown": markdown_text(message),
        "email html": html_to_text(message.html),
    }
    for channel, text in channels.items():
        for words in [*essentials, "expwatch event #7"]:
            assert words in text, f"{channel} lacks {words!r}:\n{text}"
        if about_experiment:
            assert "Checkout redesign" in text, channel
    assert message.level is level_of(realistic(kind))
    assert message.notify_type in {"info", "success", "warning", "failure"}
    document = json.loads(json.dumps(message.document, allow_nan=False))
    assert document["kind"] == kind.value and document["event_id"] == 7
    assert document["test"] is False and not message.title.startswith("[test]")
    assert document["title"] == message.title and document["text"] == message.body


@pytest.mark.parametrize("kind", [k for k, (f, _) in REALISTIC.items() if "url" in f["details"]])
def test_the_experiment_name_links_to_the_platform_on_every_channel(kind: EventKind) -> None:
    """Slack gets the bold, linked name first; email a heading link and a button; text the URL."""
    message = render(realistic(kind))
    assert message.markdown.startswith(f"**[Checkout redesign](<{URL}>)**: ")
    assert slack_text(message).startswith(f"*<{URL}|Checkout redesign>*: ")
    assert f'<a href="{URL}" style="color:#0969da">Checkout redesign</a>:' in message.html
    assert ">Open the experiment</a>" in message.html
    assert URL in html_to_text(message.html)
    assert f"Open: {URL}" in message.body
    assert message.document["experiment"]["url"] == URL


def test_a_source_failing_for_one_experiment_links_that_experiment() -> None:
    """An expwatch-side event about one experiment keeps "expwatch" as its subject and links
    the experiment in its facts, in Slack and in email."""
    failing = REALISTIC[EventKind.SOURCE_ERROR][0]
    message = render(realistic(EventKind.SOURCE_ERROR, details={**failing["details"], "url": URL}))
    assert message.title == "expwatch: source gb failing for Checkout redesign"
    slack = slack_text(message)
    assert slack.startswith("*expwatch*: ") and f"*Experiment:* <{URL}|Checkout redesign>" in slack
    assert f'<a href="{URL}" style="color:#0969da">Checkout redesign</a></td>' in message.html
    assert f"Open: {URL}" in message.body


def test_a_significant_result_shows_the_facts_as_a_table_in_email() -> None:
    """The email's table holds metric, variation, estimate, interval and both verdicts."""
    message = render(realistic(EventKind.SIGNIFICANCE_CHANGED))
    cells = dict(re.findall(r"<th[^>]*>([^<]+):</th><td[^>]*>([^<]*)</td>", message.html))
    assert cells == {
        "Metric": "Checkout conversion (goal)",
        "Variation": "Treatment",
        "Estimate": "+4.20 % relative, 0.0131 absolute",
        "Interval": "+1.10 % … +7.30 % relative, 0.0034 … 0.0228 absolute (confidence sequence)",
        "Our verdict": "inconclusive → won (always-valid p-value 0.0042 ≤ α 0.05)",
        "Platform verdict": "won (p-value 0.0009)",
    }
    assert "<strong>Next:</strong> check the guardrails" in message.html
    assert message.notify_type == "success" and message.level is Level.INFO


def test_slack_gets_compact_lines_and_no_table() -> None:
    """Markdown is one line per fact with a bold label; Slack has no tables, so none is used."""
    message = render(realistic(EventKind.SIGNIFICANCE_CHANGED))
    lines = slack_text(message).splitlines()
    assert lines[1:7] == [
        "*Metric:* Checkout conversion (goal)",
        "*Variation:* Treatment",
        "*Estimate:* +4.20 % relative, 0.0131 absolute",
        "*Interval:* +1.10 % … +7.30 % relative, 0.0034 … 0.0228 absolute (confidence sequence)",
        "*Our verdict:* inconclusive → won (always-valid p-value 0.0042 ≤ α 0.05)",
        "*Platform verdict:* won (p-value 0.0009)",
    ]
    assert lines[-1] == f"<{URL}|Open the experiment> · expwatch event #7, 2026-03-01 12:00 UTC"
    assert "|---" not in message.markdown and "<table" not in markdown_to_html(message.markdown)


NASTY = 'Revenue <script>alert("x")</script> & *_[]'


def test_user_text_is_escaped_for_each_channel() -> None:
    """A metric named with HTML and markdown specials reads literally everywhere and injects
    nothing: escaped in HTML, backslash-escaped in CommonMark, raw in text and JSON."""
    message = render(
        realistic(
            EventKind.SIGNIFICANCE_CHANGED,
            details={**SIGNIFICANCE["details"], "metric_name": NASTY},
        )
    )
    assert NASTY in message.body and NASTY in message.title
    assert message.document["metric"]["name"] == NASTY
    assert "<script" not in message.html
    assert "Revenue &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; *_[]" in message.html
    assert NASTY in html_to_text(message.html)
    assert r'**Metric:** Revenue \<script\>alert("x")\</script\> & \*\_\[\] (goal)' in (
        message.markdown
    )
    rendered = markdown_to_html(message.markdown)
    assert "<script" not in rendered and "<em>" not in rendered
    assert NASTY in markdown_text(message)
    slack = slack_text(message)
    assert "<script" not in slack and "&lt;script&gt;" in slack


def test_an_experiment_name_with_brackets_stays_one_link() -> None:
    """Brackets and emphasis marks in the linked name do not end the link or start markup."""
    message = render(
        realistic(
            EventKind.STATUS_CHANGED,
            details={"experiment_name": "Checkout [v2] *bold*", "url": URL},
        )
    )
    assert message.markdown.startswith(rf"**[Checkout \[v2\] \*bold\*](<{URL}>)**")
    assert f'<a href="{URL}">Checkout [v2] *bold*</a>' in markdown_to_html(message.markdown)


def test_only_web_urls_are_linked() -> None:
    """A javascript: URL is dropped everywhere; spaces and quotes in a web URL are encoded."""
    bad = render(realistic(EventKind.STATUS_CHANGED, details={"url": "javascript:alert(1)"}))
    assert "javascript" not in bad.html + bad.markdown + bad.body
    assert bad.document["experiment"]["url"] is None
    odd = render(realistic(EventKind.STATUS_CHANGED, details={"url": 'https://x.test/a b"c>'}))
    assert 'href="https://x.test/a%20b%22c%3E"' in odd.html
    assert "(<https://x.test/a%20b%22c%3E>)" in odd.markdown


def test_a_possible_duplicate_says_so_on_every_channel() -> None:
    """A resend after a crash is marked in the title, every body and the document."""
    message = render(realistic(EventKind.SRM_DETECTED), possible_duplicate=True)
    notice = "This may repeat an alert already sent for expwatch event #7."
    assert message.title == "[possible duplicate] Checkout redesign: sample ratio mismatch detected"
    assert notice in message.body
    assert notice in slack_text(message) and notice in html_to_text(message.html)
    assert slack_text(message).startswith("[possible duplicate] *<")
    assert message.document["possible_duplicate"] is True
    first = render(realistic(EventKind.SRM_DETECTED))
    assert "may repeat" not in first.body + first.markdown + first.html
    assert first.document["possible_duplicate"] is False


@pytest.mark.parametrize(
    ("kind", "changes", "level", "notify_type"),
    [
        (EventKind.SRM_DETECTED, {}, Level.CRITICAL, "failure"),
        (EventKind.GUARDRAIL_REGRESSED, {}, Level.CRITICAL, "failure"),
        (EventKind.SOURCE_UNAVAILABLE, {}, Level.CRITICAL, "failure"),
        (EventKind.ALERT_DELIVERY_FAILED, {}, Level.CRITICAL, "failure"),
        (EventKind.HEALTH_CHECK_CHANGED, {"after": "failed"}, Level.CRITICAL, "failure"),
        (
            EventKind.HEALTH_CHECK_CHANGED,
            {"after": "Unhealthy", "details": {"check_type": "growthbook_status"}},
            Level.CRITICAL,
            "failure",
        ),
        (EventKind.HEALTH_CHECK_CHANGED, {"after": "warning"}, Level.WARNING, "warning"),
        (
            EventKind.HEALTH_CHECK_CHANGED,
            {"after": "No data", "details": {"check_type": "growthbook_status"}},
            Level.WARNING,
            "warning",
        ),
        (EventKind.HEALTH_CHECK_CHANGED, {"after": "passed"}, Level.INFO, "success"),
        (EventKind.RESULTS_STALE, {"before": False, "after": True}, Level.WARNING, "warning"),
        (EventKind.RESULTS_STALE, {"before": True, "after": False}, Level.INFO, "success"),
        (EventKind.SOURCE_ERROR, {}, Level.WARNING, "warning"),
        (EventKind.SIGNIFICANCE_CHANGED, {"after": "lost"}, Level.WARNING, "warning"),
        (EventKind.SIGNIFICANCE_CHANGED, {"after": "won"}, Level.INFO, "success"),
        (EventKind.SRM_CLEARED, {}, Level.INFO, "success"),
        (EventKind.SOURCE_RECOVERED, {}, Level.INFO, "success"),
        (EventKind.PLATFORM_VERDICT_CHANGED, {"after": "lost"}, Level.INFO, "info"),
        (EventKind.STATUS_CHANGED, {}, Level.INFO, "info"),
        (EventKind.DECISION_MADE, {}, Level.INFO, "info"),
        (EventKind.PHASE_STARTED, {}, Level.INFO, "info"),
        (EventKind.METRIC_ADDED, {}, Level.INFO, "info"),
        (EventKind.METRIC_REMOVED, {}, Level.INFO, "info"),
    ],
)
def test_levels_follow_the_documented_table(
    kind: EventKind, changes: dict[str, Any], level: Level, notify_type: str
) -> None:
    """Critical: SRM, guardrails, a source down, undelivered alerts, failed health; warning:
    a loss, staleness, source errors, health warnings; the rest is information."""
    message = render(realistic(kind, **changes))
    assert level_of(realistic(kind, **changes)) is level
    assert (message.level, message.notify_type) == (level, notify_type)
    assert message.document["level"] == level.value


def test_an_undelivered_alert_names_the_event_the_attempts_and_what_to_check() -> None:
    """alert_delivery_failed says which event did not reach which target, since when, the last
    error, and where the target's URL is configured."""
    message = render(realistic(EventKind.ALERT_DELIVERY_FAILED))
    assert message.title == "expwatch: alerts to email failed"
    assert (
        "expwatch event #41 (srm_detected) could not be delivered to email after 8 attempts "
        "since 2026-03-01T11:00:00+00:00." in message.body
    )
    assert "Last error: SMTP 535 authentication failed." in message.body
    assert "[alerts.targets.email] url" in message.body
    assert message.document["experiment"] is None


def test_the_sample_event_is_a_realistic_test_alert() -> None:
    """`expwatch alerts test` sends a significance change with every number, clearly marked
    as a test on every channel, outside the event log."""
    sample = sample_event()
    assert sample.id is None and sample.details["test"] is True
    assert sample.kind is EventKind.SIGNIFICANCE_CHANGED
    assert sample.details["url"].startswith("https://")
    message = render(sample)
    assert message.title.startswith("[test] Checkout redesign (sample): Checkout conversion")
    notice = "This is a test alert (expwatch alerts test)"
    for text in (message.body, slack_text(message), html_to_text(message.html)):
        assert notice in text and "not in the event log" in text
    assert message.document["test"] is True and message.document["event_id"] is None
    assert set(message.document["values"]) >= {
        "relative_change",
        "relative_ci_low",
        "relative_ci_high",
        "platform_verdict",
        "platform_chance_to_win",
    }


def digest_events() -> list[Event]:
    status = realistic(EventKind.STATUS_CHANGED, id=11)
    pricing = event(
        EventKind.STATUS_CHANGED,
        id=12,
        experiment_id="exp_pricing",
        before="draft",
        after="running",
        details={"experiment_name": "Pricing page"},
    )
    return [
        status,
        pricing,
        realistic(EventKind.SRM_DETECTED, id=13),
        realistic(EventKind.SOURCE_UNAVAILABLE, id=14),
        realistic(EventKind.SIGNIFICANCE_CHANGED, id=15, after="lost"),
    ]


def test_a_digest_groups_by_experiment_with_the_most_urgent_first() -> None:
    """The title counts changes, experiments and critical ones; each group lists its events,
    critical first, one line each with the event id."""
    digest = render_digest(digest_events())
    assert digest.title == ("expwatch digest: 5 changes in 2 experiments and 1 source (2 critical)")
    assert digest.level is Level.CRITICAL and digest.notify_type == "failure"
    assert digest.body.split("\n\n")[:3] == [
        "Checkout redesign\n"
        "- [critical] sample ratio mismatch detected (expwatch event #13)\n"
        "- [warning] Checkout conversion is now lost for Treatment (expwatch event #15)\n"
        "- status is now stopped (expwatch event #11)\n"
        f"  Open: {URL}",
        "source gb\n- [critical] source gb unavailable (expwatch event #14)",
        "Pricing page\n- status is now running (expwatch event #12)",
    ]
    slack = slack_text(digest)
    assert slack.startswith(f"*{digest.title}*")
    assert f"*<{URL}|Checkout redesign>*" in slack
    email = html_to_text(digest.html)
    for number in (11, 12, 13, 14, 15):
        assert f"expwatch event #{number}" in slack and f"expwatch event #{number}" in email
    assert email.index("Checkout redesign") < email.index("source gb") < email.index("Pricing")


def test_a_digest_document_holds_every_event_document() -> None:
    """The digest's JSON lists each event's own v1 document, in the digest's order."""
    digest = render_digest(digest_events(), possible_duplicate=True)
    document = json.loads(json.dumps(digest.document, allow_nan=False))
    assert document["schema"] == "expwatch.alert.digest/v1"
    assert document["event_ids"] == [13, 15, 11, 14, 12]
    assert [e["event_id"] for e in document["events"]] == document["event_ids"]
    assert {e["schema"] for e in document["events"]} == {"expwatch.alert/v1"}
    assert (document["count"], document["critical"], document["level"]) == (5, 2, "critical")
    assert document["possible_duplicate"] is True
    assert all(e["possible_duplicate"] for e in document["events"])
    assert digest.title.startswith("[possible duplicate] expwatch digest:")
    assert "This may repeat a digest already sent for expwatch events #11, #12" in digest.body


def test_a_digest_escapes_a_name_that_starts_a_list_item() -> None:
    """An info line starts with user text; a check named like a heading stays text."""
    check = realistic(
        EventKind.HEALTH_CHECK_CHANGED,
        before="failed",
        after="passed",
        details={"check": "# 1. Exposure", "url": URL},
    )
    digest = render_digest([check])
    assert r"- \# 1. Exposure is now passed" in digest.markdown
    assert "<h1>" not in markdown_to_html(digest.markdown)


def test_an_empty_digest_is_refused() -> None:
    """There is nothing to say about no events: the caller is told, not sent a blank."""
    with pytest.raises(ValueError, match="at least one event"):
        render_digest([])


def test_documents_hold_only_json_native_values() -> None:
    """Non-finite numbers become null and tuples lists, so every receiver can parse it."""
    message = render(
        realistic(
            EventKind.SIGNIFICANCE_CHANGED,
            before=None,
            details={**SIGNIFICANCE["details"], "p_value": float("nan"), "alpha": (0.05,)},
        )
    )
    values = message.document["values"]
    assert "p_value" not in values and values["alpha"] == [0.05]
    assert json.loads(json.dumps(message.document, allow_nan=False)) == message.document


# -- docs/alert-payload.md -------------------------------------------------------------------


def documented_fields(heading: str) -> dict[str, str]:
    """The field table under `heading` in docs/alert-payload.md: field -> presence."""
    section = DOC.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_.]+)` \| [^|]+ \| (always|optional) \|", section, re.M)
    assert rows, f"no field table under {heading!r}"
    return dict(rows)


def flatten(document: dict[str, Any]) -> set[str]:
    """Field paths, descending into the objects the schema describes field by field."""
    paths = set(document)
    for name in ("experiment", "metric", "variation", "values"):
        if isinstance(document.get(name), dict):
            paths |= {f"{name}.{key}" for key in document[name]}
    return paths


def documents_of_every_shape() -> list[dict[str, Any]]:
    significance = realistic(
        EventKind.SIGNIFICANCE_CHANGED,
        recorded_at=WHEN,
        details={
            **SIGNIFICANCE["details"],
            "project": "prj_web",
            "platform_chance_to_win": 0.97,
        },
    )
    events = [significance, *(realistic(kind) for kind in EventKind)]
    return [render(e).document for e in events] + [render(sample_event()).document]


def test_the_event_document_matches_the_documented_fields() -> None:
    """Every field a document holds is in the doc's table and every documented field occurs;
    fields marked always are present whenever their object is."""
    documented = documented_fields("Event document")
    seen: set[str] = set()
    for document in documents_of_every_shape():
        paths = flatten(document)
        assert paths <= set(documented), paths - set(documented)
        for path, presence in documented.items():
            parent = path.rpartition(".")[0]
            if presence == "always" and (not parent or isinstance(document[parent], dict)):
                assert path in paths, f"{path} missing from a {document['kind']} document"
        seen |= paths
    assert seen == set(documented), set(documented) - seen


def test_the_digest_document_matches_the_documented_fields() -> None:
    """The digest's top-level fields are exactly the documented ones."""
    documented = documented_fields("Digest document")
    assert set(render_digest(digest_events()).document) == set(documented)


def test_the_documented_examples_follow_the_tables() -> None:
    """The examples in the doc parse, name their schema and use only documented fields."""
    text = DOC.read_text()
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", text, re.S)]
    event_fields = set(documented_fields("Event document"))
    single, digest = examples
    assert single["schema"] == "expwatch.alert/v1" and flatten(single) <= event_fields
    assert digest["schema"] == "expwatch.alert.digest/v1"
    assert set(digest) == set(documented_fields("Digest document"))
    assert all(flatten(e) <= event_fields for e in digest["events"])


# -- the plain-text body, kind by kind ---------------------------------------------------------


def test_a_regressed_guardrail_names_metric_variation_numbers_and_the_way_out() -> None:
    """guardrail_regressed is a failure naming the guardrail, the variation, our interval, the
    platform's verdict, and advice to stop or roll back."""
    message = render(realistic(EventKind.GUARDRAIL_REGRESSED))
    assert message.title == "Checkout redesign: guardrail Checkout errors regressed for Treatment"
    assert message.notify_type == "failure"
    assert "Checkout errors (guardrail), variation Treatment: inconclusive → lost" in message.body
    assert "+20.00 % (confidence sequence +5.00 % … +35.00 %)" in message.body
    assert "Platform says: inconclusive." in message.body
    assert "Next: consider stopping the experiment or rolling back Treatment." in message.body
    assert "(expwatch event #7, 2026-03-01 12:00 UTC)" in message.body


def test_a_decision_names_the_outcome_the_variation_and_the_rollout() -> None:
    """decision_made shows the decision before → after and what to roll out."""
    message = render(realistic(EventKind.DECISION_MADE))
    assert message.title == "Checkout redesign: decision recorded: won (Treatment)"
    assert "Decision: none → won (v1) (status stopped)." in message.body
    assert "roll out Treatment to everyone, then stop or archive" in message.body
    assert message.notify_type == "info"


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
    ("kind", "title", "advice"),
    [
        (
            EventKind.METRIC_ADDED,
            "Checkout redesign: metric Revenue added",
            "Revenue (secondary, id met_revenue): absent → Revenue.",
        ),
        (
            EventKind.METRIC_REMOVED,
            "Checkout redesign: metric Revenue removed",
            "add the metric back in the experiment's analysis settings",
        ),
    ],
)
def test_a_metric_entering_or_leaving_the_results_is_named(
    kind: EventKind, title: str, advice: str
) -> None:
    """metric_added / metric_removed name the metric, its role and id, before → after."""
    message = render(realistic(kind))
    assert message.title == title and message.notify_type == "info"
    assert advice in message.body


def test_a_new_phase_says_the_statistics_restart() -> None:
    """phase_started shows the phases and the new weights, and that earlier alerts are past."""
    message = render(realistic(EventKind.PHASE_STARTED))
    assert message.title == "Checkout redesign: phase 1 started"
    assert "Phase 0 → 1; expected weights: v0 50 %, v1 50 %." in message.body
    assert "restarts its verdicts and SRM check" in message.body


def test_stale_results_warn_once_and_fresh_ones_clear() -> None:
    """results_stale after=True warns with the age and what to check; after=False clears."""
    stale = render(realistic(EventKind.RESULTS_STALE))
    assert stale.title == "Checkout redesign: results are stale"
    assert stale.notify_type == "warning"
    assert "Results fresh → stale: last updated 2026-02-27T12:00:00+00:00" in stale.body
    assert "(2.0 days ago; stale after 1.0 days)" in stale.body
    assert "scheduled updates" in stale.body
    fresh = render(realistic(EventKind.RESULTS_STALE, before=True, after=False))
    assert fresh.title == "Checkout redesign: results are updating again"
    assert fresh.notify_type == "success" and "scheduled updates" not in fresh.body


def test_an_unavailable_source_says_until_when_why_and_what_to_check() -> None:
    """source_unavailable names the source, the breaker, the reason, the pause and the key."""
    message = render(realistic(EventKind.SOURCE_UNAVAILABLE))
    assert message.title == "expwatch: source gb unavailable"
    assert message.notify_type == "failure"
    assert (
        "Circuit breaker closed → open after 5 consecutive failures: "
        "HTTP 503 from /api/v1/experiments." in message.body
    )
    assert "Polling paused until 2026-03-01T12:05:00+00:00" in message.body
    assert "the source's api_key" in message.body


def test_a_recovered_source_says_what_was_failing() -> None:
    """source_recovered after the breaker closes names the last error and the breaker change."""
    message = render(realistic(EventKind.SOURCE_RECOVERED))
    assert message.title == "expwatch: source gb recovered"
    assert "Was failing: HTTP 503." in message.body
    assert "half_open → closed; polling has resumed." in message.body
    assert message.notify_type == "success"


@pytest.mark.parametrize(
    ("before", "after", "notify_type", "advice"),
    [
        ("No data", "Unhealthy", "failure", "health tab"),
        ("Ready for review", "No data", "warning", "receives traffic"),
        ("Unhealthy", "Ready for review", "success", None),
    ],
)
def test_growthbook_status_reads_as_a_health_change(
    before: str, after: str, notify_type: str, advice: str | None
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
    assert message.notify_type == notify_type
    if advice is not None:
        assert advice in message.body
    else:
        assert "Next:" not in message.body


def test_a_status_change_shows_the_detailed_status_when_known() -> None:
    """status_changed reads before → after, with the platform's detailed status beside it."""
    message = render(realistic(EventKind.STATUS_CHANGED))
    assert message.title == "Checkout redesign: status is now stopped"
    assert "Status: running → stopped (Won)." in message.body


@pytest.mark.parametrize("kind", list(EventKind))
def test_every_kind_has_its_own_message(kind: EventKind) -> None:
    """No kind falls back to the generic "name: kind" message."""
    message: Message = render(event(kind, before="x", after="y"))
    assert message.title != f"Checkout redesign: {kind.value}"
    assert f": {kind.value}" not in message.title
