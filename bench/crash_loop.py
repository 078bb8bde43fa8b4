"""Crash loop: SIGKILL the daemon at random moments, restart it, and check that nothing was
lost or doubled.

A GrowthBook simulator (on loopback, in this process) serves a scenario of experiments whose
results change at every refresh: wins, losses, SRM and guardrail regressions, on a clock this
process moves. An HTTP receiver stands in for a webhook target (`json://`).

1. Ground truth: an in-process app polls every refresh once, on its own database, with the
   same configuration, and routes the alerts its events raise. It gives, per refresh, each
   experiment's snapshot count, and at the end every snapshot, event and alert.
2. The crash run: `expwatch run` in a child process on another database. The simulator
   moves to refresh k+1 only once the child's database holds every snapshot the ground truth
   has at refresh k (the platform changes no faster than we can observe it, so "every change
   recorded" is well defined); meanwhile a killer sends SIGKILL at random moments — during
   start-up, migrations, polls, routing and deliveries — and restarts the daemon at once.
3. After the last refresh and the last kill the daemon runs until its outbox is empty, then
   stops on SIGTERM. Compared with the ground truth:
   - snapshots, as (experiment, content hash): each present exactly once;
   - events, as (kind, experiment, metric, variation, before, after): same multiset;
   - alerts: every outbox row delivered, every routed event received at least once by the
     receiver, and every copy after the first flagged `possible_duplicate`;
   - `PRAGMA integrity_check` is ok.

    .venv/bin/python bench/crash_loop.py [--kills 50] [--experiments 12] [--seed 7]

The tests run a short loop (tests/test_crash_loop.py); this runs the full one and ends with
a RESULT line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from expwatch import open_app  # noqa: E402
from expwatch.config import load_config  # noqa: E402
from expwatch.serving import serve_asgi  # noqa: E402
from simulator import (  # noqa: E402
    Scenario,
    ScriptedExperiment,
    ScriptedMetric,
    ScriptedVariation,
    build_growthbook_app,
)
from store import EventKind  # noqa: E402

API_KEY = "secret_crash_loop_key"
REFRESH_SECONDS = 60.0
SOURCE = "growthbook"
TARGET = "hook"

Key = tuple[Any, ...]


def crash_scenario(*, experiments: int, refreshes: int, seed: int, start: datetime) -> Scenario:
    """`experiments` two-arm experiments whose results change at every refresh. A seeded
    draw gives each a story (a win, an SRM, a guardrail regression, a loss that comes and
    goes, or nothing) and extras along the way: a metric added to the analysis, refreshes
    without data, a new phase, a stop with a decision."""
    rng = random.Random(seed)

    def at() -> int:
        return rng.randrange(1, max(2, refreshes - 1))

    scripted = []
    for i in range(experiments):
        story: dict[str, Any] = {}
        match i % 5:
            case 0:
                story["significant_from"] = at()
            case 1:
                story["srm_from"] = at()
            case 2:
                story["guardrail_regresses_from"] = at()
            case 3:
                begin = at()
                story |= {
                    "significant_from": begin,
                    "significant_until": min(refreshes - 1, begin + 4),
                    "verdict": "lost",
                }
        if rng.random() < 0.5:
            gap = at()
            story["no_data_between"] = (gap, gap + 2)
        if rng.random() < 0.3:
            story["new_phase_at"] = at()
        if rng.random() < 0.3:
            story["stops_at"] = max(story.get("new_phase_at", 0) + 1, at())
        scripted.append(
            ScriptedExperiment(
                id=f"exp_crash_{i:02d}",
                name=f"Crash loop experiment {i}",
                tracking_key=f"crash-{i}",
                engine="frequentist" if i % 2 else "bayesian",
                variations=(
                    ScriptedVariation(id=f"var_{i}_0", key="0", name="Control"),
                    ScriptedVariation(id=f"var_{i}_1", key="1", name="Treatment"),
                ),
                weights=(0.5, 0.5),
                goals=(ScriptedMetric(id="met_conversion", name="Conversion", control_rate=0.1),),
                secondary_metrics=(
                    ScriptedMetric(
                        id="met_revisit", name="Revisits", control_rate=0.2, added_at=at()
                    ),
                ),
                guardrails=(
                    ScriptedMetric(
                        id="met_refund", name="Refunds", control_rate=0.03, inverse=True
                    ),
                ),
                users_per_refresh=20000,
                first_results_at=i % 3,
                created_seconds_before_start=float(86400 + i),
                **story,
            )
        )
    return Scenario(start=start, refresh_seconds=REFRESH_SECONDS, experiments=tuple(scripted))


@dataclass
class Receiver:
    """The webhook target: records every alert posted (JSON body) and answers 200."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    answer_delay_seconds: float = 0.05
    """How long the target takes to answer after receiving: the window in which a kill
    leaves a delivery sent but unconfirmed."""

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            body = await request.json()
            self.alerts.append(body.get("expwatch") or {})
            await anyio.sleep(self.answer_delay_seconds)
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


