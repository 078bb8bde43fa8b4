from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from simulator import Scenario, build_growthbook_app, default_scenario
from tests.helpers import ManualClock

API_KEY = "secret_gb_key_123"
REFRESH_SECONDS = 60.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def scenario(clock: ManualClock) -> Scenario:
    return default_scenario(start=clock.now(), refresh_seconds=REFRESH_SECONDS)


@pytest.fixture
async def gb_client(clock: ManualClock, scenario: Scenario) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client whose requests reach the GrowthBook simulator in-process."""
    app = build_growthbook_app(scenario, api_key=API_KEY, clock=clock.now)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        yield client


def at_refresh(clock: ManualClock, scenario: Scenario, index: int) -> None:
    """Move the clock to just after the simulator's refresh number `index`."""
    target = scenario.start + timedelta(seconds=index * REFRESH_SECONDS + 1)
    clock.advance((target - clock.now()).total_seconds())
