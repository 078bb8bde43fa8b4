"""Scripted experiments whose results change over injected time.

A `Scenario` begins at `start`, and the fake platform re-analyses every experiment each
`refresh_seconds`: refresh index i = floor((now - start) / refresh_seconds). Everything an
experiment reports is a pure function of that index, so every request within one refresh sees
the same numbers and tests can name the refresh at which something happens.

The script works on raw cumulative counts, as a warehouse query would return them:
- users per variation grow by `users_per_refresh` each refresh with results, split by the
  traffic weights; from `srm_from` on, the last variation (the treatment) falls short of its
  weight, enough for GrowthBook's SRM check to fail (p < 0.001) and 3% short at least;
- conversions of the baseline follow each metric's `control_rate`; for every other variation
  the script picks the conversion count whose relative lift has a scripted z-score. The goal
  metric's treatment follows a constant-lift path (z grows with the square root of the sample)
  that crosses the engine's significance threshold exactly at `significant_from`; everything
  else wobbles deterministically well inside the inconclusive band.
No randomness is involved: the same scenario always produces the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from simulator.stats import (
    BinomialArm,
    StatsEngine,
    chi2_isf,
    conversions_for_z,
    significance_z,
    wobble,
)
from simulator.timeline import Timeline, check_unique_ids

__all__ = [
    "ExperimentStatus",
    "Scenario",
    "ScriptedExperiment",
    "ScriptedMetric",
    "ScriptedSnapshot",
    "ScriptedVariation",
    "Verdict",
    "default_scenario",
]

ExperimentStatus = Literal["draft", "running", "stopped"]
Verdict = Literal["won", "lost", "inconclusive", "dnf"]

_SRM_ONSET_P = 1e-4  # SRM p-value at the least once it appears: well under GrowthBook's 0.001
_SRM_SHORTFALL = 0.03  # and the treatment loses at least this share of its expected users
_HEALTHY_SPLIT_Z = 0.8  # healthy splits stay within 0.8 sd of the weights: SRM p > 0.4
_INCONCLUSIVE_Z = 0.9  # |z| of unscripted lifts: chance to beat control within 0.18..0.82
_SIGNIFICANCE_MARGIN_Z = 0.15  # distance of the scripted z from the threshold at the crossing
_MIN_USERS_PER_REFRESH = 1000


@dataclass(frozen=True, kw_only=True)
class ScriptedVariation:
    """One arm of a scripted experiment, named as GrowthBook names it."""

    id: str
    key: str
    name: str


@dataclass(frozen=True, kw_only=True)
class ScriptedMetric:
    """A conversion (binomial) metric and the baseline's true conversion rate."""

    id: str
    name: str
    control_rate: float


@dataclass(frozen=True, kw_only=True)
class ScriptedSnapshot:
    """The raw cumulative counts behind one analysis: users and conversions per variation."""

    refresh_index: int
    users: tuple[int, ...]
    conversions: Mapping[str, tuple[int, ...]]

    def arm(self, metric_id: str, variation_index: int) -> BinomialArm:
        """Users and conversions of one variation for one metric."""
        return BinomialArm(
            users=self.users[variation_index],
            conversions=self.conversions[metric_id][variation_index],
        )


