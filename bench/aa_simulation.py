"""Benchmark: how often a polling watcher raises false "significant" and SRM alerts.

Seeded simulations of experiments polled N times (default 60), comparing on the same data
  - naive: a fixed-horizon z test at p < 0.05 at every poll, every metric (the baseline,
    measured in this run),
  - ours: the always-valid p-value of the asymptotic confidence sequence (absolute difference,
    N* = 5000), running minimum over polls, Bonferroni across a family of goal metrics,
  - for reference, the fixed-horizon test looked at once, at the last poll (Bonferroni too),
for a Bernoulli metric (p = 0.10) and a skewed revenue metric (90% zeros, else
lognormal(3, 1.5)): the share of A/A runs ever alerted (one metric, and the family) and, for
A/B, the power on the metric with a true lift and the median poll of detection. Then SRM in a
50/50 experiment: chi-square at p < 0.001 at every poll vs the sequential SRM test (k = 10 000)
at alpha = 0.001, on A/A (false alarms) and on a true 50.5/49.5 split (power).

The last line is `RESULT name=value ...` with the headline figures: false-alert shares are the
worse of the two metric models.

    .venv/bin/python bench/aa_simulation.py [--runs N] [--polls N] [--seed N]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from watcher.stats.simulation import (
    FirstAlerts,
    MetricModel,
    RuleSummary,
    simulate_effect_alerts,
    simulate_srm_alerts,
)

ALPHA = 0.05
SRM_ALPHA = 0.001
LIFTS = {MetricModel.BERNOULLI: 0.08, MetricModel.REVENUE: 0.25}
DESCRIPTIONS = {
    MetricModel.BERNOULLI: "Bernoulli metric, p = 0.10",
    MetricModel.REVENUE: "revenue metric, 90% zeros else lognormal(3, 1.5)",
}


def margin(share: float, runs: int) -> float:
    """Half-width of a 95% Monte-Carlo interval for a share over `runs` runs."""
    return 1.96 * math.sqrt(max(share * (1 - share), 1e-12) / runs)


def share_text(summary: RuleSummary) -> str:
    share, runs = summary.alert_share, summary.runs
    if share == 0:
        return f"0 (95% < {3 / runs:.5f})".ljust(18)  # the rule of three
    return f"{share:.4f} ± {margin(share, runs):.4f}".ljust(18)


def polls_text(summary: RuleSummary) -> str:
    return "-" if summary.median_polls is None else f"{summary.median_polls:g}"


def ratio(ours: float, naive: float) -> str:
    return "n/a" if naive == 0 else f"{ours / naive:.3f}"


def summaries(alerts: FirstAlerts) -> dict[str, RuleSummary]:
    return {
        "naive": RuleSummary.of(alerts.naive),
        "final": RuleSummary.of(alerts.final_only),
        "ours": RuleSummary.of(alerts.ours),
    }


def run_metric(
    model: MetricModel, args: argparse.Namespace, seeds: np.random.SeedSequence
) -> dict[str, dict[str, RuleSummary]]:
    aa_seed, family_seed, ab_seed = seeds.spawn(3)
    common = {"model": model, "runs": args.runs, "polls": args.polls, "alpha": ALPHA}
    common["users_per_poll"] = args.users
    lift = LIFTS[model]
    results = {
        "aa_one": summaries(
            simulate_effect_alerts(np.random.default_rng(aa_seed), metrics=1, **common)
        ),
        "aa_family": summaries(
            simulate_effect_alerts(
                np.random.default_rng(family_seed), metrics=args.metrics, **common
            )
        ),
        "ab": summaries(
            simulate_effect_alerts(
                np.random.default_rng(ab_seed),
                metrics=1,
                family_size=args.metrics,
                lift=lift,
                **common,
            )
        ),
    }
    print(
        f"\n{DESCRIPTIONS[model]}: {args.users} users/arm/poll, {args.polls} polls, "
        f"{args.runs} runs per column"
    )
    print(
        f"  {'rule':<44}{'A/A one metric':<20}{f'A/A {args.metrics} metrics':<20}"
        f"{f'A/B power (+{lift:.0%})':<20}median polls"
    )
    labels = {
        "naive": "naive: z test p<0.05 at every poll",
        "final": "fixed horizon, last poll only, p<0.05/m",
        "ours": "ours: CS running min <= 0.05/m",
    }
    for rule, label in labels.items():
        ab = results["ab"][rule]
        print(
            f"  {label:<44}{share_text(results['aa_one'][rule])}  "
            f"{share_text(results['aa_family'][rule])}  "
            f"{share_text(ab)}  {polls_text(ab)}"
        )
    print(
        f"  (m = tests sharing alpha: 1 in the one-metric column, {args.metrics} otherwise; the "
        f"A/B metric is one of {args.metrics})"
    )
    naive, ours = results["aa_one"]["naive"], results["aa_one"]["ours"]
    family_naive, family_ours = results["aa_family"]["naive"], results["aa_family"]["ours"]
    print(
        f"  ours / naive false-alert share: one metric {ratio(ours.alert_share, naive.alert_share)}"
        f", family {ratio(family_ours.alert_share, family_naive.alert_share)}"
    )
    return results


def run_srm(args: argparse.Namespace, seeds: np.random.SeedSequence) -> dict[str, FirstAlerts]:
    aa_seed, ab_seed = seeds.spawn(2)
    runs = args.srm_runs or 5 * args.runs
    common = {"runs": runs, "polls": args.polls, "users_per_poll": args.srm_users}
    common["alpha"] = SRM_ALPHA
    aa = simulate_srm_alerts(np.random.default_rng(aa_seed), control_share=0.5, **common)
    ab = simulate_srm_alerts(np.random.default_rng(ab_seed), control_share=0.505, **common)
    print(
        f"\nSRM in a 50/50 experiment: {args.srm_users} users/poll, {args.polls} polls, "
        f"{runs} runs per column"
    )
    print(f"  {'rule':<44}{'A/A false alarms':<20}{'power at 50.5/49.5':<20}median polls")
    rows = {
        "naive: chi-square p<0.001 at every poll": (aa.naive, ab.naive),
        "chi-square, last poll only, p<0.001": (aa.final_only, ab.final_only),
        "ours: sequential SRM (k=10000) <= 0.001": (aa.ours, ab.ours),
    }
    for label, (aa_alerts, ab_alerts) in rows.items():
        power = RuleSummary.of(ab_alerts)
        print(
            f"  {label:<44}{share_text(RuleSummary.of(aa_alerts))}  {share_text(power)}  "
            f"{polls_text(power)}"
        )
    naive, ours = RuleSummary.of(aa.naive), RuleSummary.of(aa.ours)
    print(f"  ours / naive false-alarm share: {ratio(ours.alert_share, naive.alert_share)}")
    return {"aa": aa, "ab": ab}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20_000, help="simulated experiments per case")
    parser.add_argument("--polls", type=int, default=60, help="looks at each experiment")
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--metrics", type=int, default=3, help="goal metrics in the family")
    parser.add_argument("--users", type=int, default=1000, help="new users per arm per poll")
    parser.add_argument("--srm-users", type=int, default=2000, help="new users per poll (SRM)")
    parser.add_argument(
        "--srm-runs", type=int, default=None, help="SRM runs per case (default 5 x --runs)"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    print(
        f"Polled-experiment simulation: seed {args.seed}, alpha {ALPHA}, N* 5000, guards "
        ">= 100 units per arm and >= 10 conversions and non-conversions per arm"
    )
    bernoulli_seed, revenue_seed, srm_seed = np.random.SeedSequence(args.seed).spawn(3)
    bernoulli = run_metric(MetricModel.BERNOULLI, args, bernoulli_seed)
    revenue = run_metric(MetricModel.REVENUE, args, revenue_seed)
    srm = run_srm(args, srm_seed)
    print(f"\nelapsed {time.perf_counter() - started:.1f} s")

    def worst(case: str, rule: str) -> float:
        return max(r[case][rule].alert_share for r in (bernoulli, revenue))

    srm_naive = RuleSummary.of(srm["aa"].naive).alert_share
    srm_ours = RuleSummary.of(srm["aa"].ours).alert_share
    figures = {
        "naive_aa_fpr": worst("aa_one", "naive"),
        "ours_aa_fpr": worst("aa_one", "ours"),
        "naive_aa_fwer": worst("aa_family", "naive"),
        "ours_aa_fwer": worst("aa_family", "ours"),
        "fwer_ratio": worst("aa_family", "ours") / max(worst("aa_family", "naive"), 1e-12),
        "ours_power_bernoulli": bernoulli["ab"]["ours"].alert_share,
        "ours_power_revenue": revenue["ab"]["ours"].alert_share,
        "naive_power_bernoulli": bernoulli["ab"]["naive"].alert_share,
        "ours_median_polls_bernoulli": bernoulli["ab"]["ours"].median_polls or float("nan"),
        "srm_naive_far": srm_naive,
        "srm_seq_far": srm_ours,
        "srm_ratio": srm_ours / max(srm_naive, 1e-12),
        "srm_seq_power": RuleSummary.of(srm["ab"].ours).alert_share,
    }
    print("RESULT " + " ".join(f"{name}={value:.4g}" for name, value in figures.items()))


if __name__ == "__main__":
    main()
