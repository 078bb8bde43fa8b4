"""Properties of watcher.stats that hold for any input: ranges, symmetry, monotone state."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from watcher.stats import (
    Alternative,
    ArmSummary,
    Difference,
    Effect,
    MetricKind,
    Outcome,
    Role,
    RunningMinimum,
    SequenceDesign,
    SequentialVerdict,
    absolute_difference,
    always_valid_p_value,
    arm_from_conversions,
    arm_from_mean,
    arm_from_sums,
    benjamini_hochberg,
    bonferroni,
    chance_to_win,
    confidence_sequence,
    holm,
    judge,
    observe_srm,
    resume,
    sequential_srm_p_value,
    srm_chi_square_p_value,
    welch_t_test,
    z_test,
)

FAST = settings(max_examples=60, deadline=None)

finite = st.floats(allow_nan=False, allow_infinity=False)
edgy = st.one_of(finite, st.sampled_from([0.0, 1.0, -1.0, 100.0, 1e-300, 1e300]))
units = st.one_of(st.floats(min_value=-10, max_value=1e9), st.sampled_from([0.0, 1.0, 2.0, 100.0]))
alphas = st.sampled_from([0.001, 0.01, 0.05, 0.1, 0.2])
tunings = st.sampled_from([100.0, 1000.0, 5000.0, 10_000.0, 1e6])
alternatives = st.sampled_from(list(Alternative))


@st.composite
def arms(draw: st.DrawFn) -> ArmSummary | None:
    """Any arm a platform could send, including empty, constant and absurd ones."""
    shape = draw(st.sampled_from(["conversions", "sums", "mean"]))
    n = draw(units)
    if shape == "conversions":
        return arm_from_conversions(units=n, conversions=draw(st.one_of(edgy, units)))
    if shape == "sums":
        return arm_from_sums(units=n, total=draw(edgy), sum_of_squares=draw(edgy))
    return arm_from_mean(units=n, mean=draw(edgy), stddev=draw(edgy))


@st.composite
def arm_pairs(draw: st.DrawFn) -> tuple[ArmSummary, ArmSummary]:
    """Two usable arms of the same kind with realistic numbers."""
    kind = draw(st.sampled_from(list(MetricKind)))
    pair = []
    for _ in range(2):
        n = draw(st.floats(min_value=2, max_value=1e7))
        if kind is MetricKind.PROPORTION:
            arm = arm_from_conversions(units=n, conversions=draw(st.floats(0, 1)) * n)
        else:
            arm = arm_from_mean(
                units=n, mean=draw(st.floats(-1e4, 1e4)), stddev=draw(st.floats(0, 1e4))
            )
        assert arm is not None
        pair.append(arm)
    return pair[0], pair[1]


effects = st.builds(
    Effect,
    estimate=st.floats(-1e6, 1e6),
    standard_error=st.floats(min_value=1e-9, max_value=1e6),
)


def floats_in(value: Any) -> list[float]:
    """Every float inside a (nested) dataclass, tuple or list."""
    if isinstance(value, float):
        return [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [x for f in dataclasses.fields(value) for x in floats_in(getattr(value, f.name))]
    if isinstance(value, tuple | list):
        return [x for item in value for x in floats_in(item)]
    return []


# --- No NaN or infinity, whatever comes in ---------------------------------------------------


@FAST
@given(arms())
def test_an_arm_built_from_any_finite_numbers_is_none_or_finite(arm: ArmSummary | None) -> None:
    """Arm constructors turn absurd input into None, never into NaN or infinity."""
    if arm is not None:
        assert all(math.isfinite(x) for x in floats_in(arm))
        assert arm.units > 0 and arm.variance >= 0


# Absurd arms are None (unusable) often enough that most draws are discarded: intended.
@settings(FAST, suppress_health_check=[HealthCheck.filter_too_much])
@given(arms(), arms(), st.sampled_from(list(Difference)), alternatives)
def test_effects_and_tests_never_return_nan_or_infinity(
    control: ArmSummary | None,
    treatment: ArmSummary | None,
    difference: Difference,
    alternative: Alternative,
) -> None:
    """Welch, z and chance to win give None or finite numbers with p-values in [0, 1]."""
    assume(control is not None and treatment is not None)
    assert control is not None and treatment is not None
    for test in (welch_t_test, z_test):
        result = test(control, treatment, difference=difference, alternative=alternative)
        if result is not None:
            assert all(math.isfinite(x) for x in floats_in(result))
            assert 0.0 <= result.p_value <= 1.0
            assert result.interval.contains(result.effect.estimate)
    bayes = chance_to_win(control, treatment, difference=difference)
    if bayes is not None:
        assert all(math.isfinite(x) for x in floats_in(bayes))
        assert 0.0 <= bayes.chance_to_win <= 1.0
        assert bayes.credible_interval.contains(bayes.posterior.estimate)


@FAST
@given(
    arms(),
    arms(),
    st.sampled_from(list(Role)),
    st.booleans(),
    st.integers(1, 20),
    st.floats(0, 1e4),
)
def test_a_verdict_never_carries_nan_or_infinity(
    control: ArmSummary | None,
    treatment: ArmSummary | None,
    role: Role,
    higher_is_better: bool,
    family_size: int,
    minimum_units: float,
) -> None:
    """judge() on any arms (empty, constant, one missing) returns only finite numbers."""
    assume(control is None or treatment is None or control.kind is treatment.kind)
    verdict = judge(
        control,
        treatment,
        previous=None,
        role=role,
        higher_is_better=higher_is_better,
        family_size=family_size,
        minimum_units=minimum_units,
    )
    assert all(math.isfinite(x) for x in floats_in(verdict))
    assert 0.0 <= verdict.running_p_value <= 1.0
    if verdict.outcome is Outcome.INSUFFICIENT_DATA:
        assert verdict.reason and verdict.absolute is None and verdict.p_value is None
    else:
        assert verdict.absolute is not None and verdict.p_value is not None
        assert 0.0 <= verdict.p_value <= 1.0
        assert verdict.absolute.interval.contains(verdict.absolute.value)


# --- The confidence sequence and its p-value -----------------------------------------------


@FAST
@given(effects, st.floats(min_value=1e-3, max_value=1e12), alphas, tunings, alternatives)
def test_always_valid_p_values_lie_in_unit_interval_and_sequences_contain_the_estimate(
    effect: Effect, total_units: float, alpha: float, tuning: float, alternative: Alternative
) -> None:
    """p in [0, 1], and the confidence sequence contains the point estimate."""
    p_value = always_valid_p_value(
        effect, total_units=total_units, alpha=alpha, tuning=tuning, alternative=alternative
    )
    assert 0.0 <= p_value <= 1.0
    interval = confidence_sequence(
        effect, total_units=total_units, alpha=alpha, tuning=tuning, alternative=alternative
    )
    assert interval is not None and interval.contains(effect.estimate)


@FAST
@given(effects, st.floats(min_value=1, max_value=1e9), alphas, tunings, alternatives)
def test_the_p_value_reaches_alpha_exactly_when_the_sequence_excludes_zero(
    effect: Effect, total_units: float, alpha: float, tuning: float, alternative: Alternative
) -> None:
    """p <= α ⇔ the confidence sequence at α excludes 0 (away from the boundary itself)."""
    p_value = always_valid_p_value(
        effect, total_units=total_units, alpha=alpha, tuning=tuning, alternative=alternative
    )
    assume(not math.isclose(p_value, alpha, rel_tol=1e-6))
    interval = confidence_sequence(
        effect, total_units=total_units, alpha=alpha, tuning=tuning, alternative=alternative
    )
    assert interval is not None
    assert (p_value <= alpha) == interval.excludes(0.0)


@FAST
@given(effects, st.floats(min_value=1e-3, max_value=1e12), alphas, tunings)
def test_the_two_sided_p_value_ignores_which_arm_is_called_control(
    effect: Effect, total_units: float, alpha: float, tuning: float
) -> None:
    """Negating the effect (swapping arms) leaves the two-sided p-value unchanged."""
    swapped = Effect(estimate=-effect.estimate, standard_error=effect.standard_error)

    def p_value(of: Effect, alternative: Alternative) -> float:
        return always_valid_p_value(
            of, total_units=total_units, alpha=alpha, tuning=tuning, alternative=alternative
        )

    assert p_value(effect, Alternative.TWO_SIDED) == p_value(swapped, Alternative.TWO_SIDED)
    assert p_value(effect, Alternative.GREATER) == p_value(swapped, Alternative.LESS)


@FAST
@given(arm_pairs())
def test_fixed_horizon_two_sided_p_values_ignore_arm_order(
    pair: tuple[ArmSummary, ArmSummary],
) -> None:
    """Swapping control and treatment keeps Welch's and z's absolute two-sided p-values."""
    control, treatment = pair
    for test in (welch_t_test, z_test):
        forward, backward = test(control, treatment), test(treatment, control)
        assert (forward is None) == (backward is None)
        if forward is not None and backward is not None:
            assert forward.p_value == pytest.approx(backward.p_value, rel=1e-9, abs=1e-300)
            assert forward.effect.estimate == pytest.approx(-backward.effect.estimate)


@FAST
@given(arm_pairs(), st.booleans())
def test_a_two_sided_verdict_mirrors_when_the_arms_are_swapped(
    pair: tuple[ArmSummary, ArmSummary], higher_is_better: bool
) -> None:
    """Swapped arms: same p-value, and won becomes lost (and back)."""
    control, treatment = pair
    forward = judge(control, treatment, previous=None, higher_is_better=higher_is_better)
    backward = judge(treatment, control, previous=None, higher_is_better=higher_is_better)
    assert forward.p_value == backward.p_value
    mirrored = {Outcome.WON: Outcome.LOST, Outcome.LOST: Outcome.WON}
    assert backward.outcome is mirrored.get(forward.outcome, forward.outcome)


# --- Running minimum and reset ---------------------------------------------------------------


@FAST
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(-1, 1)), max_size=30))
def test_the_running_minimum_never_increases(looks: list[tuple[float, float]]) -> None:
    """Each look's state has a p-value no larger than the one before, and counts the look."""
    state = RunningMinimum(SequenceDesign())
    for polls, (p_value, estimate) in enumerate(looks, start=1):
        following = state.observe(p_value, estimate=estimate)
        assert following.p_value <= state.p_value
        assert following.p_value == min(state.p_value, p_value)
        assert following.polls == polls
        state = following


