"""One scripted Statsig experiment: its groups, metrics, status, counts and health checks.

Everything an experiment reports is a pure function of the refresh index (see
`simulator.statsig_scenario` for the timeline). Numbers come from raw cumulative counts per
group, as for the GrowthBook fake: units (exposed users) grow by `users_per_refresh` per
refresh with results, split by the group sizes; the last group's units can be scripted short of
its size so that Statsig's exposure-balance check reads WARNING and then FAILED; conversions of
the first primary metric's last group follow a z-score path that crosses the experiment's
significance threshold exactly at `significant_from`, every other lift wobbles well inside the
inconclusive band. Health checks are derived from the counts with Statsig's documented SRM
rule, so what the fake says about balance always agrees with the units it reports.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from simulator.stats import BinomialArm, chi2_isf, conversions_for_z, wobble
from simulator.statsig_stats import (
    ExposureBalance,
    exposure_balance,
    significance_threshold_z,
)

__all__ = [
    "STATSIG_STATUSES",
    "ConfidenceInterval",
    "Direction",
    "EndStatus",
    "HealthCheck",
    "HealthStatus",
    "StatsigExperiment",
    "StatsigGroup",
    "StatsigMetric",
    "StatsigSnapshot",
    "StatsigStatus",
]

StatsigStatus = Literal[
    "active",
    "setup",
    "decision_made",
    "abandoned",
    "archived",
    "experiment_stopped",
    "assignment_stopped",
]
STATSIG_STATUSES: tuple[StatsigStatus, ...] = (
    "active",
    "setup",
    "decision_made",
    "abandoned",
    "archived",
    "experiment_stopped",
    "assignment_stopped",
)
EndStatus = Literal[
    "decision_made", "abandoned", "archived", "experiment_stopped", "assignment_stopped"
]
HealthStatus = Literal["PASSED", "FAILED", "WAITING", "WARNING"]
Direction = Literal["increase", "decrease"]
ConfidenceInterval = Literal["80", "90", "95", "98", "99"]

_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_\- ]{3,100}$")  # ExternalExperimentDto.name
_WARNING_P = 0.003  # scripted exposure-balance p-value while WARNING: inside (0.001, 0.01)
_FAILED_P = 1e-4  # and at the least while FAILED: well under 0.001
_FAILED_SHORTFALL = 0.03  # the last group then lacks at least 3 % of its expected units
_HEALTHY_SPLIT_Z = 0.8  # healthy splits stay within 0.8 sd of the sizes: p > 0.4
_INCONCLUSIVE_Z = 0.9  # |z| of unscripted lifts, below every threshold Statsig offers
_SIGNIFICANCE_MARGIN_Z = 0.25  # distance of the scripted z from the threshold at the crossing
_MIN_USERS_PER_REFRESH = 1000
_SEVERITY: dict[HealthStatus, int] = {"PASSED": 0, "WAITING": 1, "WARNING": 2, "FAILED": 3}


@dataclass(frozen=True, kw_only=True)
class StatsigGroup:
    """One group of an experiment; `size` is its share of traffic in percent (50 = half)."""

    id: str
    name: str
    size: float


@dataclass(frozen=True, kw_only=True)
class StatsigMetric:
    """A conversion metric (`event_user`: share of exposed users with the event).

    `control_rate` is the control group's true rate. `has_negative_sequential_delta` makes the
    fake report a negative `percentSequentialTestingConfidenceIntervalDelta` for it, as
    Statsig's own example does.
    """

    name: str
    control_rate: float
    type: str = "event_user"
    direction: Direction = "increase"
    has_negative_sequential_delta: bool = False

    @property
    def id(self) -> str:
        """Statsig's metric id, `name::type`."""
        return f"{self.name}::{self.type}"


@dataclass(frozen=True, kw_only=True)
class HealthCheck:
    """One entry of an experiment's `healthChecks`."""

    type: str
    name: str
    description: str
    status: HealthStatus


