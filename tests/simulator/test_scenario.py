"""The scenario script and the statistics behind the fake platform's numbers."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from simulator import (
    Scenario,
    ScriptedExperiment,
    ScriptedMetric,
    ScriptedVariation,
    ScriptError,
    default_scenario,
)
from simulator.stats import (
    BinomialArm,
    StatsEngine,
    VariationAnalysis,
    analyze_variation,
    chi2_isf,
    chi2_sf,
    srm_p_value,
)

START = datetime(2026, 1, 1, tzinfo=UTC)


def _scenario(refresh_seconds: float = 60.0) -> Scenario:
    return default_scenario(start=START, refresh_seconds=refresh_seconds)


def _experiment(**changes: object) -> ScriptedExperiment:
    base = ScriptedExperiment(
        id="exp_test",
        name="Test",
        tracking_key="test",
        variations=(
            ScriptedVariation(id="var_a", key="0", name="Control"),
            ScriptedVariation(id="var_b", key="1", name="Treatment"),
        ),
        weights=(0.5, 0.5),
        goals=(ScriptedMetric(id="met_goal", name="Goal", control_rate=0.1),),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]  # test overrides


def _is_significant(experiment: ScriptedExperiment, index: int, variation: int = -1) -> bool:
    snapshot = experiment.snapshot_at(index)
    assert snapshot is not None
    metric = experiment.goal_metric.id
    j = variation % len(experiment.variations)
    analysis = analyze_variation(
        snapshot.arm(metric, 0), snapshot.arm(metric, j), engine=experiment.engine
    )
    if experiment.engine == "bayesian":
        return analysis.chance_to_beat_control > 0.95
    return analysis.p_value < 0.05


def _srm(experiment: ScriptedExperiment, index: int) -> float:
    snapshot = experiment.snapshot_at(index)
    assert snapshot is not None
    return srm_p_value(snapshot.users, experiment.weights)


# -- timeline -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed_seconds", "expected"),
    [(0.0, 0), (59.999, 0), (60.0, 1), (61.0, 1), (179.999999, 2), (180.0, 3), (630.0, 10)],
)
def test_refresh_index_is_the_number_of_whole_refreshes_since_the_start(
    elapsed_seconds: float, expected: int
) -> None:
    """The refresh index counts completed refresh periods, exactly at the boundaries."""
    now = START + timedelta(seconds=elapsed_seconds)
    assert _scenario().refresh_index(now) == expected


def test_refresh_index_is_zero_before_the_start() -> None:
    """A clock before the scenario start maps to refresh 0, never a negative index."""
    assert _scenario().refresh_index(START - timedelta(days=1)) == 0


def test_refresh_index_accepts_other_timezones_and_fractional_periods() -> None:
    """The index depends on the instant, not the clock's timezone, also for sub-second periods."""
    scenario = _scenario(refresh_seconds=0.25)
    now = (START + timedelta(seconds=1.0)).astimezone(timezone(timedelta(hours=-5)))
    assert scenario.refresh_index(now) == 4


def test_refresh_time_is_the_start_plus_whole_refreshes() -> None:
    """Refresh i happened at start + i * refresh_seconds."""
    assert _scenario().refresh_time(3) == START + timedelta(minutes=3)


def test_naive_datetimes_are_rejected() -> None:
    """Both the scenario start and the clock must be timezone-aware."""
    with pytest.raises(ValueError, match="timezone-aware"):
        default_scenario(start=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        _scenario().refresh_index(datetime(2026, 1, 1))


def test_non_positive_refresh_period_is_rejected() -> None:
    """A refresh period must be positive."""
    with pytest.raises(ValueError, match="refresh_seconds"):
        default_scenario(start=START, refresh_seconds=0.0)


def test_duplicate_experiment_ids_are_rejected() -> None:
    """Experiment ids identify experiments, so a scenario cannot repeat one."""
    with pytest.raises(ValueError, match="exp_test"):
        Scenario(start=START, refresh_seconds=60.0, experiments=(_experiment(), _experiment()))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"variations": (ScriptedVariation(id="v", key="0", name="Only"),)}, "two variations"),
        ({"weights": (1.0,)}, "1 weights for 2 variations"),
        ({"weights": (1.0, 0.0)}, "non-positive weight"),
        ({"goals": ()}, "goal metric"),
        ({"goals": (ScriptedMetric(id="m", name="M", control_rate=0.0),)}, "control_rate"),
        ({"users_per_refresh": 10}, "users_per_refresh"),
        ({"srm_from": -1}, "negative refresh index"),
    ],
)
def test_inconsistent_experiments_are_rejected(changes: dict[str, object], message: str) -> None:
    """A script that could not honour its own promises fails at construction."""
    with pytest.raises(ValueError, match=message):
        _experiment(**changes)


