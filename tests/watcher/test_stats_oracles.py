"""The statistics reproduce published values (research/statistics.md, section 5 and 2d).

Values GrowthBook's own tests give to 5 decimals (or its back end to 9) are checked the way those
tests check them, rounded to the same decimals, and against the full-precision value of the
research notes at 1e-6 relative where the notes give one. Full-precision sources are checked at
1e-6 relative.
"""

from __future__ import annotations

import pytest

from watcher.stats import (
    Alternative,
    ArmSummary,
    Difference,
    NormalPrior,
    always_valid_p_value,
    arm_from_conversions,
    arm_from_sums,
    benjamini_hochberg,
    boundary_multiplier,
    chance_to_win,
    confidence_sequence,
    holm,
    mixing_variance,
    observe_srm,
    relative_lift,
    sequential_srm_p_value,
    srm_chi_square_p_value,
    welch_t_test,
)

REL = 1e-6


def arm(*, units: float, total: float, sum_of_squares: float) -> ArmSummary:
    summary = arm_from_sums(units=units, total=total, sum_of_squares=sum_of_squares)
    assert summary is not None
    return summary


def proportion(*, units: float, conversions: float) -> ArmSummary:
    summary = arm_from_conversions(units=units, conversions=conversions)
    assert summary is not None
    return summary


def rounded(value: float | None, decimals: int = 5) -> float:
    assert value is not None
    return round(value, decimals)


# GrowthBook packages/stats/tests/frequentist/test_tests.py, TestTwoSidedTTest.setUp
CONTROL = arm(units=3407, total=1396.87, sum_of_squares=52377.9767)
TREATMENT = arm(units=3461, total=2422.7, sum_of_squares=134698.29)
# ... and TestSequentialTTest: the same sums over 3000 control units
SEQUENTIAL_CONTROL = arm(units=3000, total=1396.87, sum_of_squares=52377.9767)


# --- SRM, chi-square -------------------------------------------------------------------------

GROWTHBOOK_SRM_CASES = [
    # (users, weights, GrowthBook's toFixed(9) value, the notes' full-precision value)
    ([1000, 1200], [0.5, 0.5], 0.000020079, 2.007865612e-05),
    ([135, 115], [0.5, 0.5], 0.205903211, 0.2059032107),
    ([310, 98], [0.75, 0.25], 0.647434186, 0.6474341857),
    ([1000, 1200, 900], [0.5, 0.5, 0], 0.000020079, 2.007865612e-05),
    ([0, 10, 10], [0.34, 0.33, 0.33], 0.005790624, 0.005790624403),
    ([500, 500, 600], [0.34, 0.33, 0.33], 0.000592638, 0.0005926379315),
]


@pytest.mark.parametrize(("users", "weights", "published", "precise"), GROWTHBOOK_SRM_CASES)
def test_chi_square_srm_matches_growthbook(
    users: list[float], weights: list[float], published: float, precise: float
) -> None:
    """GrowthBook back-end test/stats.test.ts `checkSrm` cases, to its 9 decimals and 1e-6."""
    p_value = srm_chi_square_p_value(users, weights)
    assert round(p_value, 9) == published
    # the notes give 10 significant digits: agree to that rounding
    assert p_value == pytest.approx(precise, rel=REL)


@pytest.mark.parametrize(
    ("users", "weights"),
    [
        ([500, 500], [0.5, 0.5]),  # completely equal
        ([1000, None], [0.5, 0.5]),  # not enough valid variations (a missing count)
        ([1000, 900, 800], [1, 0, 0]),  # not enough valid weights
        ([0, 0, 0], [0.34, 0.33, 0.33]),  # all users are 0
    ],
)
def test_chi_square_srm_is_one_when_growthbook_says_so(
    users: list[float | None], weights: list[float]
) -> None:
    """GrowthBook back-end test/stats.test.ts: equal split, <2 arms, no users give p = 1."""
    assert srm_chi_square_p_value(users, weights) == 1.0


# --- SRM, sequential ------------------------------------------------------------------------


def test_sequential_srm_accumulates_evidence_over_days_like_growthbook() -> None:
    """GrowthBook PR #5627 ssrm.test.ts: daily [500,500],[600,400],[700,300],[800,200] at 50/50."""
    cumulative = [[500, 500], [1100, 900], [1800, 1200], [2600, 1400]]
    published = [1.0, 0.20685901461423034, 1.099173293697608e-6, 5.115536116778213e-23]
    state = None
    for users, expected in zip(cumulative, published, strict=True):
        state = observe_srm(state, users=users, weights=[0.5, 0.5])
        assert state.p_value == pytest.approx(expected, rel=REL)
    assert state is not None and state.polls == 4


def test_sequential_srm_single_imbalanced_day_matches_growthbook() -> None:
    """GrowthBook PR #5627 ssrm.test.ts: [[800, 200]] at 50/50 gives 8.126155715401769e-08."""
    p_value = sequential_srm_p_value([800, 200], [0.5, 0.5])
    assert p_value == pytest.approx(8.126155715401769e-08, rel=REL)


