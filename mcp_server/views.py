"""What the MCP server shows: JSON-ready views of the store's records (pure functions)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from charts import Chart, Trajectory, to_vega_lite
from store import (
    Event,
    EventKind,
    Experiment,
    ExperimentSummary,
    MetricPoint,
    MetricResult,
    Snapshot,
    StoredSnapshot,
    Verdict,
)

SPARK = "▁▂▃▄▅▆▇█"


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def experiment_view(experiment: Experiment) -> dict[str, Any]:
    """An experiment's metadata, with the link to it in the platform's UI."""
    return {
        "id": experiment.experiment_id,
        "source": experiment.source,
        "name": experiment.name,
        "status": experiment.status,
        "detailed_status": experiment.detailed_status,
        "project": experiment.project or None,
        "phase": experiment.phase or None,
        "tags": list(experiment.tags),
        "url": experiment.url,
        "variations": [v.model_dump(mode="json") for v in experiment.variations],
        "decision": experiment.decision.model_dump(mode="json") if experiment.decision else None,
    }


def snapshot_meta(stored: StoredSnapshot) -> dict[str, Any]:
    snapshot = stored.snapshot
    return {
        "id": stored.id,
        "fetched_at": iso(stored.fetched_at),
        "last_checked_at": iso(stored.last_checked_at),
        "upstream_updated_at": iso(snapshot.upstream_updated_at),
        "engine": snapshot.engine,
        "total_users": snapshot.total_users,
    }


def srm_view(snapshot: Snapshot) -> dict[str, Any]:
    ours = snapshot.our_srm
    return {
        "platform_p_value": snapshot.srm_p_value,
        "ours": None
        if ours is None
        else {
            "p_value": ours.p_value,
            "chi_square_p_value": ours.chi_square_p_value,
            "alpha": ours.alpha,
            "mismatch": ours.is_mismatch,
        },
    }


def metric_rows(metric: MetricResult) -> list[dict[str, Any]]:
    return [
        v.model_dump(mode="json", exclude_none=True, exclude={"ours": {"state"}})
        for v in metric.variations
    ]


def metric_header(metric: MetricResult) -> dict[str, Any]:
    return {
        "id": metric.metric_id,
        "name": metric.metric_name or metric.metric_id,
        "role": metric.role.value,
        "higher_is_better": metric.higher_is_better,
    }


def results_view(
    experiment: Experiment,
    stored: StoredSnapshot | None,
    *,
    include_metrics: bool = True,
    include_health: bool = True,
) -> dict[str, Any]:
    """The latest normalized results of one experiment: per metric and variation the
    platform's numbers and verdict beside expwatch's own anytime-valid verdict."""
    view: dict[str, Any] = {"experiment": experiment_view(experiment), "has_results": False}
    if stored is None:
        return view
    view["has_results"] = True
    snapshot = stored.snapshot
    view["snapshot"] = snapshot_meta(stored)
    if include_health:
        view["health"] = {
            "srm_p_value": snapshot.srm_p_value,
            "our_srm": srm_view(snapshot)["ours"],
            "checks": [c.model_dump(mode="json") for c in snapshot.health_checks],
        }
    if include_metrics:
        view["metrics"] = [
            {**metric_header(m), "variations": metric_rows(m)} for m in snapshot.metrics
        ]
    return view


def event_view(event: Event) -> dict[str, Any]:
    """An event as JSON; `backfilled` only on events of backfilled history."""
    return event.model_dump(
        mode="json", exclude_none=True, exclude=None if event.backfilled else {"backfilled"}
    )


def summary_view(summary: ExperimentSummary, *, warnings: Sequence[str] = ()) -> dict[str, Any]:
    """One experiment in a listing: status, freshness, and the verdicts that matter."""
    experiment = summary.experiment
    significant = [
        {
            "metric": v.metric_id,
            "variation": v.variation_id,
            "ours": v.ours.value if v.ours else None,
            "platform": v.platform.value,
            "relative_change": v.relative_change,
        }
        for v in summary.verdicts
        if (v.ours and v.ours.is_significant) or v.platform.is_significant
    ]
    identity = experiment_view(experiment)
    return {
        **{k: identity[k] for k in ("id", "source", "name", "status", "detailed_status", "url")},
        "snapshots": summary.snapshots,
        "last_checked_at": iso(summary.last_checked_at),
        "results_updated_at": iso(summary.results_updated_at),
        "significant": significant,
        "warnings": list(warnings),
        "resource": f"experiments://{experiment.experiment_id}/results",
    }


def comparison_view(metric: MetricResult) -> list[dict[str, Any]]:
    """Each treatment against the baseline: lift and interval, the platform's test and ours."""
    rows = []
    for v in metric.variations:
        if v.platform_verdict is Verdict.BASELINE:
            continue
        ours = v.ours
        rows.append(
            {
                "variation": v.variation_id,
                "variation_name": v.variation_name or v.variation_id,
                "users": v.users,
                "relative_change": v.relative_change,
                "ci": [v.ci_low, v.ci_high],
                "p_value": v.p_value,
                "chance_to_win": v.chance_to_win,
                "platform_verdict": v.platform_verdict.value,
                "our_verdict": ours.verdict.value if ours and ours.verdict else None,
                "our_running_p_value": ours.running_p_value if ours else None,
                "our_absolute_change": ours.absolute_change if ours else None,
                "our_absolute_ci": [ours.absolute_ci_low, ours.absolute_ci_high] if ours else None,
                "our_reason": ours.reason if ours else None,
            }
        )
    return rows