# -- the default scenario -------------------------------------------------------------------


def test_default_scenario_scripts_the_checkout_redesign_as_documented() -> None:
    """The scripted experiment's knobs are the ones the rest of the project relies on."""
    checkout = _scenario().experiment("exp_checkout_redesign")
    assert checkout is not None
    assert (checkout.first_results_at, checkout.significant_from, checkout.srm_from) == (1, 3, 6)
    assert checkout.engine == "bayesian"
    assert checkout.weights == (0.5, 0.5)
    assert (checkout.goal_metric.id, checkout.goal_metric.name) == ("met_conversion", "Conversion")
    assert checkout.snapshot_at(0) is None
    assert checkout.snapshot_at(1) is not None


def test_default_scenario_runs_a_second_experiment_that_stays_inconclusive_and_healthy() -> None:
    """exp_pricing_page runs with a healthy split and no significant metric for many refreshes."""
    pricing = _scenario().experiment("exp_pricing_page")
    assert pricing is not None
    assert pricing.status_at(50) == "running"
    for index in range(50):
        assert _srm(pricing, index) > 0.05
        snapshot = pricing.snapshot_at(index)
        assert snapshot is not None
        for metric in pricing.metrics:
            for j in range(1, len(pricing.variations)):
                control, arm = snapshot.arm(metric.id, 0), snapshot.arm(metric.id, j)
                assert analyze_variation(control, arm, engine="frequentist").p_value > 0.05


def test_snapshots_are_a_pure_function_of_the_refresh_index() -> None:
    """Two scenarios built alike report the same counts for the same refresh."""
    first = _scenario().experiment("exp_checkout_redesign")
    second = _scenario().experiment("exp_checkout_redesign")
    assert first is not None and second is not None
    assert first.snapshot_at(4) == second.snapshot_at(4)
    assert first.snapshot_at(4) != first.snapshot_at(5)


def test_cumulative_users_grow_with_every_refresh() -> None:
    """Each refresh adds users_per_refresh users to the cumulative total."""
    checkout = _scenario().experiment("exp_checkout_redesign")
    assert checkout is not None
    totals = [sum(s.users) for i in range(1, 10) if (s := checkout.snapshot_at(i))]
    assert totals == [checkout.users_per_refresh * k for k in range(1, 10)]


def test_stopped_experiments_freeze_their_last_results() -> None:
    """Once stopped, an experiment reports the analysis of the refresh it stopped at."""
    experiment = _experiment(stops_at=4, first_results_at=1)
    assert experiment.status_at(3) == "running"
    assert experiment.status_at(4) == "stopped"
    assert experiment.snapshot_at(9) == experiment.snapshot_at(4)
    assert experiment.snapshot_at(3) != experiment.snapshot_at(4)


def test_drafts_never_have_results() -> None:
    """A draft reports status draft and no snapshot at any refresh."""
    draft = _experiment(is_draft=True)
    assert draft.status_at(10) == "draft"
    assert all(draft.snapshot_at(i) is None for i in range(20))


