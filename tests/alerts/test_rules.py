"""Routing, rate limits, quiet hours and digest windows as pure decisions."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from alerts import AlertPolicy, AlertRule, AlertTarget, Channel, Level, QuietHours, RateLimit
from alerts.rules import channel_of
from store import EventKind, Experiment
from tests.alerts.samples import one_of_each_kind

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CHECKOUT = Experiment(
    source="gb",
    experiment_id="exp_checkout",
    name="Checkout redesign",
    status="running",
    project="prj_shop",
    tags=("checkout", "q1"),
)
SLACK = AlertTarget("slack", "slack://T/B/C", tags=frozenset({"oncall"}))
TEAM = AlertTarget("team", "json://hooks.example.com/x", tags=frozenset({"team"}))
ALL = AlertTarget("all", "mailto://smtp.example.com?to=a@example.com")


def test_channels_follow_the_url_scheme() -> None:
    assert channel_of("slack://T/B/C") is Channel.SLACK
    assert channel_of("https://hooks.slack.com/services/T/B/C") is Channel.SLACK
    assert channel_of("mailtos://u:p@smtp.example.com") is Channel.EMAIL
    assert channel_of("jsons://example.com/hook") is Channel.JSON
    assert channel_of("discord://1/2") is Channel.MARKDOWN


def test_without_rules_every_target_hears_every_alerting_kind() -> None:
    policy = AlertPolicy(event_kinds=frozenset({EventKind.SRM_DETECTED}))
    events = one_of_each_kind()
    targets = [SLACK, TEAM, ALL]
    assert policy.targets_for(
        events[EventKind.SRM_DETECTED], Level.CRITICAL, CHECKOUT, targets
    ) == [ALL]
    # Tagged targets only hear what a rule routes to their tag.
    assert policy.targets_for(events[EventKind.STATUS_CHANGED], Level.INFO, CHECKOUT, targets) == []


def test_a_rule_matches_on_every_condition_it_names() -> None:
    event = one_of_each_kind()[EventKind.SIGNIFICANCE_CHANGED]
    rule = AlertRule(
        tags=frozenset({"team"}),
        kinds=frozenset({EventKind.SIGNIFICANCE_CHANGED}),
        sources=frozenset({"gb"}),
        projects=frozenset({"prj_shop"}),
        experiment_tags=frozenset({"checkout"}),
    )
    assert rule.matches(event, Level.INFO, CHECKOUT)
    assert not rule.matches(event, Level.INFO, CHECKOUT.model_copy(update={"project": "other"}))
    assert not rule.matches(event, Level.INFO, CHECKOUT.model_copy(update={"tags": ()}))
    assert not rule.matches(event, Level.INFO, None)  # project unknown: no match
    assert not AlertRule(tags=frozenset({"x"}), levels=frozenset({Level.CRITICAL})).matches(
        event, Level.INFO, CHECKOUT
    )
    policy = AlertPolicy(rules=(rule,))
    assert policy.targets_for(event, Level.INFO, CHECKOUT, [SLACK, TEAM, ALL]) == [TEAM, ALL]


def test_a_failing_target_is_not_told_about_itself() -> None:
    event = one_of_each_kind()[EventKind.ALERT_DELIVERY_FAILED].model_copy(
        update={"details": {"target": "all"}}
    )
    other = AlertTarget("other", "json://example.com/y")
    assert AlertPolicy().targets_for(event, Level.CRITICAL, None, [ALL, other]) == [other]


def test_quiet_hours_cross_midnight_in_the_configured_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    quiet = QuietHours(time(22, 0), time(7, 0), berlin)
    assert quiet.ends_after(datetime(2026, 3, 2, 21, 59, tzinfo=berlin)) is None
    assert quiet.ends_after(datetime(2026, 3, 2, 22, 0, tzinfo=berlin)) == datetime(
        2026, 3, 3, 7, 0, tzinfo=berlin
    )
    assert quiet.ends_after(datetime(2026, 3, 3, 3, 0, tzinfo=berlin)) == datetime(
        2026, 3, 3, 7, 0, tzinfo=berlin
    )
    assert quiet.ends_after(datetime(2026, 3, 3, 7, 0, tzinfo=berlin)) is None
    lunch = QuietHours(time(12, 0), time(13, 0), UTC)
    assert lunch.ends_after(datetime(2026, 3, 3, 12, 30, tzinfo=UTC)) == datetime(
        2026, 3, 3, 13, 0, tzinfo=UTC
    )
    assert lunch.ends_after(datetime(2026, 3, 3, 13, 30, tzinfo=UTC)) is None


def test_schedule_limits_then_quiet_hours_then_digest_windows() -> None:
    policy = AlertPolicy(
        rate_limit=RateLimit(per_experiment_per_hour=2, global_per_hour=3),
        quiet_hours=QuietHours(time(8, 0), time(9, 30), UTC),
    )
    digest = AlertTarget("d", "json://x/y", digest=timedelta(minutes=15))

    def decide(level: Level, exp: int = 0, overall: int = 0, target: AlertTarget = ALL) -> object:
        return policy.schedule(
            target, level, NOW, sent_for_experiment=exp, sent_overall=overall, experiment_id="e"
        )

    assert "limit 2" in (decide(Level.INFO, exp=2).suppressed_reason or "")  # type: ignore[attr-defined]
    assert "limit 3" in (decide(Level.INFO, overall=3).suppressed_reason or "")  # type: ignore[attr-defined]
    critical = decide(Level.CRITICAL, exp=9, overall=9)
    assert critical.due_at == NOW and not critical.batched  # type: ignore[attr-defined]
    held = decide(Level.WARNING)
    assert held.due_at == datetime(2026, 3, 2, 9, 30, tzinfo=UTC) and held.batched  # type: ignore[attr-defined]
    calm = AlertPolicy()
    windowed = calm.schedule(
        digest,
        Level.INFO,
        NOW + timedelta(minutes=1),
        sent_for_experiment=0,
        sent_overall=0,
        experiment_id="e",
    )
    assert windowed.due_at == NOW + timedelta(minutes=15) and windowed.batched
