"""Benchmark: one poll cycle over a large portfolio, against the sequential loop the
platforms' own MCP servers run (fetch each experiment's results one after another).

The GrowthBook simulator serves N experiments on loopback (uvicorn, in a child process) and
answers every request after `--latency-ms` of latency. In this process:
  1. our supervisor runs one full cycle with an unlimited rate budget: list pages, then the
     results of every experiment (the portfolio endpoint when that costs fewer requests),
     parsed, assessed with our statistics and recorded in a real SQLite file;
  2. the baseline lists the experiments and GETs each one's results in turn (parsing the
     JSON, storing nothing), measured in the same run — on `--baseline-sample` experiments
     and scaled to N when a sample is given;
  3. the simulator moves to its next refresh, where only 1 % of the experiments have new
     results; a second cycle must spend at most 1.1 x (list pages + changed experiments)
     requests.
Peak RSS is this process's (the watcher's) maximum resident set size.

    .venv/bin/python bench/poll_bench.py [--experiments 10000] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator import (  # noqa: E402
    Faults,
    LatencyFault,
    Scenario,
    ScriptedExperiment,
    ScriptedMetric,
    ScriptedVariation,
    build_growthbook_app,
)
from store import Experiment, Store, sqlite_url  # noqa: E402
from watcher import (  # noqa: E402
    GrowthBookSource,
    RateBudget,
    SourcePolicy,
    Supervisor,
    SystemClock,
)

API_KEY = "secret_bench_key"
START = datetime(2026, 1, 5, tzinfo=UTC)
REFRESH_SECONDS = 60.0
CHANGING_SHARE = 0.01


def bench_scenario(experiments: int) -> Scenario:
    """N two-arm experiments; 1 % re-analysed every refresh, the rest only every 1000th."""
    changing = max(1, round(experiments * CHANGING_SHARE))
    return Scenario(
        start=START,
        refresh_seconds=REFRESH_SECONDS,
        experiments=tuple(
            ScriptedExperiment(
                id=f"exp_bench_{i:05d}",
                name=f"Bench experiment {i}",
                tracking_key=f"bench-{i}",
                variations=(
                    ScriptedVariation(id=f"var_{i}_0", key="0", name="Control"),
                    ScriptedVariation(id=f"var_{i}_1", key="1", name="Treatment"),
                ),
                weights=(0.5, 0.5),
                goals=(ScriptedMetric(id="met_conversion", name="Conversion", control_rate=0.1),),
                users_per_refresh=1000,
                refresh_every=1 if i < changing else 1000,
                created_seconds_before_start=float(experiments - i),
            )
            for i in range(experiments)
        ),
    )


def serve(experiments: int, latency_ms: float) -> None:
    """Child process: the simulator on loopback; a line on stdin moves it one refresh on."""
    # Imported here: the composition root (FastMCP, Apprise) is not the watcher's to carry.
    from expwatch.serving import serve_asgi

    refresh = [0]

    def clock() -> datetime:
        return START + timedelta(seconds=refresh[0] * REFRESH_SECONDS + 1)

    faults = Faults()
    faults.add(LatencyFault(latency_ms / 1000.0))
    app = build_growthbook_app(
        bench_scenario(experiments),
        api_key=API_KEY,
        clock=clock,
        rate_limit_per_minute=10**9,
        faults=faults,
    )

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            port = await tg.start(lambda task_status: serve_asgi(app, task_status=task_status))
            print(port, flush=True)
            while await anyio.to_thread.run_sync(sys.stdin.readline):
                refresh[0] += 1
                print("ok", flush=True)
            tg.cancel_scope.cancel()

    anyio.run(main)


class Simulator:
    """The child process, seen from the benchmark."""

    def __init__(self, experiments: int, latency_ms: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(experiments), str(latency_ms)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}"

    def next_refresh(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "ok"

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=30)


async def sequential_loop(url: str, sample: int | None) -> tuple[float, float, int, int]:
    """List everything, then GET each experiment's results one after another.
    Returns (seconds listing, seconds per results request, list pages, experiments)."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        started = time.perf_counter()
        ids: list[str] = []
        pages = 0
        offset: int | None = 0
        while offset is not None:
            page = (
                await client.get("/api/v1/experiments", params={"limit": 100, "offset": offset})
            ).json()
            pages += 1
            ids += [e["id"] for e in page["experiments"]]
            offset = page["nextOffset"] if page["hasMore"] else None
        listed = time.perf_counter()
        fetched = ids[:sample] if sample else ids
        for experiment_id in fetched:
            response = await client.get(f"/api/v1/experiments/{experiment_id}/results")
            response.json()
        per_request = (time.perf_counter() - listed) / max(1, len(fetched))
        return listed - started, per_request, pages, len(ids)


