"""The supervisor's failure bookkeeping (`FailureLog`): what fails right now, per source and
experiment, reported as a `source_error` event when a failure starts (or its reason changes)
and as `source_recovered` when it ends, never in between; departed experiments the platform no
longer knows (`gone`); the breakers' transitions, persisted with the source's status and
recorded as `source_unavailable` / `source_recovered`. Also the words a failure is told in
(`failure_reason`, `describe`) and the poll deadline whose timeout says what timed out (`deadline`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import anyio

from store import Event, EventKind, Experiment, ExperimentNotFound, Store, StoreError, leaves

from .breaker import CircuitState
from .clock import Clock
from .polling import CycleReport, SourceStatus
from .runtime import SourceRuntime, source_status

# The supervisor's records, under its name whichever of its modules writes them.
logger = logging.getLogger("watcher.supervisor")


class FailureLog:
    """What fails right now, and the events that say so. Restored from the store on start,
    so a restart repeats none of its events."""

    def __init__(self, store: Store, *, clock: Clock, poll_timeout_seconds: float) -> None:
        self._store = store
        self._clock = clock
        self.poll_timeout_seconds = poll_timeout_seconds
        """Named in the reason of a timeout that does not say what timed out."""
        self.failing: dict[tuple[str, str | None], str] = {}
        """The reason of each failure reported and not yet recovered, by (source, experiment
        id; None for the source itself)."""

    async def restore(self, runtimes: Sequence[SourceRuntime]) -> None:
        """Load the failures reported and not recovered, and each source's `gone`
        experiments (not asked again after a restart either)."""
        errors = await self._store.latest_events(
            [EventKind.SOURCE_ERROR, EventKind.SOURCE_RECOVERED]
        )
        self.failing = {
            key: str(event.after)
            for key, event in errors.items()
            if event.kind is EventKind.SOURCE_ERROR
        }
        for rt in runtimes:
            rt.gone = {
                experiment_id
                for (source, experiment_id), event in errors.items()
                if source == rt.source.name
                and experiment_id
                and event.kind is EventKind.SOURCE_ERROR
                and event.details.get("gone") is True
            }

    def status_of(self, rt: SourceRuntime) -> SourceStatus:
        """The source's status, with what fails right now."""
        failing = {
            experiment_id or "": reason
            for (source, experiment_id), reason in self.failing.items()
            if source == rt.source.name
        }
        return source_status(rt).model_copy(update={"failing": failing})

    async def save_state(self, rt: SourceRuntime) -> None:
        """Persist the source's breaker (restored on start) and status (shown by others)."""
        status = self.status_of(rt)
        await self._store.state.save_source(
            rt.source.name,
            {
                "breaker": status.breaker.model_dump(mode="json"),
                "status": status.model_dump(mode="json", exclude={"breaker", "database_error"}),
            },
        )

    async def flush_transitions(self, rt: SourceRuntime, report: CycleReport) -> None:
        """Persist the breaker and record its openings and closings as events."""
        if not rt.transitions:
            return
        transitions, rt.transitions = rt.transitions, []
        now = self._clock.now()
        events = []
        closed = False
        for before, after, state in transitions:
            if after is CircuitState.OPEN and before is CircuitState.CLOSED:
                assert state.open_until is not None
                events.append(
                    Event(
                        kind=EventKind.SOURCE_UNAVAILABLE,
                        source=rt.source.name,
                        before=before.value,
                        after=after.value,
                        details={
                            "until": state.open_until.isoformat(),
                            "reason": state.last_error,
                            "consecutive_failures": state.consecutive_failures,
                        },
                        occurred_at=now,
                    )
                )
            elif after is CircuitState.CLOSED:
                closed = True
                events.append(
                    Event(
                        kind=EventKind.SOURCE_RECOVERED,
                        source=rt.source.name,
                        before=before.value,
                        after=after.value,
                        details={"last_error": state.last_error},
                        occurred_at=now,
                    )
                )
        with anyio.CancelScope(shield=True):
            try:
                await self.save_state(rt)
                if events:
                    report.events.extend(await self._store.record_events(events))
            except StoreError:
                rt.transitions[:0] = transitions  # the next flush records them
                raise
        if closed:
            self.failing.pop((rt.source.name, None), None)

    async def failed(
        self,
        rt: SourceRuntime,
        experiment_id: str | None,
        exc: Exception,
        report: CycleReport,
        *,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Log a failure of the source (`experiment_id` None) or of one experiment; record it
        as a `source_error` if it is new or its reason changed."""
        reason = failure_reason(exc, self.poll_timeout_seconds)
        report.errors.append(reason)
        logger.warning(
            "source %s%s: %s",
            rt.source.name,
            f" / {experiment_id}" if experiment_id else "",
            reason,
            extra={"source": rt.source.name, "experiment": experiment_id},
        )
        key = (rt.source.name, experiment_id)
        if self.failing.get(key) == reason:
            return  # already reported; alert on onset and on change only
        recorded: dict[str, Any] = {
            "error": type(exc).__name__,
            "status_code": getattr(exc, "status_code", None),
            **(details or {}),
        }
        if isinstance(exc, ExperimentNotFound):
            recorded["suggestions"] = exc.suggestions
        await self.record_event(
            rt, report, EventKind.SOURCE_ERROR, experiment_id, after=reason, details=recorded
        )
        self.failing[key] = reason  # once recorded: a failed write is reported next time

    async def recovered(
        self, rt: SourceRuntime, experiment_id: str | None, report: CycleReport
    ) -> None:
        """Record a `source_recovered` if the source (or experiment) was failing."""
        key = (rt.source.name, experiment_id)
        reason = self.failing.get(key)
        if reason is None:
            return
        await self.record_event(
            rt, report, EventKind.SOURCE_RECOVERED, experiment_id, before=reason
        )
        self.failing.pop(key, None)

    async def gone(
        self,
        rt: SourceRuntime,
        experiment: Experiment,
        exc: ExperimentNotFound,
        report: CycleReport,
    ) -> None:
        """A departed experiment the platform answers "not found" for: one `source_error`
        saying so (its text the same however often it is seen, so never repeated), then
        left alone until the listing shows it again (`source_recovered` then)."""
        experiment_id = experiment.experiment_id
        code = f" (HTTP {exc.status_code})" if exc.status_code else ""
        gone = ExperimentNotFound(
            f"experiment {experiment_id!r} of source {rt.source.name!r} not found{code}: it "
            f"left the listing while {experiment.status}, and the platform no longer knows it "
            "(deleted, or out of the API key's reach); expwatch stops polling it until it is "
            "listed again",
            source=rt.source.name,
            experiment_id=experiment_id,
            status_code=exc.status_code,
        )
        await self.failed(rt, experiment_id, gone, report, details={"gone": True})
        rt.gone.add(experiment_id)

    async def record_event(
        self,
        rt: SourceRuntime,
        report: CycleReport,
        kind: EventKind,
        experiment_id: str | None,
        *,
        before: Any = None,
        after: Any = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Record one event about this source (or one of its experiments), now; shielded,
        so a shutdown does not lose it between deciding and writing."""
        event = Event(
            kind=kind,
            source=rt.source.name,
            experiment_id=experiment_id,
            before=before,
            after=after,
            details=details or {},
            occurred_at=self._clock.now(),
        )
        with anyio.CancelScope(shield=True):
            report.events.extend(await self._store.record_events([event]))


def describe(exc: BaseException) -> str:
    """An unexpected exception in a few words: its type and first line (groups: the first)."""
    exc = leaves(exc)[0]
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first_line[:200]}" if first_line else type(exc).__name__


def failure_reason(exc: Exception, timeout_seconds: float) -> str:
    """A failure in the words of its `source_error` event."""
    if isinstance(exc, TimeoutError):
        return str(exc) or timed_out(timeout_seconds)
    return str(exc)


def timed_out(timeout_seconds: float) -> str:
    return f"timed out: no complete answer within {timeout_seconds:g} s (poll_timeout_seconds)"


@contextmanager
def deadline(timeout_seconds: float) -> Iterator[None]:
    """`anyio.fail_after`, its TimeoutError saying what timed out (the breaker keeps the
    text of the failures it counts, and shows it in the status)."""
    try:
        with anyio.fail_after(timeout_seconds):
            yield
    except TimeoutError as exc:
        raise TimeoutError(timed_out(timeout_seconds)) from exc
