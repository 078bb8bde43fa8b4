"""Schema migrations (Alembic), applied at start-up on the store's own connection."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

MIGRATIONS = Path(__file__).parent / "migrations"
FIRST_REVISION = "0001"


@dataclass(frozen=True)
class SchemaChange:
    """What start-up did to the schema: from (None: a new database) and to revisions."""

    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_schema(connection: Connection, *, target: str = "head") -> SchemaChange:
    """Bring the database to `target`. A database made by expwatch 0.1 before migrations
    existed (tables but no version) is recognised as the first revision."""
    config = _config(connection)
    before = current_revision(connection)
    if before is None and inspect(connection).has_table("experiments"):
        command.stamp(config, FIRST_REVISION)
        before = FIRST_REVISION
    command.upgrade(config, target)
    after = current_revision(connection)
    assert after is not None
    return SchemaChange(before=before, after=after)