@FAST
@given(arm_pairs(), st.lists(st.floats(1.0, 3.0), min_size=2, max_size=6))
def test_verdicts_running_p_value_never_increases_within_a_phase(
    pair: tuple[ArmSummary, ArmSummary], growth: list[float]
) -> None:
    """Over growing samples the verdict's running p-value only goes down; one first crossing."""
    control, treatment = pair
    state, last, crossings = None, 1.0, 0
    for factor in growth:
        grown = [dataclasses.replace(arm, units=arm.units * factor) for arm in (control, treatment)]
        if control.kind is MetricKind.PROPORTION:
            grown = [dataclasses.replace(a, conversions=a.mean * a.units) for a in grown]
        verdict = judge(grown[0], grown[1], previous=state, phase="p1")
        assert verdict.running_p_value <= last
        crossings += verdict.is_first_crossing
        state, last = verdict.state, verdict.running_p_value
    assert crossings <= 1


@FAST
@given(st.floats(0, 1), st.text(max_size=5), st.text(max_size=5))
def test_a_new_phase_or_traffic_split_starts_a_new_minimum(
    p_value: float, phase: str, other_phase: str
) -> None:
    """resume() keeps the minimum for the same design and resets it on any design change."""
    design = SequenceDesign(phase=phase, weights=(0.5, 0.5))
    state = RunningMinimum(design).observe(p_value, estimate=1.0)
    assert resume(state, SequenceDesign(phase=phase, weights=(50.0, 50.0))) is state
    for changed in (
        SequenceDesign(phase=phase, weights=(0.6, 0.4)),
        SequenceDesign(phase=phase, weights=(0.5, 0.5), alpha=0.01),
        SequenceDesign(phase=phase, weights=(0.5, 0.5), tuning=10_000),
    ):
        assert resume(state, changed) == RunningMinimum(changed)
    if other_phase != phase:
        fresh = SequenceDesign(phase=other_phase, weights=(0.5, 0.5))
        assert resume(state, fresh) == RunningMinimum(fresh)


