"""A small, seeded run of the polled-experiment simulation behind bench/aa_simulation.py."""

from __future__ import annotations

import math

import numpy as np

from watcher.stats import Outcome, arm_from_conversions, judge, z_test
from watcher.stats.simulation import (
    MetricModel,
    RuleSummary,
    effect_first_alerts,
    effect_z_scores,
    simulate_arms,
    simulate_effect_alerts,
    simulate_srm_alerts,
)

SEED = 20260105


def upper_bound(share: float, runs: int) -> float:
    """`share` plus three binomial standard errors over `runs` runs."""
    return share + 3 * math.sqrt(share * (1 - share) / runs)


def test_ours_keeps_a_families_false_alerts_under_alpha_where_naive_peeking_does_not() -> None:
    """A/A, 3 Bernoulli metrics polled 30 times: ours <= 5% family-wise, naive far above."""
    runs = 600
    alerts = simulate_effect_alerts(
        np.random.default_rng(SEED),
        model=MetricModel.BERNOULLI,
        runs=runs,
        metrics=3,
        polls=30,
        users_per_poll=500,
    )
    ours, naive = RuleSummary.of(alerts.ours), RuleSummary.of(alerts.naive)
    assert ours.alert_share <= upper_bound(0.05, runs)
    assert naive.alert_share >= 0.4
    assert naive.alert_share > 4 * upper_bound(0.05, runs)


def test_ours_keeps_false_alerts_under_alpha_on_a_skewed_revenue_metric() -> None:
    """A/A on heavy-tailed revenue (90% zeros, lognormal): ours <= 5%, naive above 15%."""
    runs = 400
    alerts = simulate_effect_alerts(
        np.random.default_rng(SEED + 1),
        model=MetricModel.REVENUE,
        runs=runs,
        polls=20,
        users_per_poll=300,
    )
    assert RuleSummary.of(alerts.ours).alert_share <= upper_bound(0.05, runs)
    assert RuleSummary.of(alerts.naive).alert_share >= 0.15


def test_sequential_srm_false_alarms_stay_under_its_alpha_where_chi_square_does_not() -> None:
    """A/A SRM over 60 polls at alpha 0.001: sequential stays under, chi-square peeks above."""
    runs = 4000
    alerts = simulate_srm_alerts(np.random.default_rng(SEED + 2), runs=runs, polls=60)
    assert RuleSummary.of(alerts.ours).alert_share <= upper_bound(0.001, runs)
    assert RuleSummary.of(alerts.naive).alert_share >= 0.005


def test_the_vectorized_rules_agree_with_judge_and_z_test_poll_by_poll() -> None:
    """The simulation's first alerts are the polls where judge() and z_test() would alert."""
    arms = simulate_arms(
        np.random.default_rng(SEED + 3),
        model=MetricModel.BERNOULLI,
        runs=12,
        polls=15,
        users_per_poll=400,
        lift=0.15,
    )
    z, total_units = effect_z_scores(arms)
    alerts = effect_first_alerts(z, total_units)
    assert (alerts.ours >= 0).sum() >= 3  # the check below sees real crossings
    for run in range(12):
        state, crossed_at, naive_at = None, -1, -1
        for poll in range(15):
            control, treatment = (
                arm_from_conversions(
                    units=float(arms.units[run, 0, poll, arm]),
                    conversions=float(arms.totals[run, 0, poll, arm]),
                )
                for arm in (0, 1)
            )
            verdict = judge(control, treatment, previous=state)
            state = verdict.state
            if verdict.is_first_crossing:
                crossed_at = poll
                assert verdict.outcome in (Outcome.WON, Outcome.LOST)
            fixed = z_test(control, treatment) if control and treatment else None
            if naive_at < 0 and fixed is not None and fixed.p_value < 0.05:
                naive_at = poll
        assert crossed_at == alerts.ours[run]
        assert naive_at == alerts.naive[run]
