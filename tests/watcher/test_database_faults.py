"""Database faults under a running watcher: a full disk, a lock held past the busy timeout, a
read-only file system. The poll loop keeps running and says so once, naming the file; nothing
is half-written; once the fault clears, every change made upstream meanwhile is recorded
exactly once, as a run of the same clock steps without the fault recorded it.

The real faults need root on Linux (a small tmpfs, filled up or remounted read-only) and skip
without it; each has a portable variant through SQLite's own limits on the store's one writer
connection (`PRAGMA max_page_count`, `query_only`, `busy_timeout`)."""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import anyio
import httpx
import pytest
from fastmcp import Client
from mcp import types
from mcp.shared.exceptions import MCPError
from pydantic import SecretStr
from sqlalchemy import text

from alerts import ROUTER_CURSOR, AlertDispatcher, AlertTarget
from expwatch import open_app
from expwatch.config import (
    AlertSettings,
    AlertTargetSettings,
    GrowthBookSourceSettings,
    Settings,
    StoreSettings,
    WatcherSettings,
)
from mcp_server import INDEX_URI, ResponseCache, ServerOptions, build_server
from simulator import (
    DriftFault,
    Fault,
    Faults,
    Scenario,
    StatusFault,
    build_growthbook_app,
    default_scenario,
    set_field,
)
from store import EventKind, Store, StoreError, sqlite_url
from tests.helpers import ManualClock, http_receiver
from tests.watcher.conftest import API_KEY, REFRESH_SECONDS
from watcher import (
    CycleReport,
    GrowthBookSource,
    RateBudget,
    RetryPolicy,
    SourcePolicy,
    SourceStatus,
    Supervisor,
    WatchRules,
)

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
TMPFS_BYTES = 8 * 1024 * 1024
FAULT_AFTER = 5
"""The fault starts after the cycle of refresh 5 and lasts into refresh 6, whose results (and
the SRM event they raise) can only be recorded once it clears."""
FAULT_CLEARS_AT = 20.0
"""Seconds into refresh 6: the cycle (at +1 s) and its retries at +6 and +16 s have failed."""
FAILED_ATTEMPTS = 3
LAST = 7
TASK = "polling gb"
DEFAULT_POLICY = SourcePolicy()
ONE_BY_ONE = SourcePolicy(use_portfolio=False)


# -- faults -------------------------------------------------------------------------------


class DatabaseFault(Protocol):
    """Something that stops the store from writing, and its end."""

    reasons: tuple[str, ...]
    """SQLite's words for it (any of them)."""
    stops_routing: bool
    """Whether routing one alert fails under it too."""
    stops_reads: bool
    """Whether reads fail too."""

    async def start(self, store: Store) -> None: ...

    async def stop(self, store: Store) -> None: ...


@dataclass
class FullDisk:
    """The tmpfs holding the database filled up by another file; removing it frees the
    space."""

    mount: Path
    reasons: tuple[str, ...] = ("database or disk is full",)
    stops_routing: bool = True
    stops_reads: bool = False

    async def start(self, store: Store) -> None:
        await anyio.to_thread.run_sync(fill, self.mount / "filler")

    async def stop(self, store: Store) -> None:
        (self.mount / "filler").unlink()


@dataclass
class PageLimit:
    """Portable full disk: SQLite's page limit set to the database's size on the store's one
    writer connection, so any write that needs a page fails as on a full disk (a small one
    that fits in the pages there are, such as routing one alert, succeeds)."""

    reasons: tuple[str, ...] = ("database or disk is full",)
    stops_routing: bool = False
    stops_reads: bool = False

    async def start(self, store: Store) -> None:
        async with store.database.autocommit() as conn:
            pages = await conn.scalar(text("PRAGMA page_count"))
            await conn.execute(text(f"PRAGMA max_page_count = {int(pages or 0)}"))

    async def stop(self, store: Store) -> None:
        async with store.database.autocommit() as conn:
            await conn.execute(text("PRAGMA max_page_count = 4294967294"))


