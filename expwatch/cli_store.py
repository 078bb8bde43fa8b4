"""Read-only commands over the store: status, events, history."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click

from store import Event, EventKind, MetricPoint, Store

from .cli_common import Timestamp, config_option, echo_json, json_option, load_settings, run_async

KIND_NAMES = [k.value for k in EventKind]


@click.command()
@config_option
@json_option
def status(config_path: Path | None, as_json: bool) -> None:
    """Show what the store holds: experiments, latest snapshots, the event log."""
    settings = load_settings(config_path)

    async def main_() -> None:
        store = await Store.open(settings.database_url())
        try:
            rows = []
            for experiment in await store.experiments():
                latest = await store.latest_snapshot(experiment.experiment_id)
                rows.append(
                    {
                        "source": experiment.source,
                        "experiment_id": experiment.experiment_id,
                        "name": experiment.name,
                        "status": experiment.status,
                        "snapshots": await store.snapshot_count(experiment.experiment_id),
                        "latest_snapshot_at": latest.fetched_at.isoformat() if latest else None,
                        "last_checked_at": latest.last_checked_at.isoformat() if latest else None,
                    }
                )
            saved = await store.state.sources()
            watch_list = await store.state.watch_list()
            sources = [
                {
                    "name": name,
                    "kind": settings.sources[name].kind,
                    "breaker": saved.get(name, {}).get("breaker", {"state": "closed"}),
                    "watching": [
                        e.experiment_id for e in watch_list if e.source == name and e.is_watched
                    ],
                    "ignoring": [
                        e.experiment_id for e in watch_list if e.source == name and not e.is_watched
                    ],
                }
                for name in sorted(settings.sources)
            ]
            outbox = {t.target: t for t in await store.outbox.summary()}
            alert_targets: list[dict[str, Any]] = [
                {
                    "name": name,
                    **(
                        {
                            "outbox": outbox[name].counts,
                            "oldest_pending_at": outbox[name].oldest_pending_at,
                            "last_delivered_at": outbox[name].last_delivered_at,
                            "last_error": outbox[name].last_error,
                        }
                        if name in outbox
                        else {"outbox": {}}
                    ),
                }
                for name in sorted(set(settings.alerts.targets) | set(outbox))
            ]
            result: dict[str, Any] = {
                "database": settings.database_location(),
                "sources": sources,
                "alert_targets": alert_targets,
                "last_event_id": await store.last_event_id(),
                "experiments": rows,
            }
        finally:
            await store.aclose()
        if as_json:
            echo_json(result)
            return
        click.echo(f"database: {result['database']}")
        if not sources:
            click.echo("sources: (none)")
        for source in sources:
            breaker = source["breaker"]
            line = f"source {source['name']} ({source['kind']}): breaker {breaker['state']}"
            if breaker["state"] != "closed":
                line += f" until {breaker.get('open_until')} — {breaker.get('last_error')}"
            click.echo(line)
            if source["watching"]:
                click.echo(f"  also watching: {', '.join(source['watching'])}")
            if source["ignoring"]:
                click.echo(f"  not watching: {', '.join(source['ignoring'])}")
        if not alert_targets:
            click.echo("alert targets: (none)")
        for target in alert_targets:
            counts = target["outbox"]
            line = f"alert target {target['name']}: " + (
                ", ".join(f"{n} {status}" for status, n in counts.items() if n)
                or "nothing sent yet"
            )
            if target.get("oldest_pending_at"):
                line += f"; waiting since {target['oldest_pending_at']:%Y-%m-%d %H:%M} UTC"
            if target.get("last_error") and (counts.get("pending") or counts.get("failed")):
                line += f"; last error: {target['last_error']}"
            click.echo(line)
        click.echo(f"events: {result['last_event_id']}")
        for r in rows:
            click.echo(
                f"  {r['experiment_id']:<32} {r['status']:<10} {r['snapshots']:>4} snapshots"
                f"  last checked {r['last_checked_at'] or '-'}"
            )

    run_async(main_)


def _event_line(e: Event) -> str:
    subject = " ".join(x for x in (e.experiment_id, e.metric_id, e.variation_id) if x)
    return (
        f"#{e.id:<5} {e.occurred_at:%Y-%m-%d %H:%M:%S}  {e.kind.value:<22} {subject}"
        f"  {e.before} → {e.after}"
    )


@click.command()
@config_option
@json_option
@click.option("--after", type=int, default=0, help="Only events with an id above this cursor.")
@click.option("--since", type=Timestamp(), default=None, help="Only events at or after TIME.")
@click.option(
    "--kind",
    "kinds",
    type=click.Choice(KIND_NAMES),
    multiple=True,
    help="Only events of this kind (repeatable).",
)
@click.option("--experiment", default=None, help="Only this experiment's events.")
@click.option("--limit", type=int, default=1000, show_default=True)
def events(
    config_path: Path | None,
    as_json: bool,
    after: int,
    since: datetime | None,
    kinds: tuple[str, ...],
    experiment: str | None,
    limit: int,
) -> None:
    """List events from the log (id, experiment, kind, metric, time, details)."""
    settings = load_settings(config_path)

    async def main_() -> None:
        store = await Store.open(settings.database_url())
        try:
            found = await store.events_after(
                after,
                limit=limit,
                experiment_id=experiment,
                kinds=[EventKind(k) for k in kinds],
                since=since,
            )
        finally:
            await store.aclose()
        if as_json:
            echo_json([e.model_dump(mode="json") for e in found])
            return
        for e in found:
            click.echo(_event_line(e))

    run_async(main_)


def _point_line(p: MetricPoint) -> str:
    change = f"{p.relative_change:+.2%}" if p.relative_change is not None else "n/a"
    interval = (
        f"[{p.ci_low:+.2%}, {p.ci_high:+.2%}]"
        if p.ci_low is not None and p.ci_high is not None
        else ""
    )
    odds = (
        f"chance to win {p.chance_to_win:.1%}"
        if p.chance_to_win is not None
        else (f"p {p.p_value:.3g}" if p.p_value is not None else "")
    )
    ours = p.our_verdict.value if p.our_verdict else "n/a"
    our_p = f"p {p.our_p_value:.3g}" if p.our_p_value is not None else ""
    return (
        f"  {p.fetched_at:%Y-%m-%d %H:%M:%S}  users {p.users:>9.0f}  change {change:>8} "
        f"{interval:<20} {odds:<20} platform {p.platform_verdict.value:<12} "
        f"expwatch {ours:<12} {our_p}"
    )


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
    experiment = result["experiment"]
    click.echo(f"{experiment['experiment_id']} — {experiment['name']} ({experiment['status']})")
    click.echo("significance:" if result["significance_changes"] else "significance: no changes")
    for e in result["significance_changes"]:
        click.echo(
            f"  {e['occurred_at']}  {e['metric_id']} / {e['variation_id']}: "
            f"{e['before'] or 'first seen'} → {e['after']}"
        )
    click.echo("SRM:" if result["srm_changes"] else "SRM: never detected")
    for e in result["srm_changes"]:
        click.echo(f"  {e['occurred_at']}  {e['kind']} (p = {e['after']})")
    for variation, points in result.get("trajectory", {}).items():
        click.echo(f"{metric} / {variation}: {len(points)} snapshots")
        for p in points:
            click.echo(_point_line(MetricPoint.model_validate(p)))
    if at is not None:
        known = result["snapshot_at"]
        click.echo(
            f"known at {at.isoformat()}: "
            + (f"snapshot #{known['id']} fetched {known['fetched_at']}" if known else "nothing yet")
        )


def _watch_command(*, watched: bool) -> click.Command:
    verb = "watch" if watched else "unwatch"

    @click.command(name=verb)
    @config_option
    @click.argument("experiment_id")
    @click.option(
        "--source",
        "source_name",
        default=None,
        help="The configured source the experiment belongs to (default: the only source).",
    )
    def command(config_path: Path | None, experiment_id: str, source_name: str | None) -> None:
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
        state = "watched" if watched else "not watched"
        note = "" if changed else " (no change)"
        click.echo(
            f"{source_name}/{experiment_id} is {state}{note}; a running daemon applies "
            "it at its next cycle."
        )

    command.__doc__ = (
        "Watch EXPERIMENT_ID whatever the source's filters say."
        if watched
        else "Stop watching EXPERIMENT_ID, even if the source's filters match it."
    )
    return command


watch = _watch_command(watched=True)
unwatch = _watch_command(watched=False)
