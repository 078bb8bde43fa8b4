"""Domain records: what an experiment, a result snapshot and an event are.

These are plain, immutable pydantic models. The watcher builds them from platform
payloads, the store persists them, and alerts and the MCP server read them.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

ID_LENGTH = 200
"""The longest id the store keeps (source, experiment, metric and variation ids: the columns
they key are this wide). A platform's longer id is a payload error for that experiment: an
id is never clipped, or two experiments could become one."""
NAME_LENGTH = 500
"""The longest name kept (experiment, variation and metric names); longer ones are clipped."""
STATUS_LENGTH = 50
"""The longest status word kept (status, detailed status, phase); longer ones are clipped."""
ELLIPSIS = "\u2026"


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in an ellipsis when it was cut.

    Characters are code points, as PostgreSQL's varchar(n) counts them, so a cut never
    splits one (whatever its length in UTF-8). Clipping is idempotent: a record read back
    and validated again is unchanged, and so is its content hash."""
    if len(text) <= limit:
        return text
    return text[: limit - len(ELLIPSIS)].rstrip() + ELLIPSIS


def _clipped_to(limit: int) -> AfterValidator:
    def clipped(text: str) -> str:
        # NUL as the store keeps it (see store.schema.NUL_REPLACEMENT), so what is compared
        # with the next poll is what was stored.
        return clip(text.replace("\x00", "\ufffd"), limit)

    return AfterValidator(clipped)


Name = Annotated[str, _clipped_to(NAME_LENGTH)]
"""Text that is only shown (a name): clipped to `NAME_LENGTH`, so that one absurd name from a
platform is stored alike on SQLite (which ignores column sizes) and PostgreSQL (which refuses
to write the whole transaction)."""
StatusWord = Annotated[str, _clipped_to(STATUS_LENGTH)]
"""A platform's status word (shown, and compared for changes): clipped to `STATUS_LENGTH`."""


class Verdict(StrEnum):
    """What a result says about one variation against the baseline for one metric."""

    BASELINE = "baseline"
    INCONCLUSIVE = "inconclusive"
    WON = "won"
    LOST = "lost"

    @property
    def is_significant(self) -> bool:
        return self in (Verdict.WON, Verdict.LOST)


class MetricRole(StrEnum):
    GOAL = "goal"
    SECONDARY = "secondary"
    GUARDRAIL = "guardrail"


class EventKind(StrEnum):
    """Kinds of event in the log. Later issues add more; the names are stable."""

    SIGNIFICANCE_CHANGED = "significance_changed"
    SRM_DETECTED = "srm_detected"
    SRM_CLEARED = "srm_cleared"
    PLATFORM_VERDICT_CHANGED = "platform_verdict_changed"
    """The platform's own verdict flipped (information: its test is not valid under peeking)."""
    GUARDRAIL_REGRESSED = "guardrail_regressed"
    """Our verdict on a guardrail metric crossed to lost (in place of significance_changed)."""
    STATUS_CHANGED = "status_changed"
    DECISION_MADE = "decision_made"
    """The owners recorded a decision; before/after are `Decision` dicts (or None)."""
    PHASE_STARTED = "phase_started"
    """A new phase began: its statistics start afresh. before/after are the phases."""
    METRIC_ADDED = "metric_added"
    METRIC_REMOVED = "metric_removed"
    HEALTH_CHECK_CHANGED = "health_check_changed"
    SOURCE_ERROR = "source_error"
    SOURCE_RECOVERED = "source_recovered"
    SOURCE_UNAVAILABLE = "source_unavailable"
    """A source's circuit breaker opened: polling is paused until `details["until"]`."""
    RESULTS_STALE = "results_stale"
    """A running experiment's results stopped updating (after=True) or updated again (False)."""
    ALERT_DELIVERY_FAILED = "alert_delivery_failed"
    """An alert could not be delivered to a target before its retries ran out; details name
    the target, the event and the last error."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Variation(_Record):
    variation_id: str
    name: Name
    weight: float | None = None
    """Expected share of traffic in the current phase (None when unknown)."""


class Decision(_Record):
    """What the experiment's owners decided, as the platform records it: GrowthBook's
    `resultSummary` (won / lost / inconclusive / dnf) or Statsig's launched group."""

    outcome: str
    """The platform's word for the decision ("won", "lost", "inconclusive", "dnf", "launched",
    "abandoned")."""
    variation_id: str | None = None
    """The variation shipped or declared the winner, when the platform names one."""