@dataclass
class HeldLock:
    """Another connection holds the write lock (BEGIN EXCLUSIVE) past the store's busy
    timeout. The default run shortens that timeout on the store's writer connection (the
    same mechanism, 0.2 s instead of 5 s a failed attempt); the long run keeps it."""

    database: Path
    busy_timeout_ms: int | None
    """Shortened to this (None: the store's own)."""
    reasons: tuple[str, ...] = ("database is locked",)
    stops_routing: bool = True
    stops_reads: bool = False
    _holder: sqlite3.Connection | None = None
    _store_timeout_ms: int | None = None

    async def start(self, store: Store) -> None:
        if self.busy_timeout_ms is not None:
            self._store_timeout_ms = await set_busy_timeout(store, self.busy_timeout_ms)

        def hold() -> sqlite3.Connection:
            holder = sqlite3.connect(self.database, isolation_level=None, check_same_thread=False)
            holder.execute("BEGIN EXCLUSIVE")
            return holder

        self._holder = await anyio.to_thread.run_sync(hold)

    async def stop(self, store: Store) -> None:
        assert self._holder is not None
        holder = self._holder
        await anyio.to_thread.run_sync(lambda: (holder.execute("ROLLBACK"), holder.close()))
        if self._store_timeout_ms is not None:
            await set_busy_timeout(store, self._store_timeout_ms)


@dataclass
class QueryOnly:
    """Portable read-only database: SQLite's query_only switch on the store's writer
    connection."""

    reasons: tuple[str, ...] = ("attempt to write a readonly database",)
    stops_routing: bool = True
    stops_reads: bool = False

    async def start(self, store: Store) -> None:
        async with store.database.autocommit() as conn:
            await conn.execute(text("PRAGMA query_only = 1"))

    async def stop(self, store: Store) -> None:
        async with store.database.autocommit() as conn:
            await conn.execute(text("PRAGMA query_only = 0"))


@dataclass
class ReadOnlyRemount:
    """The tmpfs remounted read-only and back. The kernel refuses that (EBUSY) while a file
    on it is open for writing, so the store's pooled connections are released first, as when
    a connection is recycled; the store reopens them on its own."""

    mount: Path
    reasons: tuple[str, ...] = ("readonly database", "unable to open database file")
    stops_routing: bool = True
    stops_reads: bool = True

    async def start(self, store: Store) -> None:
        await store.database.aclose()
        await remount(self.mount, "ro")

    async def stop(self, store: Store) -> None:
        await remount(self.mount, "rw")


def fill(path: Path) -> None:
    """Write `path` until its file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        block = b"\0" * 65536
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(block) == 512:
                    return
                block = block[: len(block) // 2]
    finally:
        os.close(fd)


async def set_busy_timeout(store: Store, milliseconds: int) -> int:
    """Set the busy timeout of the store's one writer connection; returns the one before."""
    async with store.database.autocommit() as conn:
        before = await conn.scalar(text("PRAGMA busy_timeout"))
        await conn.execute(text(f"PRAGMA busy_timeout = {milliseconds}"))
    return int(before or 0)


async def remount(mount: Path, mode: str) -> None:
    done = await anyio.run_process(["mount", "-o", f"remount,{mode}", str(mount)], check=False)
    if done.returncode != 0:
        raise RuntimeError(f"remount,{mode} {mount}: {done.stderr.decode().strip()}")


# -- a small tmpfs ------------------------------------------------------------------------