@dataclass(frozen=True, kw_only=True)
class ScriptedExperiment:
    """An experiment whose results follow a script over refresh indexes.

    `first_results_at`: refresh index before which the platform has no results.
    `significant_from`: first refresh index at which the goal metric (first of `goals`) is
    significant for the last variation by GrowthBook's rule for `engine` (bayesian:
    chanceToBeatControl > 0.95; frequentist: pValue < 0.05), staying so afterwards; None: never.
    `srm_from`: first refresh index whose SRM p-value is below 0.001, staying so; None: never.
    `stops_at`: refresh index at which the experiment stops; its results freeze there.
    `is_draft`: a draft never has results. `verdict` is the stopped experiment's result summary.
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
    engine: StatsEngine = "bayesian"
    users_per_refresh: int = 4000
    first_results_at: int = 0
    significant_from: int | None = None
    srm_from: int | None = None
    stops_at: int | None = None
    is_draft: bool = False
    verdict: Verdict = "won"
    created_seconds_before_start: float = 7 * 86400.0

    def __post_init__(self) -> None:
        if len(self.variations) < 2:
            raise ValueError(f"experiment {self.id!r} needs at least two variations")
        if len(self.weights) != len(self.variations):
            raise ValueError(
                f"experiment {self.id!r} has {len(self.weights)} weights "
                f"for {len(self.variations)} variations"
            )
        if any(not w > 0.0 for w in self.weights):
            raise ValueError(f"experiment {self.id!r} has a non-positive weight: {self.weights}")
        if not self.goals:
            raise ValueError(f"experiment {self.id!r} needs at least one goal metric")
        for metric in self.metrics:
            if not 0.0 < metric.control_rate < 1.0:
                raise ValueError(
                    f"metric {metric.id!r} of experiment {self.id!r} needs a control_rate "
                    f"strictly between 0 and 1, got {metric.control_rate}"
                )
        if self.users_per_refresh < _MIN_USERS_PER_REFRESH:
            raise ValueError(
                f"experiment {self.id!r} needs users_per_refresh >= {_MIN_USERS_PER_REFRESH} "
                f"for its scripted results to hold, got {self.users_per_refresh}"
            )
        indexes = (self.first_results_at, self.significant_from, self.srm_from, self.stops_at)
        if any(i is not None and i < 0 for i in indexes):
            raise ValueError(f"experiment {self.id!r} has a negative refresh index")

    @property
    def metrics(self) -> tuple[ScriptedMetric, ...]:
        """Goal, secondary and guardrail metrics, in the order GrowthBook reports them."""
        return self.goals + self.secondary_metrics + self.guardrails

    @property
    def goal_metric(self) -> ScriptedMetric:
        """The metric whose significance the script controls: the first goal."""
        return self.goals[0]

    def status_at(self, index: int) -> ExperimentStatus:
        """GrowthBook's `status` at refresh `index`."""
        if self.is_draft:
            return "draft"
        if self.stops_at is not None and index >= self.stops_at:
            return "stopped"
        return "running"

    def analysed_index(self, index: int) -> int:
        """The refresh whose analysis is current at `index` (frozen once stopped)."""
        return index if self.stops_at is None else min(index, self.stops_at)

    def has_results_at(self, index: int) -> bool:
        """Whether the platform has results for this experiment at refresh `index`."""
        return not self.is_draft and self.analysed_index(index) >= self.first_results_at

    def is_srm_at(self, index: int) -> bool:
        """Whether the results current at `index` fail the SRM check by script."""
        return (
            self.has_results_at(index)
            and self.srm_from is not None
            and self.analysed_index(index) >= self.srm_from
        )

    def snapshot_at(self, index: int) -> ScriptedSnapshot | None:
        """The raw counts behind the results current at refresh `index`, None without results."""
        if not self.has_results_at(index):
            return None
        at = self.analysed_index(index)
        users = self._users(at)
        return ScriptedSnapshot(
            refresh_index=at,
            users=users,
            conversions={m.id: self._conversions(m, users, at) for m in self.metrics},
        )

    def _refreshes_with_data(self, at: int) -> int:
        return at - self.first_results_at + 1

    def _users(self, at: int) -> tuple[int, ...]:
        total = self.users_per_refresh * self._refreshes_with_data(at)
        weight_sum = sum(self.weights)
        shares = [w / weight_sum for w in self.weights]
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
        self, metric: ScriptedMetric, users: tuple[int, ...], at: int
    ) -> tuple[int, ...]:
        control = BinomialArm(users=users[0], conversions=round(users[0] * metric.control_rate))
        counts = [control.conversions]
        treatment = len(users) - 1
        for j in range(1, len(users)):
            if (
                metric.id == self.goal_metric.id
                and j == treatment
                and self.significant_from is not None
            ):
                target, at_least = self._significance_path(at, self.significant_from)
            else:
                target = _INCONCLUSIVE_Z * wobble(f"{self.id}:{metric.id}:{j}", at)
                at_least = False
            counts.append(conversions_for_z(control, users[j], target, at_least=at_least))
        return tuple(counts)

    def _significance_path(self, at: int, significant_from: int) -> tuple[float, bool]:
        """Target z at `at` and whether the count must reach it (True) or stay below it."""
        threshold = significance_z(self.engine)
        n = self._refreshes_with_data(at)
        if at >= significant_from:
            n_cross = self._refreshes_with_data(max(significant_from, self.first_results_at))
            return (threshold + _SIGNIFICANCE_MARGIN_Z) * math.sqrt(n / n_cross), True
        n_before = self._refreshes_with_data(significant_from - 1)
        return (threshold - _SIGNIFICANCE_MARGIN_Z) * math.sqrt(n / n_before), False


