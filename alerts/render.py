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

This module lays a message out per channel; the rest lives beside it: `alerts.levels` (the
level table, `level_of` and the notify type), `alerts.wording` (what each kind of event
says), `alerts.markup` (escaping user text for markdown and HTML, safe links, the email
frame) and `alerts.document` (the JSON documents).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from store import Event, EventKind

from .document import digest_document, event_document, utc
from .levels import LEVEL_RANK, Level, is_good_news, level_of, notify_type_of
from .markup import (
    COLOURS,
    HTML_BUTTON,
    escape_html,
    escape_markdown,
    html_link,
    html_page,
    html_table,
    markdown_link,
    one_line,
    safe_url,
)
from .wording import EXPERIMENT_FACT, Wording, experiment_name, is_test, wording_of

__all__ = [
    "Attachment",
    "Level",
    "Message",
    "level_of",
    "render",
    "render_digest",
    "sample_event",
]


@dataclass(frozen=True)
class Attachment:
    """A file sent with a message where the channel takes files (email): a chart."""

    name: str
    """The file name the receiver sees (`srm.png`)."""
    data: bytes = field(repr=False)
    mime_type: str = "image/png"


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
    attachments: tuple[Attachment, ...] = ()
    """Files for channels that take them (email: the chart of what the alert is about)."""


def _event_name(event: Event) -> str:
    """The name receivers de-duplicate by: "expwatch event #N"."""
    if event.id is not None:
        return f"expwatch event #{event.id}"
    if is_test(event):
        return "expwatch test alert, not in the event log"
    return "expwatch event not yet recorded"


def _reference(event: Event) -> str:
    """Which event this is and when: "expwatch event #N, <time> UTC"."""
    return f"{_event_name(event)}, {utc(event.occurred_at):%Y-%m-%d %H:%M} UTC"


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
    wording = wording_of(event)
    level = level_of(event)
    notify_type = notify_type_of(level, good_news=is_good_news(event))
    subject = "expwatch" if wording.about_source else experiment_name(event)
    url = safe_url(event.details.get("url")) if event.experiment_id is not None else None
    subject_url = None if wording.about_source else url
    test = is_test(event)
    tags = ["[possible duplicate] "] * possible_duplicate + ["[test] "] * test
    prefix = "".join(tags)
    title = one_line(f"{prefix}{subject}: {wording.headline}")
    notices = [_TEST_NOTICE] * test + [_duplicate_notice([event.id])] * possible_duplicate
    reference = _reference(event)
    step = wording.next_step
    facts = [  # label, value and the value's link: only the experiment links to its page
        (label, value, url if label == EXPERIMENT_FACT else None) for label, value in wording.facts
    ]

    body = "\n".join(
        [
            *notices,
            *wording.lines,
            *[f"Next: {step}"] * bool(step),
            *[f"Open: {url}"] * bool(url),
            f"({reference})",
        ]
    )
    markdown = "\n".join(
        [
            "".join(f"{escape_markdown(tag)} " for tag in tags)
            + f"**{markdown_link(subject, subject_url)}**: {escape_markdown(wording.headline)}",
            *(f"_{escape_markdown(n)}_" for n in notices),
            *(f"**{label}:** {markdown_link(value, link)}" for label, value, link in facts),
            *[f"**Next:** {escape_markdown(step or '')}"] * bool(step),
            (f"[Open the experiment](<{url}>) · " if url else "") + escape_markdown(reference),
        ]
    )
    content = [html_table(facts)]
    if step:
        content.append(f'<p style="margin:0 0 12px"><strong>Next:</strong> {escape_html(step)}</p>')
    if url:
        button = html_link("Open the experiment", url, HTML_BUTTON)
        content.append(f'<p style="margin:16px 0">{button}</p>')
    heading = html_link(subject, subject_url)
    html_body = html_page(
        level=level,
        notify_type=notify_type,
        notices=notices,
        heading=f"{escape_html(prefix)}{heading}: {escape_html(wording.headline)}",
        content=content,
        footer=(f"Experiment page: {html_link(url, url)}<br>" if url else "")
        + escape_html(reference),
    )
    return Message(
        title=title,
        body=body,
        markdown=markdown,
        html=html_body,
        notify_type=notify_type,
        level=level,
        document=event_document(
            event, level=level, title=title, text=body, possible_duplicate=possible_duplicate
        ),
    )


# -- digests -----------------------------------------------------------------------------------


@dataclass
class _Group:
    """The events of one experiment (or of a source, when they name no experiment)."""

    name: str
    url: str | None
    is_experiment: bool
    items: list[tuple[Event, Level, Wording]] = field(default_factory=list)

    @property
    def rank(self) -> tuple[int, str]:
        return min(LEVEL_RANK[level] for _, level, _ in self.items), self.name.lower()


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
            _Group(experiment_name(event) if named else f"source {event.source}", None, named),
        )
        group.url = group.url or safe_url(event.details.get("url"))
        if event.details.get("experiment_name"):
            group.name = str(event.details["experiment_name"])
        group.items.append((event, level_of(event), wording_of(event)))
    ordered = sorted(groups.values(), key=lambda g: g.rank)
    for group in ordered:
        group.items.sort(key=lambda item: (LEVEL_RANK[item[1]], item[0].id or 0))
    levels = [level for group in ordered for _, level, _ in group.items]
    level = min(levels, key=LEVEL_RANK.__getitem__)
    notify_type = notify_type_of(level)
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
    first, last = (f"{f(utc(e.occurred_at) for e in events):%Y-%m-%d %H:%M}" for f in (min, max))
    span = first if first == last else f"{first} – {last}"
    footer = f"expwatch digest: {_plural(len(events), 'event')}, {span} UTC"

    text = [*notices]
    markdown = [f"**{escape_markdown(title)}**", *(f"_{escape_markdown(n)}_" for n in notices)]
    content = []
    for group in ordered:
        text += ["", group.name]
        markdown += ["", f"**{markdown_link(group.name, group.url)}**"]
        content.append(
            f'<h3 style="margin:16px 0 4px;font-size:15px">{html_link(group.name, group.url)}</h3>'
            '\n<ul style="margin:0;padding-left:20px">'
        )
        for event, event_level, wording in group.items:
            tag = "" if event_level is Level.INFO else f"[{event_level.value}] "
            words = f"{wording.headline} ({_event_name(event)})"
            text.append(f"- {tag}{words}")
            markdown.append(f"- {escape_markdown(tag + words, line_start=True)}")
            colour = COLOURS[notify_type_of(event_level)]
            badge = f'<strong style="color:{colour}">{escape_html(tag)}</strong>' if tag else ""
            content.append(f"<li>{badge}{escape_html(words)}</li>")
        content.append("</ul>")
        if group.url:
            text.append(f"  Open: {group.url}")
    text += ["", f"({footer})"]
    markdown += ["", escape_markdown(footer)]
    body = "\n".join(text).lstrip("\n")
    return Message(
        title=title,
        body=body,
        markdown="\n".join(markdown),
        html=html_page(
            level=level,
            notify_type=notify_type,
            notices=notices,
            heading=escape_html(title),
            content=content,
            footer=escape_html(footer),
        ),
        notify_type=notify_type,
        level=level,
        document=digest_document(
            title=title,
            text=body,
            level=level,
            critical=critical,
            events=[e for g in ordered for e, _, _ in g.items],
            event_documents=[
                render(e, possible_duplicate=possible_duplicate).document
                for g in ordered
                for e, _, _ in g.items
            ],
            possible_duplicate=possible_duplicate,
        ),
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
