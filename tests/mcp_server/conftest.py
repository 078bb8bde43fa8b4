"""Fixtures of the MCP tests: a watcher that polls the simulator into a database that an
`expwatch mcp` subprocess shares."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from expwatch import open_app
from expwatch.app import App
from expwatch.config import GrowthBookSourceSettings, Settings, StoreSettings
from simulator import Scenario, build_growthbook_app, default_scenario
from store import EventKind
from tests.helpers import ManualClock
from tests.watcher.conftest import REFRESH_SECONDS, at_refresh

SHARED_KEY = "secret_shared_watcher_key_2718"
"""The watcher's API key: it must show in nothing an MCP client or server prints."""


@dataclass
class Watcher:
    """The daemon's side, in this process: it polls the simulator into `shared.db`, which an
    `expwatch mcp` subprocess started with `config` serves (no sources, no key), learning of
    changes only by tailing the file. Up to refresh 5 the platform has called the checkout
    test but our SRM test has not fired; it fires at refresh 6."""

    app: App
    clock: ManualClock
    scenario: Scenario
    config: Path

    async def poll(self, refresh: int) -> list[EventKind]:
        at_refresh(self.clock, self.scenario, refresh)
        report = await self.app.supervisor.poll_once()
        return [e.kind for e in report.events]


@pytest.fixture
async def watcher(tmp_path: Path) -> AsyncIterator[Watcher]:
    clock = ManualClock()
    scenario = default_scenario(start=clock.now(), refresh_seconds=REFRESH_SECONDS)
    simulator = build_growthbook_app(scenario, api_key=SHARED_KEY, clock=clock.now)
    settings = Settings(
        store=StoreSettings(path=tmp_path / "shared.db"),
        sources={
            "gb": GrowthBookSourceSettings(base_url="http://gb.test", api_key=SecretStr(SHARED_KEY))
        },
    )
    # The stdio server has no sources and no key: it serves and tails the shared database.
    config = tmp_path / "mcp.toml"
    config.write_text('[store]\npath = "shared.db"\n[mcp]\nevent_poll_interval_seconds = 0.05\n')
    async with open_app(settings, clock=clock, transport=httpx.ASGITransport(app=simulator)) as app:
        watcher = Watcher(app, clock, scenario, config)
        for refresh in (1, 3, 4, 5):
            await watcher.poll(refresh)
        yield watcher
