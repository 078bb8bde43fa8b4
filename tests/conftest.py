from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from store import Store, sqlite_url


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Pinned: SQLAlchemy's async layer, aiosqlite and Apprise are asyncio-only."""
    return "asyncio"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A store on a fresh SQLite file."""
    opened = await Store.open(sqlite_url(tmp_path / "expwatch.db"))
    yield opened
    await opened.aclose()