def test_sequential_srm_with_concentration_100_matches_growthbook() -> None:
    """GrowthBook PR #5627 ssrm.test.ts: dirichletConcentration 100 gives 2.253273013435552e-75."""
    p_value = sequential_srm_p_value([800, 200], [0.5, 0.5], concentration=100)
    assert p_value == pytest.approx(2.253273013435552e-75, rel=REL)


def test_sequential_srm_three_way_mismatch_matches_growthbook() -> None:
    """GrowthBook PR #5627 ssrm.test.ts: [[600,200,200]] at .34/.33/.33 gives 1.434e-06."""
    p_value = sequential_srm_p_value([600, 200, 200], [0.34, 0.33, 0.33])
    assert p_value == pytest.approx(1.4343631225400445e-06, rel=REL)


def test_sequential_srm_balanced_day_gives_one_like_growthbook() -> None:
    """GrowthBook PR #5627 ssrm.test.ts: perfectly balanced [[500, 500]] gives p = 1."""
    assert sequential_srm_p_value([500, 500], [0.5, 0.5]) == 1.0


# --- Effects, fixed horizon -----------------------------------------------------------------


def test_welch_relative_matches_growthbook() -> None:
    """GrowthBook frequentist test_tests.py test_two_sided_ttest (relative), 5 decimals."""
    result = welch_t_test(CONTROL, TREATMENT, difference=Difference.RELATIVE)
    assert result is not None
    assert rounded(result.effect.estimate) == 0.70732
    assert rounded(result.effect.standard_error) == 0.37879
    assert (rounded(result.interval.low), rounded(result.interval.high)) == (-0.03526, 1.44989)
    assert rounded(result.p_value) == 0.06191


def test_welch_absolute_matches_growthbook() -> None:
    """GrowthBook frequentist test_tests.py test_two_sided_ttest_absolute, 5 decimals."""
    result = welch_t_test(CONTROL, TREATMENT, difference=Difference.ABSOLUTE)
    assert result is not None
    assert result.effect.estimate == pytest.approx(0.7 - 0.41, rel=REL)
    assert rounded(result.effect.standard_error) == 0.12478
    assert (rounded(result.interval.low), rounded(result.interval.high)) == (0.04538, 0.53462)
    assert rounded(result.p_value) == 0.02016


def test_welch_on_proportions_matches_growthbook() -> None:
    """GrowthBook frequentist test_tests.py test_two_sided_ttest_binom: 14/28 vs 16/30."""
    control = proportion(units=28, conversions=14)
    treatment = proportion(units=30, conversions=16)
    result = welch_t_test(control, treatment, difference=Difference.RELATIVE)
    assert result is not None
    assert result.effect.estimate == pytest.approx((16 / 30 - 0.5) / 0.5, rel=REL)
    assert rounded(result.effect.standard_error) == 0.2717
    assert (rounded(result.interval.low), rounded(result.interval.high)) == (-0.47767, 0.61101)
    assert rounded(result.p_value) == 0.80707


# --- Effects, sequential --------------------------------------------------------------------


def test_sequential_relative_effect_matches_growthbook() -> None:
    """GrowthBook frequentist test_tests.py test_sequential_test_runs: N* = 1000, relative."""
    effect = relative_lift(SEQUENTIAL_CONTROL, TREATMENT)
    assert effect is not None
    total = SEQUENTIAL_CONTROL.units + TREATMENT.units
    interval = confidence_sequence(effect, total_units=total, tuning=1000)
    assert interval is not None
    assert rounded(effect.estimate) == 0.50336
    assert rounded(effect.standard_error) == 0.33341
    assert (rounded(interval.low), rounded(interval.high)) == (-0.55844, 1.56516)
    assert always_valid_p_value(effect, total_units=total, tuning=1000) == 1.0


def test_sequential_proportions_match_growthbook() -> None:
    """GrowthBook test_tests.py test_sequential_test_runs_prop: 1396/3000 vs 2422/3461, N* 5000."""
    control = proportion(units=3000, conversions=1396)
    treatment = proportion(units=3461, conversions=2422)
    effect = relative_lift(control, treatment)
    assert effect is not None
    interval = confidence_sequence(effect, total_units=6461)
    assert interval is not None
    assert rounded(effect.estimate) == 0.50386
    assert rounded(effect.standard_error) == 0.03386
    assert (rounded(interval.low), rounded(interval.high)) == (0.40098, 0.60675)
    p_value = always_valid_p_value(effect, total_units=6461)
    assert rounded(p_value) == 0.0
    assert p_value == pytest.approx(5.17e-44, rel=1e-3)  # the notes give 3 digits


def test_mixing_variance_matches_the_notes() -> None:
    """research/statistics.md 2d: ρ²(α = 0.05, N* = 5000) = 0.0015872309 (eq. 161)."""
    assert mixing_variance(alpha=0.05, tuning=5000) == pytest.approx(0.0015872309, rel=REL)