def trajectory_view(points: Sequence[MetricPoint]) -> list[dict[str, Any]]:
    return [
        {
            "snapshot_id": p.snapshot_id,
            "fetched_at": iso(p.fetched_at),
            "users": p.users,
            "relative_change": p.relative_change,
            "ci": [p.ci_low, p.ci_high],
            "p_value": p.p_value,
            "chance_to_win": p.chance_to_win,
            "platform_verdict": p.platform_verdict.value,
            "our_verdict": p.our_verdict.value if p.our_verdict else None,
            "our_running_p_value": p.our_p_value,
        }
        for p in points
    ]


def sparkline(values: Sequence[float | None]) -> str:
    """A one-line chart of `values` (gaps as spaces)."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = high - low or 1.0
    return "".join(
        " " if v is None else SPARK[min(len(SPARK) - 1, int((v - low) / span * len(SPARK)))]
        for v in values
    )


def chart_entries(charts: Sequence[Chart], *, drawn: int) -> list[dict[str, Any]]:
    """The report's charts: each one's Vega-Lite v5 specification (data inline) and whether it
    comes as an image too (the first `drawn`); a trajectory also as its series of relative
    changes and a sparkline."""
    entries = []
    for index, chart in enumerate(charts):
        entry: dict[str, Any] = {
            "kind": chart.name,
            "name": chart.name,
            "title": chart.title,
            "metric": None,
            "variation": None,
            "image": index < drawn,
        }
        if isinstance(chart, Trajectory):
            values = [p.relative_change for p in chart.points]
            entry.update(
                {
                    "kind": "trajectory",
                    "metric": chart.metric_id,
                    "variation": chart.variation_id,
                    "values": values,
                    "sparkline": sparkline(values),
                }
            )
        entry["vega_lite"] = to_vega_lite(chart)
        entries.append(entry)
    return entries


CSV_COLUMNS = (
    "metric_id",
    "metric_name",
    "role",
    "variation_id",
    "variation_name",
    "users",
    "mean",
    "relative_change",
    "ci_low",
    "ci_high",
    "p_value",
    "chance_to_win",
    "platform_verdict",
    "our_verdict",
    "our_running_p_value",
    "our_absolute_change",
    "our_absolute_ci_low",
    "our_absolute_ci_high",
)


def pulse_csv(snapshot: Snapshot) -> str:
    """Every metric × variation of a snapshot as CSV, one row each."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for m in snapshot.metrics:
        for v in m.variations:
            ours = v.ours
            writer.writerow(
                [
                    m.metric_id,
                    m.metric_name,
                    m.role.value,
                    v.variation_id,
                    v.variation_name,
                    v.users,
                    v.mean,
                    v.relative_change,
                    v.ci_low,
                    v.ci_high,
                    v.p_value,
                    v.chance_to_win,
                    v.platform_verdict.value,
                    ours.verdict.value if ours and ours.verdict else "",
                    ours.running_p_value if ours else "",
                    ours.absolute_change if ours else "",
                    ours.absolute_ci_low if ours else "",
                    ours.absolute_ci_high if ours else "",
                ]
            )
    return out.getvalue()


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f} %"


