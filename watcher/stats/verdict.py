"""Our verdict on one metric × variation at one poll, valid however often we poll.

`judge` decides on the ABSOLUTE difference with the anytime-valid confidence sequence and the
running minimum of its p-value; the relative lift is computed beside it for display only (in A/A
simulation, decisions on the relative lift exceeded α at small samples). Goal and secondary
metrics get a two-sided test; guardrails a one-sided test in the harmful direction that can
only be lost. With a family of m tests each is held to α/m (Bonferroni), so the chance of any
false alert in the family over the whole phase stays at most α.

Between polls keep the returned `state` per metric × variation and pass it back as `previous`;
a new phase, new traffic weights or a change of level, N* or role starts a new sequence. Once
the running minimum crosses the threshold the verdict stays won or lost for the phase, and
`is_first_crossing` is true at exactly one poll: the one to alert on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from .arms import ArmSummary, MetricKind
from .effects import (
    DEFAULT_ALPHA,
    Alternative,
    Effect,
    Interval,
    absolute_difference,
    relative_lift,
)
from .multiple import bonferroni_level
from .sequential import (
    DEFAULT_TUNING,
    RunningMinimum,
    SequenceDesign,
    always_valid_p_value,
    confidence_sequence,
    resume,
)

DEFAULT_MINIMUM_UNITS = 100.0
"""Units each arm needs before any verdict."""
DEFAULT_MINIMUM_CONVERSIONS = 10.0
"""Conversions, and as many non-conversions, each arm of a proportion needs before a verdict."""


class Outcome(StrEnum):
    """What our statistics say about a variation against the control for one metric."""

    WON = "won"
    LOST = "lost"
    INCONCLUSIVE = "inconclusive"
    INSUFFICIENT_DATA = "insufficient_data"

    @property
    def is_significant(self) -> bool:
        return self in (Outcome.WON, Outcome.LOST)


class Role(StrEnum):
    """A metric's role in the experiment (the same words as `store.MetricRole`)."""

    GOAL = "goal"
    SECONDARY = "secondary"
    GUARDRAIL = "guardrail"


@dataclass(frozen=True, slots=True)
class Estimate:
    """An effect with its anytime-valid confidence sequence at this poll."""

    value: float
    standard_error: float
    interval: Interval


@dataclass(frozen=True, slots=True)
class SequentialVerdict:
    """Our verdict at one poll, with the numbers behind it and the state for the next poll."""

    outcome: Outcome
    absolute: Estimate | None
    """Treatment minus control, the difference decisions are made on."""
    relative: Estimate | None
    """(treatment - control) / |control|, shown beside it; None with a zero control mean."""
    p_value: float | None
    """This poll's always-valid p-value, Bonferroni-adjusted to compare with `alpha`."""
    running_p_value: float
    """The smallest adjusted p-value of the phase so far; the verdict crosses at <= `alpha`."""
    alpha: float
    """The family's level (before the Bonferroni split)."""
    is_first_crossing: bool
    """True at the one poll where the running p-value first reached `alpha` in this design."""
    state: RunningMinimum
    """Pass back as `previous` at the next poll of this metric × variation."""
    reason: str | None = None
    """Why there is no estimate at this poll (insufficient data), for people to read."""


def _alternative(role: Role, higher_is_better: bool) -> Alternative:
    if role is not Role.GUARDRAIL:
        return Alternative.TWO_SIDED
    return Alternative.LESS if higher_is_better else Alternative.GREATER


def _shortfall(
    name: str, arm: ArmSummary | None, *, minimum_units: float, minimum_conversions: float
) -> str | None:
    """Why `arm` cannot be judged yet, or None when it can."""
    if arm is None:
        return f"the {name} has no usable numbers"
    if arm.units < minimum_units:
        return f"the {name} has {arm.units:g} units, fewer than the {minimum_units:g} required"
    if arm.kind is MetricKind.PROPORTION:
        conversions = arm.conversions or 0.0
        fewest = min(conversions, arm.units - conversions)
        if fewest < minimum_conversions:
            which = "conversions" if conversions <= arm.units - conversions else "non-conversions"
            return (
                f"the {name} has {fewest:g} {which}, fewer than the {minimum_conversions:g} "
                "required"
            )
    return None


