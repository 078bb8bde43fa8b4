"""`expwatch status`: what the store holds and what the watcher last saved of each source.

Everything comes from the database (the daemon persists each source's breaker and status
after every cycle), so it works beside a running daemon or after it stopped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .cli_common import config_option, echo_json, json_option, load_settings, run_async

if TYPE_CHECKING:
    from store import Store

    from .config import Settings


@click.command()
@config_option
@json_option
def status(config_path: Path | None, as_json: bool) -> None:
    """Show sources (breaker, rate budget, lag), alert outboxes and experiments.

    Lag is the time since a source last answered a poll cycle; an experiment's age is the
    time since its results were last read. With --json: the same, for scripts.
    """
    from store import Store

    settings = load_settings(config_path)

    async def main_() -> dict[str, Any]:
        store = await Store.open(settings.database_url())
        try:
            return await collect(store, settings, now=datetime.now(UTC))
        finally:
            await store.aclose()

    result = run_async(main_)
    if as_json:
        echo_json(result)
    else:
        print_status(result)


async def collect(store: Store, settings: Settings, *, now: datetime) -> dict[str, Any]:
    """The status as plain data (what --json prints)."""
    experiments = []
    for summary in await store.experiment_summaries():  # three queries, however many
        experiment, checked = summary.experiment, summary.last_checked_at
        latest_at = summary.latest_fetched_at
        if latest_at is None and summary.snapshots:  # backfilled only: its newest of those
            latest = await store.latest_snapshot(experiment.experiment_id)
            latest_at = latest.fetched_at if latest else None
        experiments.append(
            {
                "source": experiment.source,
                "experiment_id": experiment.experiment_id,
                "name": experiment.name,
                "status": experiment.status,
                "snapshots": summary.snapshots,
                "latest_snapshot_at": latest_at,
                "last_checked_at": checked,
                "last_checked_seconds_ago": _seconds(now, checked),
            }
        )
    saved = await store.state.sources()
    watch_list = await store.state.watch_list()
    sources = []
    for name in sorted(settings.sources):
        state = saved.get(name, {})
        persisted = state.get("status") or {}
        last_success = _parse(persisted.get("last_success_at"))
        paused_until = _parse(persisted.get("paused_until"))
        sources.append(
            {
                "name": name,
                "kind": settings.sources[name].kind,
                "breaker": state.get("breaker") or {"state": "closed"},
                "budget": {
                    "rate_limit_per_minute": settings.sources[name].rate_limit_per_minute,
                    "refill_per_minute": persisted.get("rate_per_minute"),
                    "requests_since_start": persisted.get("requests"),
                    "paused_until": paused_until if paused_until and paused_until > now else None,
                },
                "last_cycle_at": _parse(persisted.get("last_cycle_at")),
                "last_cycle": persisted.get("last_cycle"),
                "last_success_at": last_success,
                "lag_seconds": _seconds(now, last_success),
                "listed": persisted.get("listed"),
                "watched": persisted.get("watched"),
                "stale": persisted.get("stale"),
                "failing": persisted.get("failing") or {},
                "watching": [
                    e.experiment_id for e in watch_list if e.source == name and e.is_watched
                ],
                "ignoring": [
                    e.experiment_id for e in watch_list if e.source == name and not e.is_watched
                ],
            }
        )
    outbox = {t.target: t for t in await store.outbox.summary()}
    alert_targets: list[dict[str, Any]] = [
        {
            "name": name,
            "outbox": outbox[name].counts if name in outbox else {},
            "oldest_pending_at": outbox[name].oldest_pending_at if name in outbox else None,
            "last_delivered_at": outbox[name].last_delivered_at if name in outbox else None,
            "last_error": outbox[name].last_error if name in outbox else None,
        }
        for name in sorted(set(settings.alerts.targets) | set(outbox))
    ]
    return {
        "now": now,
        "database": settings.database_location(),
        "sources": sources,
        "alert_targets": alert_targets,
        "last_event_id": await store.last_event_id(),
        "experiments": experiments,
    }


def print_status(result: dict[str, Any]) -> None:
    from rich.text import Text

    from .cli_tables import ago, cell, console, duration, show, table, when

    now: datetime = result["now"]
    out = console()
    show(out, f"database  {result['database']}")
    show(out, f"events    {result['last_event_id']} recorded")

    sources = table(
        "source",
        "kind",
        "breaker",
        "budget",
        "last cycle",
        "lag",
        "watched",
        "failing",
        title="Sources",
        right=("watched",),
    )
    for s in result["sources"]:
        breaker = s["breaker"]
        state = Text(breaker["state"], style="green" if breaker["state"] == "closed" else "red")
        if breaker["state"] != "closed" and breaker.get("open_until"):
            state.append(f" until {when(_parse(breaker['open_until']))}")
        budget = s["budget"]
        rate = budget["rate_limit_per_minute"]
        budget_text = f"{rate:g}/min" if rate else "unlimited"
        if budget["paused_until"]:
            budget_text += f", paused until {when(budget['paused_until'])} (Retry-After)"
        lag = "-" if s["lag_seconds"] is None else duration(s["lag_seconds"])
        failing = "; ".join(
            f"{experiment or 'listing'}: {reason}" for experiment, reason in s["failing"].items()
        )
        if breaker["state"] != "closed" and breaker.get("last_error"):
            failing = failing or str(breaker["last_error"])
        sources.add_row(
            s["name"],
            s["kind"],
            state,
            budget_text,
            ago(s["last_cycle_at"], now),
            Text(lag, style="yellow" if s["lag_seconds"] is None else ""),
            cell(s["watched"]),
            Text(failing or "-", style="red" if failing else ""),
        )
    if result["sources"]:
        show(out, "", sources)
    else:
        show(out, "", "Sources: none configured")

    entries = [
        (s["name"], experiment_id, mode)
        for s in result["sources"]
        for mode, ids in (("watch", s["watching"]), ("never watch", s["ignoring"]))
        for experiment_id in ids
    ]
    if entries:
        watch_list = table("source", "experiment", "mode", title="Watch list")
        for row in entries:
            watch_list.add_row(*row)
        show(out, "", watch_list)

    targets = table(
        "target",
        "delivered",
        "waiting",
        "failed",
        "suppressed",
        "oldest waiting",
        "last error",
        title="Alert targets",
        right=("delivered", "waiting", "failed", "suppressed"),
    )
    for t in result["alert_targets"]:
        counts = t["outbox"]
        waiting = counts.get("pending", 0) + counts.get("sending", 0)
        failed = counts.get("failed", 0)
        targets.add_row(
            t["name"],
            str(counts.get("delivered", 0)),
            str(waiting),
            Text(str(failed), style="red" if failed else ""),
            str(counts.get("suppressed", 0)),
            ago(t["oldest_pending_at"], now),
            Text(t["last_error"], style="red") if (waiting or failed) and t["last_error"] else "-",
        )
    if result["alert_targets"]:
        show(out, "", targets)
    else:
        show(out, "", "Alert targets: none configured")

    experiments = table(
        "experiment",
        "source",
        "status",
        "snapshots",
        "last checked",
        title="Experiments",
        right=("snapshots",),
    )
    for e in result["experiments"]:
        experiments.add_row(
            e["experiment_id"],
            e["source"],
            e["status"] or "-",
            str(e["snapshots"]),
            ago(e["last_checked_at"], now),
        )
    if result["experiments"]:
        show(out, "", experiments)
    else:
        show(out, "", "Experiments: none recorded yet (is `expwatch run` running?)")


def _parse(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def _seconds(now: datetime, then: datetime | None) -> float | None:
    return round((now - then).total_seconds(), 3) if then is not None else None
