"""Benchmark: the store's ingest rate, history query latency as the table grows, and what an
unchanged poll writes.

1. Ingest: `record_poll` of snapshots with 20 metrics x 3 variations (60 metric rows each),
   sustained, against a baseline measured in the same run: Core bulk inserts of the same
   metric rows with no bookkeeping.
2. Queries: the table is filled (Core bulk inserts) to --small-rows and then --rows metric
   rows by adding experiments of --snapshots snapshots each, so a trajectory's length stays
   the same while the table grows; trajectory and "when did it become significant" are timed
   through the Store API (p50/p99) at both sizes, and the ratio large/small is reported.
3. Unchanged polls: snapshot rows and bytes, and WAL bytes, written per unchanged poll.

    .venv/bin/python bench/store_bench.py                 # 1M and 10M metric rows (minutes)
    .venv/bin/python bench/store_bench.py --rows 2000000  # quicker
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import func, insert, select

from expwatch.cli_common import settle_heap
from store import (
    Event,
    EventKind,
    Experiment,
    MetricResult,
    Snapshot,
    Store,
    Variation,
    VariationResult,
    Verdict,
    schema,
    sqlite_url,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
METRICS, VARIATIONS = 10, 2  # rows per snapshot in the query tables: 20
QUERIES = 300


def no_events(**_: object) -> Sequence[Event]:
    return ()


def wide_snapshot(experiment_id: str, users: int) -> Snapshot:
    """20 metrics x 3 variations = 60 metric rows."""
    return Snapshot(
        source="gb",
        experiment_id=experiment_id,
        metrics=tuple(
            MetricResult(
                metric_id=f"met_{m}",
                variations=tuple(
                    VariationResult(
                        variation_id=f"v{v}",
                        users=users + v,
                        mean=0.1,
                        relative_change=None if v == 0 else 0.01 * v,
                        ci_low=None if v == 0 else -0.02,
                        ci_high=None if v == 0 else 0.04,
                        chance_to_win=None if v == 0 else 0.6,
                        platform_verdict=Verdict.BASELINE if v == 0 else Verdict.INCONCLUSIVE,
                    )
                    for v in range(3)
                ),
            )
            for m in range(20)
        ),
    )


def experiment(experiment_id: str) -> Experiment:
    return Experiment(
        source="gb",
        experiment_id=experiment_id,
        name=experiment_id,
        status="running",
        variations=tuple(Variation(variation_id=f"v{v}", name=f"V{v}") for v in range(3)),
    )


async def bench_ingest(store: Store, *, snapshots: int) -> dict[str, float]:
    rows_per = 60
    start = time.perf_counter()
    for i in range(snapshots):
        await store.record_poll(
            experiment(f"ing_{i % 50}"), wide_snapshot(f"ing_{i % 50}", i), detect=no_events
        )
    elapsed = time.perf_counter() - start
    ingest = snapshots / elapsed

    # Baseline: the same metric rows, bulk-inserted with Core, one transaction per snapshot.
    async with store.database.read() as conn:
        template = [
            dict(r._mapping)
            for r in await conn.execute(select(schema.metric_results).limit(rows_per))
        ]
    for row in template:
        del row["id"]
    start = time.perf_counter()
    for _ in range(snapshots):
        async with store.database.write() as conn:
            await conn.execute(insert(schema.metric_results), template)
    baseline = snapshots / (time.perf_counter() - start)
    return {
        "ingest_snapshots_per_s": ingest,
        "ingest_rows_per_s": ingest * rows_per,
        "baseline_snapshots_per_s": baseline,
        "ingest_ratio": ingest / baseline,
    }


async def fill(store: Store, *, first: int, count: int, snapshots: int) -> None:
    """Add `count` experiments with `snapshots` snapshots each, and a few events per experiment."""
    x, s, m, e = schema.experiments, schema.snapshots, schema.metric_results, schema.events
    async with store.database.read() as conn:
        next_snapshot = int(await conn.scalar(select(func.coalesce(func.max(s.c.id), 0)))) + 1
    for n in range(first, first + count):
        experiment_id = f"exp_{n:05d}"
        async with store.database.write() as conn:
            record = experiment(experiment_id).model_dump(mode="json")
            pk = (
                await conn.execute(
                    insert(x)
                    .values(
                        source="gb",
                        experiment_id=experiment_id,
                        name=experiment_id,
                        status="running",
                        record=record,
                        first_seen_at=START,
                    )
                    .returning(x.c.id)
                )
            ).scalar_one()
            snaps, rows = [], []
            for k in range(snapshots):
                when = START + timedelta(hours=k)
                snaps.append(
                    {
                        "id": next_snapshot + k,
                        "experiment_pk": pk,
                        "content_hash": f"{n}-{k}",
                        "fetched_at": when,
                        "phase": "0",
                        "record": {},
                    }
                )
                for metric in range(METRICS):
                    for v in range(VARIATIONS):
                        rows.append(
                            {
                                "snapshot_id": next_snapshot + k,
                                "experiment_pk": pk,
                                "metric_id": f"met_{metric}",
                                "variation_id": f"v{v}",
                                "fetched_at": when,
                                "users": 1000.0 + k,
                                "mean": 0.1,
                                "relative_change": 0.01,
                                "ci_low": -0.01,
                                "ci_high": 0.03,
                                "p_value": None,
                                "chance_to_win": 0.7,
                                "platform_verdict": "inconclusive",
                            }
                        )
            await conn.execute(insert(s), snaps)
            await conn.execute(insert(m), rows)
            await conn.execute(
                insert(e),
                [
                    {
                        "kind": EventKind.SIGNIFICANCE_CHANGED.value,
                        "source": "gb",
                        "experiment_id": experiment_id,
                        "metric_id": f"met_{metric}",
                        "variation_id": "v1",
                        "before": "inconclusive",
                        "after": "won",
                        "details": {},
                        "occurred_at": START + timedelta(hours=metric),
                        "recorded_at": START,
                        "snapshot_id": next_snapshot + metric,
                    }
                    for metric in range(3)
                ],
            )
            await conn.execute(
                x.update()
                .where(x.c.id == pk)
                .values(latest_snapshot_id=next_snapshot + snapshots - 1)
            )
            next_snapshot += snapshots


def file_size(path: Path) -> int:
    """Bytes in `path`, 0 if absent (a benchmark may block briefly; no event loop work waits)."""
    return path.stat().st_size if path.exists() else 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def time_queries(store: Store, *, experiments: int, rng: random.Random) -> dict[str, float]:
    trajectory, significant = [], []
    for _ in range(QUERIES):
        experiment_id = f"exp_{rng.randrange(experiments):05d}"
        metric_id = f"met_{rng.randrange(METRICS)}"
        start = time.perf_counter()
        points = await store.metric_history(experiment_id, metric_id, "v1")
        trajectory.append((time.perf_counter() - start) * 1000)
        assert points
        start = time.perf_counter()
        await store.significance_changes(experiment_id, metric_id=metric_id)
        significant.append((time.perf_counter() - start) * 1000)
    return {
        "trajectory_p50_ms": statistics.median(trajectory),
        "trajectory_p99_ms": percentile(trajectory, 0.99),
        "significant_p50_ms": statistics.median(significant),
        "significant_p99_ms": percentile(significant, 0.99),
    }


async def bench_unchanged(store: Store, path: Path, *, polls: int) -> dict[str, float]:
    snapshot = wide_snapshot("unchanged", 1)
    await store.record_poll(experiment("unchanged"), snapshot, detect=no_events)
    async with store.database.read() as conn:
        before = await conn.execute(
            select(func.count(), func.sum(func.length(schema.snapshots.c.record)))
        )
        count_before, bytes_before = before.one()
    await store.checkpoint()
    wal = Path(f"{path}-wal")
    wal_before = file_size(wal)
    for _ in range(polls):
        await store.record_poll(experiment("unchanged"), snapshot, detect=no_events)
    wal_after = file_size(wal)
    async with store.database.read() as conn:
        after = await conn.execute(
            select(func.count(), func.sum(func.length(schema.snapshots.c.record)))
        )
        count_after, bytes_after = after.one()
    return {
        "unchanged_snapshot_rows_per_poll": (count_after - count_before) / polls,
        "unchanged_snapshot_bytes_per_poll": (bytes_after - bytes_before) / polls,
        "unchanged_wal_bytes_per_poll": (wal_after - wal_before) / polls,
    }


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "bench.db"
        store = await Store.open(sqlite_url(path))
        try:
            figures: dict[str, Any] = await bench_ingest(store, snapshots=args.ingest)
            print(
                f"ingest: {figures['ingest_snapshots_per_s']:.0f} snapshots/s "
                f"({figures['ingest_rows_per_s']:.0f} metric rows/s); bulk-insert baseline "
                f"{figures['baseline_snapshots_per_s']:.0f} snapshots/s; "
                f"ratio {figures['ingest_ratio']:.2f}"
            )
            figures.update(await bench_unchanged(store, path, polls=200))
            print(
                f"unchanged poll: {figures['unchanged_snapshot_rows_per_poll']:.0f} snapshot rows, "
                f"{figures['unchanged_snapshot_bytes_per_poll']:.0f} snapshot bytes, "
                f"{figures['unchanged_wal_bytes_per_poll']:.0f} WAL bytes per poll"
            )

            per_experiment = args.snapshots * METRICS * VARIATIONS
            small = max(1, args.small_rows // per_experiment)
            large = max(small + 1, args.rows // per_experiment)
            started = time.perf_counter()
            await fill(store, first=0, count=small, snapshots=args.snapshots)
            print(
                f"filled {small * per_experiment:,} metric rows ({small} experiments) "
                f"in {time.perf_counter() - started:.0f} s"
            )
            settle_heap()  # as the daemon does after start-up
            at_small = await time_queries(store, experiments=small, rng=rng)
            print("  " + "  ".join(f"{k}={v:.2f}" for k, v in at_small.items()))
            started = time.perf_counter()
            await fill(store, first=small, count=large - small, snapshots=args.snapshots)
            print(
                f"filled {large * per_experiment:,} metric rows ({large} experiments) "
                f"in {time.perf_counter() - started:.0f} s; file {file_size(path) / 1e9:.2f} GB"
            )
            settle_heap()
            at_large = await time_queries(store, experiments=large, rng=rng)
            print("  " + "  ".join(f"{k}={v:.2f}" for k, v in at_large.items()))
            for key in at_small:
                figures[f"{key}_small"] = at_small[key]
                figures[f"{key}_large"] = at_large[key]
            figures["trajectory_p50_ratio"] = (
                at_large["trajectory_p50_ms"] / at_small["trajectory_p50_ms"]
            )
            figures["significant_p50_ratio"] = (
                at_large["significant_p50_ms"] / at_small["significant_p50_ms"]
            )
            figures["rows_small"] = small * per_experiment
            figures["rows_large"] = large * per_experiment
            print(
                f"ratio large/small p50: trajectory {figures['trajectory_p50_ratio']:.2f}, "
                f"when-significant {figures['significant_p50_ratio']:.2f} (goal <= 1.5)"
            )
        finally:
            await store.aclose()
    print(
        "RESULT "
        + " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=10_000_000, help="metric rows at the large size"
    )
    parser.add_argument(
        "--small-rows", type=int, default=1_000_000, help="metric rows at the small size"
    )
    parser.add_argument(
        "--snapshots", type=int, default=500, help="snapshots per generated experiment"
    )
    parser.add_argument(
        "--ingest", type=int, default=500, help="snapshots written in the ingest test"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", default=None, help="where to put the temporary database")
    anyio.run(main, parser.parse_args(), backend="asyncio")