class Experiment(_Record):
    """An experiment as last listed by its source."""

    source: str
    experiment_id: str
    name: Name
    status: StatusWord
    project: str = ""
    phase: StatusWord = ""
    variations: tuple[Variation, ...] = ()
    upstream_updated_at: datetime | None = None
    upstream_version: str | None = None
    """What changes when the platform has new results (GrowthBook dateUpdated, Statsig
    lastModifiedTime / pulse ds); lets the watcher skip fetching unchanged results."""
    url: str | None = None
    tags: tuple[str, ...] = ()
    detailed_status: StatusWord | None = None
    """The platform's finer status line (GrowthBook `enhancedStatus.detailedStatus`: "No data",
    "Unhealthy", "Won", ...), when it gives one."""
    decision: Decision | None = None


class OurVerdict(_Record):
    """expwatch's own, anytime-valid verdict on one variation for one metric at one poll.

    Decided on the absolute difference with a confidence sequence; the relative lift is shown
    beside it. `state` is the statistics' running state, kept so the next poll resumes it.
    """

    verdict: Verdict | None
    """WON / LOST / INCONCLUSIVE, or None while there is too little data to judge."""
    absolute_change: float | None = None
    absolute_ci_low: float | None = None
    absolute_ci_high: float | None = None
    relative_change: float | None = None
    relative_ci_low: float | None = None
    relative_ci_high: float | None = None
    p_value: float | None = None
    """This poll's always-valid p-value (multiplicity-adjusted)."""
    running_p_value: float = 1.0
    """The smallest adjusted p-value of the phase; significant once it is <= alpha."""
    alpha: float = 0.05
    reason: str | None = None
    state: dict[str, Any] = Field(default_factory=dict)


class OurSrm(_Record):
    """expwatch's own sample-ratio check: the sequential multinomial test (anytime-valid)."""

    p_value: float
    """Running minimum of the sequential SRM p-value in this phase."""
    chi_square_p_value: float | None = None
    """The fixed-horizon chi-square p-value (what platforms show), for information."""
    alpha: float = 0.001
    state: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_mismatch(self) -> bool:
        return self.p_value <= self.alpha


class VariationResult(_Record):
    """One variation's numbers for one metric, as the platform reported them."""

    variation_id: str
    variation_name: Name = ""
    users: float = 0.0
    numerator: float | None = None
    denominator: float | None = None
    mean: float | None = None
    stddev: float | None = None
    relative_change: float | None = None
    """Relative lift against the baseline, as a fraction (0.05 = +5 %)."""
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    chance_to_win: float | None = None
    risk: float | None = None
    """Bayesian expected loss of choosing this variation (GrowthBook `risk`)."""
    platform_verdict: Verdict = Verdict.INCONCLUSIVE
    ours: OurVerdict | None = None


class MetricResult(_Record):
    metric_id: str
    metric_name: Name = ""
    role: MetricRole = MetricRole.GOAL
    higher_is_better: bool = True
    """False for metrics where a decrease is good (GrowthBook `inverse`, Statsig direction)."""
    variations: tuple[VariationResult, ...] = ()

    def variation(self, variation_id: str) -> VariationResult | None:
        return next((v for v in self.variations if v.variation_id == variation_id), None)


class HealthStatus(StrEnum):
    """A platform health check's state (Statsig's values; GrowthBook's checks map onto them)."""

    WAITING = "waiting"
    PASSED = "passed"
    WARNING = "warning"
    FAILED = "failed"


class HealthCheck(_Record):
    """One health check of an experiment, as the platform reported it. `name` is the
    platform's label (Statsig's changes with the status); `key` identifies the check."""

    name: str
    status: HealthStatus
    check_type: str = ""

    @property
    def key(self) -> str:
        return self.check_type or self.name


