from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import stamina
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from expwatch.cli_common import NOISY_LOGGERS
from store import Store, sqlite_url

POSTGRES_URL_ENV = "EXPWATCH_TEST_POSTGRES_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        help="run the long variants (fault suites over more simulated time, more crashes)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "long: a long variant; runs only with --long")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--long"):
        return
    skip = pytest.mark.skip(reason="long variant: run with `pytest --long`")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def long_run(request: pytest.FixtureRequest) -> bool:
    """True under `pytest --long`: a test scales its work up (more crashes, more time)."""
    return bool(request.config.getoption("--long"))


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Pinned: SQLAlchemy's async layer, aiosqlite and Apprise are asyncio-only."""
    return "asyncio"


@pytest.fixture(autouse=True)
def retries_without_real_backoff() -> Iterator[None]:
    """stamina waits in real time between attempts; tests keep the attempts (at most three)
    but not the waits. Waits the platform asks for (Retry-After) still hold, on the test's
    clock, through the source's RateBudget."""
    with stamina.set_testing(True, attempts=3, cap=True):
        yield


async def empty_postgres_database() -> str:
    """The URL of the PostgreSQL test database, emptied; skips when none is configured."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        pytest.skip(
            f"PostgreSQL run skipped: set {POSTGRES_URL_ENV} (e.g. "
            "postgresql+asyncpg://postgres@127.0.0.1:5432/test) to run it"
        )
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a fresh SQLite file, or the emptied PostgreSQL test database."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "expwatch.db")
    return await empty_postgres_database()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A store on an empty database of each kind."""
    opened = await Store.open(database_url)
    yield opened
    await opened.aclose()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The CLI and setup_logging configure the process's root logger and quiet some noisy
    ones; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    fastmcp = logging.getLogger("fastmcp")
    fastmcp_handlers, fastmcp_propagates = fastmcp.handlers[:], fastmcp.propagate
    fastmcp_log_enabled = os.environ.get("FASTMCP_LOG_ENABLED")
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    fastmcp.handlers[:], fastmcp.propagate = fastmcp_handlers, fastmcp_propagates
    if fastmcp_log_enabled is None:
        os.environ.pop("FASTMCP_LOG_ENABLED", None)
    else:
        os.environ["FASTMCP_LOG_ENABLED"] = fastmcp_log_enabled
    for name, noisy_level in levels.items():
        logging.getLogger(name).setLevel(noisy_level)