# -- the script's promises ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine", "weights", "first_results_at", "significant_from", "srm_from"),
    [
        ("bayesian", (0.5, 0.5), 1, 3, 6),
        ("bayesian", (0.5, 0.5), 0, 12, 2),
        ("frequentist", (0.5, 0.5), 2, 5, None),
        ("frequentist", (0.4, 0.3, 0.3), 0, 7, 9),
        ("bayesian", (0.2, 0.8), 3, 1, 3),
        ("bayesian", (0.25, 0.25, 0.25, 0.25), 0, 4, 0),
    ],
)
def test_goal_and_srm_cross_their_thresholds_exactly_where_scripted(
    engine: StatsEngine,
    weights: tuple[float, ...],
    first_results_at: int,
    significant_from: int,
    srm_from: int | None,
) -> None:
    """Significance and SRM begin at their scripted refresh, not before, and then persist."""
    variations = tuple(
        ScriptedVariation(id=f"var_{i}", key=str(i), name=f"Arm {i}") for i in range(len(weights))
    )
    experiment = _experiment(
        engine=engine,
        variations=variations,
        weights=weights,
        first_results_at=first_results_at,
        significant_from=significant_from,
        srm_from=srm_from,
    )
    for index in range(first_results_at, 25):
        assert _is_significant(experiment, index) == (index >= significant_from), index
        is_srm = srm_from is not None and index >= srm_from
        assert (_srm(experiment, index) < 0.001) == is_srm, index
        if not is_srm:
            assert _srm(experiment, index) > 0.05, index
        for j in range(1, len(weights) - 1):
            assert not _is_significant(experiment, index, variation=j), (index, j)


@pytest.mark.parametrize("engine", ["bayesian", "frequentist"])
def test_unscripted_metrics_stay_inconclusive(engine: StatsEngine) -> None:
    """Without significant_from, no metric of any variation turns significant."""
    experiment = _experiment(engine=engine, weights=(0.5, 0.5))
    assert not any(_is_significant(experiment, i) for i in range(40))


# -- knobs: vanishing effects, guardrails, lifecycle, metrics, phases, no data ---------------


def _is_regressed(experiment: ScriptedExperiment, index: int) -> bool:
    """The first guardrail's last variation is significantly worse than the baseline."""
    snapshot = experiment.snapshot_at(index)
    assert snapshot is not None
    metric = experiment.guardrails[0].id
    analysis = analyze_variation(
        snapshot.arm(metric, 0), snapshot.arm(metric, -1), engine=experiment.engine
    )
    return _is_worse(analysis, experiment.engine)


def _is_worse(analysis: VariationAnalysis, engine: StatsEngine) -> bool:
    """A significant negative lift by GrowthBook's rule for `engine`."""
    if engine == "bayesian":
        significant = analysis.chance_to_beat_control < 0.05
    else:
        significant = analysis.p_value < 0.05
    return significant and analysis.percent_change < 0


GUARDRAIL = ScriptedMetric(id="met_guard", name="Guard", control_rate=0.3)


@pytest.mark.parametrize(
    ("engine", "first_results_at", "significant_from", "significant_until", "new_phase_at"),
    [
        ("bayesian", 1, 3, 7, None),
        ("frequentist", 0, 2, 3, None),
        ("bayesian", 0, 4, 12, 8),
        ("frequentist", 2, 3, 9, 6),
        ("bayesian", 0, 0, 5, None),
    ],
)
def test_significance_vanishes_exactly_at_significant_until(
    engine: StatsEngine,
    first_results_at: int,
    significant_from: int,
    significant_until: int,
    new_phase_at: int | None,
) -> None:
    """The goal is significant on [significant_from, significant_until), across a new phase."""
    experiment = _experiment(
        engine=engine,
        first_results_at=first_results_at,
        significant_from=significant_from,
        significant_until=significant_until,
        new_phase_at=new_phase_at,
    )
    for index in range(first_results_at, 25):
        expected = significant_from <= index < significant_until
        assert _is_significant(experiment, index) == expected, index


@pytest.mark.parametrize("engine", ["bayesian", "frequentist"])
def test_a_significant_goal_stays_significant_through_a_new_phase(engine: StatsEngine) -> None:
    """Counts restart with the phase, but the scripted effect holds from its first refresh."""
    experiment = _experiment(engine=engine, first_results_at=1, significant_from=3, new_phase_at=6)
    assert [_is_significant(experiment, i) for i in range(1, 15)] == [False] * 2 + [True] * 12


