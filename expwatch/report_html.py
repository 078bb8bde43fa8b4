"""`expwatch report --format html`: one self-contained page (inline CSS, charts as PNG data
URIs) with the results table, the sample-ratio check, the charts and the event timeline.
Every value from the store or the platform is escaped."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from store import Event

__all__ = ["DrawnChart", "render_html"]

CSS = """
body { font: 15px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328;
       max-width: 1000px; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin: 0 0 .2rem; } h2 { font-size: 1.2rem; margin: 2rem 0 .6rem;
     border-bottom: 1px solid #d8dee4; padding-bottom: .3rem; }
.meta, .note { color: #57606a; } .meta a { color: #0969da; }
.warnings { background: #ffebe9; border: 1px solid #ff8182; border-radius: 6px;
            padding: .6rem 1rem; margin: 1rem 0; }
.ok { background: #dafbe1; border: 1px solid #4ac26b; border-radius: 6px;
      padding: .6rem 1rem; margin: 1rem 0; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #d8dee4;
         vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.won { color: #1a7f37; font-weight: 600; } .lost { color: #cf222e; font-weight: 600; }
figure { margin: 1rem 0 1.5rem; } figure img { max-width: 100%; height: auto;
         border: 1px solid #d8dee4; border-radius: 6px; }
footer { margin-top: 2.5rem; color: #57606a; font-size: .85rem; }
"""


@dataclass(frozen=True)
class DrawnChart:
    """A chart drawn as a PNG, with the caption it gets on the page."""

    name: str
    title: str
    png: bytes


def _percent(value: Any) -> str:
    return "–" if value is None else f"{value * 100:+.1f} %"


def _interval(pair: Sequence[Any] | None, *, percent: bool) -> str:
    if not pair or (pair[0] is None and pair[1] is None):
        return "–"

    def bound(v: Any, infinite: str) -> str:
        if v is None:
            return infinite
        return _percent(v) if percent else f"{v:+.4g}"

    return f"[{bound(pair[0], '−∞')}, {bound(pair[1], '+∞')}]"


def _p(value: Any) -> str:
    return "–" if value is None else f"{value:.3g}"


def _verdict(value: Any) -> str:
    if value is None:
        return '<span class="note">not judged yet</span>'
    css = value if value in ("won", "lost") else ""
    return f'<span class="{css}">{escape(str(value))}</span>'


def _results_table(report: dict[str, Any]) -> str:
    rows = []
    for metric in report["metrics"]:
        for c in metric["comparisons"]:
            rows.append(
                "<tr>"
                f"<td>{escape(metric['name'])} <span class='note'>({escape(metric['role'])})"
                "</span></td>"
                f"<td>{escape(c['variation_name'])}</td>"
                f"<td class='num'>{c['users']:,.0f}</td>"
                f"<td class='num'>{_percent(c['relative_change'])}</td>"
                f"<td class='num'>{_interval(c['ci'], percent=True)}</td>"
                f"<td>{_verdict(c['platform_verdict'])}</td>"
                f"<td>{_verdict(c['our_verdict'])}</td>"
                f"<td class='num'>{_interval(c['our_absolute_ci'], percent=False)}</td>"
                f"<td class='num'>{_p(c['our_running_p_value'])}</td>"
                "</tr>"
            )
    if not rows:
        return "<p class='note'>No metric results yet.</p>"
    return (
        "<table><thead><tr><th>Metric</th><th>Variation</th><th>Users</th><th>Change</th>"
        "<th>Platform interval</th><th>Platform verdict</th><th>expwatch verdict</th>"
        "<th>expwatch interval (absolute)</th><th>Running p</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _srm(report: dict[str, Any]) -> str:
    srm = report.get("srm") or {}
    ours = srm.get("ours")
    if ours is None:
        state = "<p class='note'>expwatch has not run its sample-ratio test yet.</p>"
    elif ours["mismatch"]:
        state = (
            "<div class='warnings'><strong>Sample-ratio mismatch.</strong> The split of users "
            "between variations differs from the configured one (expwatch's sequential test: "
            f"p = {_p(ours['p_value'])} ≤ α = {_p(ours['alpha'])}). Find the cause before "
            "trusting the results.</div>"
        )
    else:
        state = (
            "<div class='ok'>No sample-ratio mismatch (expwatch's sequential test: "
            f"p = {_p(ours['p_value'])}, α = {_p(ours['alpha'])}).</div>"
        )
    platform = srm.get("platform_p_value")
    note = (
        f"<p class='note'>The platform's own SRM p-value: {_p(platform)} (fixed horizon).</p>"
        if platform is not None
        else ""
    )
    return state + note


def _figure(chart: DrawnChart) -> str:
    data = base64.b64encode(chart.png).decode()
    return (
        f"<figure id='{escape(chart.name)}'><img alt='{escape(chart.title)}' "
        f"src='data:image/png;base64,{data}'></figure>"
    )


def _timeline(events: Sequence[Event]) -> str:
    if not events:
        return "<p class='note'>No events recorded.</p>"
    rows = []
    for e in events:
        subject = " · ".join(
            escape(str(x))
            for x in (
                e.details.get("metric_name", e.metric_id),
                e.details.get("variation_name", e.variation_id),
            )
            if x
        )
        change = f"{escape(_short(e.before))} → {escape(_short(e.after))}"
        rows.append(
            f"<tr><td class='num'>#{e.id}</td><td>{e.occurred_at:%Y-%m-%d %H:%M}</td>"
            f"<td>{escape(e.kind.value)}</td><td>{subject}</td><td>{change}</td></tr>"
        )
    return (
        "<table><thead><tr><th>Event</th><th>When (UTC)</th><th>Kind</th><th>Metric · "
        "variation</th><th>Change</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    text = "–" if value is None else str(value)
    return text if len(text) <= 80 else text[:77] + "…"


def render_html(
    report: dict[str, Any],
    *,
    charts: Sequence[DrawnChart],
    events: Sequence[Event],
    generated_at: datetime,
) -> str:
    """The page for `report` (the JSON report of `Reader.pulse_report`)."""
    experiment = report["experiment"]
    snapshot = report["snapshot"]
    name = escape(experiment["name"] or experiment["id"])
    link = (
        f" · <a href='{escape(experiment['url'])}'>open in the platform</a>"
        if experiment.get("url")
        else ""
    )
    warnings = report.get("warnings") or []
    warning_box = (
        "<div class='warnings'><strong>Warnings:</strong><ul>"
        + "".join(f"<li>{escape(w)}</li>" for w in warnings)
        + "</ul></div>"
        if warnings
        else ""
    )
    srm_charts = [c for c in charts if c.name in ("srm", "exposures")]
    metric_charts = [c for c in charts if c.name not in ("srm", "exposures")]
    iso = snapshot.get("upstream_updated_at") or snapshot.get("fetched_at")
    computed = (
        f"{datetime.fromisoformat(iso).astimezone(UTC):%Y-%m-%d %H:%M} UTC" if iso else "unknown"
    )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{name} — expwatch report</title><style>{CSS}</style></head><body>",
        f"<h1>{name}</h1>",
        f"<p class='meta'>{escape(experiment['id'])} · {escape(experiment['source'])} · "
        f"status {escape(str(experiment['status']))}{link}<br>Results computed "
        f"{escape(str(computed))}, {snapshot.get('total_users') or 0:,.0f} users.</p>",
        warning_box,
        "<h2>Results</h2>",
        "<p class='note'>Change and the platform's interval are relative to the baseline; "
        "expwatch's interval is an anytime-valid confidence sequence on the absolute "
        "difference, valid however often results are checked. Decide on expwatch's "
        "verdict.</p>",
        _results_table(report),
        "<h2>Sample ratio</h2>",
        _srm(report),
        *(_figure(c) for c in srm_charts),
    ]
    if metric_charts:
        parts += ["<h2>Metrics over time</h2>", *(_figure(c) for c in metric_charts)]
    parts += [
        "<h2>Timeline</h2>",
        _timeline(events),
        f"<footer>Generated by expwatch on {generated_at:%Y-%m-%d %H:%M} UTC from its local "
        "store.</footer></body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"
