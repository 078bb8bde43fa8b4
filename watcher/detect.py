"""Derive events from the difference between two observations of one experiment.

Significance and SRM are judged by our own anytime-valid statistics (`assess`), so an alert
stays trustworthy however often results are polled; the platform's own verdict is kept
beside ours and its flips are recorded as information (`platform_verdict_changed`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from store import (
    Detection,
    Event,
    EventKind,
    Experiment,
    HealthStatus,
    MetricResult,
    OurVerdict,
    Snapshot,
    VariationResult,
    Verdict,
)

from .assess import StatsPolicy, assess

DEFAULT_SRM_THRESHOLD = 0.001


class ChangeDetector:
    """A `store.Detector`: assesses the new snapshot and compares it with the previous one."""

    def __init__(self, *, clock: Callable[[], datetime], policy: StatsPolicy | None = None) -> None:
        self._clock = clock
        self.policy = policy or StatsPolicy()

    def __call__(
        self,
        *,
        before: Experiment | None,
        after: Experiment,
        previous: Snapshot | None,
        current: Snapshot | None,
    ) -> Detection:
        when = (current.upstream_updated_at if current else None) or self._clock()
        events: list[Event] = []
        if before is not None and before.status != after.status:
            events.append(
                self._event(
                    EventKind.STATUS_CHANGED,
                    after,
                    before=before.status,
                    after=after.status,
                    when=after.upstream_updated_at or when,
                )
            )
        if current is None or current is previous:
            return Detection(events=tuple(events))
        if previous is not None and previous.phase != current.phase:
            previous = None  # a new phase starts from a clean slate
        assessed = assess(after, previous, current, policy=self.policy)
        events.extend(self._significance(after, previous, assessed, when))
        events.extend(self._platform_flips(after, previous, assessed, when))
        events.extend(self._srm(after, previous, assessed, when))
        events.extend(self._health(after, previous, assessed, when))
        return Detection(events=tuple(events), snapshot=assessed)

    def _event(
        self,
        kind: EventKind,
        experiment: Experiment,
        *,
        when: datetime,
        before: Any = None,
        after: Any = None,
        metric_id: str | None = None,
        variation_id: str | None = None,
        **details: Any,
    ) -> Event:
        return Event(
            kind=kind,
            source=experiment.source,
            experiment_id=experiment.experiment_id,
            metric_id=metric_id,
            variation_id=variation_id,
            before=before,
            after=after,
            details={"experiment_name": experiment.name, "url": experiment.url, **details},
            occurred_at=when,
        )

    def _significance(
        self, experiment: Experiment, previous: Snapshot | None, current: Snapshot, when: datetime
    ) -> list[Event]:
        """Our verdict crossed the anytime-valid threshold: once per phase."""
        events = []
        for metric, v, old in _variation_pairs(previous, current):
            if v.ours is None or v.ours.verdict is None or not v.ours.verdict.is_significant:
                continue
            old_ours = old.ours.verdict if old and old.ours else None
            if old_ours == v.ours.verdict:
                continue
            events.append(
                self._event(
                    EventKind.SIGNIFICANCE_CHANGED,
                    experiment,
                    when=when,
                    metric_id=metric.metric_id,
                    variation_id=v.variation_id,
                    before=old_ours.value if old_ours else None,
                    after=v.ours.verdict.value,
                    metric_name=metric.metric_name,
                    metric_role=metric.role.value,
                    variation_name=v.variation_name,
                    verdict_by="expwatch",
                    **_ours(v.ours),
                    platform_verdict=v.platform_verdict.value,
                    platform_relative_change=v.relative_change,
                    platform_ci_low=v.ci_low,
                    platform_ci_high=v.ci_high,
                    platform_p_value=v.p_value,
                    platform_chance_to_win=v.chance_to_win,
                    engine=current.engine,
                    users=v.users,
                )
            )
        return events

    def _platform_flips(
        self, experiment: Experiment, previous: Snapshot | None, current: Snapshot, when: datetime
    ) -> list[Event]:
        """The platform's own verdict changed: recorded, not alerted by default (its test is
        fixed-horizon and fires far above its nominal rate when polled)."""
        events = []
        for metric, v, old in _variation_pairs(previous, current):
            if v.platform_verdict is Verdict.BASELINE:
                continue
            old_verdict = old.platform_verdict if old else None
            if old_verdict == v.platform_verdict:
                continue
            if old_verdict is None and not v.platform_verdict.is_significant:
                continue  # first sight of an inconclusive result is not a change
            events.append(
                self._event(
                    EventKind.PLATFORM_VERDICT_CHANGED,
                    experiment,
                    when=when,
                    metric_id=metric.metric_id,
                    variation_id=v.variation_id,
                    before=old_verdict.value if old_verdict else None,
                    after=v.platform_verdict.value,
                    metric_name=metric.metric_name,
                    metric_role=metric.role.value,
                    variation_name=v.variation_name,
                    verdict_by="platform",
                    engine=current.engine,
                    relative_change=v.relative_change,
                    ci_low=v.ci_low,
                    ci_high=v.ci_high,
                    p_value=v.p_value,
                    chance_to_win=v.chance_to_win,
                    our_verdict=v.ours.verdict.value if v.ours and v.ours.verdict else None,
                )
            )
        return events

    def _srm(
        self, experiment: Experiment, previous: Snapshot | None, current: Snapshot, when: datetime
    ) -> list[Event]:
        """Our sequential SRM test crossed its threshold (or a new phase cleared it)."""
        was = previous is not None and previous.our_srm is not None and previous.our_srm.is_mismatch
        srm = current.our_srm
        now = srm is not None and srm.is_mismatch
        if was == now:
            return []
        users = {v.variation_id: v.users for v in current.metrics[0].variations}
        return [
            self._event(
                EventKind.SRM_DETECTED if now else EventKind.SRM_CLEARED,
                experiment,
                when=when,
                before=previous.our_srm.p_value if previous and previous.our_srm else None,
                after=srm.p_value if srm else None,
                threshold=srm.alpha if srm else self.policy.srm_alpha,
                test="sequential multinomial (anytime-valid)",
                chi_square_p_value=srm.chi_square_p_value if srm else None,
                platform_srm_p_value=current.srm_p_value,
                total_users=current.total_users,
                users=users,
                expected_weights={v.variation_id: v.weight for v in experiment.variations},
            )
        ]

    def _health(
        self, experiment: Experiment, previous: Snapshot | None, current: Snapshot, when: datetime
    ) -> list[Event]:
        """A health check whose status changed (first sight counts only if not passing)."""
        events = []
        for check in current.health_checks:
            old = previous.health_check(check.key) if previous else None
            if old is not None and old.status == check.status:
                continue
            if old is None and check.status in (HealthStatus.PASSED, HealthStatus.WAITING):
                continue
            events.append(
                self._event(
                    EventKind.HEALTH_CHECK_CHANGED,
                    experiment,
                    when=when,
                    before=old.status.value if old else None,
                    after=check.status.value,
                    check=check.name,
                    check_type=check.key,
                )
            )
        return events


def _variation_pairs(
    previous: Snapshot | None, current: Snapshot
) -> Iterator[tuple[MetricResult, VariationResult, VariationResult | None]]:
    """Each (metric, variation) of `current` with the same variation in `previous`, if any."""
    for metric in current.metrics:
        old_metric = previous.metric(metric.metric_id) if previous else None
        for v in metric.variations:
            yield metric, v, old_metric.variation(v.variation_id) if old_metric else None


def _ours(ours: OurVerdict) -> dict[str, Any]:
    return {
        "absolute_change": ours.absolute_change,
        "absolute_ci_low": ours.absolute_ci_low,
        "absolute_ci_high": ours.absolute_ci_high,
        "relative_change": ours.relative_change,
        "relative_ci_low": ours.relative_ci_low,
        "relative_ci_high": ours.relative_ci_high,
        "p_value": ours.running_p_value,
        "alpha": ours.alpha,
    }
