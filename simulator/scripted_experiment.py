"""One scripted GrowthBook experiment: a pure function from refresh index to raw counts.

See `simulator.scenario` for the timeline of refreshes. The script works on raw cumulative
counts, as a warehouse query would return them:
- users per variation grow by `users_per_refresh` each refresh with results, split by the
  traffic weights; from `srm_from` on, the last variation (the treatment) falls short of its
  weight, enough for GrowthBook's SRM check to fail (p < 0.001) and 3% short at least;
- conversions of the baseline follow each metric's `control_rate`; for every other variation
  the script picks the conversion count whose relative lift has a scripted z-score. The goal
  metric's treatment follows a constant-lift path (z grows with the square root of the sample)
  that crosses the engine's significance threshold exactly at `significant_from` (and falls
  back under it at `significant_until`); the first guardrail's treatment follows the mirrored
  path to a significant loss at `guardrail_regresses_from`; a win moves a metric in its
  better direction and a loss in its worse one, so for an `inverse` (lower-is-better) metric
  the paths run the other way; everything else wobbles deterministically well inside the
  inconclusive band;
- a new phase (`new_phase_at`) restarts the counts from zero, possibly with new weights.
No randomness is involved: the same scenario always produces the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from simulator.stats import (
    BinomialArm,
    StatsEngine,
    chi2_isf,
    conversions_for_z,
    significance_z,
    wobble,
)

__all__ = [
    "ExperimentStatus",
    "ScriptError",
    "ScriptedExperiment",
    "ScriptedMetric",
    "ScriptedSnapshot",
    "ScriptedVariation",
    "Verdict",
]

ExperimentStatus = Literal["draft", "running", "stopped"]
Verdict = Literal["won", "lost", "inconclusive", "dnf"]

_SRM_ONSET_P = 1e-4  # SRM p-value at the least once it appears: well under GrowthBook's 0.001
_SRM_SHORTFALL = 0.03  # and the treatment loses at least this share of its expected users
_HEALTHY_SPLIT_Z = 0.8  # healthy splits stay within 0.8 sd of the weights: SRM p > 0.4
_INCONCLUSIVE_Z = 0.9  # |z| of unscripted lifts: chance to beat control within 0.18..0.82
_SIGNIFICANCE_MARGIN_Z = 0.15  # distance of the scripted z from the threshold at the crossing
_MIN_USERS_PER_REFRESH = 1000
# A scripted fall (a regression, or an inverse goal's win) needs room below the threshold: with
# c expected conversions of the treatment per refresh, the lowest reachable z is about -c, so
# ask for a comfortable margin.
_MIN_FALL_CONVERSIONS = 5.0


class ScriptError(ValueError):
    """A scripted experiment that could not honour its own promises.

    `field` names the `ScriptedExperiment` field at fault (for `goals`, `secondary_metrics`
    and `guardrails`, the metric tuple holding the offending metric).
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, kw_only=True)
class ScriptedVariation:
    """One arm of a scripted experiment, named as GrowthBook names it."""

    id: str
    key: str
    name: str


@dataclass(frozen=True, kw_only=True)
class ScriptedMetric:
    """A conversion (binomial) metric and the baseline's true conversion rate.

    `inverse`: lower is better (GrowthBook's metric `inverse`, served as `behavior.goal`
    "decrease"), as for refunds or errors. GrowthBook then reports the chance that the
    variation is lower as its `chanceToBeatControl`, and the script's win is a fall and its
    regression a rise.
    `added_at`: refresh index from which the experiment analyses the metric (it is absent from
    the settings and the results before; from then on it is computed over the whole phase,
    as a re-analysis would).
    A metric's id names one definition across the scenario: experiments sharing a metric id
    give it the same `name` and `inverse` (each experiment keeps its own `control_rate`).
    """

    id: str
    name: str
    control_rate: float
    inverse: bool = False
    added_at: int = 0


@dataclass(frozen=True, kw_only=True)
class ScriptedSnapshot:
    """The raw cumulative counts behind one analysis: users and conversions per variation.

    `conversions` holds the metrics analysed at `refresh_index`; `phase` counts from 0.
    """

    refresh_index: int
    users: tuple[int, ...]
    conversions: Mapping[str, tuple[int, ...]]
    phase: int = 0

    def arm(self, metric_id: str, variation_index: int) -> BinomialArm:
        """Users and conversions of one variation for one metric."""
        return BinomialArm(
            users=self.users[variation_index],
            conversions=self.conversions[metric_id][variation_index],
        )


