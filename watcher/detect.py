"""Derive events from the difference between two observations of one experiment.

For now significance follows the platform's own verdict; the anytime-valid statistics of a
later issue replace it without changing the event shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from store import Event, EventKind, Experiment, HealthStatus, Snapshot, Verdict

DEFAULT_SRM_THRESHOLD = 0.001


class ChangeDetector:
    """A `store.Detector`: compares the previous and current observation of an experiment."""

    def __init__(
        self, *, clock: Callable[[], datetime], srm_threshold: float = DEFAULT_SRM_THRESHOLD
    ) -> None:
        self._clock = clock
        self.srm_threshold = srm_threshold

    def __call__(
        self,
        *,
        before: Experiment | None,
        after: Experiment,
        previous: Snapshot | None,
        current: Snapshot | None,
    ) -> list[Event]:
        when = (current.upstream_updated_at if current else None) or self._clock()
        events: list[Event] = []
        if before is not None and before.status != after.status:
            events.append(
                Event(
                    kind=EventKind.STATUS_CHANGED,
                    source=after.source,
                    experiment_id=after.experiment_id,
                    before=before.status,
                    after=after.status,
                    details={"experiment_name": after.name},
                    occurred_at=after.upstream_updated_at or when,
                )
            )
        if current is None or current is previous:
            return events
        if previous is not None and previous.phase != current.phase:
            previous = None  # a new phase starts from a clean slate
        events.extend(self._significance(after, previous, current, when))
        events.extend(self._srm(after, previous, current, when))
        events.extend(self._health(after, previous, current, when))
        return events

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
                Event(
                    kind=EventKind.HEALTH_CHECK_CHANGED,
                    source=current.source,
                    experiment_id=current.experiment_id,
                    before=old.status.value if old else None,
                    after=check.status.value,
                    details={
                        "experiment_name": experiment.name,
                        "check": check.name,
                        "check_type": check.key,
                        "url": experiment.url,
                    },
                    occurred_at=when,
                )
            )
        return events

    def _significance(
        self, experiment: Experiment, previous: Snapshot | None, current: Snapshot, when: datetime
    ) -> list[Event]:
        events = []
        for metric in current.metrics:
            old_metric = previous.metric(metric.metric_id) if previous else None
            for v in metric.variations:
                if v.platform_verdict is Verdict.BASELINE:
                    continue
                old = old_metric.variation(v.variation_id) if old_metric else None
                old_verdict = old.platform_verdict if old else None
                if old_verdict == v.platform_verdict:
                    continue
                if old_verdict is None and not v.platform_verdict.is_significant:
                    continue  # first sight of an inconclusive result is not a change
                events.append(
                    Event(
                        kind=EventKind.SIGNIFICANCE_CHANGED,
                        source=current.source,
                        experiment_id=current.experiment_id,
                        metric_id=metric.metric_id,
                        variation_id=v.variation_id,
                        before=old_verdict.value if old_verdict else None,
                        after=v.platform_verdict.value,
                        details={
                            "experiment_name": experiment.name,
                            "metric_name": metric.metric_name,
                            "metric_role": metric.role.value,
                            "variation_name": v.variation_name,
                            "engine": current.engine,
                            "relative_change": v.relative_change,
                            "ci_low": v.ci_low,
                            "ci_high": v.ci_high,
                            "p_value": v.p_value,
                            "chance_to_win": v.chance_to_win,
                            "users": v.users,
                            "verdict_by": "platform",
                            "url": experiment.url,
                        },
                        occurred_at=when,
                    )
                )
        return events

    def _srm(
        self, experiment: Experiment, previous: Snapshot | None, current: Snapshot, when: datetime
    ) -> list[Event]:
        was = self._is_srm(previous.srm_p_value if previous else None)
        now = self._is_srm(current.srm_p_value)
        if was == now:
            return []
        return [
            Event(
                kind=EventKind.SRM_DETECTED if now else EventKind.SRM_CLEARED,
                source=current.source,
                experiment_id=current.experiment_id,
                before=previous.srm_p_value if previous else None,
                after=current.srm_p_value,
                details={
                    "experiment_name": experiment.name,
                    "threshold": self.srm_threshold,
                    "total_users": current.total_users,
                    "users": {
                        v.variation_id: v.users
                        for v in (current.metrics[0].variations if current.metrics else ())
                    },
                    "expected_weights": {v.variation_id: v.weight for v in experiment.variations},
                    "url": experiment.url,
                },
                occurred_at=when,
            )
        ]

    def _is_srm(self, p_value: float | None) -> bool:
        return p_value is not None and p_value < self.srm_threshold
