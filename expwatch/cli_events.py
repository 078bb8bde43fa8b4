"""`expwatch events`: the event log as a table, as JSON, or followed live (`--follow`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from store import EventKind

from .cli_common import (
    Timestamp,
    config_option,
    echo_json,
    json_line,
    json_option,
    load_settings,
    run_async,
    run_until_stopped,
)
from .cli_tables import cell, console, show, table

if TYPE_CHECKING:
    from store import Event, Store

KIND_NAMES = [k.value for k in EventKind]
FOLLOW_POLL_SECONDS = 0.25
"""How often `--follow` looks for events another process (the daemon) committed."""
FOLLOW_PAGE = 1000


@click.command()
@config_option
@json_option
@click.option(
    "--after",
    type=int,
    default=None,
    help="Only events with an id above this cursor (default: all; with --follow: the end "
    "of the log unless --since is given).",
)
@click.option("--since", type=Timestamp(), default=None, help="Only events at or after TIME.")
@click.option(
    "--kind",
    "kinds",
    type=click.Choice(KIND_NAMES),
    multiple=True,
    help="Only events of this kind (repeatable).",
)
@click.option("--experiment", default=None, help="Only this experiment's events.")
@click.option(
    "--limit",
    type=int,
    default=1000,
    show_default=True,
    help="At most this many, oldest first (without --follow).",
)
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Keep printing events as they are recorded until Ctrl-C; with --json one object "
    "per line (JSON Lines).",
)
def events(
    config_path: Path | None,
    as_json: bool,
    after: int | None,
    since: datetime | None,
    kinds: tuple[str, ...],
    experiment: str | None,
    limit: int,
    follow: bool,
) -> None:
    """List events from the log, or with --follow print them as they are recorded.

    Without --follow: the events after --after (oldest first, at most --limit) as a table,
    or with --json as one JSON array. With --follow: one line (or JSON object) per event,
    flushed as it comes, starting at the end of the log unless --after or --since says
    where; Ctrl-C, SIGTERM or a closed pipe (`| head`) stop it with exit code 0.
    """
    from store import Store

    settings = load_settings(config_path)
    selected = [EventKind(k) for k in kinds]
    if follow:
        _follow(
            settings.database_url(),
            after=after,
            since=since,
            kinds=selected,
            experiment=experiment,
            as_json=as_json,
        )
        return

    async def main_() -> list[Event]:
        store = await Store.open(settings.database_url())
        try:
            return await store.events_after(
                after or 0, limit=limit, experiment_id=experiment, kinds=selected, since=since
            )
        finally:
            await store.aclose()

    found = run_async(main_)
    if as_json:
        echo_json([e.model_dump(mode="json") for e in found])
    else:
        _print_table(found)


def _follow(
    url: str,
    *,
    after: int | None,
    since: datetime | None,
    kinds: list[EventKind],
    experiment: str | None,
    as_json: bool,
) -> None:
    import anyio

    from store import Store

    def render(event: Event) -> str:
        return json_line(event.model_dump(mode="json")) if as_json else event_line(event)

    async def main_() -> None:
        store = await Store.open(url)
        try:
            start = after if after is not None else (0 if since else await store.last_event_id())
            where = f"after #{start}" + (f" at or after {since.isoformat()}" if since else "")
            click.echo(f"expwatch: following events {where}; Ctrl-C stops", err=True)
            with anyio.CancelScope() as scope:

                def emit(event: Event) -> None:
                    try:
                        click.echo(render(event))  # click.echo flushes
                    except BrokenPipeError:  # the reader went away (`| head`): stop, exit 0
                        scope.cancel()

                await run_until_stopped(
                    lambda: follow_events(
                        store,
                        emit,
                        after=start,
                        since=since,
                        kinds=kinds,
                        experiment_id=experiment,
                    )
                )
        finally:
            await store.aclose()

    run_async(main_)


async def follow_events(
    store: Store,
    emit: Callable[[Event], None],
    *,
    after: int,
    since: datetime | None = None,
    kinds: Sequence[EventKind] = (),
    experiment_id: str | None = None,
    poll_interval_seconds: float = FOLLOW_POLL_SECONDS,
) -> None:
    """Pass every matching event with an id above `after` to `emit`, oldest first, then
    each new one as it is committed; runs until cancelled.

    The cursor moves past events the filters drop too, so a busy log of other events does
    not wake the loop over and over.
    """
    position = after
    while True:
        end = await store.last_event_id()
        while True:
            page = await store.events_after(
                position, limit=FOLLOW_PAGE, experiment_id=experiment_id, kinds=kinds, since=since
            )
            for event in page:
                assert event.id is not None
                emit(event)
                position = event.id
            if len(page) < FOLLOW_PAGE:
                break
        position = max(position, end)
        await store.wait_for_events(position, poll_interval_seconds=poll_interval_seconds)


def subject(e: Event) -> str:
    return " / ".join(x for x in (e.experiment_id or e.source, e.metric_id, e.variation_id) if x)


def event_line(e: Event) -> str:
    """One line for an event: id, time (UTC), kind, what it is about, before → after."""
    return (
        f"#{e.id:<6} {e.occurred_at:%Y-%m-%d %H:%M:%S}  {e.kind.value:<24} {subject(e)}"
        f"  {cell(e.before)} → {cell(e.after)}"
    )


def _print_table(found: list[Event]) -> None:
    out = console()
    if not found:
        show(out, "no events")
        return
    rows = table("id", "time (UTC)", "kind", "about", "before", "after", right=("id",))
    for e in found:
        rows.add_row(
            str(e.id),
            f"{e.occurred_at:%Y-%m-%d %H:%M:%S}",
            e.kind.value,
            subject(e),
            cell(e.before),
            cell(e.after),
        )
    show(out, rows)