@pytest.mark.parametrize(
    ("engine", "weights", "first_results_at", "regresses_from", "srm_from", "new_phase_at"),
    [
        ("bayesian", (0.5, 0.5), 1, 5, None, None),
        ("frequentist", (0.5, 0.5), 0, 3, None, None),
        ("bayesian", (0.4, 0.3, 0.3), 0, 6, 2, None),
        ("frequentist", (0.2, 0.8), 2, 4, None, 9),
        ("bayesian", (0.5, 0.5), 0, 0, None, None),
        ("bayesian", (0.5, 0.5), 0, 10, None, 4),
    ],
)
def test_the_first_guardrail_regresses_exactly_at_guardrail_regresses_from(
    engine: StatsEngine,
    weights: tuple[float, ...],
    first_results_at: int,
    regresses_from: int,
    srm_from: int | None,
    new_phase_at: int | None,
) -> None:
    """Its last variation turns significantly worse at the scripted refresh and stays so."""
    variations = tuple(
        ScriptedVariation(id=f"var_{i}", key=str(i), name=f"Arm {i}") for i in range(len(weights))
    )
    experiment = _experiment(
        engine=engine,
        variations=variations,
        weights=weights,
        guardrails=(GUARDRAIL, ScriptedMetric(id="met_other", name="Other", control_rate=0.2)),
        first_results_at=first_results_at,
        guardrail_regresses_from=regresses_from,
        srm_from=srm_from,
        new_phase_at=new_phase_at,
    )
    for index in range(first_results_at, 25):
        assert _is_regressed(experiment, index) == (index >= regresses_from), index
        assert not _is_significant(experiment, index), index
        snapshot = experiment.snapshot_at(index)
        assert snapshot is not None
        other = analyze_variation(
            snapshot.arm("met_other", 0), snapshot.arm("met_other", -1), engine=engine
        )
        assert not _is_worse(other, engine), index


def test_starts_at_keeps_the_experiment_a_draft_until_then() -> None:
    """Draft without results before starts_at, running from it, results from first_results_at."""
    experiment = _experiment(starts_at=3, first_results_at=4)
    assert [experiment.status_at(i) for i in (0, 2, 3, 9)] == [
        "draft",
        "draft",
        "running",
        "running",
    ]
    assert [experiment.has_results_at(i) for i in (2, 3, 4)] == [False, False, True]
    snapshot = experiment.snapshot_at(4)
    assert snapshot is not None
    assert sum(snapshot.users) == experiment.users_per_refresh


def test_archiving_freezes_results_and_keeps_the_status() -> None:
    """From archived_at on the experiment is archived, its results frozen, its status as before."""
    experiment = _experiment(stops_at=4, archived_at=7)
    assert [experiment.is_archived_at(i) for i in (6, 7, 20)] == [False, True, True]
    assert experiment.status_at(9) == "stopped"
    running = _experiment(archived_at=5)
    assert running.status_at(9) == "running"
    assert running.snapshot_at(9) == running.snapshot_at(5) != running.snapshot_at(4)


def test_a_metric_is_analysed_only_from_its_added_at() -> None:
    """A metric with added_at is absent from the snapshots before that refresh."""
    late = ScriptedMetric(id="met_late", name="Late", control_rate=0.2, added_at=5)
    experiment = _experiment(secondary_metrics=(late,))
    assert [m.id for m in experiment.metrics_at(4)] == ["met_goal"]
    assert [m.id for m in experiment.metrics_at(5)] == ["met_goal", "met_late"]
    before, after = experiment.snapshot_at(4), experiment.snapshot_at(5)
    assert before is not None and after is not None
    assert set(before.conversions) == {"met_goal"}
    assert set(after.conversions) == {"met_goal", "met_late"}


