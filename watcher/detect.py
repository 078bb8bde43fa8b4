"""Derive events from the difference between two observations of one experiment.

Significance and SRM are judged by our own anytime-valid statistics (`assess`), so an alert
stays trustworthy however often results are polled; the platform's own verdict is kept
beside ours and its flips are recorded as information (`platform_verdict_changed`). A
guardrail our verdict finds harmed is a `guardrail_regressed` in place of that crossing's
`significance_changed`.

Every event compares two consecutive observations, so a state that holds (an SRM, an
unhealthy status, a decision) fires once when it starts and once when it ends, and an
observation that repeats the previous one fires nothing.

First sightings: what the platform already shows its users is a baseline, not an alert;
what only expwatch judges is news.
- An experiment expwatch has never seen (`before` is None) emits no `status_changed`,
  `decision_made`, `phase_started` or health check event: its record is the baseline, so
  adding a large portfolio does not alert on every experiment already decided, stopped, in a
  later phase or failing a platform check.
- Its results are still judged: our verdicts (`significance_changed`, `guardrail_regressed`)
  and our SRM test are computed by expwatch alone, so a first snapshot that already crosses
  alerts, once (the crossing is kept for the next poll). A platform verdict that is already
  significant is recorded too (`platform_verdict_changed` is information, not alerted by
  default), so the log shows where the platform stood when expwatch started.
- A known experiment's first results are a change: a crossing, an SRM, a platform verdict
  that is already significant or a health check already warning or failing fires.
- The first results of an experiment, or of a new phase, have no earlier set of metrics to
  compare, so they add or remove no metric.
- A value the platform does not report is unknown, not a change: a decision going back to
  None, a phase from or to "", and a detailed status from or to None (GrowthBook's list
  endpoint has none, GET one has) fire nothing.

Which observation says the phase: the experiment's own `phase` when the source gives one (a
phase change reaches the experiment and its results at different polls, and must alert once),
else the snapshots' `phase`. Statistics always restart when the snapshot's phase changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from store import (
    Decision,
    Detection,
    Event,
    EventKind,
    Experiment,
    HealthStatus,
    MetricResult,
    MetricRole,
    OurVerdict,
    Snapshot,
    VariationResult,
    Verdict,
)

from .assess import StatsPolicy, assess

DEFAULT_SRM_THRESHOLD = 0.001
GROWTHBOOK_STATUS_CHECK = "growthbook_status"
"""The health check key of GrowthBook's detailed status (its REST results check only SRM)."""
UNHEALTHY_DETAILED_STATUSES = frozenset({"Unhealthy", "No data"})
"""Detailed statuses that are a health warning; a change to or from one is an event."""


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
        is_new = current is not None and current is not previous
        events = self._experiment_changes(before, after, previous, current if is_new else None)
        if current is None or not is_new:
            return Detection(events=tuple(events))
        when = current.upstream_updated_at or self._clock()
        # A new phase starts from a clean slate: its statistics do not resume the old ones.
        same_phase = previous if previous is not None and previous.phase == current.phase else None
        assessed = assess(after, same_phase, current, policy=self.policy)
        events.extend(self._metric_set(after, same_phase, assessed, when))
        events.extend(self._significance(after, same_phase, assessed, when))
        events.extend(self._platform_flips(after, same_phase, assessed, when))
        events.extend(self._srm(after, previous, assessed, when))
        if before is not None:  # at first sight the platform's checks are the baseline
            events.extend(self._health(after, previous, assessed, when))
        return Detection(events=tuple(events), snapshot=assessed)

    def _experiment_changes(
        self,
        before: Experiment | None,
        after: Experiment,
        previous: Snapshot | None,
        current: Snapshot | None,
    ) -> list[Event]:
        """Status, phase, decision and GrowthBook's detailed status: what the experiment's own
        record says changed (`current` is None unless this poll brought new results)."""
        if before is None:
            return []
        when = after.upstream_updated_at or self._clock()
        events = []
        if before.status != after.status:
            known = {"detailed_status": after.detailed_status} if after.detailed_status else {}
            events.append(
                self._event(
                    EventKind.STATUS_CHANGED,
                    after,
                    before=before.status,
                    after=after.status,
                    when=when,
                    **known,
                )
            )
        events.extend(self._phase(before, after, previous, current, when))
        if after.decision is not None and after.decision != before.decision:
            decided = after.decision.variation_id
            events.append(
                self._event(
                    EventKind.DECISION_MADE,
                    after,
                    when=when,
                    variation_id=decided,
                    before=_decision(before.decision),
                    after=_decision(after.decision),
                    variation_name=_variation_name(after, decided),
                    status=after.status,
                )
            )
        old_status, new_status = before.detailed_status, after.detailed_status
        if (
            old_status is not None
            and new_status is not None
            and old_status != new_status
            and UNHEALTHY_DETAILED_STATUSES & {old_status, new_status}
        ):
            events.append(
                self._event(
                    EventKind.HEALTH_CHECK_CHANGED,
                    after,
                    when=when,
                    before=old_status,
                    after=new_status,
                    check="GrowthBook status",
                    check_type=GROWTHBOOK_STATUS_CHECK,
                )
            )
        return events

    def _phase(
        self,
        before: Experiment,
        after: Experiment,
        previous: Snapshot | None,
        current: Snapshot | None,
        when: datetime,
    ) -> list[Event]:
        """A new phase: from the experiment's phase when it has one, else the snapshots'."""
        if after.phase:
            old, new, seen_in = before.phase, after.phase, "experiment"
        elif previous is not None and current is not None:
            old, new, seen_in = previous.phase, current.phase, "results"
        else:
            return []
        if not old or not new or old == new:
            return []
        return [
            self._event(
                EventKind.PHASE_STARTED,
                after,
                when=when,
                before=old,
                after=new,
                observed_in=seen_in,
                expected_weights={v.variation_id: v.weight for v in after.variations},
            )
        ]

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
        """Our verdict crossed the anytime-valid threshold: once per phase. A guardrail
        crossing to lost (harmed, in the metric's own direction) is a `guardrail_regressed`."""
        events = []
        for metric, v, old in _variation_pairs(previous, current):
            if v.ours is None or v.ours.verdict is None or not v.ours.verdict.is_significant:
                continue
            old_ours = old.ours.verdict if old and old.ours else None
            if old_ours == v.ours.verdict:
                continue
            regressed = metric.role is MetricRole.GUARDRAIL and v.ours.verdict is Verdict.LOST
            events.append(
                self._event(
                    EventKind.GUARDRAIL_REGRESSED if regressed else EventKind.SIGNIFICANCE_CHANGED,
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
        """Our sequential SRM test crossed its threshold, or a new phase cleared it (`previous`
        is the last snapshot whatever its phase: a mismatch that carries on into the new phase
        is not a new one)."""
        was = previous is not None and previous.our_srm is not None and previous.our_srm.is_mismatch
        srm = current.our_srm
        now = srm is not None and srm.is_mismatch
        if was == now:
            return []
        arms = current.metrics[0].variations if current.metrics else ()
        users = {v.variation_id: v.users for v in arms}
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

    def _metric_set(
        self, experiment: Experiment, previous: Snapshot | None, current: Snapshot, when: datetime
    ) -> list[Event]:
        """Metrics that appeared in or left the results since the previous snapshot of the
        phase. Results without any metric (not computed yet) are no set of metrics."""
        if previous is None or not previous.metrics or not current.metrics:
            return []
        old_ids = {m.metric_id for m in previous.metrics}
        new_ids = {m.metric_id for m in current.metrics}
        added, removed = EventKind.METRIC_ADDED, EventKind.METRIC_REMOVED
        changes = [
            *((added, m) for m in current.metrics if m.metric_id not in old_ids),
            *((removed, m) for m in previous.metrics if m.metric_id not in new_ids),
        ]
        return [
            self._event(
                kind,
                experiment,
                when=when,
                metric_id=metric.metric_id,
                before=_metric_name(metric) if kind is removed else None,
                after=_metric_name(metric) if kind is added else None,
                metric_name=metric.metric_name,
                metric_role=metric.role.value,
            )
            for kind, metric in changes
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


def _decision(decision: Decision | None) -> dict[str, Any] | None:
    return decision.model_dump(mode="json") if decision else None


def _variation_name(experiment: Experiment, variation_id: str | None) -> str | None:
    return next((v.name for v in experiment.variations if v.variation_id == variation_id), None)


def _metric_name(metric: MetricResult) -> str:
    return metric.metric_name or metric.metric_id


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
