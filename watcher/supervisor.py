"""The supervisor: polls every source on an interval, records what it sees, never falls over."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio
from anyio.abc import TaskStatus

from store import (
    Event,
    EventKind,
    Experiment,
    Snapshot,
    SourceError,
    Store,
)

from .assess import StatsPolicy
from .clock import Clock
from .detect import ChangeDetector

logger = logging.getLogger(__name__)


class Source(Protocol):
    """An experimentation platform, as the supervisor uses it."""

    name: str

    async def list_experiments(self) -> list[Experiment]: ...

    async def fetch_results(self, experiment: Experiment) -> tuple[Experiment, Snapshot | None]: ...


@dataclass
class CycleReport:
    """What one poll cycle did."""

    experiments: int = 0
    new_snapshots: int = 0
    events: list[Event] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.experiments} experiments, {self.new_snapshots} new snapshots, "
            f"{len(self.events)} events, {len(self.errors)} errors"
        )


class Supervisor:
    """Owns the polling of every source.

    A failing source or experiment is recorded as a `source_error` event when the failure
    starts (or changes), and as `source_recovered` when it ends; the others keep going.
    """

    def __init__(
        self,
        store: Store,
        sources: Sequence[Source],
        *,
        clock: Clock,
        poll_interval_seconds: float = 300.0,
        poll_timeout_seconds: float = 60.0,
        policy: StatsPolicy | None = None,
    ) -> None:
        self._store = store
        self._sources = list(sources)
        self._clock = clock
        self.poll_interval_seconds = poll_interval_seconds
        self.poll_timeout_seconds = poll_timeout_seconds
        self._detector = ChangeDetector(clock=clock.now, policy=policy)
        self._failing: dict[tuple[str, str | None], str] = {}

    async def run(
        self,
        *,
        on_cycle: Callable[[CycleReport], None] | None = None,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Poll forever, one cycle every `poll_interval_seconds`; `on_cycle` sees each report."""
        task_status.started()
        while True:
            report = await self.poll_once()
            logger.info("poll cycle: %s", report.summary())
            if on_cycle is not None:
                on_cycle(report)
            await self._clock.sleep(self.poll_interval_seconds)

    async def poll_once(self) -> CycleReport:
        """One cycle over every source; sources are polled concurrently."""
        report = CycleReport()
        async with anyio.create_task_group() as tg:
            for source in self._sources:
                tg.start_soon(self._poll_source, source, report)
        return report

    async def _poll_source(self, source: Source, report: CycleReport) -> None:
        try:
            with anyio.fail_after(self.poll_timeout_seconds):
                experiments = await source.list_experiments()
        except (SourceError, TimeoutError) as exc:
            await self._failed(source, None, exc, report)
            return
        await self._recovered(source, None, report)
        for experiment in experiments:
            report.experiments += 1
            await self._poll_experiment(source, experiment, report)

    async def _poll_experiment(
        self, source: Source, experiment: Experiment, report: CycleReport
    ) -> None:
        try:
            with anyio.fail_after(self.poll_timeout_seconds):
                current, snapshot = await source.fetch_results(experiment)
        except (SourceError, TimeoutError) as exc:
            await self._failed(source, experiment.experiment_id, exc, report)
            return
        except Exception as exc:  # isolate one experiment from the rest
            logger.exception("unexpected failure polling %s", experiment.experiment_id)
            await self._failed(source, experiment.experiment_id, exc, report)
            return
        outcome = await self._store.record_poll(current, snapshot, detect=self._detector)
        report.new_snapshots += outcome.is_new_snapshot
        report.events.extend(outcome.events)
        await self._recovered(source, experiment.experiment_id, report)

    async def _failed(
        self, source: Source, experiment_id: str | None, exc: Exception, report: CycleReport
    ) -> None:
        reason = (
            f"no answer within {self.poll_timeout_seconds:g} s"
            if isinstance(exc, TimeoutError)
            else str(exc)
        )
        report.errors.append(reason)
        logger.warning(
            "source %s%s: %s", source.name, f" / {experiment_id}" if experiment_id else "", reason
        )
        key = (source.name, experiment_id)
        if self._failing.get(key) == reason:
            return  # already reported; alert on onset and on change only
        self._failing[key] = reason
        report.events.extend(
            await self._store.record_events(
                [
                    Event(
                        kind=EventKind.SOURCE_ERROR,
                        source=source.name,
                        experiment_id=experiment_id,
                        after=reason,
                        details={
                            "error": type(exc).__name__,
                            "status_code": getattr(exc, "status_code", None),
                        },
                        occurred_at=self._clock.now(),
                    )
                ]
            )
        )

    async def _recovered(
        self, source: Source, experiment_id: str | None, report: CycleReport
    ) -> None:
        reason = self._failing.pop((source.name, experiment_id), None)
        if reason is None:
            return
        report.events.extend(
            await self._store.record_events(
                [
                    Event(
                        kind=EventKind.SOURCE_RECOVERED,
                        source=source.name,
                        experiment_id=experiment_id,
                        before=reason,
                        occurred_at=self._clock.now(),
                    )
                ]
            )
        )