class TimedSource(GrowthBookSource):
    """The GrowthBook source, timing its listing (for the breakdown; nothing else changes)."""

    listing_seconds = 0.0

    async def list_experiments(self) -> list[Experiment]:
        started = time.perf_counter()
        try:
            return await super().list_experiments()
        finally:
            self.listing_seconds = time.perf_counter() - started


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def our_cycle(supervisor: Supervisor, source: TimedSource) -> tuple[float, int, int, str]:
    """One supervisor cycle: (seconds, requests, experiments fetched, where the time went:
    the listing, the rest (reading, assessing and recording results), and the CPU time this
    process used meanwhile)."""
    granted = source.budget.granted if source.budget else 0
    started, cpu_started = time.perf_counter(), cpu_seconds()
    report = await supervisor.poll_once()
    seconds = time.perf_counter() - started
    breakdown = (
        f"listing {source.listing_seconds:.1f} s, results {seconds - source.listing_seconds:.1f}"
        f" s; watcher CPU {cpu_seconds() - cpu_started:.1f} s"
    )
    if report.errors:
        raise SystemExit(f"cycle had errors: {report.errors[:3]}")
    requests = (source.budget.granted if source.budget else 0) - granted
    return seconds, requests, report.fetched, breakdown


async def run(experiments: int, latency_ms: float, concurrency: int, sample: int | None) -> None:
    simulator = Simulator(experiments, latency_ms)
    try:
        with tempfile.TemporaryDirectory() as directory:
            clock = SystemClock()
            store = await Store.open(sqlite_url(Path(directory) / "bench.db"))
            limits = httpx.Limits(
                max_connections=concurrency, max_keepalive_connections=concurrency
            )
            async with httpx.AsyncClient(limits=limits, timeout=120) as client:
                source = TimedSource(
                    name="gb",
                    base_url=simulator.url,
                    api_key=API_KEY,
                    client=client,
                    status=None,
                    budget=RateBudget(None, clock=clock),
                )
                supervisor = Supervisor(
                    store,
                    [source],
                    clock=clock,
                    poll_timeout_seconds=600,
                    source_policies={
                        "gb": SourcePolicy(max_concurrency=concurrency, stale_after_seconds=None)
                    },
                )
                ours_s, ours_requests, fetched, breakdown = await our_cycle(supervisor, source)
                print(
                    f"ours, full cycle:      {fetched} experiments, {ours_requests} requests, "
                    f"{ours_s:.1f} s ({breakdown})"
                )
                list_s, per_request_s, pages, listed = await sequential_loop(simulator.url, sample)
                base_full_s = list_s + per_request_s * listed
                base_full_requests = pages + listed
                note = (
                    f" (results timed on {sample}, {per_request_s * 1000:.0f} ms each)"
                    if sample and sample < listed
                    else ""
                )
                print(
                    f"sequential loop:       {listed} experiments, {base_full_requests} requests, "
                    f"{base_full_s:.1f} s{note}"
                )
                ratio = base_full_s / ours_s
                print(f"speed-up:              {ratio:.1f}x (goal >= 20x)")

                simulator.next_refresh()
                _, changed_requests, changed, _ = await our_cycle(supervisor, source)
                bound = 1.1 * (pages + changed)
                print(
                    f"ours, 1% changed:      {changed} fetched, {changed_requests} requests "
                    f"(bound 1.1 x ({pages} list pages + {changed} changed) = {bound:.0f})"
                )
            await store.aclose()
    finally:
        simulator.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS (watcher):    {peak_mb:.0f} MB (goal <= 200 MB)")
    print(
        f"RESULT experiments={experiments} latency_ms={latency_ms:g} ours_s={ours_s:.2f} "
        f"ours_requests={ours_requests} baseline_s={base_full_s:.1f} "
        f"baseline_requests={base_full_requests} ratio={ratio:.1f} "
        f"changed_requests={changed_requests} changed_bound={bound:.0f} peak_rss_mb={peak_mb:.0f}"
    )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), float(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--baseline-sample",
        type=int,
        default=None,
        help="time the sequential loop on this many experiments and scale (default: all)",
    )
    args = parser.parse_args()
    anyio.run(run, args.experiments, args.latency_ms, args.concurrency, args.baseline_sample)


if __name__ == "__main__":
    main()
