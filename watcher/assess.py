"""Our own verdicts on a snapshot: the anytime-valid statistics of `watcher.stats`, applied
per metric × variation and to the traffic split, resuming the state the previous snapshot
of the same experiment carries."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from store import (
    Experiment,
    MetricResult,
    MetricRole,
    OurSrm,
    OurVerdict,
    Snapshot,
    VariationResult,
    Verdict,
)

from .stats import (
    DEFAULT_ALPHA,
    DEFAULT_MINIMUM_CONVERSIONS,
    DEFAULT_MINIMUM_UNITS,
    DEFAULT_SRM_ALPHA,
    DEFAULT_SRM_CONCENTRATION,
    DEFAULT_TUNING,
    MINIMUM_USERS_PER_VARIATION,
    Alternative,
    ArmSummary,
    Outcome,
    Role,
    RunningMinimum,
    SequenceDesign,
    SequentialSrm,
    arm_from_conversions,
    arm_from_mean,
    judge,
    observe_srm,
    srm_chi_square_p_value,
)

PROPORTION_TOLERANCE = 1e-6


@dataclass(frozen=True, kw_only=True)
class StatsPolicy:
    """The statistical settings of the watcher (see config.example.toml, [watcher])."""

    alpha: float = DEFAULT_ALPHA
    tuning: float = DEFAULT_TUNING
    srm_alpha: float = DEFAULT_SRM_ALPHA
    srm_concentration: float = DEFAULT_SRM_CONCENTRATION
    minimum_units: float = DEFAULT_MINIMUM_UNITS
    minimum_conversions: float = DEFAULT_MINIMUM_CONVERSIONS


def assess(
    experiment: Experiment,
    previous: Snapshot | None,
    current: Snapshot,
    *,
    policy: StatsPolicy,
) -> Snapshot:
    """`current` with our verdict on every variation of every metric and our SRM check."""
    weights = _weights(experiment)
    treatments = max(0, len(experiment.variations) - 1) or max(
        (len(m.variations) - 1 for m in current.metrics), default=0
    )
    goals = sum(1 for m in current.metrics if m.role is MetricRole.GOAL)
    family = max(1, goals * treatments)
    metrics = tuple(
        _assess_metric(
            metric,
            previous.metric(metric.metric_id) if previous else None,
            phase=current.phase,
            weights=weights,
            family_size=1 if metric.role is MetricRole.GUARDRAIL else family,
            policy=policy,
        )
        for metric in current.metrics
    )
    return current.model_copy(
        update={
            "metrics": metrics,
            "our_srm": _assess_srm(experiment, previous, current, weights, policy=policy),
        }
    )


def _weights(experiment: Experiment) -> tuple[float, ...]:
    weights = [v.weight for v in experiment.variations]
    if not weights or any(w is None for w in weights):
        return ()
    return tuple(float(w) for w in weights if w is not None)


def _assess_metric(
    metric: MetricResult,
    previous: MetricResult | None,
    *,
    phase: str,
    weights: tuple[float, ...],
    family_size: int,
    policy: StatsPolicy,
) -> MetricResult:
    if not metric.variations:
        return metric
    control = next(
        (v for v in metric.variations if v.platform_verdict is Verdict.BASELINE),
        metric.variations[0],
    )
    control_arm = _arm(control)
    role = Role(metric.role.value)
    variations = []
    for v in metric.variations:
        if v is control:
            variations.append(v)
            continue
        before = previous.variation(v.variation_id) if previous else None
        state = _running_state(before.ours if before else None)
        treatment_arm = _arm(v)
        if (
            control_arm is not None
            and treatment_arm is not None
            and control_arm.kind is not treatment_arm.kind
        ):
            treatment_arm = None  # an arm the platform described differently: do not judge
        verdict = judge(
            control_arm,
            treatment_arm,
            previous=state,
            phase=phase,
            weights=weights,
            role=role,
            higher_is_better=metric.higher_is_better,
            alpha=policy.alpha,
            family_size=family_size,
            tuning=policy.tuning,
            minimum_units=policy.minimum_units,
            minimum_conversions=policy.minimum_conversions,
        )
        absolute, relative = verdict.absolute, verdict.relative
        ours = OurVerdict(
            verdict=None
            if verdict.outcome is Outcome.INSUFFICIENT_DATA
            else Verdict(verdict.outcome.value),
            absolute_change=absolute.value if absolute else None,
            absolute_ci_low=_finite(absolute.interval.low) if absolute else None,
            absolute_ci_high=_finite(absolute.interval.high) if absolute else None,
            relative_change=relative.value if relative else None,
            relative_ci_low=_finite(relative.interval.low) if relative else None,
            relative_ci_high=_finite(relative.interval.high) if relative else None,
            p_value=verdict.p_value,
            running_p_value=verdict.running_p_value,
            alpha=verdict.alpha,
            reason=verdict.reason,
            state=_state_record(verdict.state),
        )
        variations.append(v.model_copy(update={"ours": ours}))
    return metric.model_copy(update={"variations": tuple(variations)})


def _arm(v: VariationResult) -> ArmSummary | None:
    """Per-arm statistics from what the platform reported: conversions when the metric is a
    proportion (its standard deviation is that of a Bernoulli mean), else mean and spread."""
    if v.mean is None or v.stddev is None or v.users <= 0:
        return None
    is_proportion = (
        v.numerator is not None
        and 0.0 <= v.mean <= 1.0
        and math.isclose(v.stddev, math.sqrt(v.mean * (1 - v.mean)), abs_tol=PROPORTION_TOLERANCE)
    )
    if is_proportion and v.numerator is not None:
        return arm_from_conversions(units=v.users, conversions=v.numerator)
    return arm_from_mean(units=v.users, mean=v.mean, stddev=v.stddev)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _state_record(state: RunningMinimum) -> dict[str, Any]:
    d = state.design
    return {
        "phase": d.phase,
        "weights": list(d.weights),
        "alpha": d.alpha,
        "tuning": d.tuning,
        "alternative": d.alternative.value,
        "p_value": state.p_value,
        "polls": state.polls,
        "estimate_sign": state.estimate_sign,
    }


def _running_state(ours: OurVerdict | None) -> RunningMinimum | None:
    """The running minimum the previous snapshot ended with (None: start afresh)."""
    s = ours.state if ours else None
    if not s:
        return None
    try:
        design = SequenceDesign(
            phase=str(s["phase"]),
            weights=tuple(float(w) for w in s["weights"]),
            alpha=float(s["alpha"]),
            tuning=float(s["tuning"]),
            alternative=Alternative(s["alternative"]),
        )
        return RunningMinimum(
            design=design,
            p_value=float(s["p_value"]),
            polls=int(s["polls"]),
            estimate_sign=int(s["estimate_sign"]),
        )
    except (KeyError, TypeError, ValueError):
        return None  # written by another version: start a new sequence


def _assess_srm(
    experiment: Experiment,
    previous: Snapshot | None,
    current: Snapshot,
    weights: tuple[float, ...],
    *,
    policy: StatsPolicy,
) -> OurSrm | None:
    if not weights or not current.metrics:
        return None
    by_id = {v.variation_id: v.users for v in current.metrics[0].variations}
    users = [by_id.get(v.variation_id) for v in experiment.variations]
    counted = [u for u in users if u is not None]
    if len(counted) < 2 or sum(counted) < MINIMUM_USERS_PER_VARIATION * len(users):
        return None
    before = previous.our_srm if previous else None
    state = observe_srm(
        _srm_state(before),
        users=users,
        weights=weights,
        phase=current.phase,
        concentration=policy.srm_concentration,
    )
    return OurSrm(
        p_value=state.p_value,
        chi_square_p_value=srm_chi_square_p_value(users, weights),
        alpha=policy.srm_alpha,
        state={
            "phase": state.phase,
            "weights": list(state.weights),
            "concentration": state.concentration,
            "p_value": state.p_value,
            "polls": state.polls,
        },
    )


def _srm_state(before: OurSrm | None) -> SequentialSrm | None:
    s = before.state if before else None
    if not s:
        return None
    try:
        return SequentialSrm(
            phase=str(s["phase"]),
            weights=tuple(float(w) for w in s["weights"]),
            concentration=float(s["concentration"]),
            p_value=float(s["p_value"]),
            polls=int(s["polls"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
