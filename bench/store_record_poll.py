"""Benchmark: cost of recording one poll in the store.

Measures, on a real SQLite file, polls per second for
  - an unchanged poll (content hash equal: only the "checked" mark is written),
  - a changed poll (new snapshot + metric rows + detector in one BEGIN IMMEDIATE transaction),
against a baseline measured in the same run: one bare INSERT of the snapshot's JSON per
transaction on the same engine. The ratio says what the store's bookkeeping costs on top of
the cheapest durable write.

    .venv/bin/python bench/store_record_poll.py [--polls N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import anyio
from sqlalchemy import text

from store import (
    Event,
    Experiment,
    MetricResult,
    Snapshot,
    Store,
    Variation,
    VariationResult,
    Verdict,
    sqlite_url,
)

WHEN = datetime(2026, 1, 1, tzinfo=UTC)
EXPERIMENT = Experiment(
    source="gb",
    experiment_id="exp_bench",
    name="Bench",
    status="running",
    variations=(Variation(variation_id="v0", name="A"), Variation(variation_id="v1", name="B")),
)


def snapshot(users: int) -> Snapshot:
    """A realistic snapshot: 10 metrics x 2 variations."""
    metrics = tuple(
        MetricResult(
            metric_id=f"met_{m}",
            metric_name=f"Metric {m}",
            variations=(
                VariationResult(variation_id="v0", users=users, platform_verdict=Verdict.BASELINE),
                VariationResult(
                    variation_id="v1",
                    users=users,
                    mean=0.1,
                    relative_change=0.01,
                    ci_low=-0.02,
                    ci_high=0.04,
                    chance_to_win=0.7,
                ),
            ),
        )
        for m in range(10)
    )
    return Snapshot(
        source="gb", experiment_id="exp_bench", upstream_updated_at=WHEN, metrics=metrics
    )


def no_events(**_: object) -> Sequence[Event]:
    return ()


async def main(polls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(sqlite_url(Path(tmp) / "bench.db"))
        try:
            async with store.database.write() as conn:
                await conn.execute(
                    text("CREATE TABLE baseline (id INTEGER PRIMARY KEY, body TEXT)")
                )
            body = json.dumps(snapshot(1).model_dump(mode="json"))

            start = time.perf_counter()
            for _ in range(polls):
                async with store.database.write() as conn:
                    await conn.execute(text("INSERT INTO baseline (body) VALUES (:b)"), {"b": body})
            baseline = polls / (time.perf_counter() - start)

            start = time.perf_counter()
            for i in range(polls):
                await store.record_poll(EXPERIMENT, snapshot(i + 1), detect=no_events)
            changed = polls / (time.perf_counter() - start)

            same = snapshot(polls)
            start = time.perf_counter()
            for _ in range(polls):
                await store.record_poll(EXPERIMENT, same, detect=no_events)
            unchanged = polls / (time.perf_counter() - start)
        finally:
            await store.aclose()
    print(f"baseline (bare insert per transaction): {baseline:9.0f} /s")
    print(f"record_poll, changed snapshot:         {changed:9.0f} /s  ({changed / baseline:.2f}x)")
    print(
        f"record_poll, unchanged snapshot:       {unchanged:9.0f} /s  ({unchanged / baseline:.2f}x)"
    )
    print(
        f"RESULT baseline_per_s={baseline:.0f} changed_per_s={changed:.0f} "
        f"unchanged_per_s={unchanged:.0f} changed_ratio={changed / baseline:.3f} "
        f"unchanged_ratio={unchanged / baseline:.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=500)
    anyio.run(main, parser.parse_args().polls, backend="asyncio")