@pytest.mark.parametrize(
    ("tuning", "alternative", "multipliers"),
    [
        (5000, Alternative.TWO_SIDED, [3.363888, 3.035209, 3.127114, 3.336858, 3.656536]),
        (10000, Alternative.TWO_SIDED, [3.855055, 3.083569, 3.061477, 3.241723, 3.561641]),
        (5000, Alternative.GREATER, [3.152422, 2.779094, 2.868197, 3.089717, 3.429912]),
        (5000, Alternative.LESS, [3.152422, 2.779094, 2.868197, 3.089717, 3.429912]),
    ],
)
def test_boundary_multipliers_match_the_notes(
    tuning: float, alternative: Alternative, multipliers: list[float]
) -> None:
    """research/statistics.md 2d reference multipliers at n = 1e3, 5e3, 2e4, 1e5, 1e6 (α 0.05)."""
    for total_units, expected in zip(
        [1_000, 5_000, 20_000, 100_000, 1_000_000], multipliers, strict=True
    ):
        multiplier = boundary_multiplier(total_units, tuning=tuning, alternative=alternative)
        assert multiplier == pytest.approx(expected, abs=5e-7)  # 7 significant digits given
        assert multiplier == pytest.approx(expected, rel=REL)


# --- Chance to win --------------------------------------------------------------------------


def test_chance_to_win_on_proportions_matches_growthbook() -> None:
    """GrowthBook bayesian test_tests.py test_bayesian_binomial_ab_test: 49/100 vs 51/100."""
    result = chance_to_win(
        proportion(units=100, conversions=49), proportion(units=100, conversions=51)
    )
    assert result is not None
    assert rounded(result.posterior.estimate) == 0.04082
    assert rounded(result.posterior.standard_error) == 0.14725
    assert rounded(result.chance_to_win) == 0.60918
    interval = result.credible_interval
    assert (rounded(interval.low), rounded(interval.high)) == (-0.24779, 0.32943)


MEANS_CONTROL = arm(units=10, total=100, sum_of_squares=1002.25)
MEANS_TREATMENT = arm(units=10, total=105, sum_of_squares=1111.5)


def test_chance_to_win_on_means_matches_growthbook() -> None:
    """GrowthBook bayesian test_tests.py test_bayesian_gaussian_ab_test, flat prior."""
    result = chance_to_win(MEANS_CONTROL, MEANS_TREATMENT)
    assert result is not None
    assert result.posterior.estimate == pytest.approx(0.05, rel=REL)
    assert rounded(result.posterior.standard_error) == 0.03572
    assert rounded(result.chance_to_win) == 0.91923
    interval = result.credible_interval
    assert (rounded(interval.low), rounded(interval.high)) == (-0.02, 0.12)


def test_chance_to_win_with_a_normal_prior_matches_growthbook() -> None:
    """GrowthBook bayesian test_tests.py ..._ab_test_informative: prior mean 0.1, variance 0.1."""
    result = chance_to_win(
        MEANS_CONTROL, MEANS_TREATMENT, prior=NormalPrior(mean=0.1, variance=0.1)
    )
    assert result is not None
    assert rounded(result.posterior.estimate) == 0.05063
    assert rounded(result.posterior.standard_error) == 0.03549
    assert rounded(result.chance_to_win) == 0.92315
    interval = result.credible_interval
    assert (rounded(interval.low), rounded(interval.high)) == (-0.01893, 0.12019)


def test_chance_to_win_for_a_lower_is_better_metric_is_the_complement() -> None:
    """GrowthBook `chance_to_win` for inverse metrics is 1 - P(effect > 0)."""
    better = chance_to_win(MEANS_CONTROL, MEANS_TREATMENT)
    worse = chance_to_win(MEANS_CONTROL, MEANS_TREATMENT, higher_is_better=False)
    assert better is not None and worse is not None
    assert worse.chance_to_win == pytest.approx(1 - 0.9192339081566245, rel=1e-5)
    assert better.chance_to_win + worse.chance_to_win == pytest.approx(1.0, rel=1e-12)


# --- Multiple testing -----------------------------------------------------------------------


def test_holm_matches_growthbook() -> None:
    """GrowthBook shared test/experiments.test.ts "does HB procedure correctly"."""
    adjusted = holm([0.01, 0.04, 0.03, 0.005, 0.55, 0.6])
    assert adjusted == pytest.approx([0.05, 0.12, 0.12, 0.03, 1.0, 1.0], rel=REL)


def test_benjamini_hochberg_matches_growthbook() -> None:
    """GrowthBook shared test/experiments.test.ts "does BH procedure correctly"."""
    adjusted = benjamini_hochberg([0.898, 0.138, 0.007, 0.964, 0.538, 0.006, 0.138])
    expected = [0.964, 0.2415, 0.0245, 0.964, 0.7532, 0.0245, 0.2415]
    assert adjusted == pytest.approx(expected, rel=REL)
