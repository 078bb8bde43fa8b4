"""Corrections for testing many metrics × variations at once.

* Bonferroni (`bonferroni`, `bonferroni_level`) is the one to use on always-valid p-values:
  with m tests each held to α/m, the chance that any of them ever raises a false alert is at
  most α by the union bound, whatever the dependence between them and however often they are
  looked at. The watcher's default family is the goal metrics × treatment variations
  (GrowthBook corrects goal metrics only, never guardrails).
* Holm (family-wise) and Benjamini-Hochberg (false discovery rate) are for the fixed-horizon
  view of one snapshot, as GrowthBook offers them (`adjustPValuesHolmBonferroni`,
  `adjustPValuesBenjaminiHochberg`). Applying them to always-valid p-values poll after poll is
  not known to keep their guarantee.

Every function returns adjusted p-values in the order it was given them, each in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence


def _checked(p_values: Sequence[float]) -> list[float]:
    values = [float(p) for p in p_values]
    for p in values:
        if not 0.0 <= p <= 1.0:  # also rejects NaN
            raise ValueError(f"p-values must lie in [0, 1], got {p}")
    return values


def bonferroni_level(alpha: float, family_size: int) -> float:
    """The level each of `family_size` tests is held to so the family keeps `alpha`."""
    if family_size < 1:
        raise ValueError(f"a family has at least one test, got {family_size}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return alpha / family_size


def bonferroni(p_values: Sequence[float]) -> list[float]:
    """Bonferroni-adjusted p-values: min(1, m·p)."""
    values = _checked(p_values)
    m = len(values)
    return [min(1.0, m * p) for p in values]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (controls the family-wise error rate)."""
    values = _checked(p_values)
    m = len(values)
    order = sorted(range(m), key=lambda i: values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * values[index]))
        adjusted[index] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg step-up adjusted p-values (controls the false discovery rate)."""
    values = _checked(p_values)
    m = len(values)
    order = sorted(range(m), key=lambda i: values[i], reverse=True)
    adjusted = [0.0] * m
    running = 1.0
    for position, index in enumerate(order):
        rank = m - position  # 1-based rank of this p-value from the smallest
        running = min(running, min(1.0, values[index] * m / rank))
        adjusted[index] = running
    return adjusted
