"""Draw the README's charts with expwatch's own code, from the built-in simulator.

The watcher polls the simulated GrowthBook's checkout experiment once per simulated day (in
process, on a scripted clock: it takes seconds) into a temporary SQLite store, and the
`charts` package draws, from that store:

- docs/chart-trajectory.png: conversion, one-page checkout vs control, both intervals;
- docs/chart-srm.png: the sample-ratio tests over time;
- docs/chart-exposures.png: users per variation against the configured split.

Run from the repository root: `.venv/bin/python docs/make_charts.py [--out DIR] [--days N]`.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
from pydantic import SecretStr

from charts import ChartSet, load_chart_set, to_png
from expwatch import open_app
from expwatch.config import GrowthBookSourceSettings, Settings, StoreSettings
from simulator import build_growthbook_app, default_scenario

EXPERIMENT = "exp_checkout_redesign"
METRIC = "met_conversion"
DAY_SECONDS = 86400.0
DAYS = 15
KEY = "docs-charts-key"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class ScriptedClock:
    """Time that moves only when told to; a sleep jumps ahead instead of waiting."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def move_to(self, moment: datetime) -> None:
        self._now = max(self._now, moment)

    async def sleep(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        await anyio.lowlevel.checkpoint()


async def record_scenario(database: Path, *, days: int = DAYS) -> None:
    """Poll the simulator once per simulated day, just after each daily refresh."""
    clock = ScriptedClock(START)
    scenario = default_scenario(start=START, refresh_seconds=DAY_SECONDS)
    simulator = build_growthbook_app(scenario, api_key=KEY, clock=clock.now)
    settings = Settings(
        store=StoreSettings(path=database),
        sources={
            "growthbook": GrowthBookSourceSettings(
                base_url="http://growthbook.test",
                api_key=SecretStr(KEY),
                rate_limit_per_minute=0,
                experiments=[EXPERIMENT],
            )
        },
    )
    transport = httpx.ASGITransport(app=simulator)
    async with open_app(settings, clock=clock, transport=transport) as app:
        for day in range(1, days + 1):
            clock.move_to(START + timedelta(seconds=day * DAY_SECONDS + 60))
            await app.supervisor.poll_once()


async def load_charts(*, days: int = DAYS) -> ChartSet:
    """Record the scenario into a temporary store and read the checkout experiment's charts
    (conversion only) from it."""
    with tempfile.TemporaryDirectory(prefix="expwatch-docs-") as tmp:
        database = Path(tmp) / "charts.db"
        await record_scenario(database, days=days)
        async with open_app(Settings(store=StoreSettings(path=database))) as app:
            return await load_chart_set(app.store, EXPERIMENT, metric_ids=[METRIC])


def write_charts(chart_set: ChartSet, out: Path) -> list[Path]:
    """Draw the three charts into `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    [trajectory] = chart_set.trajectories
    written = []
    for name, chart in (
        ("chart-trajectory.png", trajectory),
        ("chart-srm.png", chart_set.srm),
        ("chart-exposures.png", chart_set.exposures),
    ):
        path = out / name
        path.write_bytes(to_png(chart))
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--days", type=int, default=DAYS)
    args = parser.parse_args(argv)
    chart_set = anyio.run(lambda: load_charts(days=args.days), backend="asyncio")
    for path in write_charts(chart_set, args.out):
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    # Only errors: the script's output is the list of charts it wrote.
    logging.basicConfig(level=logging.ERROR)
    raise SystemExit(main())
