"""`expwatch backfill` as a user runs it: the click command in this process (main thread,
which owns the signals), the simulators on loopback in a portal thread, a real SQLite file."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner, Result
from rich.console import Console

from expwatch.cli_backfill import PlainProgress, RichProgress, backfill
from expwatch.serving import serve_asgi
from simulator import (
    build_growthbook_app,
    build_statsig_app,
    default_scenario,
    default_statsig_scenario,
)
from watcher import BackfillJob, DayDone

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DAY = 86400.0
SG_KEY = "console-cliBackfillKey"
GB_KEY = "secret_cli_backfill_key"
UNTIL = "2026-01-14"


@dataclass
class Platforms:
    statsig: str
    growthbook: str


@pytest.fixture
def platforms() -> Iterator[Platforms]:
    """Both simulators on loopback, on day 10 of their stories (GrowthBook without bulk
    results, as it ships)."""
    now = START + timedelta(days=10, seconds=1)
    statsig = build_statsig_app(
        default_statsig_scenario(start=START, refresh_seconds=DAY),
        api_key=SG_KEY,
        clock=lambda: now,
    )
    growthbook = build_growthbook_app(
        default_scenario(start=START, refresh_seconds=DAY), api_key=GB_KEY, clock=lambda: now
    )
    with start_blocking_portal(backend="asyncio") as portal:
        servers = [
            portal.start_task(lambda task_status, app=app: serve_asgi(app, task_status=task_status))
            for app in (statsig, growthbook)
        ]
        yield Platforms(*(f"http://127.0.0.1:{port}" for _, port in servers))
        for future, _ in servers:
            future.cancel()


def config(tmp_path: Path, platforms: Platforms, *, sources: tuple[str, ...] = ("sg",)) -> Path:
    blocks = {
        "sg": (
            f'[sources.sg]\nkind = "statsig"\nbase_url = "{platforms.statsig}"\n'
            f'api_key = "{SG_KEY}"\nrate_limit_per_minute = 0\n'
        ),
        "gb": (
            f'[sources.gb]\nkind = "growthbook"\nbase_url = "{platforms.growthbook}"\n'
            f'api_key = "{GB_KEY}"\nrate_limit_per_minute = 0\n'
        ),
    }
    path = tmp_path / "expwatch.toml"
    path.write_text('[store]\npath = "history.db"\n' + "".join(blocks[name] for name in sources))
    return path


def run(path: Path, *args: str) -> Result:
    return CliRunner().invoke(backfill, [*args, "--config", str(path)], catch_exceptions=False)


def test_a_statsig_backfill_reports_as_json_and_a_second_run_has_nothing_left(
    tmp_path: Path, platforms: Platforms, restore_logging: None
) -> None:
    """Exit 0 with a JSON summary (ten days read, nine snapshots, events, the requests);
    plain progress lines on stderr; run again, every day is already done."""
    path = config(tmp_path, platforms)
    first = run(path, "checkout_redesign", "--until", UNTIL, "--json")
    again = run(path, "checkout_redesign", "--until", UNTIL, "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    [entry] = summary["experiments"]
    assert entry["status"] == "done" and (entry["first_day"], entry["last_day"]) == (
        "2026-01-05",
        UNTIL,
    )
    assert (entry["days_recorded"], entry["snapshots"]) == (10, 9) and entry["events"] >= 2
    assert summary["requests"] == 11 and summary["exit_code"] == 0
    assert "sg/checkout_redesign: 10 days to read" in first.stderr
    assert "10/10 days (through 2026-01-14), 9 snapshots" in first.stderr
    assert again.exit_code == 0
    [repeat] = json.loads(again.stdout)["experiments"]
    assert (repeat["days_already_done"], repeat["days_recorded"]) == (10, 0)
    assert SG_KEY not in first.output + again.output


def test_all_backfills_every_experiment_the_source_lists(
    tmp_path: Path, platforms: Platforms, restore_logging: None
) -> None:
    """--all reads the experiments Statsig lists as active, and says what it did for each."""
    path = config(tmp_path, platforms)
    result = run(path, "--all", "--until", UNTIL, "--since", "2026-01-10")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(
        line.startswith("sg/checkout_redesign: done, 2026-01-10 to 2026-01-14") for line in lines
    )
    assert any(line.startswith("sg/pricing_page: done") for line in lines)
    assert len(lines) == 2


def test_growthbook_without_bulk_results_exits_2_saying_how_to_enable_history(
    tmp_path: Path, platforms: Platforms, restore_logging: None
) -> None:
    """GrowthBook as it ships answers bulk-results with a 404: no crash, exit code 2, and
    the message names EXPERIMENT_BULK_RESULTS_ENABLED."""
    path = config(tmp_path, platforms, sources=("gb",))
    result = run(path, "exp_checkout_redesign", "--until", UNTIL)
    assert result.exit_code == 2
    assert "gb/exp_checkout_redesign: unsupported" in result.stdout
    assert "EXPERIMENT_BULK_RESULTS_ENABLED=true" in result.stdout


def test_an_unknown_experiment_exits_2_naming_the_closest_id(
    tmp_path: Path, platforms: Platforms, restore_logging: None
) -> None:
    """An id the platform does not know: exit 2, and the closest id it lists."""
    path = config(tmp_path, platforms)
    result = run(path, "checkout_redesing", "--until", UNTIL)
    assert result.exit_code == 2
    assert "not_found" in result.stdout and "Did you mean: checkout_redesign" in result.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "name one EXPERIMENT_ID, or pass --all"),
        (("checkout_redesign", "--all"), "name one EXPERIMENT_ID, or pass --all"),
        (("checkout_redesign", "--since", "2026-13-01"), "is not a date"),
        (("x", "--since", "2026-01-10", "--until", "2026-01-09"), "is after --until"),
        (("x", "--source", "nope"), "no source 'nope' in the configuration; sources: gb, sg"),
        (("x",), "could come from several sources (gb, sg): name one with --source"),
    ],
)
def test_bad_usage_exits_2_with_what_to_do(
    tmp_path: Path,
    platforms: Platforms,
    restore_logging: None,
    args: tuple[str, ...],
    says: str,
) -> None:
    """Arguments that cannot work are refused with exit code 2 and a sentence saying why."""
    path = config(tmp_path, platforms, sources=("sg", "gb"))
    result = run(path, *args)
    assert result.exit_code == 2
    assert says in result.output


def progress_of(job: BackfillJob, day: int, total: int) -> DayDone:
    return DayDone(
        job=job, day=date(2026, 1, day), days_read=day, days_total=total, snapshots=day, events=1
    )


def test_a_terminal_gets_a_progress_bar_and_a_pipe_periodic_lines() -> None:
    """On a terminal the bar shows the experiment and days read of days to read; without
    one, a line at the start, every ten days and at the end."""
    job = BackfillJob(source="sg", experiment_id="checkout_redesign")
    screen = io.StringIO()
    bar = RichProgress(Console(file=screen, force_terminal=True, width=120))
    bar.plan(job, 12)
    for day in range(1, 13):
        bar.day(progress_of(job, day, 12))
    bar.close()
    assert "sg/checkout_redesign" in screen.getvalue() and "12/12" in screen.getvalue()
    pipe = io.StringIO()
    plain = PlainProgress(pipe)
    plain.plan(job, 12)
    for day in range(1, 13):
        plain.day(progress_of(job, day, 12))
    assert [line.split(": ", 1)[1] for line in pipe.getvalue().splitlines()] == [
        "12 days to read",
        "10/12 days (through 2026-01-10), 10 snapshots, 1 events",
        "12/12 days (through 2026-01-12), 12 snapshots, 1 events",
    ]