def _adjusted(p_value: float, family_size: int) -> float:
    return min(1.0, p_value * family_size)


def judge(
    control: ArmSummary | None,
    treatment: ArmSummary | None,
    *,
    previous: RunningMinimum | None,
    phase: str = "",
    weights: Sequence[float] = (),
    role: Role = Role.GOAL,
    higher_is_better: bool = True,
    alpha: float = DEFAULT_ALPHA,
    family_size: int = 1,
    tuning: float = DEFAULT_TUNING,
    minimum_units: float = DEFAULT_MINIMUM_UNITS,
    minimum_conversions: float = DEFAULT_MINIMUM_CONVERSIONS,
) -> SequentialVerdict:
    """Our verdict on `treatment` against `control` at this poll.

    `family_size` is the number of tests sharing `alpha` by Bonferroni (goal metrics ×
    treatment variations by default; 1 for guardrails, which GrowthBook never corrects).
    `phase` and `weights` identify the design: when either differs from the one `previous` was
    kept for, the running minimum starts again. A None arm (no numbers in this snapshot), too
    few units or conversions, or zero variance give `Outcome.INSUFFICIENT_DATA` with a
    `reason` — unless the phase has already crossed, whose verdict stands.
    """
    if control is not None and treatment is not None and control.kind is not treatment.kind:
        raise ValueError(f"cannot compare a {control.kind} arm with a {treatment.kind} arm")
    level = bonferroni_level(alpha, family_size)
    alternative = _alternative(role, higher_is_better)
    design = SequenceDesign(
        phase=phase, weights=tuple(weights), alpha=level, tuning=tuning, alternative=alternative
    )
    state = resume(previous, design)
    crossed_before = state.is_below(level)

    reason = _shortfall(
        "control", control, minimum_units=minimum_units, minimum_conversions=minimum_conversions
    ) or _shortfall(
        "treatment",
        treatment,
        minimum_units=minimum_units,
        minimum_conversions=minimum_conversions,
    )
    effect = None
    if reason is None and control is not None and treatment is not None:
        effect = absolute_difference(control, treatment)
        if effect is None:
            reason = "an arm's values do not vary (zero variance)"
    if effect is None or control is None or treatment is None:
        return SequentialVerdict(
            outcome=_latched(state, level, alternative, higher_is_better)
            if crossed_before
            else Outcome.INSUFFICIENT_DATA,
            absolute=None,
            relative=None,
            p_value=None,
            running_p_value=_adjusted(state.p_value, family_size),
            alpha=alpha,
            is_first_crossing=False,
            state=state,
            reason=reason,
        )

    total_units = control.units + treatment.units
    p_value = always_valid_p_value(
        effect, total_units=total_units, alpha=level, tuning=tuning, alternative=alternative
    )
    state = state.observe(p_value, estimate=effect.estimate)
    crossed = state.is_below(level)
    return SequentialVerdict(
        outcome=_latched(state, level, alternative, higher_is_better)
        if crossed
        else Outcome.INCONCLUSIVE,
        absolute=_estimate(effect, design, total_units),
        relative=_estimate(relative_lift(control, treatment), design, total_units),
        p_value=_adjusted(p_value, family_size),
        running_p_value=_adjusted(state.p_value, family_size),
        alpha=alpha,
        is_first_crossing=crossed and not crossed_before,
        state=state,
    )


def _latched(
    state: RunningMinimum, level: float, alternative: Alternative, higher_is_better: bool
) -> Outcome:
    """The outcome of a sequence whose running minimum has crossed `level`."""
    if not state.is_below(level):
        return Outcome.INCONCLUSIVE
    if alternative is Alternative.GREATER:
        increased = True
    elif alternative is Alternative.LESS:
        increased = False
    else:
        increased = state.estimate_sign > 0
    return Outcome.WON if increased == higher_is_better else Outcome.LOST


def _estimate(effect: Effect | None, design: SequenceDesign, total_units: float) -> Estimate | None:
    if effect is None:
        return None
    interval = confidence_sequence(
        effect,
        total_units=total_units,
        alpha=design.alpha,
        tuning=design.tuning,
        alternative=design.alternative,
    )
    if interval is None or not math.isfinite(effect.estimate):
        return None
    return Estimate(value=effect.estimate, standard_error=effect.standard_error, interval=interval)
