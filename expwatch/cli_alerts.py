"""`expwatch alerts ...`: try the alert targets, and look into the outbox."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from alerts import AppriseNotifier, render, sample_event
from store import DeliveryError, DeliveryStatus, Store

from .cli_common import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    config_option,
    echo_json,
    json_option,
    load_alert_targets,
    load_settings,
    run_async,
)


@click.group()
def alerts() -> None:
    """Alert targets and the outbox of deliveries."""


@alerts.command("test")
@config_option
@json_option
@click.option("--target", "names", multiple=True, help="Only this target (repeatable).")
def test_targets(config_path: Path | None, as_json: bool, names: tuple[str, ...]) -> None:
    """Send a sample alert to every configured target and report each result.

    Exit code 0 when every target confirmed, 1 when any failed, 2 for bad configuration.
    Nothing is written to the store.
    """
    settings = load_settings(config_path)
    targets = load_alert_targets(settings)
    unknown = sorted(set(names) - {t.name for t in targets})
    if unknown:
        known = ", ".join(t.name for t in targets) or "none configured"
        click.echo(f"expwatch: unknown alert target {', '.join(unknown)} ({known})", err=True)
        sys.exit(EXIT_CONFIG)
    chosen = [t for t in targets if not names or t.name in names]
    if not chosen:
        click.echo("expwatch: no alert targets configured ([alerts.targets.*])", err=True)
        sys.exit(EXIT_CONFIG)
    message = render(sample_event())
    notifier = AppriseNotifier(timeout_seconds=settings.alerts.send_timeout_seconds)

    async def main_() -> list[dict[str, Any]]:
        results = []
        for target in chosen:
            try:
                await notifier.send(target, message)
                results.append({"target": target.name, "channel": target.channel, "ok": True})
            except DeliveryError as exc:
                results.append(
                    {
                        "target": target.name,
                        "channel": target.channel,
                        "ok": False,
                        "error": str(exc),
                    }
                )
        return results

    results = run_async(main_)
    if as_json:
        echo_json(results)
    else:
        for r in results:
            outcome = "delivered" if r["ok"] else f"FAILED: {r['error']}"
            click.echo(f"{r['target']} ({r['channel']}): {outcome}")
    if not all(r["ok"] for r in results):
        sys.exit(EXIT_FAILURE)


@alerts.command("outbox")
@config_option
@json_option
@click.option(
    "--status",
    "status_name",
    type=click.Choice([s.value for s in DeliveryStatus]),
    help="Only deliveries in this state.",
)
@click.option("--target", default=None, help="Only this target.")
@click.option("--limit", default=50, show_default=True, help="At most this many, newest last.")
def outbox(
    config_path: Path | None,
    as_json: bool,
    status_name: str | None,
    target: str | None,
    limit: int,
) -> None:
    """List alert deliveries: what was sent, what waits, what failed or was suppressed."""
    settings = load_settings(config_path)

    async def main_() -> list[dict[str, Any]]:
        store = await Store.open(settings.database_url())
        try:
            rows = await store.outbox.deliveries(
                target=target,
                status=DeliveryStatus(status_name) if status_name else None,
                limit=1_000_000,
            )
        finally:
            await store.aclose()
        return [
            {
                "event_id": d.event_id,
                "target": d.target,
                "experiment_id": d.experiment_id,
                "level": d.level,
                "status": d.status.value,
                "attempts": d.attempts,
                "created_at": d.created_at,
                "due_at": d.due_at,
                "delivered_at": d.delivered_at,
                "reason": d.reason,
            }
            for d in rows[-limit:]
        ]

    rows = run_async(main_)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no alert deliveries")
    for r in rows:
        when = r["delivered_at"] or r["due_at"]
        reason = f"  ({r['reason']})" if r["reason"] else ""
        click.echo(
            f"#{r['event_id']:<5} {r['target']:<16} {r['status']:<10} {r['level']:<8} "
            f"{r['experiment_id'] or '-':<24} {when:%Y-%m-%d %H:%M}{reason}"
        )