def test_a_new_phase_restarts_the_counts_with_its_own_weights() -> None:
    """From new_phase_at: phase 1, counts from zero split by new_phase_weights, a healthy SRM."""
    experiment = _experiment(first_results_at=1, new_phase_at=6, new_phase_weights=(0.2, 0.8))
    assert [experiment.phase_at(i) for i in (5, 6, 12)] == [0, 1, 1]
    last_of_first = experiment.snapshot_at(5)
    first_of_second = experiment.snapshot_at(6)
    assert last_of_first is not None and first_of_second is not None
    assert (last_of_first.phase, first_of_second.phase) == (0, 1)
    assert sum(last_of_first.users) == 5 * experiment.users_per_refresh
    assert sum(first_of_second.users) == experiment.users_per_refresh
    assert first_of_second.users[1] > 3 * first_of_second.users[0]
    for index in range(6, 20):
        snapshot = experiment.snapshot_at(index)
        assert snapshot is not None
        assert srm_p_value(snapshot.users, experiment.phase_weights(1)) > 0.05
    assert experiment.snapshot_at(12, phase=0) == last_of_first
    assert experiment.snapshot_at(5, phase=1) is None


def test_no_data_between_removes_the_results_of_that_period() -> None:
    """Refreshes a..b-1 have no results; afterwards the cumulative counts carry on."""
    experiment = _experiment(no_data_between=(3, 5))
    assert [experiment.has_results_at(i) for i in range(7)] == [
        True,
        True,
        True,
        False,
        False,
        True,
        True,
    ]
    assert experiment.snapshot_at(4) is None
    after = experiment.snapshot_at(5)
    assert after is not None
    assert sum(after.users) == 6 * experiment.users_per_refresh


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"significant_until": 4}, "significant_until", "needs a significant_from"),
        (
            {"significant_from": 4, "significant_until": 4},
            "significant_until",
            "significant_from before it",
        ),
        ({"guardrail_regresses_from": 2}, "guardrail_regresses_from", "without guardrails"),
        (
            {
                "guardrails": (ScriptedMetric(id="met_rare", name="Rare", control_rate=0.001),),
                "guardrail_regresses_from": 2,
            },
            "guardrail_regresses_from",
            "too few",
        ),
        ({"no_data_between": (5, 5)}, "no_data_between", "must end after"),
        ({"no_data_between": (-1, 5)}, "no_data_between", "negative refresh index"),
        ({"starts_at": 2, "is_draft": True}, "starts_at", "never starts"),
        ({"starts_at": 2}, "first_results_at", "before it starts"),
        (
            {"starts_at": 2, "first_results_at": 2, "stops_at": 1},
            "stops_at",
            "before it starts",
        ),
        ({"new_phase_weights": (0.5, 0.5)}, "new_phase_weights", "without new_phase_at"),
        (
            {"new_phase_at": 3, "new_phase_weights": (1.0,)},
            "new_phase_weights",
            "1 weights for 2 variations",
        ),
        ({"new_phase_at": 0}, "new_phase_at", "after first_results_at"),
        ({"new_phase_at": 5, "stops_at": 5}, "new_phase_at", "before stops_at"),
        ({"new_phase_at": 5, "archived_at": 3}, "new_phase_at", "before archived_at"),
        ({"archived_at": -2}, "archived_at", "negative refresh index"),
        (
            {"secondary_metrics": (ScriptedMetric(id="met_goal", name="Again", control_rate=0.2),)},
            "secondary_metrics",
            "twice",
        ),
        (
            {"goals": (ScriptedMetric(id="met_g", name="G", control_rate=0.1, added_at=2),)},
            "goals",
            "from the start",
        ),
        (
            {"guardrails": (ScriptedMetric(id="met_r", name="R", control_rate=0.1, added_at=-1),)},
            "guardrails",
            "negative added_at",
        ),
    ],
)
def test_inconsistent_knobs_are_rejected_naming_the_field(
    changes: dict[str, object], field: str, message: str
) -> None:
    """A knob that contradicts the script raises ScriptError naming the field at fault."""
    with pytest.raises(ScriptError, match=message) as caught:
        _experiment(**changes)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)


# -- statistics -----------------------------------------------------------------------------


