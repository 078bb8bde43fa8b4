"""`expwatch backfill`: reconstruct experiments' history from the platforms that keep it.

Statsig serves Pulse as of any past day; GrowthBook serves its stored snapshots only when the
self-hosted server sets EXPERIMENT_BULK_RESULTS_ENABLED=true. The work is done by
`watcher.backfill` through each source's own HTTP client, rate budget and retries; this module
parses the command line, shows progress (a progress bar when stderr is a terminal, plain lines
otherwise) and sums up (`--json` for scripts).

Exit codes:
  0  every experiment asked for is backfilled as far as its platform has computed it;
  1  a runtime failure (a source unavailable, the database) or an interruption: what was
     recorded stays, and the same command resumes after the last day done;
  2  bad usage or configuration, including an experiment the platform does not know and a
     source that serves no history (GrowthBook without EXPERIMENT_BULK_RESULTS_ENABLED).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any, Protocol

import click
import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from store import Store
from watcher import (
    Backfiller,
    BackfillJob,
    BackfillReport,
    BackfillStatus,
    ChangeDetector,
    DayDone,
    ExperimentReport,
    HistorySource,
    SystemClock,
)

from .app import build_sources, source_policies, stats_policy
from .cli_common import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    config_option,
    echo_json,
    json_option,
    load_settings,
    run_async,
    run_until_stopped,
)

PLAIN_EVERY_DAYS = 10
"""Without a terminal, a progress line every this many days (and at each experiment's end)."""


class Day(click.ParamType[date]):
    """A calendar day, YYYY-MM-DD."""

    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a date (YYYY-MM-DD, e.g. 2026-03-02)", param, ctx)


@click.command()
@config_option
@json_option
@click.argument("experiment_id", required=False)
@click.option(
    "--all",
    "all_experiments",
    is_flag=True,
    help="Every experiment the sources list, as the watcher would watch them.",
)
@click.option(
    "--since", type=Day(), default=None, help="From this day on (default: the experiment's start)."
)
@click.option(
    "--until", type=Day(), default=None, help="Up to this day, inclusive (default: yesterday)."
)
@click.option(
    "--source",
    "source_name",
    default=None,
    help="The configured source to read from (needed when several could have the experiment).",
)
def backfill(
    config_path: Path | None,
    as_json: bool,
    experiment_id: str | None,
    all_experiments: bool,
    since: date | None,
    until: date | None,
    source_name: str | None,
) -> None:
    """Reconstruct EXPERIMENT_ID's history (or every experiment's, with --all) from the
    platform, day by day, within each source's rate budget. Backfilled snapshots keep the
    time the platform computed them, stop at the first live snapshot and are never alerted.
    Interrupted, the same command resumes where it stopped.

    Exit codes: 0 done; 1 a source or the database failed, or the run was interrupted (run
    it again to resume); 2 bad usage or configuration, an unknown experiment, or a source
    that serves no history (GrowthBook without EXPERIMENT_BULK_RESULTS_ENABLED)."""
    if (experiment_id is None) == (not all_experiments):
        raise click.UsageError("name one EXPERIMENT_ID, or pass --all (not both)")
    if since is not None and until is not None and since > until:
        raise click.UsageError(f"--since {since} is after --until {until}")
    settings = load_settings(config_path)
    if not settings.sources:
        raise click.UsageError(
            f"no [sources] configured in {settings.origin}: nothing to backfill from"
        )
    if source_name is not None and source_name not in settings.sources:
        raise click.UsageError(
            f"no source {source_name!r} in the configuration; sources: "
            f"{', '.join(sorted(settings.sources))}"
        )
    progress = progress_for(sys.stderr)
    outcome = _Outcome()

    async def main_() -> None:
        clock = SystemClock()
        settings.create_store_directory()
        store = await Store.open(settings.database_url(), clock=clock.now)
        try:
            await store.database.check_writable()
            verify = settings.upstream_ssl_context() or True
            async with httpx.AsyncClient(verify=verify) as client:
                sources = [
                    s
                    for s in build_sources(settings, client, clock)
                    if isinstance(s, HistorySource)
                ]
                backfiller = Backfiller(
                    store,
                    sources,
                    clock=clock,
                    detector=ChangeDetector(clock=clock.now, policy=stats_policy(settings)),
                    rules={name: p.rules for name, p in source_policies(settings).items()},
                )
                if experiment_id is not None:
                    try:
                        name = await backfiller.source_of(experiment_id, source=source_name)
                    except LookupError as exc:
                        raise click.UsageError(str(exc)) from None
                    jobs = [BackfillJob(source=name, experiment_id=experiment_id, since=since)]
                else:
                    listed = await backfiller.every_experiment(source=source_name)
                    jobs = [
                        BackfillJob(source=j.source, experiment_id=j.experiment_id, since=since)
                        for j in listed
                    ]
                outcome.jobs = len(jobs)

                async def work() -> None:
                    await backfiller.run(
                        jobs,
                        on_plan=progress.plan,
                        on_day=progress.day,
                        until=until,
                        report=outcome.report,
                    )
                    outcome.finished = True

                try:
                    await run_until_stopped(work)
                finally:
                    progress.close()
        finally:
            await store.aclose()

    run_async(main_)
    code = outcome.exit_code()
    if as_json:
        echo_json(outcome.summary(code))
    else:
        for entry in outcome.report.experiments:
            click.echo(_line(entry))
        if not outcome.finished:
            click.echo(
                "interrupted: the days recorded so far are kept; run the same command again to "
                "resume",
                err=True,
            )
        elif not outcome.jobs:
            click.echo("nothing to backfill: the sources list no experiment to watch")
    sys.exit(code)


@dataclass
class _Outcome:
    report: BackfillReport = field(default_factory=BackfillReport)
    jobs: int = 0
    finished: bool = False

    def exit_code(self) -> int:
        if not self.finished or self.report.failed:
            return EXIT_FAILURE
        if self.report.unsupported:
            return EXIT_CONFIG
        return 0

    def summary(self, code: int) -> dict[str, Any]:
        return {
            "experiments": [_entry(e) for e in self.report.experiments],
            "requests": self.report.requests,
            "interrupted": not self.finished,
            "exit_code": code,
        }


def _entry(e: ExperimentReport) -> dict[str, Any]:
    return {
        "source": e.source,
        "experiment_id": e.experiment_id,
        "status": e.status.value,
        "first_day": e.first_day.isoformat() if e.first_day else None,
        "last_day": e.last_day.isoformat() if e.last_day else None,
        "days_already_done": e.days_already_done,
        "days_recorded": e.days_recorded,
        "days_pending": e.days_pending,
        "snapshots": e.snapshots,
        "events": e.events,
        "error": e.error,
    }


def _line(e: ExperimentReport) -> str:
    """One experiment's outcome, in words."""
    name = f"{e.source}/{e.experiment_id}"
    if e.status is BackfillStatus.INTERRUPTED:
        return (
            f"{name}: interrupted: {e.days_recorded} days recorded in this run "
            f"({e.snapshots} snapshots, {e.events} events)"
        )
    if e.status is not BackfillStatus.DONE:
        recorded = f" ({e.days_recorded} days recorded first)" if e.days_recorded else ""
        return f"{name}: {e.status.value}{recorded}: {e.error}"
    if e.first_day is None or e.last_day is None:
        return f"{name}: nothing to backfill (not started, or no day has ended yet)"
    text = (
        f"{name}: done, {e.first_day} to {e.last_day}: {e.days_recorded} days recorded now, "
        f"{e.days_already_done} before; {e.snapshots} snapshots, {e.events} events"
    )
    if e.days_pending:
        text += f"; the last {e.days_pending} days have no results yet (read again next time)"
    return text


class ProgressView(Protocol):
    def plan(self, job: BackfillJob, days: int) -> None: ...

    def day(self, done: DayDone) -> None: ...

    def close(self) -> None: ...


def progress_for(stream: IO[str]) -> ProgressView:
    """A progress bar on a terminal, plain lines otherwise."""
    if stream.isatty():
        return RichProgress(Console(file=stream))
    return PlainProgress(stream)


class PlainProgress:
    """A line when an experiment starts, every `PLAIN_EVERY_DAYS` days, and at its end."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def plan(self, job: BackfillJob, days: int) -> None:
        self._echo(f"{job.source}/{job.experiment_id}: {days} days to read")

    def day(self, done: DayDone) -> None:
        if done.days_read % PLAIN_EVERY_DAYS and done.days_read != done.days_total:
            return
        self._echo(
            f"{done.job.source}/{done.job.experiment_id}: {done.days_read}/{done.days_total} "
            f"days (through {done.day}), {done.snapshots} snapshots, {done.events} events"
        )

    def close(self) -> None:
        self._stream.flush()

    def _echo(self, text: str) -> None:
        click.echo(text, file=self._stream)


class RichProgress:
    """A bar per experiment: days read of days to read, snapshots and events so far."""

    def __init__(self, console: Console) -> None:
        self._bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("days · {task.fields[found]}"),
            TimeRemainingColumn(),
            console=console,
        )
        self._tasks: dict[tuple[str, str], TaskID] = {}
        self._started = False

    def plan(self, job: BackfillJob, days: int) -> None:
        if not self._started:
            self._bars.start()
            self._started = True
        self._tasks[(job.source, job.experiment_id)] = self._bars.add_task(
            f"{job.source}/{job.experiment_id}", total=days, found="no results yet"
        )

    def day(self, done: DayDone) -> None:
        task = self._tasks[(done.job.source, done.job.experiment_id)]
        self._bars.update(
            task,
            completed=done.days_read,
            found=f"{done.snapshots} snapshots, {done.events} events",
        )

    def close(self) -> None:
        if self._started:
            self._bars.stop()