def pulse_summary(
    experiment: Experiment,
    stored: StoredSnapshot,
    *,
    warnings: Sequence[str],
    charts: dict[tuple[str, str], list[float | None]] | None = None,
) -> str:
    """A short Markdown report: status, health, each goal and guardrail per treatment."""
    snapshot = stored.snapshot
    lines = [
        f"# {experiment.name} ({experiment.experiment_id})",
        f"Status: {experiment.status}"
        + (f" ({experiment.detailed_status})" if experiment.detailed_status else "")
        + f" · {experiment.source}"
        + (f" · {experiment.url}" if experiment.url else ""),
        f"Results: {snapshot.total_users:g} users, computed "
        f"{iso(snapshot.upstream_updated_at) or 'at an unknown time'}, "
        f"fetched {iso(stored.fetched_at)}",
        "Health: " + ("; ".join(warnings) if warnings else "no warnings"),
        "",
    ]
    for m in snapshot.metrics:
        lines.append(f"## {m.metric_name or m.metric_id} ({m.role.value})")
        for row in comparison_view(m):
            lines.append(
                f"- {row['variation_name']}: {_percent(row['relative_change'])} "
                f"[{_percent(row['ci'][0])}, {_percent(row['ci'][1])}] · platform "
                f"{row['platform_verdict']} · expwatch {row['our_verdict'] or 'not judged yet'}"
                + (
                    f" (running p = {row['our_running_p_value']:.4g})"
                    if row["our_running_p_value"] is not None
                    else ""
                )
            )
            series = (charts or {}).get((m.metric_id, row["variation"]))
            if series:
                lines.append(f"  lift over {len(series)} snapshots: {sparkline(series)}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


WARNING_GROUPS = (
    (EventKind.SRM_DETECTED, EventKind.SRM_CLEARED),
    (EventKind.RESULTS_STALE,),
    (EventKind.SOURCE_ERROR, EventKind.SOURCE_RECOVERED),
)
"""Warnings that fire when they start and when they clear: the newest event of each group
says whether the warning is on."""


def warnings_from(latest: Sequence[Event], breaker: dict[str, Any] | None) -> list[str]:
    """Human-readable warnings from an experiment's newest event of each `WARNING_GROUPS`
    group and its source's saved breaker state."""
    found = []
    for event in latest:
        if event.kind is EventKind.SRM_DETECTED:
            found.append(f"sample-ratio mismatch since {iso(event.occurred_at)}")
        elif event.kind is EventKind.RESULTS_STALE and event.after is True:
            found.append(f"results stopped updating (noticed {iso(event.occurred_at)})")
        elif event.kind is EventKind.SOURCE_ERROR:
            found.append(f"polling fails since {iso(event.occurred_at)}: {event.after}")
    if breaker and breaker.get("state", "closed") != "closed":
        found.append(
            f"source paused (circuit breaker {breaker['state']}) until "
            f"{breaker.get('open_until')}: {breaker.get('last_error')}"
        )
    return found