# --- SRM -------------------------------------------------------------------------------------

counts = st.lists(st.floats(0, 1e7), min_size=1, max_size=5)


@FAST
@given(counts, st.data())
def test_chi_square_srm_is_a_p_value_invariant_to_arm_order(
    users: list[float], data: st.DataObject
) -> None:
    """p in [0, 1], unchanged when variations and their weights are permuted together."""
    weights = data.draw(st.lists(st.floats(0, 1), min_size=len(users), max_size=len(users)))
    order = data.draw(st.permutations(range(len(users))))
    p_value = srm_chi_square_p_value(users, weights)
    assert 0.0 <= p_value <= 1.0
    permuted = srm_chi_square_p_value([users[i] for i in order], [weights[i] for i in order])
    assert permuted == pytest.approx(p_value, rel=1e-9, abs=1e-300)


@FAST
@given(counts, st.data())
def test_sequential_srm_is_a_p_value_invariant_to_arm_order(
    users: list[float], data: st.DataObject
) -> None:
    """1/BF in [0, 1], unchanged when variations and their weights are permuted together."""
    weights = data.draw(st.lists(st.floats(0, 1), min_size=len(users), max_size=len(users)))
    order = data.draw(st.permutations(range(len(users))))
    p_value = sequential_srm_p_value(users, weights)
    assert 0.0 <= p_value <= 1.0
    permuted = sequential_srm_p_value([users[i] for i in order], [weights[i] for i in order])
    assert permuted == pytest.approx(p_value, rel=1e-6, abs=1e-300)