@dataclass(frozen=True, kw_only=True)
class StatsigSnapshot:
    """The raw cumulative counts behind one Pulse day: units and conversions per group."""

    refresh_index: int
    units: tuple[int, ...]
    conversions: dict[str, tuple[int, ...]]

    def arm(self, metric_id: str, group_index: int) -> BinomialArm:
        """Units and conversions of one group for one metric."""
        return BinomialArm(
            users=self.units[group_index], conversions=self.conversions[metric_id][group_index]
        )


@dataclass(frozen=True, kw_only=True)
class StatsigExperiment:
    """A Statsig experiment whose state follows a script over refresh indexes.

    The first group is the control. `started_at`: refresh at which the experiment leaves
    `setup` (None: never). `first_results_at`: first refresh with Pulse results (before it,
    Pulse is "not yet available"). `significant_from`: first refresh at which the first primary
    metric's last group has a confidence interval excluding 0 at the experiment's settings.
    `balance_warning_from` / `balance_failed_from`: first refreshes whose exposure balance
    check reads WARNING / FAILED. `ends_at`: refresh at which the experiment reaches
    `end_status` (results freeze there); a decision launches `launched_group_index`.
    """

    id: str
    name: str
    groups: tuple[StatsigGroup, ...]
    primary_metrics: tuple[StatsigMetric, ...]
    secondary_metrics: tuple[StatsigMetric, ...] = ()
    other_metrics: tuple[StatsigMetric, ...] = ()
    description: str = ""
    hypothesis: str = ""
    tags: tuple[str, ...] = ()
    owner_name: str = "Experiment Owner"
    id_type: str = "userID"
    duration_days: int = 14
    default_confidence_interval: ConfidenceInterval = "95"
    sequential_testing: bool = False
    bonferroni_correction: bool = False
    bonferroni_correction_per_metric: bool = False
    benjamini_hochberg_per_variant: bool = False
    benjamini_hochberg_per_metric: bool = False
    benjamini_primary_metrics_only: bool = False
    users_per_refresh: int = 4000
    started_at: int | None = 0
    first_results_at: int = 0
    significant_from: int | None = None
    balance_warning_from: int | None = None
    balance_failed_from: int | None = None
    ends_at: int | None = None
    end_status: EndStatus = "decision_made"
    launched_group_index: int | None = None
    decision_reason: str = ""
    created_seconds_before_start: float = 7 * 86400.0

    def __post_init__(self) -> None:
        if not _NAME_PATTERN.match(self.name):
            raise ValueError(f"experiment name {self.name!r} does not fit Statsig's name rule")
        if len(self.groups) < 2:
            raise ValueError(f"experiment {self.id!r} needs at least two groups")
        if any(not 0.0 < g.size <= 100.0 for g in self.groups):
            raise ValueError(f"experiment {self.id!r} has a group size outside (0, 100]")
        if not self.primary_metrics:
            raise ValueError(f"experiment {self.id!r} needs at least one primary metric")
        if any(not 0.0 < m.control_rate < 1.0 for m in self.metrics):
            raise ValueError(f"experiment {self.id!r} has a control_rate outside (0, 1)")
        if self.users_per_refresh < _MIN_USERS_PER_REFRESH:
            raise ValueError(
                f"experiment {self.id!r} needs users_per_refresh >= {_MIN_USERS_PER_REFRESH}"
            )
        if self.started_at is not None and self.first_results_at < self.started_at:
            raise ValueError(f"experiment {self.id!r} has results before it starts")
        if self.launched_group_index is not None and self.end_status != "decision_made":
            raise ValueError(f"experiment {self.id!r} launches a group without a decision")

    @property
    def control(self) -> StatsigGroup:
        """The control group: the first one."""
        return self.groups[0]

    @property
    def metrics(self) -> tuple[StatsigMetric, ...]:
        """Primary, secondary and other metrics, in that order."""
        return self.primary_metrics + self.secondary_metrics + self.other_metrics

    def status_at(self, index: int) -> StatsigStatus:
        """Statsig's `status` at refresh `index`."""
        if self.started_at is None or index < self.started_at:
            return "setup"
        if self.ends_at is not None and index >= self.ends_at:
            return self.end_status
        return "active"

    def analysed_index(self, index: int) -> int:
        """The refresh whose Pulse is current at `index` (frozen once the experiment ends)."""
        return index if self.ends_at is None else min(index, self.ends_at)

    def has_results_at(self, index: int) -> bool:
        """Whether Pulse has results for this experiment at refresh `index`."""
        return self.started_at is not None and self.analysed_index(index) >= self.first_results_at

    def alpha(
        self,
        *,
        confidence: float | None = None,
        per_variant: bool | None = None,
        per_metric: bool | None = None,
    ) -> float:
        """The two-sided error rate of the intervals, after Bonferroni corrections.

        Defaults come from the experiment's settings; Pulse's query parameters override them.
        Benjamini-Hochberg settings are reported but not applied by the fake.
        """
        level = float(self.default_confidence_interval) if confidence is None else confidence
        alpha = 1.0 - level / 100.0
        if self.bonferroni_correction if per_variant is None else per_variant:
            alpha /= len(self.groups) - 1
        if self.bonferroni_correction_per_metric if per_metric is None else per_metric:
            alpha /= len(self.primary_metrics) + len(self.secondary_metrics)
        return alpha

    def sequential_factor(self, index: int) -> float:
        """How much wider sequential-testing intervals are than fixed-horizon ones at `index`.

        A simplification of Statsig's adjustment: twice as wide on the first day, narrowing
        linearly to the fixed-horizon width at the planned duration. 1 without sequential
        testing.
        """
        if not self.sequential_testing or self.started_at is None:
            return 1.0
        days = self.analysed_index(index) - self.started_at + 1
        return 1.0 + max(0, self.duration_days - days) / self.duration_days

    def snapshot_at(self, index: int) -> StatsigSnapshot | None:
        """The raw counts behind the Pulse current at refresh `index`, None without results."""
        if not self.has_results_at(index):
            return None
        at = self.analysed_index(index)
        units = self._units(at)
        return StatsigSnapshot(
            refresh_index=at,
            units=units,
            conversions={m.id: self._conversions(m, units, at) for m in self.metrics},
        )

    def balance_at(self, index: int) -> ExposureBalance | None:
        """Statsig's exposure-balance verdict on the units current at `index`."""
        snapshot = self.snapshot_at(index)
        if snapshot is None:
            return None
        return exposure_balance(snapshot.units, [g.size for g in self.groups])

    def health_checks_at(self, index: int) -> tuple[HealthCheck, ...]:
        """The experiment's `healthChecks` at refresh `index`."""
        if self.status_at(index) == "setup":
            return _checks_before_start(self.id_type)
        checks = [
            HealthCheck(
                type="has_checks",
                name="Checks detected",
                description="This experiment is recording exposure checks in production.",
                status="PASSED",
            ),
            HealthCheck(
                type="has_valid_unit_type",
                name="Valid unit type",
                description=f"Exposure checks carry unit IDs of type {self.id_type}.",
                status="PASSED",
            ),
        ]
        balance = self.balance_at(index)
        if balance is None:
            checks += _checks_before_start(self.id_type)[3:]
            return tuple(checks)
        checks.append(
            HealthCheck(
                type="has_pulse_metrics",
                name="Pulse metrics available",
                description="Pulse results are computed daily for this experiment.",
                status="PASSED",
            )
        )
        checks.append(_balance_check(balance))
        return tuple(checks)

    def health_check_status_at(self, index: int) -> HealthStatus:
        """The `healthCheckStatus` roll-up: the worst status among the checks."""
        checks = self.health_checks_at(index)
        if not checks:
            return "PASSED"
        return max((c.status for c in checks), key=_SEVERITY.__getitem__)

    def _refreshes_with_data(self, at: int) -> int:
        return at - self.first_results_at + 1

    def _units(self, at: int) -> tuple[int, ...]:
        total = self.users_per_refresh * self._refreshes_with_data(at)
        size_sum = sum(g.size for g in self.groups)
        shares = [g.size / size_sum for g in self.groups]
        expected_last = total * shares[-1]
        # Moving `shift` units from the last group to the first gives chi-square
        # shift^2 / scale^2, whatever the other groups do.
        scale = math.sqrt(total / (1.0 / shares[0] + 1.0 / shares[-1]))
        df = len(shares) - 1
        if self.balance_failed_from is not None and at >= self.balance_failed_from:
            shift = max(
                _FAILED_SHORTFALL * expected_last, math.sqrt(chi2_isf(_FAILED_P, df)) * scale
            )
        elif self.balance_warning_from is not None and at >= self.balance_warning_from:
            shift = math.sqrt(chi2_isf(_WARNING_P, df)) * scale
        else:
            shift = _HEALTHY_SPLIT_Z * wobble(f"{self.id}:units", at) * scale
        middle = [round(total * share) for share in shares[1:-1]]
        last = round(expected_last - shift)
        return (total - last - sum(middle), *middle, last)

    def _conversions(
        self, metric: StatsigMetric, units: tuple[int, ...], at: int
    ) -> tuple[int, ...]:
        control = BinomialArm(users=units[0], conversions=round(units[0] * metric.control_rate))
        counts = [control.conversions]
        last = len(units) - 1
        for j in range(1, len(units)):
            scripted = (
                metric.id == self.primary_metrics[0].id
                and j == last
                and self.significant_from is not None
            )
            if scripted and self.significant_from is not None:
                target, at_least = self._significance_path(at, self.significant_from)
            else:
                target = _INCONCLUSIVE_Z * wobble(f"{self.id}:{metric.id}:{j}", at)
                at_least = False
            counts.append(conversions_for_z(control, units[j], target, at_least=at_least))
        return tuple(counts)

    def _threshold_z(self, at: int) -> float:
        return significance_threshold_z(self.alpha()) * self.sequential_factor(at)

    def _significance_path(self, at: int, significant_from: int) -> tuple[float, bool]:
        """Target z at `at` and whether the count must reach it (True) or stay below it.

        The threshold never grows with time (sequential intervals only narrow), so a path
        growing with the square root of the sample stays on its side once it has crossed.
        """
        n = self._refreshes_with_data(at)
        if at >= significant_from:
            cross = max(significant_from, self.first_results_at)
            scale = math.sqrt(n / self._refreshes_with_data(cross))
            return (self._threshold_z(cross) + _SIGNIFICANCE_MARGIN_Z) * scale, True
        before = significant_from - 1
        scale = math.sqrt(n / self._refreshes_with_data(before))
        return (self._threshold_z(before) - _SIGNIFICANCE_MARGIN_Z) * scale, False


