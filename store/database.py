"""Engines and transactions: one writer connection with BEGIN IMMEDIATE, readers beside it.

SQLite runs in WAL mode so readers never block the writer; writes take the lock up front
(BEGIN IMMEDIATE) so two writers queue on busy_timeout instead of failing half-way.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import sqlalchemy.exc
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .errors import StoreError
from .migrate import SchemaChange, upgrade_schema

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
WRITE_LOCK = 0x65787077  # "expw": the advisory lock that serializes writers on PostgreSQL


_HINTS = (
    (
        ("disk is full", "no space left"),
        "Free space on the disk that holds it ([store] retention_days keeps the file from "
        "growing without end).",
    ),
    (
        ("database is locked", "database table is locked"),
        f"Another process holds a lock on it for longer than {BUSY_TIMEOUT_MS / 1000:g} s "
        "(find it with `fuser` on the file).",
    ),
    (
        ("readonly", "read-only file system"),
        "The file, its directory or its file system is read-only; expwatch needs write "
        "access to the file and its directory (for the -wal and -shm files).",
    ),
    (
        ("unable to open",),
        "Check that its directory exists and is writable and that its file system is "
        "mounted read-write.",
    ),
    (("i/o error",), "The operating system reported an I/O error: check the disk (dmesg)."),
    (
        ("connect call failed", "connection refused", "name or service not known"),
        "Check that the database server runs and that [store] url names its host and port.",
    ),
)
"""Words of the drivers' error messages, and what an operator can do about them."""

_FAILURES = (sqlalchemy.exc.SQLAlchemyError, OSError)
"""What a database call raises when the database fails. asyncpg raises OSError itself
(ConnectionRefusedError, socket.gaierror) when the server cannot be reached."""


class _ProbeDone(Exception):
    """Rolls back `Database.check_writable`'s probe."""


@asynccontextmanager
async def _uncancelled() -> AsyncIterator[None]:
    """Let a database call that has started finish before a cancellation takes effect.

    A query runs to its end on the driver's thread whatever happens to the task awaiting
    it. Cancelled midway, SQLAlchemy's aiosqlite adapter discards the connection through a
    background close that, with aiosqlite 0.22, never completes; asyncio.run() then waits
    for it forever at exit, so a Ctrl-C or SIGTERM that lands during a read hangs the
    process. Database calls take milliseconds (a write at most the busy timeout), so the
    cancellation is only deferred, by that much, to the end of the call.
    """
    with anyio.CancelScope(shield=True):
        yield


def sqlite_url(path: str | Path) -> str:
    """The SQLAlchemy URL of an SQLite file."""
    return f"sqlite+aiosqlite:///{Path(path)}"


def _configure_sqlite(engine: AsyncEngine, *, begin: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (the driver's implicit BEGIN is DEFERRED).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            connection.exec_driver_sql(begin)


class Database:
    """A writer engine (one connection) and a reader engine over the same database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self._writer = create_async_engine(url, pool_size=1, max_overflow=0)
            self._reader = create_async_engine(url, pool_size=4, max_overflow=4)
            _configure_sqlite(self._writer, begin="BEGIN IMMEDIATE")
            _configure_sqlite(self._reader, begin="BEGIN")
        else:
            self._writer = create_async_engine(url, pool_size=2, pool_pre_ping=True)
            self._reader = self._writer

    async def migrate(self, *, target: str = "head") -> SchemaChange:
        """Create or upgrade (or, to an older `target`, downgrade) the schema, in one
        transaction.

        SQLite's batch mode rebuilds a table to alter it (a copy, DROP TABLE, rename); with
        foreign keys enforced, dropping a table other rows refer to fails. So, as SQLite's
        ALTER TABLE documentation prescribes, enforcement is off while migrating (a PRAGMA
        that works only outside a transaction) and the references are checked before the
        commit.
        """
        if not self.is_sqlite:
            async with self.write() as conn:
                change = await conn.run_sync(lambda c: upgrade_schema(c, target=target))
        else:
            await self._enforce_foreign_keys(False)
            try:
                async with self.write() as conn:
                    change = await conn.run_sync(lambda c: upgrade_schema(c, target=target))
                    broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                    if broken:
                        raise StoreError(
                            f"database migration failed ({self._where()}): it would leave "
                            f"{len(broken)} broken reference(s), first in table {broken[0][0]}; "
                            "nothing was changed",
                            database=self._where(),
                            reason="foreign key check failed",
                        )
            finally:
                await self._enforce_foreign_keys(True)
        if change.before is None:
            logger.info("database %s: created schema revision %s", self._where(), change.after)
        elif change.changed:
            logger.warning(
                "database %s: upgraded schema from revision %s to %s",
                self._where(),
                change.before,
                change.after,
            )
        return change

    async def _enforce_foreign_keys(self, on: bool) -> None:
        """Switch SQLite's enforcement on the writer's one connection (outside a transaction);
        a failure here is the migration's, so it reads as a failed write."""
        try:
            async with _uncancelled(), self._writer.connect() as conn:
                await conn.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
        except _FAILURES as exc:
            raise self._error("write", exc) from exc

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction: committed on exit, rolled back on error. Shielded from
        cancellation, like every use of a connection (see `_uncancelled`)."""
        try:
            async with _uncancelled(), self._writer.begin() as conn:
                if not self.is_sqlite:
                    # One writer at a time, as on SQLite: event ids then commit in id order,
                    # so a consumer tailing `id > cursor` never skips a late commit.
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK}
                    )
                yield conn
        except _FAILURES as exc:
            raise self._error("write", exc) from exc

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A writer connection outside any transaction (for VACUUM and checkpoints)."""
        try:
            async with _uncancelled(), self._writer.connect() as conn:
                yield await conn.execution_options(isolation_level="AUTOCOMMIT")
        except _FAILURES as exc:
            raise self._error("maintenance", exc) from exc

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction that never blocks the writer."""
        try:
            async with _uncancelled(), self._reader.connect() as conn:
                yield conn
        except _FAILURES as exc:
            raise self._error("read", exc) from exc

    async def check_writable(self) -> None:
        """Raise StoreError now if the database refuses writes (a read-only file or file
        system, a lock held past the busy timeout), rather than at the first poll. Nothing
        is written: the probe's change is rolled back (so a full disk shows only when a
        commit needs space)."""
        try:
            async with self.write() as conn:
                await conn.execute(text("CREATE TABLE expwatch_write_probe (x INTEGER)"))
                raise _ProbeDone
        except _ProbeDone:
            pass

    async def aclose(self) -> None:
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()

    def _error(self, action: str, exc: Exception) -> StoreError:
        """`exc` as one line that names the database, gives the driver's reason without the
        SQL statement, and says what to do about the usual causes."""
        where = self._where()
        original = getattr(exc, "orig", None)
        reason = " ".join(str(original if original is not None else exc).split("\n")[0].split())
        hint = next((h for keys, h in _HINTS if any(k in reason.lower() for k in keys)), "")
        message = f"database {action} failed ({where}): {reason}"
        return StoreError(f"{message}. {hint}" if hint else message, database=where, reason=reason)

    def _where(self) -> str:
        return self.url.split("///", 1)[-1] if self.is_sqlite else self.url.split("@")[-1]
