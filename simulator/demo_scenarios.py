"""The stories `expwatch demo` tells: three experiments on each platform, on one timeline.

Refresh by refresh (each refresh is one re-analysis, one Pulse day for Statsig), what a
watcher polling every half refresh records:

| refresh | experiment                            | what happens                              |
|---------|---------------------------------------|-------------------------------------------|
| 1       | checkout, pricing, recommendations    | the platforms' own verdicts flip (info)   |
| 2       | onboarding_checklist (Statsig)        | exposure balance check: passed → warning  |
| 3       | onboarding_checklist (Statsig)        | SRM (our sequential test), check failed   |
| 3       | recommendations_carousel (Statsig)    | wins: our anytime-valid verdict crosses   |
| 4       | exp_pricing_page (GrowthBook)         | guardrail "Paid upgrade" regresses        |
| 5       | exp_checkout_redesign (GrowthBook)    | wins: our anytime-valid verdict crosses   |
| 6       | exp_search_ranking (GrowthBook)       | stopped, inconclusive (status, decision)  |
| 7       | recommendations_carousel (Statsig)    | decision made: "Carousel" launched        |

`free_trial_banner` (Statsig) stays flat throughout. `tests/expwatch/test_demo.py` drives a
real supervisor through these scenarios on a virtual clock and checks this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from simulator.scenario import Scenario, ScriptedExperiment, ScriptedMetric, ScriptedVariation
from simulator.statsig_experiment import StatsigExperiment, StatsigGroup, StatsigMetric
from simulator.statsig_scenario import StatsigScenario, stable_group_id

__all__ = ["DEMO_STORY", "DemoScenarios", "demo_scenarios"]

_DAY = 86400.0


DEMO_STORY = (
    (2, "Statsig onboarding_checklist: exposure balance check warns"),
    (3, "Statsig onboarding_checklist: sample-ratio mismatch (srm_detected), check failed"),
    (3, "Statsig recommendations_carousel wins (significance_changed)"),
    (4, "GrowthBook exp_pricing_page: guardrail Paid upgrade regresses (guardrail_regressed)"),
    (5, "GrowthBook exp_checkout_redesign wins (significance_changed)"),
    (6, "GrowthBook exp_search_ranking is stopped (status_changed, decision_made)"),
    (7, "Statsig recommendations_carousel: decision made, Carousel launched (decision_made)"),
)
"""(refresh, what happens) for each chapter of the stories, in order (the table above)."""


@dataclass(frozen=True, kw_only=True)
class DemoScenarios:
    """The demo's two platforms, on the same timeline."""

    growthbook: Scenario
    statsig: StatsigScenario


def _variations(prefix: str, *names: str) -> tuple[ScriptedVariation, ...]:
    return tuple(
        ScriptedVariation(id=f"var_{prefix}_{i}", key=str(i), name=name)
        for i, name in enumerate(names)
    )


def _groups(experiment_id: str, *named: tuple[str, float]) -> tuple[StatsigGroup, ...]:
    return tuple(
        StatsigGroup(id=stable_group_id(experiment_id, name), name=name, size=size)
        for name, size in named
    )


def demo_scenarios(*, start: datetime, refresh_seconds: float = 4.0) -> DemoScenarios:
    """The demo's stories (see the module docstring), beginning at `start`."""
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
        guardrails=(
            ScriptedMetric(id="met_repeat_purchase", name="Repeat purchase", control_rate=0.02),
        ),
        users_per_refresh=8000,
        first_results_at=0,
        significant_from=1,
        created_seconds_before_start=3 * _DAY,
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
        variations=_variations("pricing", "Control", "Annual first"),
        weights=(0.5, 0.5),
        goals=(ScriptedMetric(id="met_signup", name="Sign-up", control_rate=0.05),),
        guardrails=(ScriptedMetric(id="met_paid_upgrade", name="Paid upgrade", control_rate=0.04),),
        users_per_refresh=8000,
        first_results_at=0,
        guardrail_regresses_from=1,
        created_seconds_before_start=2 * _DAY,
    )
    search = ScriptedExperiment(
        id="exp_search_ranking",
        name="Search ranking v2",
        tracking_key="search-ranking-v2",
        project="prj_search",
        hypothesis="Learning-to-rank raises search click-through.",
        owner="chen@example.com",
        tags=("search",),
        variations=_variations("search", "Control", "Ranking v2"),
        weights=(0.5, 0.5),
        goals=(
            ScriptedMetric(id="met_search_ctr", name="Search click-through", control_rate=0.25),
        ),
        users_per_refresh=8000,
        first_results_at=0,
        stops_at=6,
        verdict="inconclusive",
        created_seconds_before_start=10 * _DAY,
    )
    onboarding = StatsigExperiment(
        id="onboarding_checklist",
        name="Onboarding checklist",
        hypothesis="A checklist on the first screen lifts activation.",
        tags=("onboarding",),
        owner_name="Dana Ruiz",
        groups=_groups("onboarding_checklist", ("Control", 50.0), ("Checklist", 50.0)),
        primary_metrics=(StatsigMetric(name="activation", control_rate=0.3),),
        users_per_refresh=6000,
        balance_warning_from=2,
        balance_failed_from=3,
        created_seconds_before_start=4 * _DAY,
    )
    recommendations = StatsigExperiment(
        id="recommendations_carousel",
        name="Recommendations carousel",
        hypothesis="A carousel of recommendations on the cart page raises purchases.",
        tags=("recommendations",),
        owner_name="Eli Novak",
        groups=_groups("recommendations_carousel", ("Control", 50.0), ("Carousel", 50.0)),
        primary_metrics=(StatsigMetric(name="purchase", control_rate=0.1),),
        users_per_refresh=8000,
        significant_from=1,
        ends_at=7,
        end_status="decision_made",
        launched_group_index=1,
        decision_reason="The carousel lifts purchases; shipping it.",
        created_seconds_before_start=5 * _DAY,
    )
    banner = StatsigExperiment(
        id="free_trial_banner",
        name="Free trial banner",
        hypothesis="A banner offering a free trial raises sign-ups.",
        tags=("growth",),
        owner_name="Ben Okafor",
        groups=_groups("free_trial_banner", ("Control", 50.0), ("Banner", 50.0)),
        primary_metrics=(StatsigMetric(name="signup", control_rate=0.05),),
        users_per_refresh=3000,
        created_seconds_before_start=6 * _DAY,
    )
    return DemoScenarios(
        growthbook=Scenario(
            start=start,
            refresh_seconds=refresh_seconds,
            experiments=(search, checkout, pricing),
        ),
        statsig=StatsigScenario(
            start=start,
            refresh_seconds=refresh_seconds,
            experiments=(banner, recommendations, onboarding),
        ),
    )
