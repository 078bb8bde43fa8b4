from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text

from store import Database, Store, sqlite_url
from store.migrate import _config, current_revision, head_revision, upgrade_schema
from store.schema import metadata
from tests.store.test_store import EXPERIMENT, RecordingDetector, snapshot

pytestmark = pytest.mark.anyio

WHEN = datetime(2026, 2, 2, 9, 0, tzinfo=UTC).isoformat()


async def make_release_0_1_database(path: Path, *, with_version_table: bool = True) -> None:
    """A database as expwatch 0.1 left it: schema 0001 and some history in it."""
    database = Database(sqlite_url(path))
    async with database.write() as conn:
        await conn.run_sync(lambda c: upgrade_schema(c, target="0001"))
        experiment = (
            '{"source": "gb", "experiment_id": "exp_old", "name": "Old", "status": "running"}'
        )
        snapshot = '{"source": "gb", "experiment_id": "exp_old", "total_users": 10}'
        await conn.execute(
            text(
                "INSERT INTO experiments (id, source, experiment_id, name, status, record, "
                "first_seen_at, latest_snapshot_id) "
                "VALUES (1, 'gb', 'exp_old', 'Old', 'running', :record, :when, 1)"
            ),
            {"record": experiment, "when": WHEN},
        )
        await conn.execute(
            text(
                "INSERT INTO snapshots (id, experiment_pk, content_hash, fetched_at, phase, "
                "record) VALUES (1, 1, 'abc', :when, '0', :record)"
            ),
            {"record": snapshot, "when": WHEN},
        )
        await conn.execute(
            text(
                "INSERT INTO events (kind, source, experiment_id, details, occurred_at, "
                "recorded_at) VALUES ('srm_detected', 'gb', 'exp_old', '{}', :when, :when)"
            ),
            {"when": WHEN},
        )
        if not with_version_table:
            await conn.execute(text("DROP TABLE alembic_version"))
    await database.aclose()


def schema_differences(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


async def test_a_new_database_is_created_at_the_newest_revision_matching_the_models(
    database_url: str,
) -> None:
    """The migrations and the table definitions describe the same schema, on each dialect."""
    store = await Store.open(database_url)
    try:
        async with store.database.read() as conn:
            assert await conn.run_sync(current_revision) == head_revision()
            assert await conn.run_sync(schema_differences) == []
    finally:
        await store.aclose()


@pytest.mark.parametrize("with_version_table", [True, False])
async def test_a_release_0_1_database_upgrades_in_place_without_losing_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, with_version_table: bool
) -> None:
    """History written by 0.1 (with or without Alembic's version table) is still there after
    the automatic upgrade at start-up, and the upgrade is announced."""
    path = tmp_path / "old.db"
    await make_release_0_1_database(path, with_version_table=with_version_table)
    with caplog.at_level(logging.INFO, logger="store.database"):
        store = await Store.open(sqlite_url(path))
    try:
        assert f"upgraded schema from revision 0001 to {head_revision()}" in caplog.text
        experiment = await store.experiment("exp_old")
        assert experiment.name == "Old"
        latest = await store.latest_snapshot("exp_old")
        assert latest is not None and latest.snapshot.total_users == 10
        [event] = await store.events_after(0)
        assert event.kind == "srm_detected" and event.snapshot_id is None
        async with store.database.read() as conn:
            assert await conn.run_sync(schema_differences) == []
    finally:
        await store.aclose()


async def test_the_newest_migration_can_be_undone_and_redone(tmp_path: Path) -> None:
    """Downgrade to the first revision and upgrade again, in SQLite's batch mode."""
    store = await Store.open(sqlite_url(tmp_path / "roundtrip.db"))
    try:
        async with store.database.write() as conn:

            def down_and_up(connection: Connection) -> str | None:
                command.downgrade(_config(connection), "0001")
                assert current_revision(connection) == "0001"
                command.upgrade(_config(connection), "head")
                return current_revision(connection)

            assert await conn.run_sync(down_and_up) == head_revision()
    finally:
        await store.aclose()


async def test_a_populated_database_upgrades_although_rows_refer_to_the_altered_tables(
    tmp_path: Path,
) -> None:
    """Snapshots with metric rows and events pointing at them (as any real database has)
    upgrade from 0005: SQLite's table rebuild must not trip over the foreign keys, and every
    reference still holds afterwards."""
    path = tmp_path / "populated.db"
    store = await Store.open(sqlite_url(path))
    detector = RecordingDetector()
    await store.record_poll(EXPERIMENT, snapshot(100, 0.5), detect=detector)
    await store.record_poll(EXPERIMENT, snapshot(200, 0.97), detect=detector)
    await store.aclose()
    with closing(sqlite3.connect(path)) as raw:  # back to revision 0005, rows kept
        for table in ("snapshots", "metric_results", "events"):
            raw.execute(f"ALTER TABLE {table} DROP COLUMN backfilled")
        raw.execute("DROP TABLE backfill_days")
        raw.execute("UPDATE alembic_version SET version_num = '0005'")
        raw.commit()
        assert raw.execute("SELECT count(*) FROM metric_results").fetchone() == (4,)

    store = await Store.open(sqlite_url(path))
    try:
        assert await store.snapshot_count("exp_checkout") == 2
        assert [p.users for p in await store.metric_history("exp_checkout", "met_conv", "v1")] == [
            100,
            200,
        ]
        async with store.database.autocommit() as conn:  # the writer: enforcement is back
            assert (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all() == []
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
    finally:
        await store.aclose()
