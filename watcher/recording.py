"""Recording what a cycle fetched (`PollRecorder`): polls written a batch per transaction,
shielded from cancellation, with change detection; the source's memory of each experiment
brought up to date once they commit; and `results_stale` flags for running experiments whose
results stopped updating (and started again).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio

from store import Event, EventKind, Experiment, Snapshot, Store, StoreError, WatchState

from .clock import Clock
from .detect import ChangeDetector
from .failures import FailureLog
from .polling import RUNNING_STATUSES, CycleReport
from .runtime import SourceRuntime

# The supervisor's records, under its name whichever of its modules writes them.
logger = logging.getLogger("watcher.supervisor")

Poll = tuple[Experiment, Experiment, Snapshot | None]
"""(the experiment as listed, as fetched, its results: None when it has none yet)."""


class PollRecorder:
    """Writes a source's polls and staleness flags to the store, and keeps its runtime's
    memory of them."""

    def __init__(
        self, store: Store, *, clock: Clock, detector: ChangeDetector, failures: FailureLog
    ) -> None:
        self._store = store
        self._clock = clock
        self._detector = detector
        self._failures = failures

    async def restore(self, runtimes: Sequence[SourceRuntime]) -> None:
        """Load each source's stale flags, so a restart repeats no `results_stale`."""
        stale = await self._store.latest_events([EventKind.RESULTS_STALE])
        for rt in runtimes:
            rt.stale = {
                experiment_id
                for (source, experiment_id), event in stale.items()
                if source == rt.source.name and experiment_id and event.after is True
            }

    async def record_many(
        self, rt: SourceRuntime, polls: Sequence[Poll], report: CycleReport
    ) -> None:
        """Record (listed, current, snapshot) polls in one transaction. If recording fails
        for another reason than the database (a poll our detection cannot handle), each poll
        is recorded on its own, and the one that fails is that experiment's source error."""
        if not polls:
            return
        with anyio.CancelScope(shield=True):  # polls are recorded whole, or not at all
            try:
                outcomes = await self._store.record_polls(
                    [(current, snapshot) for _, current, snapshot in polls],
                    detect=self._detector,
                )
            except StoreError:
                raise
            except Exception as exc:
                if len(polls) > 1:
                    for poll in polls:
                        await self.record_many(rt, [poll], report)
                    return
                experiment_id = polls[0][1].experiment_id
                logger.exception(
                    "unexpected failure recording %s",
                    experiment_id,
                    extra={"source": rt.source.name, "experiment": experiment_id},
                )
                await self._failures.failed(rt, experiment_id, exc, report)
                return
            now = self._clock.now()
            for (listed, current, snapshot), outcome in zip(polls, outcomes, strict=True):
                known = rt.known.get(current.experiment_id)
                if known is None:
                    rt.first_seen.add(current.experiment_id)
                updated = known.results_updated_at if known else None
                if outcome.is_new_snapshot and snapshot is not None:
                    updated = snapshot.upstream_updated_at or now
                rt.known[current.experiment_id] = WatchState(
                    experiment=current, last_checked_at=now, results_updated_at=updated
                )
                rt.listed_versions[current.experiment_id] = listed.upstream_version
                report.fetched += 1
                report.new_snapshots += outcome.is_new_snapshot
                report.events.extend(outcome.events)
            # After the memory of every committed poll is up to date: this writes again.
            for _, current, _ in polls:
                await self._failures.recovered(rt, current.experiment_id, report)

    async def check_staleness(
        self, rt: SourceRuntime, watched: list[Experiment], report: CycleReport
    ) -> None:
        """`results_stale` once when a running experiment's results stop updating for
        `stale_after_seconds`, and once when they update again."""
        limit = rt.policy.stale_after_seconds
        if limit is None:
            rt.first_seen.clear()
            return
        now = self._clock.now()
        events = []
        flips: list[tuple[str, bool]] = []
        first_seen, rt.first_seen = rt.first_seen, set()
        for experiment in watched:
            known = rt.known.get(experiment.experiment_id)
            if known is None or known.results_updated_at is None:
                continue
            age = (now - known.results_updated_at).total_seconds()
            is_stale = known.experiment.status in RUNNING_STATUSES and age > limit
            was_stale = experiment.experiment_id in rt.stale
            if is_stale == was_stale:
                continue
            if experiment.experiment_id in first_seen:
                # Old results at first sight are the platform's state, not news.
                (rt.stale.add if is_stale else rt.stale.discard)(experiment.experiment_id)
                continue
            flips.append((experiment.experiment_id, is_stale))
            events.append(
                Event(
                    kind=EventKind.RESULTS_STALE,
                    source=rt.source.name,
                    experiment_id=experiment.experiment_id,
                    before=was_stale,
                    after=is_stale,
                    details={
                        "results_updated_at": known.results_updated_at.isoformat(),
                        "stale_after_seconds": limit,
                        "age_seconds": round(age),
                    },
                    occurred_at=now,
                )
            )
        if events:
            with anyio.CancelScope(shield=True):
                report.events.extend(await self._store.record_events(events))
        for experiment_id, is_stale in flips:  # once recorded, or the next cycle would not
            (rt.stale.add if is_stale else rt.stale.discard)(experiment_id)