@FAST
@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 5000)), min_size=1, max_size=10))
def test_sequential_srm_state_never_rises_and_resets_on_a_new_phase(
    days: list[tuple[int, int]],
) -> None:
    """The SRM running minimum only falls within a phase and starts at 1 in a new one."""
    state, cumulative = None, [0, 0]
    for a, b in days:
        cumulative = [cumulative[0] + a, cumulative[1] + b]
        following = observe_srm(state, users=cumulative, weights=[0.5, 0.5], phase="1")
        assert following.p_value <= (state.p_value if state else 1.0)
        state = following
    assert state is not None
    fresh = observe_srm(state, users=[10, 10], weights=[0.5, 0.5], phase="2")
    assert fresh.polls == 1 and fresh.p_value == 1.0


# --- Multiple testing ------------------------------------------------------------------------


@FAST
@given(st.lists(st.floats(0, 1), min_size=1, max_size=20))
def test_adjusted_p_values_are_ordered_bounded_and_never_below_the_raw_ones(
    p_values: list[float],
) -> None:
    """raw <= BH <= Holm <= Bonferroni <= 1, each in the input's order."""
    for raw, bh, hb, bf in zip(
        p_values,
        benjamini_hochberg(p_values),
        holm(p_values),
        bonferroni(p_values),
        strict=True,
    ):
        assert raw <= bh * (1 + 1e-12) and bh <= hb * (1 + 1e-12) and hb <= bf <= 1.0


# --- Verdict behaviour -----------------------------------------------------------------------


def conversion_arm(units: float, conversions: float) -> ArmSummary:
    arm = arm_from_conversions(units=units, conversions=conversions)
    assert arm is not None
    return arm


def test_too_few_units_give_insufficient_data_with_a_reason() -> None:
    """An arm under the minimum units yields no estimate and says why."""
    verdict = judge(conversion_arm(50, 10), conversion_arm(5000, 900), previous=None)
    assert verdict.outcome is Outcome.INSUFFICIENT_DATA
    assert verdict.reason == "the control has 50 units, fewer than the 100 required"


def test_too_few_conversions_give_insufficient_data_with_a_reason() -> None:
    """A proportion needs the minimum conversions (and non-conversions) in each arm."""
    verdict = judge(conversion_arm(1000, 100), conversion_arm(1000, 4), previous=None)
    assert verdict.outcome is Outcome.INSUFFICIENT_DATA
    assert verdict.reason == "the treatment has 4 conversions, fewer than the 10 required"


