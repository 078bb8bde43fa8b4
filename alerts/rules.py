"""Which targets hear about an event, and when: routing rules, rate limits, quiet hours and
digests. Pure functions of the event, the experiment and the time, so they are tested
without sending anything.

Routing: each target has tags. A rule matches events (by kind, level, source, project,
experiment id, experiment tag) and names the tags it routes to; an event goes to every
target carrying a tag of a rule it matches. Targets with no tags receive every alerting
event, so with no rules at all every target hears everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import StrEnum
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from store import Event, EventKind, Experiment

from .render import Level


class Channel(StrEnum):
    """How a target's messages are written; derived from its Apprise URL."""

    SLACK = "slack"
    EMAIL = "email"
    JSON = "json"
    MARKDOWN = "markdown"
    """Any other Apprise service: CommonMark, which Apprise converts for the service."""


_CHANNEL_SCHEMES = {
    "slack": Channel.SLACK,
    "mailto": Channel.EMAIL,
    "mailtos": Channel.EMAIL,
    "json": Channel.JSON,
    "jsons": Channel.JSON,
}


def channel_of(url: str) -> Channel:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https" and parts.hostname == "hooks.slack.com":
        return Channel.SLACK
    return _CHANNEL_SCHEMES.get(scheme, Channel.MARKDOWN)


@dataclass(frozen=True)
class AlertTarget:
    """A named Apprise URL. The URL holds credentials: it is never logged or stored."""

    name: str
    url: str = field(repr=False)
    tags: frozenset[str] = frozenset()
    digest: timedelta | None = None
    """Batch this target's alerts into one message per window (None: send each at once)."""

    @property
    def channel(self) -> Channel:
        return channel_of(self.url)


@dataclass(frozen=True)
class AlertRule:
    """Route matching events to the targets tagged `tags`. An empty condition matches all."""

    tags: frozenset[str]
    kinds: frozenset[EventKind] = frozenset()
    levels: frozenset[Level] = frozenset()
    sources: frozenset[str] = frozenset()
    projects: frozenset[str] = frozenset()
    experiments: frozenset[str] = frozenset()
    experiment_tags: frozenset[str] = frozenset()

    def matches(self, event: Event, level: Level, experiment: Experiment | None) -> bool:
        def ok(allowed: frozenset[str], *values: str | None) -> bool:
            return not allowed or any(v in allowed for v in values if v is not None)

        return (
            ok(frozenset(self.kinds), event.kind)
            and ok(frozenset(self.levels), level)
            and ok(self.sources, event.source)
            and ok(self.projects, experiment.project if experiment else None)
            and ok(self.experiments, event.experiment_id)
            and ok(self.experiment_tags, *(experiment.tags if experiment else ()))
        )


@dataclass(frozen=True)
class RateLimit:
    """At most so many alerts per target per hour, per experiment and overall; levels in
    `exempt` always go through. Suppressed alerts are recorded with the reason."""

    per_experiment_per_hour: int | None = 10
    global_per_hour: int | None = 60
    exempt: frozenset[Level] = frozenset({Level.CRITICAL})


@dataclass(frozen=True)
class QuietHours:
    """Between `start` and `end` (local time in `timezone`), alerts below the levels in
    `allow` are held and sent as one digest when the quiet hours end."""

    start: time
    end: time
    timezone: ZoneInfo
    allow: frozenset[Level] = frozenset({Level.CRITICAL})

    def ends_after(self, now: datetime) -> datetime | None:
        """When the quiet hours around `now` end, or None if `now` is not in them."""
        local = now.astimezone(self.timezone)
        today = local.date()
        for day in (today - timedelta(days=1), today):
            begin = datetime.combine(day, self.start, self.timezone)
            end_day = day if self.end > self.start else day + timedelta(days=1)
            end = datetime.combine(end_day, self.end, self.timezone)
            if begin <= local < end:
                return end.astimezone(now.tzinfo)
        return None


@dataclass(frozen=True)
class Decision:
    """Where one event goes at one target: due at `due_at`, batched or not, or suppressed."""

    target: AlertTarget
    due_at: datetime
    batched: bool = False
    suppressed_reason: str | None = None


@dataclass(frozen=True)
class AlertPolicy:
    rules: tuple[AlertRule, ...] = ()
    event_kinds: frozenset[EventKind] | None = None
    """Kinds that alert at all (None: every kind)."""
    rate_limit: RateLimit = RateLimit()
    quiet_hours: QuietHours | None = None

    def alerts_on(self, event: Event) -> bool:
        """Whether `event` is alerted at all: never one of backfilled history (it happened
        in the past: it is history, not news), else by its kind."""
        if event.backfilled:
            return False
        return self.event_kinds is None or event.kind in self.event_kinds

    def targets_for(
        self,
        event: Event,
        level: Level,
        experiment: Experiment | None,
        targets: Sequence[AlertTarget],
    ) -> list[AlertTarget]:
        """The targets `event` is routed to (before rate limits and quiet hours)."""
        if not self.alerts_on(event):
            return []
        tags: set[str] = set()
        for rule in self.rules:
            if rule.matches(event, level, experiment):
                tags |= rule.tags
        chosen = [t for t in targets if not t.tags or t.tags & tags]
        if event.kind is EventKind.ALERT_DELIVERY_FAILED:
            # Never tell a failing target that it is failing.
            chosen = [t for t in chosen if t.name != event.details.get("target")]
        return chosen

    def schedule(
        self,
        target: AlertTarget,
        level: Level,
        now: datetime,
        *,
        sent_for_experiment: int,
        sent_overall: int,
        experiment_id: str | None,
    ) -> Decision:
        """When (and whether) an alert goes to `target`, given how many it already got in
        the last hour for the experiment and overall."""
        limit = self.rate_limit
        if level not in limit.exempt:
            if (
                limit.per_experiment_per_hour is not None
                and experiment_id is not None
                and sent_for_experiment >= limit.per_experiment_per_hour
            ):
                return Decision(
                    target,
                    now,
                    suppressed_reason=(
                        f"rate limit: {sent_for_experiment} alerts for {experiment_id} to "
                        f"{target.name} in the last hour (limit "
                        f"{limit.per_experiment_per_hour})"
                    ),
                )
            if limit.global_per_hour is not None and sent_overall >= limit.global_per_hour:
                return Decision(
                    target,
                    now,
                    suppressed_reason=(
                        f"rate limit: {sent_overall} alerts to {target.name} in the last "
                        f"hour (limit {limit.global_per_hour})"
                    ),
                )
        quiet_until = (
            self.quiet_hours.ends_after(now)
            if self.quiet_hours is not None and level not in self.quiet_hours.allow
            else None
        )
        if quiet_until is not None:
            return Decision(target, max(quiet_until, _window_end(target, now)), batched=True)
        if target.digest is not None:
            return Decision(target, _window_end(target, now), batched=True)
        return Decision(target, now)


def _window_end(target: AlertTarget, now: datetime) -> datetime:
    """The end of the digest window `now` falls in (windows are aligned to the epoch)."""
    if target.digest is None:
        return now
    window = target.digest.total_seconds()
    epoch = now.timestamp()
    return datetime.fromtimestamp((epoch // window + 1) * window, tz=now.tzinfo)


def tag_set(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.strip() for v in values if v.strip())