def write_config(path: Path, *, database: Path, simulator: str, receiver: str) -> None:
    """Polls every 0.3 s; every event kind alerts the webhook, without rate limits."""
    all_kinds = ", ".join(f'"{kind.value}"' for kind in EventKind)
    path.write_text(
        f"""log_level = "INFO"
[store]
path = "{database}"
[watcher]
poll_interval_seconds = 0.3
jitter = 0
poll_timeout_seconds = 10
[sources.{SOURCE}]
base_url = "{simulator}"
api_key = "{API_KEY}"
status = ""
rate_limit_per_minute = 100000
[alerts]
event_kinds = [{all_kinds}]
poll_interval_seconds = 0.2
retry_initial_seconds = 0.5
retry_max_seconds = 2
[alerts.rate_limit]
per_experiment_per_hour = 1000000
global_per_hour = 1000000
[alerts.targets.{TARGET}]
url = "json://{receiver.removeprefix("http://")}/alerts"
"""
    )


# -- reading a database -----------------------------------------------------------------------


def read_only(database: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    connection.row_factory = sqlite3.Row
    return connection


def snapshot_counts(database: Path) -> dict[str, int]:
    """Each experiment's number of snapshots ({} before the schema exists)."""
    if not database.exists():
        return {}
    try:
        with read_only(database) as db:
            rows = db.execute(
                "SELECT e.experiment_id, count(s.id) FROM experiments e "
                "JOIN snapshots s ON s.experiment_pk = e.id GROUP BY e.experiment_id"
            ).fetchall()
    except sqlite3.OperationalError:  # no schema yet, or busy beyond the timeout
        return {}
    return {row[0]: row[1] for row in rows}


def snapshot_keys(database: Path) -> Counter[Key]:
    with read_only(database) as db:
        rows = db.execute(
            "SELECT e.experiment_id, s.content_hash FROM snapshots s "
            "JOIN experiments e ON e.id = s.experiment_pk"
        ).fetchall()
    return Counter((row[0], row[1]) for row in rows)


def event_key(row: sqlite3.Row) -> Key:
    return (
        row["kind"],
        row["experiment_id"],
        row["metric_id"],
        row["variation_id"],
        row["before"],
        row["after"],
    )


def events(database: Path) -> dict[int, Key]:
    with read_only(database) as db:
        rows = db.execute("SELECT * FROM events ORDER BY id").fetchall()
    return {row["id"]: event_key(row) for row in rows}


def outbox(database: Path) -> list[sqlite3.Row]:
    with read_only(database) as db:
        return db.execute("SELECT * FROM alert_outbox ORDER BY id").fetchall()


def integrity(database: Path) -> str:
    with read_only(database) as db:
        return ", ".join(row[0] for row in db.execute("PRAGMA integrity_check"))


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Report:
    experiments: int
    refreshes: int
    kills: int = 0
    restarts: int = 0
    snapshots_expected: int = 0
    snapshots_recorded: int = 0
    snapshots_missing: int = 0
    snapshots_duplicated: int = 0
    events_expected: int = 0
    events_recorded: int = 0
    events_missing: int = 0
    events_extra: int = 0
    alerts_expected: int = 0
    alerts_received: int = 0
    alerts_missing: int = 0
    alerts_flagged_copies: int = 0
    alerts_unflagged_copies: int = 0
    outbox_not_delivered: int = 0
    integrity: str = ""
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.snapshots_missing + self.events_missing + self.alerts_missing

    @property
    def duplicated(self) -> int:
        return self.snapshots_duplicated + self.events_extra + self.alerts_unflagged_copies


class Timeline:
    """The simulator's clock: just after refresh `k`, moved by this process only."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.refresh = 0

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.refresh * REFRESH_SECONDS + 1)


async def ground_truth(
    config: Path, database: Path, timeline: Timeline, refreshes: int
) -> tuple[list[dict[str, int]], Counter[Key], Counter[Key], Counter[Key]]:
    """Poll each refresh once in-process: per-refresh snapshot counts, then the snapshots,
    events and routed alerts (event keys) at the end."""
    loaded = load_config(config)
    settings = loaded.model_copy(
        update={"store": loaded.store.model_copy(update={"path": database})}
    )
    counts = []
    async with open_app(settings) as app:
        await app.dispatcher.start_cursor()
        for k in range(refreshes):
            timeline.refresh = k
            await app.supervisor.poll_once()
            counts.append(snapshot_counts(database))
        await app.dispatcher.route_pending()
    keyed = events(database)
    routed = Counter(keyed[row["event_id"]] for row in outbox(database))
    return counts, snapshot_keys(database), Counter(keyed.values()), routed


async def crash_run(
    config: Path,
    database: Path,
    timeline: Timeline,
    expected_counts: list[dict[str, int]],
    *,
    kills: int,
    max_gap_seconds: float,
    rng: random.Random,
    report: Report,
    received: list[dict[str, Any]],
    log: Path,
    progress: Callable[[str], None],
    deadline_seconds: float,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPWATCH_")}
    command = [sys.executable, "-m", "expwatch", "run", "--config", str(config)]
    stepped = anyio.Event()

    async def start() -> Process:
        with log.open("ab") as sink:
            return await anyio.open_process(command, stdout=sink, stderr=sink, env=env, cwd=ROOT)

    async def step_through() -> None:
        for k, expected in enumerate(expected_counts):
            timeline.refresh = k
            while True:
                have = await anyio.to_thread.run_sync(snapshot_counts, database)
                if all(have.get(exp, 0) >= n for exp, n in expected.items()):
                    break
                await anyio.sleep(0.05)  # polling another process's database
            if k % 5 == 0:
                progress(f"  refresh {k}/{len(expected_counts)} recorded, {report.kills} kills")
        stepped.set()

    async def progress_made() -> int:
        counts = await anyio.to_thread.run_sync(snapshot_counts, database)
        return sum(counts.values()) + len(received)

    async def kill_moment() -> None:
        """Now and then during start-up (imports, migrations, restoring state); mostly once
        the daemon is at work again (a snapshot recorded or an alert received since the
        restart), a moment later, to land inside a poll, a commit or a delivery."""
        if rng.random() < 0.2:
            await anyio.sleep(rng.uniform(0.0, 1.5))
            return
        before = await progress_made()
        with anyio.move_on_after(5):
            while await progress_made() == before:  # noqa: ASYNC110 (another process's database)
                await anyio.sleep(0.02)
        await anyio.sleep(rng.uniform(0.0, max_gap_seconds))

    with anyio.fail_after(deadline_seconds):
        process = await start()
        async with anyio.create_task_group() as tg:
            tg.start_soon(step_through)
            while report.kills < kills:
                await kill_moment()
                process.send_signal(signal.SIGKILL)
                await process.wait()
                report.kills += 1
                process = await start()
                report.restarts += 1
            await stepped.wait()
        # The last daemon delivers what is left, then stops cleanly.
        while True:
            rows = await anyio.to_thread.run_sync(outbox, database)
            pending = [r for r in rows if r["status"] not in ("delivered", "failed", "suppressed")]
            routed = await anyio.to_thread.run_sync(_routed_everything, database)
            if routed and not pending:
                break
            await anyio.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        code = await process.wait()
        if code != 0:  # SIGTERM is the graceful stop (systemd's too): it must exit 0
            report.problems.append(f"the daemon exited {code} on SIGTERM")


def _routed_everything(database: Path) -> bool:
    """The alert router's cursor has reached the last event."""
    with read_only(database) as db:
        last = db.execute("SELECT max(id) FROM events").fetchone()[0] or 0
        row = db.execute("SELECT position FROM cursors WHERE consumer = 'alerts:router'").fetchone()
    return row is not None and row[0] >= last


def compare(
    report: Report,
    database: Path,
    truth_snapshots: Counter[Key],
    truth_events: Counter[Key],
    truth_alerts: Counter[Key],
    received: list[dict[str, Any]],
) -> None:
    snapshots = snapshot_keys(database)
    report.snapshots_expected = sum(truth_snapshots.values())
    report.snapshots_recorded = sum(snapshots.values())
    report.snapshots_missing = sum((truth_snapshots - snapshots).values())
    report.snapshots_duplicated = sum((snapshots - truth_snapshots).values())

    keyed = events(database)
    recorded = Counter(keyed.values())
    report.events_expected = sum(truth_events.values())
    report.events_recorded = sum(recorded.values())
    report.events_missing = sum((truth_events - recorded).values())
    report.events_extra = sum((recorded - truth_events).values())

    rows = outbox(database)
    report.outbox_not_delivered = sum(1 for r in rows if r["status"] != "delivered")
    routed = Counter(keyed[r["event_id"]] for r in rows)
    report.alerts_expected = sum(truth_alerts.values())
    report.alerts_missing = sum((truth_alerts - routed).values())
    copies: dict[int, list[bool]] = {}
    for alert in received:
        copies.setdefault(alert["event_id"], []).append(bool(alert["possible_duplicate"]))
    report.alerts_received = len(received)
    for row in rows:
        flags = copies.get(row["event_id"], [])
        if not flags:
            report.alerts_missing += 1
            continue
        report.alerts_flagged_copies += sum(flags)
        # One copy may go out unflagged; every further copy must carry the flag.
        report.alerts_unflagged_copies += max(0, flags.count(False) - 1)
    report.integrity = integrity(database)

    for name in ("snapshots_missing", "snapshots_duplicated", "events_missing", "events_extra"):
        if getattr(report, name):
            report.problems.append(f"{name}={getattr(report, name)}")
    if report.alerts_missing or report.alerts_unflagged_copies or report.outbox_not_delivered:
        report.problems.append(
            f"alerts_missing={report.alerts_missing} "
            f"alerts_unflagged_copies={report.alerts_unflagged_copies} "
            f"outbox_not_delivered={report.outbox_not_delivered}"
        )
    if report.integrity != "ok":
        report.problems.append(f"integrity_check: {report.integrity}")


async def run_crash_loop(
    workdir: Path,
    *,
    kills: int = 50,
    experiments: int = 12,
    refreshes: int = 60,
    seed: int = 7,
    max_gap_seconds: float = 0.5,
    deadline_seconds: float = 1800.0,
    progress: Callable[[str], None] = lambda _: None,
) -> Report:
    """Run the loop in `workdir` and return the comparison; `report.problems` is empty when
    nothing was lost or doubled."""
    began = time.perf_counter()
    rng = random.Random(seed)
    # The simulated platform's refreshes end about now, so nothing looks stale.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(
        seconds=refreshes * REFRESH_SECONDS
    )
    timeline = Timeline(start)
    scenario = crash_scenario(experiments=experiments, refreshes=refreshes, seed=seed, start=start)
    simulator = build_growthbook_app(
        scenario, api_key=API_KEY, clock=timeline.now, rate_limit_per_minute=100000
    )
    receiver = Receiver()
    report = Report(experiments=experiments, refreshes=refreshes)
    async with anyio.create_task_group() as tg:
        sim_port = await tg.start(
            lambda task_status: serve_asgi(simulator, task_status=task_status)
        )
        hook_port = await tg.start(
            lambda task_status: serve_asgi(receiver.app(), task_status=task_status)
        )
        config = workdir / "expwatch.toml"
        database = workdir / "crash.db"
        write_config(
            config,
            database=database,
            simulator=f"http://127.0.0.1:{sim_port}",
            receiver=f"http://127.0.0.1:{hook_port}",
        )
        progress("ground truth: one uninterrupted poll per refresh")
        counts, truth_snapshots, truth_events, truth_alerts = await ground_truth(
            config, workdir / "truth.db", timeline, refreshes
        )
        receiver.alerts.clear()  # the ground truth routes, but never sends
        kinds = Counter(key[0] for key in truth_events.elements())
        progress(
            f"  {sum(truth_snapshots.values())} snapshots, {sum(truth_events.values())} events"
            f" ({', '.join(f'{n} {kind}' for kind, n in kinds.most_common())}),"
            f" {sum(truth_alerts.values())} alerts"
        )
        progress(f"crash run: {kills} SIGKILLs at random moments")
        await crash_run(
            config,
            database,
            timeline,
            counts,
            kills=kills,
            max_gap_seconds=max_gap_seconds,
            rng=rng,
            report=report,
            received=receiver.alerts,
            log=workdir / "daemon.log",
            progress=progress,
            deadline_seconds=deadline_seconds,
        )
        compare(report, database, truth_snapshots, truth_events, truth_alerts, receiver.alerts)
        tg.cancel_scope.cancel()
    report.seconds = time.perf_counter() - began
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--experiments", type=int, default=12)
    parser.add_argument("--refreshes", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--max-gap", type=float, default=0.5, help="seconds from renewed work to a kill, at most"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="expwatch-crash-") as tmp:
        report = anyio.run(
            lambda: run_crash_loop(
                Path(tmp),
                kills=args.kills,
                experiments=args.experiments,
                refreshes=args.refreshes,
                seed=args.seed,
                max_gap_seconds=args.max_gap,
                progress=print,
            )
        )
        if report.problems:
            print((Path(tmp) / "daemon.log").read_text()[-4000:])
    figures = asdict(report)
    del figures["problems"]
    print(json.dumps(figures, indent=2))
    print("problems:", "; ".join(report.problems) or "none")
    # The baseline is the uninterrupted ground-truth run: ratios of 1.0 mean nothing lost.
    print(
        f"recorded/expected: snapshots {report.snapshots_recorded}/{report.snapshots_expected}, "
        f"events {report.events_recorded}/{report.events_expected}, alerts routed "
        f"{report.alerts_expected - report.alerts_missing}/{report.alerts_expected}"
    )
    print(
        f"RESULT kills={report.kills} snapshots={report.snapshots_recorded} "
        f"events={report.events_recorded} alerts_received={report.alerts_received} "
        f"lost={report.lost} duplicates_unflagged={report.duplicated} "
        f"flagged_copies={report.alerts_flagged_copies} integrity={report.integrity} "
        f"seconds={report.seconds:.0f}"
    )
    sys.exit(1 if report.problems else 0)


if __name__ == "__main__":
    main()
