"""Scripted Statsig experiments on a timeline of daily Pulse refreshes, and a default story.

The timeline works as in `simulator.scenario`: refresh index i = floor((now - start) /
refresh_seconds), and everything an experiment reports is a pure function of that index, so
every request within one refresh sees the same numbers. For Statsig each refresh is one Pulse
day: the results current at refresh i carry `ds = start's date + i days`, which is also what
`pulse_results?date=` names to read the cumulative results of an earlier refresh (backfill).
The experiments themselves are `simulator.statsig_experiment.StatsigExperiment`s.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from simulator.statsig_experiment import StatsigExperiment, StatsigGroup, StatsigMetric
from simulator.timeline import Timeline, check_unique_ids

__all__ = ["StatsigScenario", "default_statsig_scenario", "stable_group_id"]


@dataclass(frozen=True, kw_only=True)
class StatsigScenario(Timeline):
    """Scripted Statsig experiments on a shared timeline of daily Pulse refreshes."""

    experiments: tuple[StatsigExperiment, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        check_unique_ids([e.id for e in self.experiments])

    def pulse_date(self, index: int) -> date:
        """The Pulse day (`ds`) of refresh `index`: start's date + index days."""
        return self.start.date() + timedelta(days=index)

    def index_of_date(self, day: date) -> int:
        """The refresh whose Pulse day is `day` (negative before the start)."""
        return (day - self.start.date()).days

    def experiment(self, experiment_id: str) -> StatsigExperiment | None:
        """The experiment with this id, if the scenario has one."""
        return next((e for e in self.experiments if e.id == experiment_id), None)


def stable_group_id(experiment_id: str, name: str) -> str:
    """A stable 22-character base62 id, shaped like Statsig's group ids."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    seed = zlib.crc32(f"{experiment_id}/{name}".encode())
    digits = []
    for i in range(22):
        seed = (seed * 6364136223846793005 + 1442695040888963407 + i) % 2**64
        digits.append(alphabet[(seed >> 33) % len(alphabet)])
    return "".join(digits)


def _groups(experiment_id: str, *named: tuple[str, float]) -> tuple[StatsigGroup, ...]:
    return tuple(
        StatsigGroup(id=stable_group_id(experiment_id, name), name=name, size=size)
        for name, size in named
    )


def default_statsig_scenario(*, start: datetime, refresh_seconds: float = 60.0) -> StatsigScenario:
    """Four Statsig experiments covering what a watcher must notice.

    - checkout_redesign (active, 50/50, 95 %): Pulse "not yet available" at refresh 0, results
      from refresh 1; the primary metric's interval excludes 0 from refresh 3; exposure balance
      WAITING at 0, PASSED from 1, WARNING from 5, FAILED from 7 (and the roll-up with it).
    - pricing_page (active, 40/30/30, sequential testing, Bonferroni per variant): results from
      refresh 0, inconclusive; its secondary metric reports a negative
      `percentSequentialTestingConfidenceIntervalDelta`.
    - search_ranking (active, 50/50): significant from refresh 0; decision made at refresh 4,
      launching "Ranking v2"; results frozen there.
    - onboarding_tour (setup): never started, every health check WAITING, no Pulse.
    """
    day = 86400.0
    checkout = StatsigExperiment(
        id="checkout_redesign",
        name="Checkout redesign",
        description="One-page checkout against the three-step flow.",
        hypothesis="A one-page checkout raises the share of visitors who buy.",
        tags=("checkout",),
        owner_name="Ana Lima",
        groups=_groups("checkout_redesign", ("Control", 50.0), ("One page checkout", 50.0)),
        primary_metrics=(StatsigMetric(name="checkout_conversion", control_rate=0.1),),
        secondary_metrics=(StatsigMetric(name="add_to_cart", control_rate=0.3),),
        other_metrics=(
            StatsigMetric(name="refund_requested", control_rate=0.02, direction="decrease"),
        ),
        first_results_at=1,
        significant_from=3,
        balance_warning_from=5,
        balance_failed_from=7,
        created_seconds_before_start=3 * day,
    )
    pricing = StatsigExperiment(
        id="pricing_page",
        name="Pricing page layout",
        hypothesis="Showing the annual plan first increases sign-ups.",
        tags=("pricing", "growth"),
        owner_name="Ben Okafor",
        groups=_groups(
            "pricing_page", ("Control", 40.0), ("Annual first", 30.0), ("Monthly first", 30.0)
        ),
        primary_metrics=(StatsigMetric(name="signup", control_rate=0.05),),
        secondary_metrics=(
            StatsigMetric(
                name="plan_page_bounce",
                control_rate=0.4,
                direction="decrease",
                has_negative_sequential_delta=True,
            ),
        ),
        sequential_testing=True,
        bonferroni_correction=True,
        users_per_refresh=3000,
        created_seconds_before_start=2 * day,
    )
    search = StatsigExperiment(
        id="search_ranking",
        name="Search ranking v2",
        hypothesis="Learning-to-rank raises search click-through.",
        tags=("search",),
        owner_name="Chen Wei",
        groups=_groups("search_ranking", ("Control", 50.0), ("Ranking v2", 50.0)),
        primary_metrics=(StatsigMetric(name="search_click_through", control_rate=0.25),),
        users_per_refresh=20000,
        significant_from=0,
        ends_at=4,
        end_status="decision_made",
        launched_group_index=1,
        decision_reason="Ranking v2 lifts click-through; shipping it.",
        created_seconds_before_start=30 * day,
    )
    onboarding = StatsigExperiment(
        id="onboarding_tour",
        name="Onboarding tour",
        hypothesis="A guided tour lifts activation.",
        owner_name="Ben Okafor",
        groups=_groups("onboarding_tour", ("Control", 50.0), ("Guided tour", 50.0)),
        primary_metrics=(StatsigMetric(name="activation", control_rate=0.4),),
        started_at=None,
        created_seconds_before_start=1 * day,
    )
    return StatsigScenario(
        start=start,
        refresh_seconds=refresh_seconds,
        experiments=(search, checkout, pricing, onboarding),
    )
