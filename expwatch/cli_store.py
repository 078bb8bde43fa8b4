"""Commands over the store: an experiment's history, and the run-time watch list.

(`status` lives in cli_status, `events` in cli_events.)"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click

from store import MetricPoint, Store

from .cli_common import Timestamp, config_option, echo_json, json_option, load_settings, run_async
from .cli_tables import cell, console, show, table


def _point_cells(p: MetricPoint) -> list[str]:
    """A trajectory row: time, users, change with its interval, the platform's odds, both
    verdicts and our p-value."""
    change = f"{p.relative_change:+.2%}" if p.relative_change is not None else "-"
    interval = (
        f"[{p.ci_low:+.2%}, {p.ci_high:+.2%}]"
        if p.ci_low is not None and p.ci_high is not None
        else "-"
    )
    odds = (
        f"chance to win {p.chance_to_win:.1%}"
        if p.chance_to_win is not None
        else (f"p {p.p_value:.3g}" if p.p_value is not None else "-")
    )
    return [
        f"{p.fetched_at:%Y-%m-%d %H:%M:%S}",
        f"{p.users:.0f}",
        change,
        interval,
        odds,
        p.platform_verdict.value,
        p.our_verdict.value if p.our_verdict else "-",
        f"{p.our_p_value:.3g}" if p.our_p_value is not None else "-",
    ]


@click.command()
@config_option
@json_option
@click.argument("experiment_id")
@click.option("--metric", default=None, help="Show this metric's trajectory.")
@click.option("--variation", default=None, help="Variation id (default: every non-baseline).")
@click.option("--since", type=Timestamp(), default=None, help="Only from TIME on.")
@click.option("--at", type=Timestamp(), default=None, help="Show the snapshot known at TIME.")
def history(
    config_path: Path | None,
    as_json: bool,
    experiment_id: str,
    metric: str | None,
    variation: str | None,
    since: datetime | None,
    at: datetime | None,
) -> None:
    """An experiment's history: when metrics became significant, when SRM started and
    cleared, and with --metric the metric's trajectory; --at shows what was known then."""
    settings = load_settings(config_path)

    async def main_() -> None:
        store = await Store.open(settings.database_url())
        try:
            experiment = await store.experiment(experiment_id)
            result: dict[str, Any] = {
                "experiment": experiment.model_dump(mode="json"),
                "significance_changes": [
                    e.model_dump(mode="json")
                    for e in await store.significance_changes(experiment_id, metric_id=metric)
                    if since is None or e.occurred_at >= since
                ],
                "srm_changes": [
                    e.model_dump(mode="json")
                    for e in await store.srm_changes(experiment_id)
                    if since is None or e.occurred_at >= since
                ],
            }
            if metric is not None:
                variations = (
                    [variation]
                    if variation
                    else [v.variation_id for v in experiment.variations[1:]]
                )
                result["trajectory"] = {
                    v: [
                        p.model_dump(mode="json")
                        for p in await store.metric_history(experiment_id, metric, v, since=since)
                    ]
                    for v in variations
                }
            if at is not None:
                known = await store.snapshot_at(experiment_id, at)
                result["snapshot_at"] = known.model_dump(mode="json") if known else None
        finally:
            await store.aclose()
        if as_json:
            echo_json(result)
            return
        _print_history(result, metric=metric, at=at)

    run_async(main_)


def _print_history(result: dict[str, Any], *, metric: str | None, at: datetime | None) -> None:
    out = console()
    experiment = result["experiment"]
    show(out, f"{experiment['experiment_id']} — {experiment['name']} ({experiment['status']})")
    if result["significance_changes"]:
        changes = table(
            "time (UTC)", "metric", "variation", "before", "after", title="Significance"
        )
        for e in result["significance_changes"]:
            changes.add_row(
                _time(e["occurred_at"]),
                e["metric_id"] or "-",
                e["variation_id"] or "-",
                e["before"] or "first seen",
                cell(e["after"]),
            )
        show(out, "", changes)
    else:
        show(out, "significance: no changes")
    if result["srm_changes"]:
        srm = table("time (UTC)", "change", "p", title="Sample-ratio mismatch")
        for e in result["srm_changes"]:
            srm.add_row(_time(e["occurred_at"]), e["kind"], cell(e["after"]))
        show(out, "", srm)
    else:
        show(out, "SRM: never detected")
    for variation, points in result.get("trajectory", {}).items():
        trajectory = table(
            "fetched (UTC)",
            "users",
            "change",
            "interval",
            "platform odds",
            "platform",
            "expwatch",
            "our p",
            title=f"{metric} / {variation}: {len(points)} snapshots",
            right=("users", "change"),
        )
        for p in points:
            trajectory.add_row(*_point_cells(MetricPoint.model_validate(p)))
        show(out, "", trajectory)
    if at is not None:
        known = result["snapshot_at"]
        show(
            out,
            f"known at {at.isoformat()}: "
            + (
                f"snapshot #{known['id']} fetched {known['fetched_at']}" if known else "nothing yet"
            ),
        )


def _time(iso: str) -> str:
    return f"{datetime.fromisoformat(iso):%Y-%m-%d %H:%M:%S}"


def _watch_command(*, watched: bool) -> click.Command:
    verb = "watch" if watched else "unwatch"
    summary = (
        "Watch EXPERIMENT_ID whatever the source's filters say."
        if watched
        else "Stop watching EXPERIMENT_ID, even if the source's filters match it."
    )

    @click.command(name=verb, help=f"{summary}\n\nA running daemon applies it at its next cycle.")
    @config_option
    @json_option
    @click.argument("experiment_id")
    @click.option(
        "--source",
        "source_name",
        default=None,
        help="The configured source the experiment belongs to (default: the only source).",
    )
    def command(
        config_path: Path | None, as_json: bool, experiment_id: str, source_name: str | None
    ) -> None:
        settings = load_settings(config_path)
        names = sorted(settings.sources)
        if source_name is None and len(names) == 1:
            source_name = names[0]
        if source_name not in settings.sources:
            known = ", ".join(names) or "(none configured)"
            raise click.UsageError(
                f"--source must name a configured source: {known}"
                if source_name is None
                else f"no source {source_name!r} in the configuration; sources: {known}"
            )

        async def main_() -> bool:
            store = await Store.open(settings.database_url())
            try:
                change = store.state.watch if watched else store.state.unwatch
                return await change(source_name, experiment_id)
            finally:
                await store.aclose()

        changed = run_async(main_)
        if as_json:
            echo_json(
                {
                    "source": source_name,
                    "experiment_id": experiment_id,
                    "watched": watched,
                    "changed": changed,
                }
            )
            return
        state = "watched" if watched else "not watched"
        note = "" if changed else " (no change)"
        click.echo(
            f"{source_name}/{experiment_id} is {state}{note}; a running daemon applies "
            "it at its next cycle."
        )

    return command


watch = _watch_command(watched=True)
unwatch = _watch_command(watched=False)