def _checks_before_start(id_type: str) -> tuple[HealthCheck, ...]:
    """The five WAITING checks of an experiment without exposures or Pulse results."""
    return (
        HealthCheck(
            type="has_checks",
            name="Checks not yet detected",
            description="No exposure checks have been recorded in production yet.",
            status="WAITING",
        ),
        HealthCheck(
            type="has_valid_unit_type",
            name="Valid unit type not yet verified",
            description=f"The experiment needs exposure checks with unit IDs of type {id_type}.",
            status="WAITING",
        ),
        HealthCheck(
            type="has_event_metrics",
            name="Event metric data not yet verified",
            description="No event metric with a valid unit ID has been evaluated yet.",
            status="WAITING",
        ),
        HealthCheck(
            type="has_pulse_metrics",
            name="Pulse metrics not yet available",
            description="Pulse results appear within a day; Statsig computes them daily.",
            status="WAITING",
        ),
        HealthCheck(
            type="has_balanced_exposures",
            name="Exposure balance not yet verified",
            description="Exposure balance is evaluated as the experiment records exposures.",
            status="WAITING",
        ),
    )


def _balance_check(balance: ExposureBalance) -> HealthCheck:
    names = {
        "PASSED": "Exposures are balanced",
        "WARNING": "Possible exposure imbalance",
        "FAILED": "Exposures are imbalanced",
    }
    return HealthCheck(
        type="has_balanced_exposures",
        name=names[balance.status],
        description=(
            f"Sample ratio check p-value {balance.p_value:.2g}; largest deviation from the "
            f"configured split {balance.max_deviation:.2%}."
        ),
        status=balance.status,
    )