@dataclass(frozen=True, kw_only=True)
class Scenario(Timeline):
    """Scripted experiments on a shared timeline of analysis refreshes."""

    experiments: tuple[ScriptedExperiment, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        check_unique_ids([e.id for e in self.experiments])

    def experiment(self, experiment_id: str) -> ScriptedExperiment | None:
        """The experiment with this id, if the scenario has one."""
        return next((e for e in self.experiments if e.id == experiment_id), None)


def _variations(prefix: str, *names: str) -> tuple[ScriptedVariation, ...]:
    return tuple(
        ScriptedVariation(id=f"var_{prefix}_{i}", key=str(i), name=name)
        for i, name in enumerate(names)
    )


def default_scenario(*, start: datetime, refresh_seconds: float = 60.0) -> Scenario:
    """Four experiments covering what a watcher must notice.

    - exp_checkout_redesign (running, bayesian, 50/50): no results at refresh 0; results from
      refresh 1; goal "met_conversion" significant (chanceToBeatControl > 0.95) from refresh 3;
      SRM (checks.srm < 0.001) from refresh 6.
    - exp_pricing_page (running, frequentist, three arms 40/30/30): results from refresh 0,
      inconclusive, healthy split.
    - exp_onboarding_tour (draft): never has results.
    - exp_search_ranking (stopped at refresh 0, won): results frozen at refresh 0.
    """
    day = 86400.0
    checkout = ScriptedExperiment(
        id="exp_checkout_redesign",
        name="Checkout redesign",
        tracking_key="checkout-redesign",
        project="prj_checkout",
        hypothesis="A one-page checkout raises the share of visitors who buy.",
        owner="ana@example.com",
        tags=("checkout",),
        engine="bayesian",
        variations=_variations("checkout", "Control", "One-page checkout"),
        weights=(0.5, 0.5),
        goals=(ScriptedMetric(id="met_conversion", name="Conversion", control_rate=0.1),),
        secondary_metrics=(
            ScriptedMetric(id="met_add_to_cart", name="Add to cart", control_rate=0.3),
        ),
        guardrails=(ScriptedMetric(id="met_refund", name="Refund requested", control_rate=0.02),),
        users_per_refresh=4000,
        first_results_at=1,
        significant_from=3,
        srm_from=6,
        created_seconds_before_start=3 * day,
    )
    pricing = ScriptedExperiment(
        id="exp_pricing_page",
        name="Pricing page layout",
        tracking_key="pricing-page",
        project="prj_growth",
        hypothesis="Showing the annual plan first increases sign-ups.",
        owner="ben@example.com",
        tags=("pricing", "growth"),
        engine="frequentist",
        variations=_variations("pricing", "Control", "Annual first", "Monthly first"),
        weights=(0.4, 0.3, 0.3),
        goals=(ScriptedMetric(id="met_signup", name="Sign-up", control_rate=0.05),),
        users_per_refresh=3000,
        first_results_at=0,
        created_seconds_before_start=2 * day,
    )
    onboarding = ScriptedExperiment(
        id="exp_onboarding_tour",
        name="Onboarding tour",
        tracking_key="onboarding-tour",
        project="prj_growth",
        hypothesis="A guided tour lifts activation.",
        owner="ben@example.com",
        variations=_variations("onboarding", "Control", "Guided tour"),
        weights=(0.5, 0.5),
        goals=(ScriptedMetric(id="met_activation", name="Activation", control_rate=0.4),),
        is_draft=True,
        created_seconds_before_start=1 * day,
    )
    search = ScriptedExperiment(
        id="exp_search_ranking",
        name="Search ranking v2",
        tracking_key="search-ranking-v2",
        project="prj_search",
        hypothesis="Learning-to-rank raises search click-through.",
        owner="chen@example.com",
        variations=_variations("search", "Control", "Ranking v2"),
        weights=(0.5, 0.5),
        goals=(
            ScriptedMetric(id="met_search_ctr", name="Search click-through", control_rate=0.25),
        ),
        users_per_refresh=20000,
        first_results_at=0,
        significant_from=0,
        stops_at=0,
        verdict="won",
        created_seconds_before_start=30 * day,
    )
    return Scenario(
        start=start,
        refresh_seconds=refresh_seconds,
        experiments=(search, checkout, pricing, onboarding),
    )