def test_a_constant_metric_gives_insufficient_data() -> None:
    """Zero variance in an arm is reported, not divided by."""
    constant = arm_from_mean(units=1000, mean=3.0, stddev=0.0)
    varying = arm_from_mean(units=1000, mean=3.5, stddev=1.0)
    verdict = judge(constant, varying, previous=None)
    assert verdict.outcome is Outcome.INSUFFICIENT_DATA
    assert verdict.reason == "an arm's values do not vary (zero variance)"


def run_polls(
    looks: list[tuple[ArmSummary | None, ArmSummary | None]], **options: Any
) -> list[SequentialVerdict]:
    verdicts, state = [], None
    for control, treatment in looks:
        verdict = judge(control, treatment, previous=state, **options)
        verdicts.append(verdict)
        state = verdict.state
    return verdicts


def test_a_clear_win_crosses_once_and_stays_won_for_the_phase() -> None:
    """The first crossing is flagged once; later polls keep the verdict, even without data."""
    control, strong = conversion_arm(20_000, 2000), conversion_arm(20_000, 2600)
    weak = conversion_arm(40_000, 4000)
    verdicts = run_polls([(control, strong), (control, weak), (None, weak)], phase="1")
    assert [v.outcome for v in verdicts] == [Outcome.WON] * 3
    assert [v.is_first_crossing for v in verdicts] == [True, False, False]
    assert verdicts[2].absolute is None and verdicts[2].reason


def test_a_drop_in_a_lower_is_better_metric_is_a_win() -> None:
    """Direction comes from the metric: a lower treatment mean wins when lower is better."""
    verdict = judge(
        conversion_arm(20_000, 2600),
        conversion_arm(20_000, 2000),
        previous=None,
        higher_is_better=False,
    )
    assert verdict.outcome is Outcome.WON
    assert verdict.absolute is not None and verdict.absolute.value < 0
    assert verdict.relative is not None and verdict.relative.value < 0


def test_a_guardrail_can_only_be_lost() -> None:
    """Guardrails test one side: a big improvement is inconclusive, a big harm is lost."""
    control = conversion_arm(20_000, 2000)
    improved = judge(control, conversion_arm(20_000, 2600), previous=None, role=Role.GUARDRAIL)
    harmed = judge(control, conversion_arm(20_000, 1400), previous=None, role=Role.GUARDRAIL)
    assert improved.outcome is Outcome.INCONCLUSIVE and improved.p_value == 1.0
    assert harmed.outcome is Outcome.LOST and harmed.is_first_crossing
    assert harmed.absolute is not None and harmed.absolute.interval.low is None


def test_a_new_phase_restarts_the_sequence() -> None:
    """After a crossing, a new phase begins inconclusive with a fresh running minimum."""
    control, strong = conversion_arm(20_000, 2000), conversion_arm(20_000, 2600)
    first = judge(control, strong, previous=None, phase="1")
    flat = judge(control, conversion_arm(20_000, 2010), previous=first.state, phase="2")
    assert first.outcome is Outcome.WON
    assert flat.outcome is Outcome.INCONCLUSIVE and flat.state.polls == 1
    assert flat.running_p_value == flat.p_value


def test_bonferroni_holds_each_test_to_its_share_of_alpha() -> None:
    """A result significant alone is not significant in a family of 20 goal tests."""
    control, treatment = conversion_arm(20_000, 2000), conversion_arm(20_000, 2220)
    alone = judge(control, treatment, previous=None)
    in_family = judge(control, treatment, previous=None, family_size=20)
    assert alone.outcome is Outcome.WON
    assert in_family.outcome is Outcome.INCONCLUSIVE
    assert in_family.state.design.alpha == pytest.approx(0.05 / 20)


def test_arms_of_different_kinds_are_refused() -> None:
    """Comparing a proportion with a mean is a programming error, said plainly."""
    with pytest.raises(ValueError, match="cannot compare"):
        judge(conversion_arm(1000, 100), arm_from_mean(units=1000, mean=1, stddev=1), previous=None)


def test_an_absolute_difference_needs_variance_in_both_arms() -> None:
    """Like GrowthBook, an arm without variance gives no effect at all."""
    empty = conversion_arm(1000, 0)
    assert absolute_difference(empty, conversion_arm(1000, 100)) is None