class DimensionSlice(_Record):
    """The results of one dimension value (e.g. browser = Chrome), kept beside the overall row."""

    dimension: str
    total_users: float = 0.0
    srm_p_value: float | None = None
    metrics: tuple[MetricResult, ...] = ()


class Snapshot(_Record):
    """The results of one experiment at one moment: the overall row in `metrics`, and the
    rows of other dimension values, when the platform sent them, in `slices`."""

    source: str
    experiment_id: str
    upstream_snapshot_id: str | None = None
    upstream_updated_at: datetime | None = None
    phase: StatusWord = ""
    engine: str = ""
    total_users: float = 0.0
    srm_p_value: float | None = None
    health_checks: tuple[HealthCheck, ...] = ()
    metrics: tuple[MetricResult, ...] = ()
    slices: tuple[DimensionSlice, ...] = ()
    our_srm: OurSrm | None = None

    def health_check(self, key: str) -> HealthCheck | None:
        return next((c for c in self.health_checks if c.key == key), None)

    def metric(self, metric_id: str) -> MetricResult | None:
        return next((m for m in self.metrics if m.metric_id == metric_id), None)

    def content_hash(self) -> str:
        """A digest of the results themselves; equal digests mean nothing changed."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, allow_nan=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


class Event(_Record):
    """One entry of the append-only event log. `id` is None until the store assigns it."""

    id: int | None = None
    kind: EventKind
    source: str
    experiment_id: str | None = None
    metric_id: str | None = None
    variation_id: str | None = None
    before: Any = None
    after: Any = None
    details: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime
    """When the change happened upstream (or was observed, when the platform does not say)."""
    recorded_at: datetime | None = None
    snapshot_id: int | None = None
    """The snapshot the event was derived from (kept by retention while the event exists)."""
    backfilled: bool = False
    """Derived from history read after the fact (`expwatch backfill`): it answers "when did
    this happen?" but is never alerted or announced as news."""


class StoredSnapshot(_Record):
    """A snapshot as the store keeps it: with its id and when it was fetched."""

    id: int
    fetched_at: datetime
    last_checked_at: datetime
    content_hash: str
    snapshot: Snapshot
    backfilled: bool = False
    """Read from the platform's history after the fact; `fetched_at` is then the time the
    platform computed it."""


class WatchState(_Record):
    """What the store knows of one experiment, as the supervisor plans a cycle with it."""

    experiment: Experiment
    last_checked_at: datetime | None = None
    results_updated_at: datetime | None = None
    """When the newest snapshot was computed upstream (or fetched, if the platform does not
    say); None before the first results."""


class Detection(_Record):
    """What a detector derived from one poll: events, and the snapshot to store."""

    events: tuple[Event, ...] = ()
    snapshot: Snapshot | None = None


class PollOutcome(_Record):
    """What recording one poll did."""

    snapshot_id: int | None
    is_new_snapshot: bool
    events: tuple[Event, ...] = ()


class MetricPoint(_Record):
    """One point of a metric's trajectory for one variation."""

    snapshot_id: int
    fetched_at: datetime
    upstream_updated_at: datetime | None
    users: float
    mean: float | None
    relative_change: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    chance_to_win: float | None
    platform_verdict: Verdict
    our_verdict: Verdict | None = None
    our_p_value: float | None = None
    """Running anytime-valid p-value (adjusted) at that snapshot."""
    absolute_change: float | None = None
    absolute_ci_low: float | None = None
    absolute_ci_high: float | None = None
    backfilled: bool = False
    """A point of backfilled history (`fetched_at` is when the platform computed it)."""


class BackfillOutcome(_Record):
    """What recording one day of backfilled history did."""

    day: date
    already_done: bool = False
    """Another run had recorded this day: nothing was written."""
    snapshots: int = 0
    """New snapshots recorded (repeats of the previous one and those at or after the first
    live snapshot are left out)."""
    events: tuple[Event, ...] = ()
