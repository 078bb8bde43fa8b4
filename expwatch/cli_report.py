"""`expwatch report EXPERIMENT_ID`: the experiment's latest results as a table for people
(the default), JSON or CSV for scripts, or one self-contained HTML page with charts.

The report is the one the MCP tool `export_pulse_report` gives (`mcp_server.Reader`), read
from the local store: it never calls the platform.
"""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from .cli_common import EXIT_FAILURE, config_option, json_option, load_settings, run_async

FORMATS = ("summary", "json", "csv", "html")
TIMELINE_EVENTS = 12
"""Events the summary lists (the newest); the HTML page lists them all."""


@click.command()
@config_option
@json_option
@click.argument("experiment_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="summary (a table: the default), json, csv (one row per metric × variation) or "
    "html (one self-contained page with charts).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False, writable=True),
    default=None,
    help="Write the report to FILE instead of standard output.",
)
@click.option(
    "--charts/--no-charts",
    default=True,
    show_default=True,
    help="Include charts: PNG images in html, Vega-Lite specs in json, trends in summary.",
)
def report(
    config_path: Path | None,
    as_json: bool,
    experiment_id: str,
    fmt: str | None,
    output: Path | None,
    charts: bool,
) -> None:
    """Write an experiment's report as JSON, CSV, a summary or HTML.

    EXPERIMENT_ID's latest results from the local store (never the platform): by default a
    table for people; --json/--format json and csv for scripts; html one self-contained page
    with the charts."""
    if as_json and fmt not in (None, "json"):
        raise click.UsageError(f"--json asks for JSON but --format asks for {fmt}; give one")
    chosen = "json" if as_json else fmt or "summary"
    settings = load_settings(config_path)

    async def read() -> tuple[Any, list[Any]]:
        from mcp_server import Reader
        from store import Store, utc_now

        store = await Store.open(settings.database_url())
        try:
            pulse = await Reader(store, now=utc_now).pulse_report(
                experiment_id,
                fmt="csv" if chosen == "csv" else "json",
                include_charts=charts and chosen != "csv",
            )
            events = []
            if chosen in ("summary", "html"):
                events = await store.events_after(0, experiment_id=experiment_id, limit=100_000)
        finally:
            await store.aclose()
        return pulse, events

    try:
        pulse, events = run_async(read)
    except LookupError as exc:  # an unknown experiment (closest ids named), no results yet
        click.echo(f"expwatch: {str(exc).strip(chr(39) + chr(34))}", err=True)
        sys.exit(EXIT_FAILURE)
    if chosen == "csv":
        _emit(pulse.body, output)
    elif chosen == "json":
        _emit(json.dumps(pulse.body, indent=2, allow_nan=False) + "\n", output)
    elif chosen == "html":
        _emit(_html(pulse, events), output)
    elif output is None:
        from .cli_tables import console

        _summary(console(), pulse, events)
    else:
        _emit(_summary_text(pulse, events), output)


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        click.echo(f"expwatch: cannot write {output}: {exc.strerror}", err=True)
        sys.exit(EXIT_FAILURE)
    click.echo(f"wrote {output} ({len(text.encode()) // 1024 + 1} KB)", err=True)


def _html(pulse: Any, events: list[Any]) -> str:
    from charts import to_png

    from .report_html import DrawnChart, render_html

    drawn = [
        DrawnChart(c.name, c.title, to_png(c))
        for c in (pulse.charts.charts if pulse.charts else [])
    ]
    return render_html(pulse.body, charts=drawn, events=events, generated_at=datetime.now(UTC))


def _summary_text(pulse: Any, events: list[Any]) -> str:
    from rich.console import Console

    buffer = io.StringIO()
    out = Console(file=buffer, width=1000, markup=False, highlight=False, no_color=True)
    _summary(out, pulse, events)
    return buffer.getvalue()


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} %"


def _interval(pair: list[float | None] | None, *, percent: bool) -> str:
    if not pair or (pair[0] is None and pair[1] is None):
        return "-"
    low, high = pair
    show = _percent if percent else (lambda v: "-" if v is None else f"{v:+.4g}")
    return f"[{'-inf' if low is None else show(low)}, {'+inf' if high is None else show(high)}]"


def _summary(out: Any, pulse: Any, events: list[Any]) -> None:
    """The report for a person: what the experiment is, its health, one row per metric ×
    treatment with both verdicts (and the trend when charts are on), the latest events."""
    from .cli_tables import show, table

    body = pulse.body
    experiment, snapshot = body["experiment"], body["snapshot"]
    computed = _when(snapshot.get("upstream_updated_at") or snapshot.get("fetched_at"))
    lines: list[Any] = [
        f"{experiment['name']} ({experiment['id']}) — {experiment['status']} · "
        f"{experiment['source']}" + (f" · {experiment['url']}" if experiment.get("url") else ""),
        f"results computed {computed}, {snapshot.get('total_users') or 0:,.0f} users",
        "health: " + ("; ".join(body["warnings"]) if body["warnings"] else "no warnings"),
    ]
    ours = (body.get("srm") or {}).get("ours")
    if ours is not None:
        lines.append(
            f"sample ratio: {'MISMATCH' if ours['mismatch'] else 'ok'} (expwatch's sequential "
            f"test p = {ours['p_value']:.3g}, α = {ours['alpha']:g})"
        )
    trends = {
        (c["metric"], c["variation"]): c.get("sparkline", "")
        for c in body.get("charts", [])
        if c["kind"] == "trajectory"
    }
    columns = [
        "metric",
        "variation",
        "users",
        "change",
        "platform interval",
        "platform",
        "expwatch",
        "expwatch interval (abs.)",
        "running p",
    ]
    if trends:
        columns.append("trend")
    results = table(*columns, right=("users", "change", "running p"))
    for metric in body["metrics"]:
        for c in metric["comparisons"]:
            row = [
                f"{metric['name']} ({metric['role']})",
                c["variation_name"],
                f"{c['users']:,.0f}",
                _percent(c["relative_change"]),
                _interval(c["ci"], percent=True),
                c["platform_verdict"],
                c["our_verdict"] or "not judged yet",
                _interval(c["our_absolute_ci"], percent=False),
                "-" if c["our_running_p_value"] is None else f"{c['our_running_p_value']:.3g}",
            ]
            if trends:
                row.append(trends.get((metric["id"], c["variation"]), ""))
            results.add_row(*row)
    timeline = table("event", "when (UTC)", "kind", "metric · variation", "change")
    for e in events[-TIMELINE_EVENTS:]:
        subject = " · ".join(
            str(x)
            for x in (
                e.details.get("metric_name", e.metric_id),
                e.details.get("variation_name", e.variation_id),
            )
            if x
        )
        timeline.add_row(
            f"#{e.id}",
            f"{e.occurred_at:%Y-%m-%d %H:%M}",
            e.kind.value,
            subject,
            f"{_short(e.before)} → {_short(e.after)}",
        )
    shown = f"latest {TIMELINE_EVENTS} of {len(events)}" if len(events) > TIMELINE_EVENTS else ""
    show(
        out,
        *lines,
        "",
        results,
        "",
        f"events ({shown or len(events)}):" if events else "events: none recorded",
        *([timeline] if events else []),
    )


def _when(iso: str | None) -> str:
    """An ISO 8601 time from the report as "2026-03-17 09:00 UTC"."""
    if iso is None:
        return "at an unknown time"
    return f"{datetime.fromisoformat(iso).astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    text = "-" if value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
