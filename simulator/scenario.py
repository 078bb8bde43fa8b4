"""Scripted GrowthBook experiments on a timeline of analysis refreshes, and a default story.

A `Scenario` begins at `start`, and the fake platform re-analyses every experiment each
`refresh_seconds`: refresh index i = floor((now - start) / refresh_seconds). Everything an
experiment reports is a pure function of that index, so every request within one refresh sees
the same numbers and tests can name the refresh at which something happens. The experiments
themselves are `simulator.scripted_experiment.ScriptedExperiment`s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from simulator.scripted_experiment import (
    ExperimentStatus,
    ScriptedExperiment,
    ScriptedMetric,
    ScriptedSnapshot,
    ScriptedVariation,
    ScriptError,
    Verdict,
)
from simulator.timeline import Timeline, check_unique_ids

__all__ = [
    "ExperimentStatus",
    "Scenario",
    "ScriptError",
    "ScriptedExperiment",
    "ScriptedMetric",
    "ScriptedSnapshot",
    "ScriptedVariation",
    "Verdict",
    "default_scenario",
]


@dataclass(frozen=True, kw_only=True)
class Scenario(Timeline):
    """Scripted experiments on a shared timeline of analysis refreshes."""

    experiments: tuple[ScriptedExperiment, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        check_unique_ids([e.id for e in self.experiments])
        _check_metric_definitions(self.experiments)

    def experiment(self, experiment_id: str) -> ScriptedExperiment | None:
        """The experiment with this id, if the scenario has one."""
        return next((e for e in self.experiments if e.id == experiment_id), None)


def _check_metric_definitions(experiments: tuple[ScriptedExperiment, ...]) -> None:
    """Refuse a metric id that two experiments define differently (name or direction): on
    GrowthBook an id names one metric, served once by `GET /metrics`."""
    first: dict[str, tuple[ScriptedMetric, str]] = {}
    for experiment in experiments:
        for metric in experiment.metrics:
            known, where = first.setdefault(metric.id, (metric, experiment.id))
            if (metric.name, metric.inverse) != (known.name, known.inverse):
                raise ValueError(
                    f"metric {metric.id!r} is defined twice: name {known.name!r}, inverse "
                    f"{known.inverse} in experiment {where!r} but name {metric.name!r}, inverse "
                    f"{metric.inverse} in experiment {experiment.id!r}; one id names one "
                    "GrowthBook metric, so give it the same name and inverse everywhere"
                )


def _variations(prefix: str, *names: str) -> tuple[ScriptedVariation, ...]:
    return tuple(
        ScriptedVariation(id=f"var_{prefix}_{i}", key=str(i), name=name)
        for i, name in enumerate(names)
    )


def default_scenario(*, start: datetime, refresh_seconds: float = 60.0) -> Scenario:
    """Four experiments covering what a watcher must notice.

    - exp_checkout_redesign (running, bayesian, 50/50): no results at refresh 0; results from
      refresh 1; goal "met_conversion" significant (chanceToBeatControl > 0.95) from refresh 3;
      SRM (checks.srm < 0.001) from refresh 6; its guardrail "met_refund" is lower-is-better
      (inverse) and stays inconclusive.
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
        guardrails=(
            ScriptedMetric(
                id="met_refund", name="Refund requested", control_rate=0.02, inverse=True
            ),
        ),
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