def test_analysis_reproduces_growthbooks_reference_numbers() -> None:
    """GrowthBook's own fixture (2314 vs 2064 users) gives its lift, interval, CTW and risk."""
    control = BinomialArm(users=2314, conversions=1746)
    treatment = BinomialArm(users=2064, conversions=1370)
    analysis = analyze_variation(control, treatment, engine="bayesian")
    assert analysis.percent_change == pytest.approx(-0.120309, abs=1e-6)
    assert analysis.ci_low == pytest.approx(-0.154184, abs=1e-6)
    assert analysis.ci_high == pytest.approx(-0.086434, abs=1e-6)
    assert analysis.chance_to_beat_control == pytest.approx(1.69e-12, rel=0.01)
    assert analysis.risk == pytest.approx(0.120309, abs=1e-6)
    assert treatment.stddev == pytest.approx(0.472422, abs=1e-6)
    assert srm_p_value([2314, 2064], [0.5, 0.5]) == pytest.approx(0.00015787, rel=1e-4)


def test_frequentist_p_value_is_two_sided() -> None:
    """A drop in conversion is as detectable as a rise; frequentist runs report no CTW or risk."""
    control = BinomialArm(users=10000, conversions=1000)
    up = analyze_variation(
        control, BinomialArm(users=10000, conversions=1080), engine="frequentist"
    )
    down = analyze_variation(
        control, BinomialArm(users=10000, conversions=920), engine="frequentist"
    )
    # By hand: lift +0.08, se 0.044868 -> z 1.783; lift -0.08, se 0.039964 -> z -2.002.
    assert up.p_value == pytest.approx(0.0746, abs=0.0005)
    assert down.p_value == pytest.approx(0.0453, abs=0.0005)
    assert (up.chance_to_beat_control, up.risk) == (0.0, 0.0)


def test_zero_variance_gives_growthbooks_no_information_answer() -> None:
    """With no conversions at all the lift is 0 and the chance to beat control 0.5."""
    control = BinomialArm(users=1000, conversions=0)
    analysis = analyze_variation(control, BinomialArm(users=1000, conversions=0), engine="bayesian")
    assert (analysis.percent_change, analysis.ci_low, analysis.ci_high) == (0.0, 0.0, 0.0)
    assert analysis.chance_to_beat_control == 0.5


@pytest.mark.parametrize(
    ("x", "df", "p"),
    [
        (3.841459, 1, 0.05),
        (5.991465, 2, 0.05),
        (7.814728, 3, 0.05),
        (9.487729, 4, 0.05),
        (11.070498, 5, 0.05),
        (10.827566, 1, 0.001),
        (13.815511, 2, 0.001),
        (29.588298, 10, 0.001),
    ],
)
def test_chi2_survival_function_matches_table_quantiles(x: float, df: int, p: float) -> None:
    """chi2_sf agrees with published chi-square critical values for odd and even df."""
    assert chi2_sf(x, df) == pytest.approx(p, rel=1e-5)
    assert chi2_isf(p, df) == pytest.approx(x, rel=1e-5)


def test_srm_p_value_is_one_for_an_exact_split_and_drops_zero_weight_arms() -> None:
    """A split matching the weights passes; arms with weight 0 do not count."""
    assert srm_p_value([600, 400], [0.6, 0.4]) == pytest.approx(1.0)
    assert srm_p_value([500, 500, 37], [0.5, 0.5, 0.0]) == pytest.approx(1.0)
    assert srm_p_value([10, 0], [1.0, 0.0]) == 1.0
    assert srm_p_value([5200, 4800], [0.5, 0.5]) < 0.001


def test_an_experiment_refreshed_every_kth_refresh_keeps_its_results_in_between() -> None:
    """`refresh_every=3`: the analysis (and so the upstream version) changes at 0, 3, 6 only."""
    experiment = _experiment(refresh_every=3)
    analysed = [experiment.analysed_index(i) for i in range(8)]
    assert analysed == [0, 0, 0, 3, 3, 3, 6, 6]
    assert experiment.snapshot_at(4) == experiment.snapshot_at(3)
    assert experiment.snapshot_at(6) != experiment.snapshot_at(5)
    with pytest.raises(ValueError, match="refresh_every"):
        _experiment(refresh_every=0)
