"""Sample ratio mismatch: do the variations hold the share of users they were assigned?

Two tests, both on each variation's cumulative user count and expected traffic weight:

* `srm_chi_square_p_value` — Pearson's chi-square goodness of fit as GrowthBook's back end
  computes it (`checkSrm`): variations with zero weight or no count are dropped, the degrees of
  freedom are the remaining variations minus one, and the p-value is 1 when fewer than two
  variations or no users remain. Valid at one planned look only: checked at every poll at
  p < 0.001 it raises a false alarm in about 1.3% of healthy 60-poll experiments.
* `sequential_srm_p_value` — the sequential multinomial test of Lindon & Malek (Optimizely's
  `ssrm`, GrowthBook PR #5627): a Dirichlet(k·p0) alternative against Multinomial(p0) gives the
  Bayes factor ln BF = ln B(k·p0 + N) - ln B(k·p0) - Σ N_i ln p0_i (B the multivariate beta
  function), which depends only on the cumulative counts N. Its running minimum of 1/BF
  (`SequentialSrm`) is an anytime-valid p-value: under correct assignment it ever reaches α with
  probability at most α, however often it is checked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import chdtrc, gammaln

from .sequential import same_weights

DEFAULT_SRM_ALPHA = 0.001
"""GrowthBook's and Eppo's SRM threshold (`DEFAULT_SRM_THRESHOLD`)."""
DEFAULT_SRM_CONCENTRATION = 10_000.0
"""Dirichlet concentration k of the sequential test (`ssrm` and GrowthBook PR #5627)."""
MINIMUM_USERS_PER_VARIATION = 8
"""GrowthBook reports "not enough traffic" below this many users per variation."""

_CHI_SQUARE_CAP = 1e6  # chi-square statistics beyond this have p = 0 for any number of arms


def _usable_arms(
    users: Sequence[float | None], weights: Sequence[float]
) -> tuple[list[float], list[float]]:
    """Counts and weights of the variations that take part in an SRM test.

    A variation takes part when it has a finite, non-negative count and a finite, positive
    weight; the others are dropped, as GrowthBook drops zero weights and missing counts.
    """
    if len(users) != len(weights):
        raise ValueError(
            f"got {len(users)} user counts for {len(weights)} weights; give one of each per "
            "variation (None for a variation without a count)"
        )
    counts: list[float] = []
    shares: list[float] = []
    for count, weight in zip(users, weights, strict=True):
        if count is None or not math.isfinite(count) or count < 0:
            continue
        if not math.isfinite(weight) or weight <= 0:
            continue
        counts.append(count)
        shares.append(weight)
    return counts, shares


def srm_chi_square_p_values(counts: ArrayLike, weights: Sequence[float]) -> NDArray[np.float64]:
    """Chi-square SRM p-values for many looks at once.

    `counts` has the variations on its last axis, all of which take part (finite, non-negative
    counts; `weights` finite and positive). Looks without users get p = 1.
    """
    observed = np.asarray(counts, dtype=np.float64)
    shares = np.asarray(weights, dtype=np.float64)
    shares = shares / shares.sum()
    total = observed.sum(axis=-1)
    has_users = total > 0
    # Σ (O - E)²/E = total · Σ (O/total - share)²/share, kept finite for any counts and
    # weights: shares are floored at 1e-300 and the statistic capped where p is 0 anyway.
    gap = observed / np.where(has_users, total, 1.0)[..., None] - shares
    per_user = np.sum(gap * gap / np.maximum(shares, 1e-300), axis=-1)
    most_users = np.full_like(per_user, np.inf)
    np.divide(_CHI_SQUARE_CAP, per_user, out=most_users, where=per_user > 1e-290)
    statistic = per_user * np.minimum(total, most_users)
    p = np.where(has_users, chdtrc(shares.size - 1, statistic), 1.0)
    result: NDArray[np.float64] = np.clip(np.nan_to_num(p, nan=1.0), 0.0, 1.0)
    return result


def srm_chi_square_p_value(users: Sequence[float | None], weights: Sequence[float]) -> float:
    """GrowthBook's chi-square SRM p-value for cumulative `users` against expected `weights`."""
    counts, shares = _usable_arms(users, weights)
    total_users = math.fsum(counts)
    if len(counts) < 2 or not (math.isfinite(total_users) and total_users > 0):
        return 1.0
    return float(srm_chi_square_p_values(np.array(counts), shares))


def log_srm_bayes_factors(
    counts: ArrayLike,
    weights: Sequence[float],
    *,
    concentration: float = DEFAULT_SRM_CONCENTRATION,
) -> NDArray[np.float64]:
    """ln BF of the sequential SRM test for many looks at once, from cumulative counts.

    `counts` has the variations on its last axis, all of which take part (finite, non-negative
    counts; `weights` finite and positive).
    """
    if not (math.isfinite(concentration) and concentration > 0):
        raise ValueError(f"the Dirichlet concentration must be positive, got {concentration}")
    observed = np.asarray(counts, dtype=np.float64)
    null = np.asarray(weights, dtype=np.float64)
    null = np.maximum(null / null.sum(), 1e-300)  # a share that underflows stays positive
    prior = concentration * null
    posterior = prior + observed
    log_beta_posterior = np.sum(gammaln(posterior), axis=-1) - gammaln(posterior.sum(axis=-1))
    log_beta_prior = float(np.sum(gammaln(prior)) - gammaln(concentration))
    log_likelihood_null = observed @ np.log(null)
    log_bf = log_beta_posterior - log_beta_prior - log_likelihood_null
    result: NDArray[np.float64] = np.where(np.isfinite(log_bf), log_bf, 0.0)
    return result


def log_srm_bayes_factor(
    users: Sequence[float | None],
    weights: Sequence[float],
    *,
    concentration: float = DEFAULT_SRM_CONCENTRATION,
) -> float:
    """ln BF of "the split differs from `weights`" against "it matches", from cumulative counts.

    Returns 0.0 (no evidence either way) when fewer than two variations take part.
    """
    counts, shares = _usable_arms(users, weights)
    if len(counts) < 2:
        if not (math.isfinite(concentration) and concentration > 0):
            raise ValueError(f"the Dirichlet concentration must be positive, got {concentration}")
        return 0.0
    return float(log_srm_bayes_factors(np.array(counts), shares, concentration=concentration))


def sequential_srm_p_value(
    users: Sequence[float | None],
    weights: Sequence[float],
    *,
    concentration: float = DEFAULT_SRM_CONCENTRATION,
) -> float:
    """min(1, 1/BF) at this look alone; keep a `SequentialSrm` for the running minimum."""
    log_bf = log_srm_bayes_factor(users, weights, concentration=concentration)
    return math.exp(-log_bf) if log_bf > 0 else 1.0


@dataclass(frozen=True, slots=True)
class SequentialSrm:
    """The running minimum of the sequential SRM p-value within one phase and traffic split.

    Keep one per experiment between polls; `observe` with each snapshot's cumulative counts.
    """

    phase: str = ""
    weights: tuple[float, ...] = ()
    concentration: float = DEFAULT_SRM_CONCENTRATION
    p_value: float = 1.0
    """The smallest 1/BF seen so far (an anytime-valid p-value)."""
    polls: int = 0

    def continues(self, *, phase: str, weights: Sequence[float], concentration: float) -> bool:
        """Whether this minimum may go on for a snapshot with this phase, split and k."""
        return (
            self.phase == phase
            and math.isclose(self.concentration, concentration, rel_tol=1e-12)
            and same_weights(self.weights, weights)
        )

    def is_mismatch(self, alpha: float = DEFAULT_SRM_ALPHA) -> bool:
        """Whether the running minimum has reached `alpha`."""
        return self.p_value <= alpha


def observe_srm(
    previous: SequentialSrm | None,
    *,
    users: Sequence[float | None],
    weights: Sequence[float],
    phase: str = "",
    concentration: float = DEFAULT_SRM_CONCENTRATION,
) -> SequentialSrm:
    """The sequential SRM state after a snapshot with these cumulative `users` per variation.

    Starts afresh when `previous` is None or was kept for another phase, split or k.
    """
    if previous is None or not previous.continues(
        phase=phase, weights=weights, concentration=concentration
    ):
        previous = SequentialSrm(phase=phase, weights=tuple(weights), concentration=concentration)
    p_value = sequential_srm_p_value(users, weights, concentration=concentration)
    return SequentialSrm(
        phase=previous.phase,
        weights=previous.weights,
        concentration=previous.concentration,
        p_value=min(previous.p_value, p_value),
        polls=previous.polls + 1,
    )
