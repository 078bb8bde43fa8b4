"""Tables, written once for SQLite and PostgreSQL alike (Core, not ORM: the hot paths are
bulk inserts and narrow selects).

Text columns are bounded. SQLite ignores the bounds and PostgreSQL enforces them, so nothing
longer reaches either: the records clip the text that is only shown (`records.Name`,
`records.StatusWord`) and the store refuses an id longer than `ID_LENGTH` before it writes
(`rows.check_fits`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from .records import ID_LENGTH, NAME_LENGTH, STATUS_LENGTH


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect (SQLite would drop the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NUL = "\x00"
NUL_REPLACEMENT = "\ufffd"
"""PostgreSQL refuses NUL in text and in JSONB ("invalid byte sequence", "unsupported Unicode
escape sequence") where SQLite keeps it: one NUL in an upstream name would fail a whole page's
transaction, which looks like a database outage. Both dialects store U+FFFD instead."""


def without_nul(value: Any) -> Any:
    """`value` (text, or JSON-shaped data) with every NUL replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace(NUL, NUL_REPLACEMENT)
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(v) for v in value]
    return value


class SafeString(TypeDecorator[str]):
    """A bounded string stored without NUL (see `NUL_REPLACEMENT`), in writes and in the
    parameters of queries alike, so a lookup finds what was written."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return value.replace(NUL, NUL_REPLACEMENT) if value and NUL in value else value


class SafeJson(TypeDecorator[Any]):
    """JSON (JSONB on PostgreSQL) stored without NUL in any string. The JSON type serializes
    the value for the driver on both dialects; the serialized text is checked for the escape
    (a C-speed scan), and only a value that holds it is walked and serialized again."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(JSONB() if dialect.name == "postgresql" else JSON())

    def bind_processor(self, dialect: Dialect) -> Any:
        serialize = super().bind_processor(dialect)
        if serialize is None:  # a driver that takes Python values: none of ours
            return None

        def process(value: Any) -> Any:
            text = serialize(value)
            if isinstance(text, str) and "\\u0000" in text:
                return serialize(without_nul(value))
            return text

        return process


Key = BigInteger().with_variant(Integer(), "sqlite")
Json: Any = SafeJson()

metadata = MetaData()

experiments = Table(
    "experiments",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("source", SafeString(ID_LENGTH), nullable=False),
    Column("experiment_id", SafeString(ID_LENGTH), nullable=False),
    Column("name", SafeString(NAME_LENGTH), nullable=False),
    Column("status", SafeString(STATUS_LENGTH), nullable=False),
    Column("record", Json, nullable=False),
    Column("upstream_updated_at", UTCDateTime()),
    Column("first_seen_at", UTCDateTime(), nullable=False),
    Column("last_checked_at", UTCDateTime()),
    Column("latest_snapshot_id", Key),
    UniqueConstraint("source", "experiment_id"),
    Index("ix_experiments_checked", "last_checked_at"),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("experiment_pk", Key, ForeignKey("experiments.id"), nullable=False),
    Column("content_hash", SafeString(64), nullable=False),
    Column("fetched_at", UTCDateTime(), nullable=False),
    Column("upstream_updated_at", UTCDateTime()),
    Column("phase", SafeString(STATUS_LENGTH), nullable=False),
    Column("record", Json, nullable=False),
    Column("backfilled", Boolean, nullable=False, server_default=false()),
    Index("ix_snapshots_experiment", "experiment_pk", "id"),
    Index("ix_snapshots_fetched", "experiment_pk", "fetched_at"),
)

metric_results = Table(
    "metric_results",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("snapshot_id", Key, ForeignKey("snapshots.id"), nullable=False),
    Column("experiment_pk", Key, ForeignKey("experiments.id"), nullable=False),
    Column("metric_id", SafeString(ID_LENGTH), nullable=False),
    Column("variation_id", SafeString(ID_LENGTH), nullable=False),
    Column("fetched_at", UTCDateTime(), nullable=False),
    Column("upstream_updated_at", UTCDateTime()),
    Column("users", Float, nullable=False),
    Column("mean", Float),
    Column("relative_change", Float),
    Column("ci_low", Float),
    Column("ci_high", Float),
    Column("p_value", Float),
    Column("chance_to_win", Float),
    Column("platform_verdict", SafeString(20), nullable=False),
    Column("our_verdict", SafeString(20)),
    Column("our_p_value", Float),
    Column("absolute_change", Float),
    Column("absolute_ci_low", Float),
    Column("absolute_ci_high", Float),
    Column("backfilled", Boolean, nullable=False, server_default=false()),
    Index("ix_metric_results_series", "experiment_pk", "metric_id", "variation_id", "snapshot_id"),
)

events = Table(
    "events",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("kind", SafeString(50), nullable=False),
    Column("source", SafeString(ID_LENGTH), nullable=False),
    Column("experiment_id", SafeString(ID_LENGTH)),
    Column("metric_id", SafeString(ID_LENGTH)),
    Column("variation_id", SafeString(ID_LENGTH)),
    Column("before", Json),
    Column("after", Json),
    Column("details", Json, nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("snapshot_id", Key),
    Column("backfilled", Boolean, nullable=False, server_default=false()),
    Index("ix_events_experiment", "experiment_id", "id"),
    Index("ix_events_kind", "experiment_id", "kind", "metric_id", "id"),
    Index("ix_events_snapshot", "snapshot_id"),
)

cursors = Table(
    "cursors",
    metadata,
    Column("consumer", SafeString(200), primary_key=True),
    Column("position", Key, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

sources = Table(
    "sources",
    metadata,
    Column("name", SafeString(ID_LENGTH), primary_key=True),
    Column("state", Json, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

watch_list = Table(
    "watch_list",
    metadata,
    Column("source", SafeString(ID_LENGTH), primary_key=True),
    Column("experiment_id", SafeString(ID_LENGTH), primary_key=True),
    Column("added_at", UTCDateTime(), nullable=False),
    Column("mode", SafeString(10), nullable=False, server_default="watch"),
)

alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("event_id", Key, nullable=False),
    Column("target", SafeString(200), nullable=False),
    Column("experiment_id", SafeString(ID_LENGTH)),
    Column("level", SafeString(20), nullable=False),
    Column("status", SafeString(20), nullable=False),
    Column("batched", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("reason", SafeString(1000)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("due_at", UTCDateTime(), nullable=False),
    Column("last_attempt_at", UTCDateTime()),
    Column("delivered_at", UTCDateTime()),
    UniqueConstraint("event_id", "target"),
    Index("ix_alert_outbox_due", "target", "status", "due_at"),
    Index("ix_alert_outbox_created", "target", "created_at"),
)

backfill_days = Table(
    "backfill_days",
    metadata,
    Column("source", SafeString(ID_LENGTH), primary_key=True),
    Column("experiment_id", SafeString(ID_LENGTH), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("snapshots", Integer, nullable=False),
    Column("completed_at", UTCDateTime(), nullable=False),
)
"""The days of an experiment's history a backfill has finished: each is read from the platform
and recorded once (see `watcher.backfill`)."""