@dataclass(frozen=True, kw_only=True)
class ScriptedExperiment:
    """An experiment whose results follow a script over refresh indexes.

    Results and significance:
    `first_results_at`: refresh index before which the platform has no results.
    `significant_from`: first refresh index at which the goal metric (first of `goals`) is
    significantly better for the last variation by GrowthBook's rule for `engine` (bayesian:
    chanceToBeatControl > 0.95; frequentist: pValue < 0.05, with a rise, or a fall for an
    inverse goal), staying so afterwards; None: never.
    `significant_until`: refresh index from which that effect has vanished (the goal is
    inconclusive again, staying so); None: it never vanishes.
    `guardrail_regresses_from`: first refresh index at which the first guardrail's last
    variation is significantly worse (a negative lift, a positive one for an inverse
    guardrail; bayesian chanceToBeatControl < 0.05, frequentist pValue < 0.05), staying so;
    None: never.
    `srm_from`: first refresh index whose SRM p-value is below 0.001, staying so; None: never.
    `no_data_between=(a, b)`: refreshes a..b-1 have no results (the data source returned
    nothing); the counts carry on afterwards as if the data had arrived late.

    Lifecycle:
    `is_draft`: a draft never starts and never has results. `starts_at`: the experiment is a
    draft before this refresh and runs from it (None: it runs from the start).
    `stops_at`: refresh index at which the experiment stops; its results freeze there, and
    `verdict` is the stopped experiment's result summary. `archived_at`: refresh index from
    which the experiment is archived (results freeze there too; the status is unchanged).
    `new_phase_at`: refresh index at which a second phase begins: the counts restart from zero,
    split by `new_phase_weights` (None: the same weights).
    """

    id: str
    name: str
    tracking_key: str
    variations: tuple[ScriptedVariation, ...]
    weights: tuple[float, ...]
    goals: tuple[ScriptedMetric, ...]
    secondary_metrics: tuple[ScriptedMetric, ...] = ()
    guardrails: tuple[ScriptedMetric, ...] = ()
    project: str = ""
    hypothesis: str = ""
    owner: str = ""
    tags: tuple[str, ...] = ()
    datasource_id: str = "ds_warehouse"
    engine: StatsEngine = "bayesian"
    users_per_refresh: int = 4000
    first_results_at: int = 0
    significant_from: int | None = None
    significant_until: int | None = None
    guardrail_regresses_from: int | None = None
    srm_from: int | None = None
    no_data_between: tuple[int, int] | None = None
    is_draft: bool = False
    starts_at: int | None = None
    stops_at: int | None = None
    verdict: Verdict = "won"
    archived_at: int | None = None
    new_phase_at: int | None = None
    new_phase_weights: tuple[float, ...] | None = None
    created_seconds_before_start: float = 7 * 86400.0
    refresh_every: int = 1
    """The platform re-analyses this experiment at every `refresh_every`-th refresh only (its
    results and `dateUpdated` stay those of the last multiple), as a portfolio whose
    experiments refresh on different schedules."""

    def __post_init__(self) -> None:
        self._check_arms()
        self._check_metrics()
        if self.refresh_every < 1:
            raise ScriptError(
                f"experiment {self.id!r} needs refresh_every >= 1, got {self.refresh_every}",
                field="refresh_every",
            )
        if self.users_per_refresh < _MIN_USERS_PER_REFRESH:
            raise ScriptError(
                f"experiment {self.id!r} needs users_per_refresh >= {_MIN_USERS_PER_REFRESH} "
                f"for its scripted results to hold, got {self.users_per_refresh}",
                field="users_per_refresh",
            )
        self._check_indexes()
        self._check_results_script()
        self._check_lifecycle()

    def _check_arms(self) -> None:
        if len(self.variations) < 2:
            raise ScriptError(
                f"experiment {self.id!r} needs at least two variations", field="variations"
            )
        self._check_weights(self.weights, field="weights")

    def _check_weights(self, weights: tuple[float, ...], *, field: str) -> None:
        if len(weights) != len(self.variations):
            raise ScriptError(
                f"experiment {self.id!r} has {len(weights)} weights "
                f"for {len(self.variations)} variations",
                field=field,
            )
        if any(not w > 0.0 for w in weights):
            raise ScriptError(
                f"experiment {self.id!r} has a non-positive weight: {weights}", field=field
            )

    def _check_metrics(self) -> None:
        if not self.goals:
            raise ScriptError(
                f"experiment {self.id!r} needs at least one goal metric", field="goals"
            )
        seen: set[str] = set()
        for field, metrics in (
            ("goals", self.goals),
            ("secondary_metrics", self.secondary_metrics),
            ("guardrails", self.guardrails),
        ):
            for metric in metrics:
                if not 0.0 < metric.control_rate < 1.0:
                    raise ScriptError(
                        f"metric {metric.id!r} of experiment {self.id!r} needs a control_rate "
                        f"strictly between 0 and 1, got {metric.control_rate}",
                        field=field,
                    )
                if metric.id in seen:
                    raise ScriptError(
                        f"experiment {self.id!r} lists metric {metric.id!r} twice", field=field
                    )
                seen.add(metric.id)
                if metric.added_at < 0:
                    raise ScriptError(
                        f"metric {metric.id!r} of experiment {self.id!r} has a negative "
                        f"added_at: {metric.added_at}",
                        field=field,
                    )
        if self.goal_metric.added_at > 0:
            raise ScriptError(
                f"the first goal {self.goal_metric.id!r} of experiment {self.id!r} is the "
                "scripted metric and must be analysed from the start (added_at 0)",
                field="goals",
            )

    def _check_indexes(self) -> None:
        indexes = {
            "first_results_at": self.first_results_at,
            "significant_from": self.significant_from,
            "significant_until": self.significant_until,
            "guardrail_regresses_from": self.guardrail_regresses_from,
            "srm_from": self.srm_from,
            "starts_at": self.starts_at,
            "stops_at": self.stops_at,
            "archived_at": self.archived_at,
            "new_phase_at": self.new_phase_at,
        }
        checked = [*indexes.items(), *(("no_data_between", i) for i in self.no_data_between or ())]
        for field, index in checked:
            if index is not None and index < 0:
                raise ScriptError(
                    f"experiment {self.id!r} has a negative refresh index: {field} = {index}",
                    field=field,
                )

    def _check_results_script(self) -> None:
        if self.significant_until is not None and (
            self.significant_from is None or self.significant_until <= self.significant_from
        ):
            raise ScriptError(
                f"experiment {self.id!r}: significant_until ({self.significant_until}) needs a "
                f"significant_from before it, got {self.significant_from}",
                field="significant_until",
            )
        if self.guardrail_regresses_from is not None and not self.guardrails:
            raise ScriptError(
                f"experiment {self.id!r} scripts a guardrail regression without guardrails",
                field="guardrail_regresses_from",
            )
        # Scripted falls: a regression of a higher-is-better guardrail, a win of an inverse goal.
        falls: list[tuple[str, str, ScriptedMetric]] = []
        if self.guardrail_regresses_from is not None and not self.guardrails[0].inverse:
            falls.append(("guardrail_regresses_from", "guardrail", self.guardrails[0]))
        if self.significant_from is not None and self.goal_metric.inverse:
            falls.append(("significant_from", "inverse goal", self.goal_metric))
        weights = (self.weights, self.new_phase_weights or self.weights)
        share = min(w[-1] / sum(w) for w in weights)
        for field, what, metric in falls:
            expected = self.users_per_refresh * share * metric.control_rate
            if expected < _MIN_FALL_CONVERSIONS:
                raise ScriptError(
                    f"experiment {self.id!r}: {what} {metric.id!r} expects "
                    f"{expected:.1f} conversions of the last variation per refresh, too few "
                    f"for a significant fall (at least {_MIN_FALL_CONVERSIONS:g}); "
                    f"raise users_per_refresh or the {what}'s control_rate",
                    field=field,
                )
        if self.no_data_between is not None:
            begin, end = self.no_data_between
            if end <= begin:
                raise ScriptError(
                    f"experiment {self.id!r}: no_data_between ({begin}, {end}) must end after "
                    "it begins",
                    field="no_data_between",
                )

    def _check_lifecycle(self) -> None:
        if self.starts_at is not None:
            if self.is_draft:
                raise ScriptError(
                    f"experiment {self.id!r} is a draft that never starts but has starts_at",
                    field="starts_at",
                )
            if self.first_results_at < self.starts_at:
                raise ScriptError(
                    f"experiment {self.id!r} has results (first_results_at "
                    f"{self.first_results_at}) before it starts (starts_at {self.starts_at})",
                    field="first_results_at",
                )
            if self.stops_at is not None and self.stops_at < self.starts_at:
                raise ScriptError(
                    f"experiment {self.id!r} stops (stops_at {self.stops_at}) before it starts "
                    f"(starts_at {self.starts_at})",
                    field="stops_at",
                )
        if self.new_phase_weights is not None:
            if self.new_phase_at is None:
                raise ScriptError(
                    f"experiment {self.id!r} has new_phase_weights without new_phase_at",
                    field="new_phase_weights",
                )
            self._check_weights(self.new_phase_weights, field="new_phase_weights")
        if self.new_phase_at is not None:
            if self.new_phase_at <= self.first_results_at:
                raise ScriptError(
                    f"experiment {self.id!r}: new_phase_at ({self.new_phase_at}) must come after "
                    f"first_results_at ({self.first_results_at})",
                    field="new_phase_at",
                )
            for field, end in (("stops_at", self.stops_at), ("archived_at", self.archived_at)):
                if end is not None and self.new_phase_at >= end:
                    raise ScriptError(
                        f"experiment {self.id!r}: new_phase_at ({self.new_phase_at}) must come "
                        f"before {field} ({end}), while results still refresh",
                        field="new_phase_at",
                    )

    @property
    def metrics(self) -> tuple[ScriptedMetric, ...]:
        """Goal, secondary and guardrail metrics, in the order GrowthBook reports them."""
        return self.goals + self.secondary_metrics + self.guardrails

    @property
    def goal_metric(self) -> ScriptedMetric:
        """The metric whose significance the script controls: the first goal."""
        return self.goals[0]

    def metrics_at(self, index: int) -> tuple[ScriptedMetric, ...]:
        """The metrics the experiment analyses at refresh `index` (see `added_at`)."""
        return tuple(m for m in self.metrics if index >= m.added_at)

    def status_at(self, index: int) -> ExperimentStatus:
        """GrowthBook's `status` at refresh `index`."""
        if self.is_draft or (self.starts_at is not None and index < self.starts_at):
            return "draft"
        if self.stops_at is not None and index >= self.stops_at:
            return "stopped"
        return "running"

    def is_archived_at(self, index: int) -> bool:
        """Whether the experiment is archived at refresh `index`."""
        return self.archived_at is not None and index >= self.archived_at

    def analysed_index(self, index: int) -> int:
        """The refresh whose analysis is current at `index` (frozen once stopped or archived)."""
        ends = [i for i in (self.stops_at, self.archived_at) if i is not None]
        return min([index - index % self.refresh_every, *ends])

    def phase_at(self, index: int) -> int:
        """The experiment's current phase at refresh `index`: 0, or 1 from `new_phase_at`."""
        return int(self.new_phase_at is not None and index >= self.new_phase_at)

    def phase_weights(self, phase: int) -> tuple[float, ...]:
        """The traffic weights of `phase`."""
        if phase > 0 and self.new_phase_weights is not None:
            return self.new_phase_weights
        return self.weights

    def is_no_data_at(self, index: int) -> bool:
        """Whether refresh `index` falls in the scripted no-data period."""
        return self.no_data_between is not None and (
            self.no_data_between[0] <= index < self.no_data_between[1]
        )

    def has_results_at(self, index: int) -> bool:
        """Whether the platform has results of the current phase at refresh `index`."""
        return self._analysis_of(index, self.phase_at(index)) is not None

    def is_srm_at(self, index: int) -> bool:
        """Whether the results current at `index` fail the SRM check by script."""
        return (
            self.has_results_at(index)
            and self.srm_from is not None
            and self.analysed_index(index) >= self.srm_from
        )

    def snapshot_at(self, index: int, *, phase: int | None = None) -> ScriptedSnapshot | None:
        """The raw counts behind the results current at refresh `index`, None without results.

        `phase`: the phase whose latest analysis to return (default: the current phase); an
        earlier phase answers its last analysis, a phase not begun yet None.
        """
        phase = self.phase_at(index) if phase is None else phase
        at = self._analysis_of(index, phase)
        if at is None:
            return None
        users = self._users(at, phase)
        return ScriptedSnapshot(
            refresh_index=at,
            users=users,
            conversions={m.id: self._conversions(m, users, at, phase) for m in self.metrics_at(at)},
            phase=phase,
        )

    def _analysis_of(self, index: int, phase: int) -> int | None:
        """The refresh whose analysis of `phase` is current at `index`, None if it has none."""
        if self.status_at(index) == "draft" or not 0 <= phase <= self.phase_at(index):
            return None
        at = self.analysed_index(index)
        if phase < self.phase_at(index) and self.new_phase_at is not None:
            at = self.new_phase_at - 1  # the last refresh of the first phase
        if at < self._phase_start(phase) or self.is_no_data_at(at):
            return None
        return at

    def _phase_start(self, phase: int) -> int:
        """The first refresh with data in `phase`."""
        if phase > 0 and self.new_phase_at is not None:
            return self.new_phase_at
        return self.first_results_at

    def _refreshes_with_data(self, at: int, phase: int) -> int:
        return at - self._phase_start(phase) + 1

    def _users(self, at: int, phase: int) -> tuple[int, ...]:
        total = self.users_per_refresh * self._refreshes_with_data(at, phase)
        weights = self.phase_weights(phase)
        weight_sum = sum(weights)
        shares = [w / weight_sum for w in weights]
        expected_last = total * shares[-1]
        # Moving `shift` users from the last arm to the first gives chi-square =
        # shift^2 / scale^2, whatever the other arms do.
        scale = math.sqrt(total / (1.0 / shares[0] + 1.0 / shares[-1]))
        if self.srm_from is not None and at >= self.srm_from:
            onset = math.sqrt(chi2_isf(_SRM_ONSET_P, len(shares) - 1)) * scale
            shift = max(_SRM_SHORTFALL * expected_last, onset)
        else:
            shift = _HEALTHY_SPLIT_Z * wobble(f"{self.id}:users", at) * scale
        middle = [round(total * share) for share in shares[1:-1]]
        last = round(expected_last - shift)
        return (total - last - sum(middle), *middle, last)

    def _conversions(
        self, metric: ScriptedMetric, users: tuple[int, ...], at: int, phase: int
    ) -> tuple[int, ...]:
        control = BinomialArm(users=users[0], conversions=round(users[0] * metric.control_rate))
        counts = [control.conversions]
        treatment = len(users) - 1
        for j in range(1, len(users)):
            scripted = self._scripted_path(metric, at, phase) if j == treatment else None
            if scripted is None:
                target = _INCONCLUSIVE_Z * wobble(f"{self.id}:{metric.id}:{j}", at)
                at_least = False
            else:
                target, at_least = scripted
            counts.append(conversions_for_z(control, users[j], target, at_least=at_least))
        return tuple(counts)

    def _scripted_path(
        self, metric: ScriptedMetric, at: int, phase: int
    ) -> tuple[float, bool] | None:
        """The treatment's target z for `metric` at `at` and whether the count must reach it
        (True) or stay at or below it; None for a metric the script leaves alone.

        The goal's win is a rise and the first guardrail's regression its mirror image, a
        fall; an inverse metric turns both around (its win a fall, its regression a rise).
        """
        if metric.id == self.goal_metric.id and self.significant_from is not None:
            target, reach = self._z_path(
                at, phase, since=self.significant_from, until=self.significant_until
            )
            is_rise = not metric.inverse
        elif (
            self.guardrails
            and metric.id == self.guardrails[0].id
            and self.guardrail_regresses_from is not None
        ):
            target, reach = self._z_path(at, phase, since=self.guardrail_regresses_from, until=None)
            is_rise = metric.inverse
        else:
            return None
        return (target, reach) if is_rise else (-target, not reach)

    def _z_path(self, at: int, phase: int, *, since: int, until: int | None) -> tuple[float, bool]:
        """Target z at `at` and whether the count must reach it (True) or stay below it.

        A constant lift: z grows with the square root of the phase's sample, crossing the
        threshold exactly at `since` (or at the phase's first refresh if it begins later).
        From `until` on, the lift is gone: z decays as the sample without effect grows.
        """
        threshold = significance_z(self.engine)
        start = self._phase_start(phase)
        n = self._refreshes_with_data(at, phase)
        if until is not None and at >= until:
            n_until = self._refreshes_with_data(max(until, start), phase)
            return (threshold - _SIGNIFICANCE_MARGIN_Z) * math.sqrt(n_until / n), False
        if at >= since:
            n_cross = self._refreshes_with_data(max(since, start), phase)
            return (threshold + _SIGNIFICANCE_MARGIN_Z) * math.sqrt(n / n_cross), True
        n_before = self._refreshes_with_data(since - 1, phase)
        return (threshold - _SIGNIFICANCE_MARGIN_Z) * math.sqrt(n / n_before), False