def mount_tmpfs(mount: Path) -> None:
    """Mount an 8 MiB tmpfs at `mount`, or skip the test saying why that is impossible."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("the real disk and mount faults need root on Linux (a tmpfs is mounted)")
    if shutil.which("mount") is None:
        pytest.skip("the real disk and mount faults need the mount command")
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def unmount(mount: Path) -> None:
    """Unmount whatever state the test left it in (lazily if something still holds it)."""
    if subprocess.run(["umount", str(mount)], capture_output=True, check=False).returncode:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs in the test's directory, unmounted afterwards whatever happened."""
    mount = tmp_path / "tmpfs"
    mount_tmpfs(mount)
    try:
        yield mount
    finally:
        unmount(mount)


@pytest.fixture
def remountable_tmpfs(tmpfs: Path) -> Path:
    """The tmpfs, once it is known that it can be remounted read-only and back here."""
    for mode in ("ro", "rw"):
        done = subprocess.run(
            ["mount", "-o", f"remount,{mode}", str(tmpfs)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot remount a tmpfs {mode} here: {done.stderr.strip()}")
    return tmpfs


# -- one watcher run ----------------------------------------------------------------------


@dataclass
class Recorded:
    """What a run left in its database, free of times and ids."""

    snapshots: list[tuple[str, str]]
    """(experiment, content hash) in the order they were stored, per experiment."""
    events: Counter[tuple[Any, ...]]
    outbox: Counter[tuple[Any, ...]]
    """(event kind, experiment, target, status) per outbox row."""
    router_cursor: int
    last_event_id: int
    integrity: str


@dataclass
class Run:
    reports: list[CycleReport] = field(default_factory=list)
    recorded: Recorded | None = None
    during: SourceStatus | None = None
    """The source's status while the fault lasted."""
    outages: list[str] = field(default_factory=list)
    """The store's health while the fault lasted: the failing tasks."""
    status_during: dict[str, Any] = field(default_factory=dict)
    """The MCP watcher://status while the fault lasted."""
    index_error: str | None = None
    """Why the MCP experiment index could not be read during the fault, if it could not."""
    routing_error: StoreError | None = None
    routed_during: tuple[int, int, int] | None = None
    """(outbox rows, router cursor, last event id) right after the fault, before anything
    else wrote."""
    after: SourceStatus | None = None


def read_back(database: Path) -> Recorded:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
        snapshots = connection.execute(
            "SELECT x.experiment_id, s.content_hash FROM snapshots s "
            "JOIN experiments x ON x.id = s.experiment_pk ORDER BY x.experiment_id, s.id"
        ).fetchall()
        events = connection.execute(
            "SELECT kind, source, experiment_id, metric_id, variation_id, before, after FROM events"
        ).fetchall()
        outbox = connection.execute(
            "SELECT e.kind, o.experiment_id, o.target, o.status FROM alert_outbox o "
            "JOIN events e ON e.id = o.event_id"
        ).fetchall()
        cursor = connection.execute(
            "SELECT position FROM cursors WHERE consumer = ?", (ROUTER_CURSOR,)
        ).fetchone()
        last_event_id = connection.execute("SELECT max(id) FROM events").fetchone()[0]
    finally:
        connection.close()
    return Recorded(
        snapshots=[tuple(r) for r in snapshots],
        events=Counter(tuple(r) for r in events),
        outbox=Counter(tuple(r) for r in outbox),
        router_cursor=cursor[0] if cursor else 0,
        last_event_id=last_event_id or 0,
        integrity=integrity,
    )


def refresh_time(scenario: Scenario, index: int, seconds: float) -> datetime:
    return scenario.start + timedelta(seconds=index * REFRESH_SECONDS + seconds)


Upstream = Callable[[int], Sequence[tuple[Fault, str]]]
"""The simulator's faults (and the paths they hit) during each refresh."""


def healthy(refresh: int) -> Sequence[tuple[Fault, str]]:
    return ()


async def watch(
    database: Path,
    fault: DatabaseFault | None = None,
    *,
    policy: SourcePolicy = DEFAULT_POLICY,
    upstream: Upstream = healthy,
) -> Run:
    """Run the supervisor's loop on a manual clock through refreshes 1..LAST, one cycle per
    refresh, under the `upstream` faults of each refresh; with `fault`, break the database
    after refresh FAULT_AFTER's cycle and mend it FAULT_CLEARS_AT seconds into the next.
    The alert router routes what was recorded once during the fault (which must fail whole
    or succeed whole) and once at the end."""
    clock = ManualClock()
    scenario = default_scenario(start=clock.now(), refresh_seconds=REFRESH_SECONDS)
    faults = Faults()
    app = build_growthbook_app(scenario, api_key=API_KEY, clock=clock.now, faults=faults)
    store = await Store.open(sqlite_url(database), clock=clock.now)
    run = Run()

    async def enter(refresh: int) -> None:
        """Move to just before the refresh's cycle and put its upstream faults in place."""
        if refresh == 1:  # the loop is not running yet
            clock.advance((refresh_time(scenario, 1, 0.5) - clock.now()).total_seconds())
        else:
            await clock.run_until(refresh_time(scenario, refresh, 0.5))
        faults.clear()
        for upstream_fault, path in upstream(refresh):
            faults.add(upstream_fault, path=path)

    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            source = GrowthBookSource(
                name="gb",
                base_url="http://gb.test",
                api_key=API_KEY,
                client=client,
                budget=RateBudget(None, clock=clock),
                retry=RetryPolicy(attempts=3),
            )
            supervisor = Supervisor(
                store,
                [source],
                clock=clock,
                poll_interval_seconds=REFRESH_SECONDS,
                jitter=0,
                source_policies={"gb": policy},
            )
            router = AlertDispatcher(store, [AlertTarget(name="hook", url="json://127.0.0.1:9/")])
            server = build_server(
                store, cache=ResponseCache(), options=ServerOptions(sources=("gb",))
            )
            await router.start_cursor()  # from the first event on
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg, Client(server) as mcp:
                    await enter(1)
                    clock.advance(0.5)
                    await tg.start(functools.partial(supervisor.run, on_cycle=run.reports.append))
                    for refresh in range(2, FAULT_AFTER + 1):
                        await enter(refresh)
                    await clock.run_until(refresh_time(scenario, FAULT_AFTER, 2))
                    if fault is not None:
                        await fault.start(store)
                        try:
                            await router.route_pending()
                        except StoreError as exc:
                            run.routing_error = exc
                    await enter(FAULT_AFTER + 1)
                    await clock.run_until(refresh_time(scenario, FAULT_AFTER + 1, FAULT_CLEARS_AT))
                    run.during = supervisor.status()[0]
                    run.outages = [o.task for o in store.health.outages()]
                    run.status_during = await read_status(mcp)
                    try:
                        await mcp.read_resource(INDEX_URI)
                    except MCPError as exc:
                        run.index_error = str(exc)
                    if fault is not None:
                        await fault.stop(store)
                        run.routed_during = (
                            len(await store.outbox.deliveries()),
                            await store.cursor(ROUTER_CURSOR) or 0,
                            await store.last_event_id(),
                        )
                    for refresh in range(FAULT_AFTER + 2, LAST + 1):
                        await enter(refresh)
                    await clock.run_until(refresh_time(scenario, LAST, 50))
                    tg.cancel_scope.cancel()
            await router.route_pending()
            run.after = supervisor.status()[0]
    finally:
        await store.aclose()
    run.recorded = read_back(database)
    return run


REFERENCES: dict[tuple[SourcePolicy, Upstream], Run] = {}
"""Runs without a fault, by policy and upstream story (the same for every fault)."""


async def check_fault(
    tmp_path: Path,
    database: Path,
    fault: DatabaseFault,
    caplog: pytest.LogCaptureFixture,
    *,
    expect: set[EventKind],
    policy: SourcePolicy = DEFAULT_POLICY,
    upstream: Upstream = healthy,
) -> None:
    """The checks every fault must pass, against a run of the same steps without it; the
    events of `expect` must be among those recorded (so the comparison is not vacuous)."""
    key = (policy, upstream)
    if key not in REFERENCES:
        REFERENCES[key] = await watch(tmp_path / "reference.db", policy=policy, upstream=upstream)
    reference = REFERENCES[key]
    caplog.clear()
    faulted = await watch(database, fault, policy=policy, upstream=upstream)

    # The loop kept running: the failed attempts, then one cycle per refresh again.
    failed = [r for r in faulted.reports if any(str(database) in e for e in r.errors)]
    assert len(failed) == FAILED_ATTEMPTS
    assert len(faulted.reports) == len(reference.reports) + FAILED_ATTEMPTS

    # Reported once, clearly, as the database's problem and not the source's.
    # (FastMCP logs each failed resource read itself; the experiment index fails under a
    # read-only remount, and says why: checked below.)
    errors = [
        r for r in caplog.records if r.levelno >= logging.ERROR and not r.name.startswith("fastmcp")
    ]
    [error] = errors
    message = error.getMessage()
    assert message.startswith(f"{TASK} failed: database ")
    assert str(database) in message
    assert any(reason in message for reason in fault.reasons), message
    assert "retrying in 5 s" in message and error.exc_info is None
    resumed = [r.getMessage() for r in caplog.records if "resumed" in r.getMessage()]
    assert resumed == [
        f"{TASK} resumed: the database {database} works again after 35 s "
        f"({FAILED_ATTEMPTS} failed attempts)."
    ]
    assert faulted.during is not None and faulted.during.database_error is not None
    assert str(database) in faulted.during.database_error
    assert faulted.outages == [TASK]
    [shown] = faulted.status_during["database_failing"]
    assert shown["task"] == TASK and shown["failed_attempts"] == FAILED_ATTEMPTS
    assert shown["error"] == faulted.during.database_error
    if fault.stops_reads:  # reads say why they fail
        assert faulted.index_error is not None and str(database) in faulted.index_error
    else:
        assert faulted.index_error is None
    assert faulted.status_during["note"].startswith(
        "The database cannot be read: "
        if fault.stops_reads
        else f"The database is failing ({TASK})"
    )
    assert faulted.after is not None and faulted.after.database_error is None
    assert reference.after is not None
    assert faulted.after.breaker.state == reference.after.breaker.state == "closed"
    assert faulted.after.breaker.consecutive_failures == 0

    # Routing what was recorded before the fault failed whole (no row, the cursor unmoved)
    # or succeeded whole (the cursor at the end of the log).
    assert (faulted.routing_error is not None) is fault.stops_routing
    assert faulted.routed_during is not None
    rows, cursor, last_event_id = faulted.routed_during
    assert (rows, cursor) == (0, 0) if fault.stops_routing else cursor == last_event_id

    # Nothing half-written, nothing lost, nothing twice.
    got, want = faulted.recorded, reference.recorded
    assert got is not None and want is not None
    assert got.integrity == "ok"
    assert got.snapshots == want.snapshots
    assert got.events == want.events
    assert expect <= {EventKind(kind) for kind, *_ in got.events}
    assert got.outbox == want.outbox and max(got.outbox.values(), default=1) == 1
    assert got.router_cursor == got.last_event_id


SRM = {EventKind.SRM_DETECTED}
"""Raised by refresh 6, whose results only the first cycle after the fault can record."""


async def test_a_full_disk_pauses_recording_and_loses_nothing(
    tmp_path: Path, tmpfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The tmpfs holding the database fills up during refresh 6: three attempts fail and
    roll back, one ERROR names the file and the reason, and once space is freed refresh 6
    (with its SRM event) and 7 are recorded exactly as without the fault."""
    database = tmpfs / "expwatch.db"
    await check_fault(tmp_path, database, FullDisk(tmpfs), caplog, expect=SRM)


async def test_a_full_disk_during_one_by_one_fetches_ends_the_cycle_cleanly(
    tmp_path: Path, tmpfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the portfolio endpoint the experiments are fetched and recorded concurrently;
    the first failed record ends the cycle, and the others are fetched again next time."""
    database = tmpfs / "expwatch.db"
    policy = SourcePolicy(use_portfolio=False)
    await check_fault(tmp_path, database, FullDisk(tmpfs), caplog, expect=SRM, policy=policy)


async def test_a_page_limit_is_a_full_disk_anywhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Portable full disk (SQLite's max_page_count): the same checks, without root."""
    await check_fault(tmp_path, tmp_path / "expwatch.db", PageLimit(), caplog, expect=SRM)


async def test_a_lock_held_past_the_busy_timeout_is_waited_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, long_run: bool
) -> None:
    """Another connection holds BEGIN EXCLUSIVE through refresh 6: each attempt gives up
    after the busy timeout and rolls back; after ROLLBACK of the holder, all is recorded."""
    database = tmp_path / "expwatch.db"
    fault = HeldLock(database, None if long_run else 200)
    await check_fault(tmp_path, database, fault, caplog, expect=SRM)


async def test_a_read_only_database_is_waited_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Portable read-only database (SQLite's query_only): the same checks, without root."""
    await check_fault(tmp_path, tmp_path / "expwatch.db", QueryOnly(), caplog, expect=SRM)


async def test_a_file_system_remounted_read_only_is_waited_out(
    tmp_path: Path, remountable_tmpfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The tmpfs is remounted read-only during refresh 6 (reads fail too: the database is in
    WAL mode) and read-write again; the same checks hold."""
    database = remountable_tmpfs / "expwatch.db"
    fault = ReadOnlyRemount(remountable_tmpfs)
    await check_fault(tmp_path, database, fault, caplog, expect=SRM)


# -- what the watcher keeps in memory follows what was committed ----------------------------

LISTING = "/api/v1/experiments"
PRICING_RESULTS = "/api/v1/experiments/exp_pricing_page/results"


@dataclass(frozen=True)
class Bookkeeping:
    """An upstream story whose first write under the database fault is one piece of the
    supervisor's bookkeeping; its event must be recorded once the fault clears."""

    upstream: Upstream
    expect: set[EventKind]
    policy: SourcePolicy = ONE_BY_ONE


BOOKKEEPING = {
    # Refresh 6's listing fails: the source_error is the cycle's first write.
    "a source error": Bookkeeping(
        upstream=lambda refresh: [(StatusFault(503), LISTING)] if refresh == 6 else [],
        expect={EventKind.SOURCE_ERROR, EventKind.SOURCE_RECOVERED},
    ),
    # Refresh 5's listing failed; refresh 6's works: the source_recovered is the first write.
    "a recovery": Bookkeeping(
        upstream=lambda refresh: [(StatusFault(503), LISTING)] if refresh == 5 else [],
        expect={EventKind.SOURCE_ERROR, EventKind.SOURCE_RECOVERED},
    ),
    # Refresh 5's failure opened the breaker; refresh 6's probe closes it.
    "a breaker closing": Bookkeeping(
        upstream=lambda refresh: [(StatusFault(503), LISTING)] if refresh == 5 else [],
        expect={EventKind.SOURCE_UNAVAILABLE, EventKind.SOURCE_RECOVERED},
        policy=SourcePolicy(use_portfolio=False, failure_threshold=1, cooldown_seconds=60),
    ),
    # Pricing's results stop parsing at refresh 3; at refresh 6 they are stale, the only
    # write of the cycle (checkout is not watched).
    "a stale flag": Bookkeeping(
        upstream=lambda refresh: (
            [(DriftFault(set_field("result.results.0.totalUsers", "many")), PRICING_RESULTS)]
            if refresh >= 3
            else []
        ),
        expect={EventKind.RESULTS_STALE},
        policy=SourcePolicy(
            use_portfolio=False,
            rules=WatchRules(exclude=frozenset({"exp_checkout_redesign"})),
            stale_after_seconds=200,
        ),
    ),
}


@pytest.mark.parametrize("story", list(BOOKKEEPING))
async def test_events_whose_write_failed_are_recorded_once_the_fault_clears(
    story: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A source error, a recovery, a breaker closing or a stale flag whose event could not
    be written is not taken as reported: it is recorded after the fault, once."""
    case = BOOKKEEPING[story]
    await check_fault(
        tmp_path,
        tmp_path / "expwatch.db",
        QueryOnly(),
        caplog,
        expect=case.expect,
        policy=case.policy,
        upstream=case.upstream,
    )


# -- the whole daemon ---------------------------------------------------------------------


async def run_daemon_until(clock: ManualClock, end: datetime) -> None:
    """Virtual time for the daemon, whose poll loop and retention both sleep on `clock`:
    whenever every task is blocked and both sleep (neither is busy in the database), jump
    to the earliest wake time, up to `end`."""
    while clock.now() < end:
        await anyio.wait_all_tasks_blocked()
        wake = clock.next_wake_at
        if clock.sleepers < 2 or wake is None:
            continue
        clock.advance((min(wake, end) - clock.now()).total_seconds())


async def read_status(client: Client) -> dict[str, Any]:
    [content] = await client.read_resource("watcher://status")
    assert isinstance(content, types.TextResourceContents)
    status: dict[str, Any] = json.loads(content.text)
    return status


async def test_the_daemon_rides_out_a_full_disk_and_shows_it_in_its_status(
    tmpfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`App.run` (watcher, alerts, retention, MCP notifications) with its database on a tmpfs
    that fills up during refresh 6: it keeps running; the MCP status (cached before) shows
    the outage while it lasts and not after; the refresh tool says its poll was not recorded;
    each task logs it once; once space is freed the SRM alert reaches the webhook once and
    pruning resumes."""
    database = tmpfs / "expwatch.db"
    clock = ManualClock()
    scenario = default_scenario(start=clock.now(), refresh_seconds=REFRESH_SECONDS)
    simulator = build_growthbook_app(scenario, api_key=API_KEY, clock=clock.now)
    async with http_receiver() as receiver:
        settings = Settings(
            store=StoreSettings(path=database, retention_days=0.001, prune_interval_seconds=60),
            sources={
                "gb": GrowthBookSourceSettings(
                    base_url="http://gb.test", api_key=SecretStr(API_KEY)
                )
            },
            watcher=WatcherSettings(poll_interval_seconds=REFRESH_SECONDS, jitter=0),
            alerts=AlertSettings(
                targets={
                    "hook": AlertTargetSettings(
                        url=SecretStr(f"json://127.0.0.1:{receiver.port}/alerts")
                    )
                },
                poll_interval_seconds=0.05,
            ),
        )
        transport = httpx.ASGITransport(app=simulator)
        async with open_app(settings, clock=clock, transport=transport) as app:
            clock.advance((refresh_time(scenario, 1, 1) - clock.now()).total_seconds())
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg, Client(app.mcp) as mcp:
                    await tg.start(lambda task_status: app.run(task_status=task_status))
                    await run_daemon_until(clock, refresh_time(scenario, FAULT_AFTER, 2))
                    before = await read_status(mcp)
                    await anyio.to_thread.run_sync(fill, tmpfs / "filler")
                    await run_daemon_until(clock, refresh_time(scenario, FAULT_AFTER + 1, 20))
                    during = await read_status(mcp)
                    refresh = await mcp.call_tool(
                        "refresh_experiment", {"experiment_id": "exp_pricing_page"}
                    )
                    (tmpfs / "filler").unlink()
                    await run_daemon_until(clock, refresh_time(scenario, LAST, 50))
                    [alert] = await receiver.bodies.wait_for(1)
                    after = await read_status(mcp)
                    outbox = await app.store.outbox.deliveries()
                    events = await app.store.events_after(0)
                    tg.cancel_scope.cancel()

    assert before["database_failing"] == [] and before["note"] is None
    failing = {o["task"]: o for o in during["database_failing"]}
    assert TASK in failing and str(database) in failing[TASK]["error"]
    assert "database or disk is full" in during["note"]
    assert after["database_failing"] == [] and after["note"] is None
    answer = refresh.structured_content or {}
    assert answer["refreshed"] is False
    assert answer["error"].startswith("polled, but not recorded: database write failed")

    errors = Counter(
        r.getMessage().split(" failed: ")[0] for r in caplog.records if r.levelno >= logging.ERROR
    )
    assert errors[TASK] == 1 and errors["retention"] == 1 and max(errors.values()) == 1
    assert not [r for r in caplog.records if r.exc_info]
    resumed = {
        r.getMessage().split(" resumed: ")[0]
        for r in caplog.records
        if " resumed: " in r.getMessage()
    }
    assert {TASK, "retention"} <= resumed

    srm = [e for e in events if e.kind is EventKind.SRM_DETECTED]
    assert len(srm) == 1 and alert["json"]["expwatch"]["event_id"] == srm[0].id
    assert len(receiver.bodies.items) == 1
    assert [(d.event_id, d.status.value) for d in outbox] == [(srm[0].id, "delivered")]


# -- the command line at start-up -----------------------------------------------------------


async def expwatch(config: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    done = await anyio.run_process(
        [sys.executable, "-m", "expwatch", *arguments, "--config", str(config)],
        check=False,
        cwd=ROOT,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


async def test_expwatch_run_refuses_a_read_only_or_full_database_in_one_line(
    tmp_path: Path, tmpfs: Path
) -> None:
    """`expwatch run` on a database file that is read-only (bind-mounted so), or on a full
    disk where the database cannot be created: exit code 1 and one line that names the file
    and says why, no traceback; `expwatch status` still reads the read-only one."""
    read_only, full = tmp_path / "ro", tmpfs / "full"
    read_only.mkdir(), full.mkdir()
    for directory in (read_only, full):
        (directory / "expwatch.toml").write_text(
            '[store]\npath = "expwatch.db"\n'
            '[sources.gb]\nbase_url = "http://127.0.0.1:9"\napi_key = "secret_never_used"\n'
        )
    store = await Store.open(sqlite_url(read_only / "expwatch.db"))
    await store.aclose()
    target = str(read_only / "expwatch.db")
    await anyio.run_process(["mount", "--bind", "-o", "ro", target, target])
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    async def invoke(name: str, config: Path, *arguments: str) -> None:
        results[name] = await expwatch(config, *arguments)

    try:
        await anyio.to_thread.run_sync(fill, tmpfs / "filler")
        async with anyio.create_task_group() as tg:
            tg.start_soon(invoke, "run read-only", read_only / "expwatch.toml", "run")
            tg.start_soon(invoke, "status read-only", read_only / "expwatch.toml", "status")
            tg.start_soon(invoke, "run full", full / "expwatch.toml", "run")
    finally:
        await anyio.run_process(["umount", target], check=False)

    for name, reason in (
        ("run read-only", "attempt to write a readonly database"),
        ("run full", "database or disk is full"),
    ):
        done = results[name]
        assert done.returncode == 1, (name, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        [line] = [x for x in done.stderr.splitlines() if x.startswith("expwatch: ")]
        assert line.startswith("expwatch: database write failed (")
        assert f"({Path(done.args[-1]).parent / 'expwatch.db'})" in line, line
        assert reason in line, line
    assert results["status read-only"].returncode == 0, results["status read-only"].stderr
    assert "secret_never_used" not in "".join(r.stderr + r.stdout for r in results.values())
