"""Every answer the MCP server gives, read from the store: resources and tools share these.

Errors raised here are `LookupError`s whose message is meant for the person or assistant who
asked: an unknown experiment names the closest ids, an unknown metric lists the experiment's
metrics, missing results say why (no data yet, the source failing, its breaker open until T).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from charts import Chart, ChartSet, load_chart_set
from store import (
    Event,
    EventKind,
    Experiment,
    ExperimentSummary,
    MetricResult,
    Store,
    StoredSnapshot,
    StoreError,
    UnknownExperiment,
    Verdict,
)

from . import views

Mode = Literal["metadata", "summary", "full"]
ReportFormat = Literal["json", "csv", "summary"]

RECENT_DEFAULT = timedelta(hours=24)
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


MAX_CHART_IMAGES = 6
"""Charts a report draws as images (SRM, exposures, then trajectories: goals, guardrails,
secondary metrics); the rest are in the JSON as Vega-Lite specifications only."""


@dataclass(frozen=True)
class PulseReport:
    """A report (CSV or Markdown text, or a JSON-ready dict) and, when charts were asked
    for, the experiment's charts."""

    body: str | dict[str, Any]
    charts: ChartSet | None = None

    @property
    def drawn(self) -> list[Chart]:
        """The charts to send as images, in order (at most `MAX_CHART_IMAGES`)."""
        return self.charts.charts[:MAX_CHART_IMAGES] if self.charts else []


class NotFound(LookupError):
    """An experiment, metric or variation the caller named does not exist (message says
    what does)."""


class NotAvailable(LookupError):
    """What the caller asked for exists but cannot be answered yet (message says why)."""


def parse_since(text: str | None, now: datetime, *, name: str = "since") -> datetime:
    """An ISO 8601 time (UTC if no offset) or a relative age such as '90m', '24h', '7d'.
    A ValueError names the argument (`name`) and says what it takes."""
    if text is None or not text.strip():
        return now - RECENT_DEFAULT
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = relative.groups()
        try:
            return now - timedelta(**{_UNITS[unit]: float(amount)})
        except OverflowError:
            raise ValueError(
                f"{name}={text!r} reaches back before the year 1; give a shorter age or an "
                "ISO 8601 time"
            ) from None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{name}={text!r} is neither an ISO 8601 time (2026-11-20T09:00:00Z) nor a relative "
            "age such as '90m', '24h' or '7d'"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=now.tzinfo)


def parse_kinds(kinds: list[str] | None) -> list[EventKind] | None:
    if not kinds:
        return None
    known = {k.value: k for k in EventKind}
    unknown = [k for k in kinds if k not in known]
    if unknown:
        raise ValueError(
            f"unknown event kind(s) {', '.join(map(repr, unknown))}; known kinds: "
            f"{', '.join(known)}"
        )
    return [known[k] for k in kinds]


class Reader:
    """Reads views from the store. `now` is the clock the relative times are measured on."""

    def __init__(self, store: Store, *, now: Any) -> None:
        self._store = store
        self._now = now

    # -- experiments --------------------------------------------------------------------------

    async def experiment(self, experiment_id: str) -> Experiment:
        return (await self._current(experiment_id, with_snapshot=False))[0]

    async def _current(
        self, experiment_id: str, *, with_snapshot: bool = True
    ) -> tuple[Experiment, StoredSnapshot | None]:
        """The experiment (and its newest snapshot); NotFound says which ids exist."""
        try:
            if with_snapshot:
                return await self._store.current(experiment_id)
            return await self._store.experiment(experiment_id), None
        except UnknownExperiment as exc:
            if exc.suggestions:
                raise NotFound(str(exc)) from None
            known = [e.experiment_id for e in await self._store.experiments()]
            if not known:
                raise NotFound(
                    f"Unknown experiment {experiment_id!r}: expwatch has not recorded any "
                    "experiment yet (is the watcher running, and does a source list it?)."
                ) from None
            shown = ", ".join(known[:10]) + (" …" if len(known) > 10 else "")
            raise NotFound(
                f"Unknown experiment {experiment_id!r}. Known experiments: {shown} "
                "(read experiments://index or call get_experiments for the full list)."
            ) from None

    async def latest(self, experiment_id: str) -> tuple[Experiment, StoredSnapshot]:
        """The experiment and its latest snapshot; NotAvailable says why there is none."""
        experiment, stored = await self._current(experiment_id)
        if stored is None:
            raise NotAvailable(await self.why_no_results(experiment))
        return experiment, stored

    async def why_no_results(self, experiment: Experiment) -> str:
        name = f"{experiment.experiment_id!r} ({experiment.source})"
        breaker = (await self._store.state.sources()).get(experiment.source, {}).get("breaker")
        if breaker and breaker.get("state") != "closed":
            return (
                f"No results for {name} yet: its source is paused after repeated failures "
                f"(circuit breaker {breaker['state']}) until {breaker.get('open_until')}; last "
                f"error: {breaker.get('last_error')}."
            )
        failing = await self._store.latest_events(
            [EventKind.SOURCE_ERROR, EventKind.SOURCE_RECOVERED], source=experiment.source
        )
        for key in ((experiment.source, experiment.experiment_id), (experiment.source, None)):
            event = failing.get(key)
            if event is not None and event.kind is EventKind.SOURCE_ERROR:
                scope = "polling this experiment" if key[1] else "the source"
                return (
                    f"No results for {name} yet: {scope} fails since "
                    f"{views.iso(event.occurred_at)}: {event.after}"
                )
        return (
            f"No results for {name} yet: the platform has no data for it (status "
            f"{experiment.status or 'unknown'}; experiments show results once users are "
            "exposed and the platform has computed them)."
        )

    async def warnings(self, experiments: Sequence[Experiment]) -> dict[str, list[str]]:
        """Each experiment's current warnings (SRM, stale results, failing polls, its
        source's open breaker), by experiment id."""
        latest = await self._warning_events()
        sources = await self._store.state.sources()
        return {
            e.experiment_id: views.warnings_from(
                latest.get(e.experiment_id, []), sources.get(e.source, {}).get("breaker")
            )
            for e in experiments
        }

    async def _warning_events(self) -> dict[str, list[Event]]:
        """Each experiment's newest event of every `views.WARNING_GROUPS` group."""
        latest: dict[str, list[Event]] = {}
        for group in views.WARNING_GROUPS:
            for (_, experiment_id), event in (await self._store.latest_events(group)).items():
                if experiment_id is not None:
                    latest.setdefault(experiment_id, []).append(event)
        return latest

    async def index(self) -> dict[str, Any]:
        """Every experiment expwatch has recorded, with status and latest verdicts."""
        summaries = await self._store.experiment_summaries()
        warnings = await self.warnings([s.experiment for s in summaries])
        ignored = {
            (e.source, e.experiment_id)
            for e in await self._store.state.watch_list()
            if not e.is_watched
        }
        return {
            "count": len(summaries),
            "experiments": [
                {
                    **views.summary_view(s, warnings=warnings.get(s.experiment.experiment_id, ())),
                    "watched": (s.experiment.source, s.experiment.experiment_id) not in ignored,
                }
                for s in summaries
            ],
        }

    async def experiments(
        self,
        *,
        project: str | None,
        status: str | None,
        mode: Mode,
        limit: int,
        offset: int,
        most_recent: bool,
    ) -> dict[str, Any]:
        """A page of experiments, filtered by project and status."""
        summaries = await self._store.experiment_summaries()
        matching = [
            s
            for s in summaries
            if (project is None or s.experiment.project == project)
            and (status is None or s.experiment.status.lower() == status.lower())
        ]
        if most_recent:
            matching.sort(key=_recency, reverse=True)
        page = matching[offset : offset + limit]
        warnings = await self.warnings([s.experiment for s in page]) if page else {}
        items = [await self._entry(s, mode, warnings) for s in page]
        has_more = offset + len(page) < len(matching)
        result: dict[str, Any] = {
            "experiments": items,
            "pagination": {
                "total": len(matching),
                "offset": offset,
                "limit": limit,
                "count": len(items),
                "has_more": has_more,
                "next_offset": offset + len(page) if has_more else None,
            },
        }
        if not matching and summaries:
            projects = sorted({s.experiment.project for s in summaries} - {""})
            statuses = sorted({s.experiment.status for s in summaries})
            result["message"] = (
                f"No experiment matches project={project!r} status={status!r}; known "
                f"projects: {projects}, statuses: {statuses}."
            )
        return result

    async def experiment_entry(self, experiment_id: str, mode: Mode) -> dict[str, Any]:
        await self.experiment(experiment_id)
        [summary] = await self._store.experiment_summaries([experiment_id])
        warnings = await self.warnings([summary.experiment])
        return await self._entry(summary, mode, warnings)

    async def _entry(
        self, summary: ExperimentSummary, mode: Mode, warnings: dict[str, list[str]]
    ) -> dict[str, Any]:
        experiment = summary.experiment
        entry = views.experiment_view(experiment)
        if mode == "metadata":
            return entry
        entry.update(
            {
                k: v
                for k, v in views.summary_view(
                    summary, warnings=warnings.get(experiment.experiment_id, ())
                ).items()
                if k not in entry
            }
        )
        if mode == "full":
            stored = await self._store.latest_snapshot(experiment.experiment_id)
            entry["results"] = views.results_view(experiment, stored)
        return entry

    # -- results ------------------------------------------------------------------------------

    async def results(
        self, experiment_id: str, *, include_metrics: bool = True, include_health: bool = True
    ) -> dict[str, Any]:
        experiment, stored = await self._current(experiment_id)
        view = views.results_view(
            experiment, stored, include_metrics=include_metrics, include_health=include_health
        )
        if stored is None:
            view["message"] = await self.why_no_results(experiment)
        return view

    async def health(self, experiment_id: str) -> dict[str, Any]:
        """SRM (the platform's and ours), health checks, staleness and polling state."""
        experiment, stored = await self._current(experiment_id)
        [summary] = await self._store.experiment_summaries([experiment_id])
        latest = (await self._warning_events()).get(experiment_id, [])
        breaker = (await self._store.state.sources()).get(experiment.source, {}).get("breaker")
        warnings = views.warnings_from(latest, breaker)
        view: dict[str, Any] = {
            "experiment": {
                "id": experiment.experiment_id,
                "source": experiment.source,
                "name": experiment.name,
                "status": experiment.status,
                "detailed_status": experiment.detailed_status,
            },
            "healthy": not warnings,
            "warnings": warnings,
            "freshness": {
                "last_checked_at": views.iso(summary.last_checked_at),
                "results_updated_at": views.iso(summary.results_updated_at),
                "stale": any(e.kind is EventKind.RESULTS_STALE and e.after is True for e in latest),
            },
            "source": {"name": experiment.source, "breaker": breaker or {"state": "closed"}},
        }
        if stored is None:
            view["srm"] = None
            view["checks"] = []
            view["message"] = await self.why_no_results(experiment)
        else:
            view["srm"] = views.srm_view(stored.snapshot)
            view["checks"] = [c.model_dump(mode="json") for c in stored.snapshot.health_checks]
        return view

    async def metric(
        self,
        experiment_id: str,
        metric: str,
        *,
        variant_comparison: bool = True,
        include_history: bool = True,
    ) -> dict[str, Any]:
        """One metric, all variations: latest numbers, comparisons with the baseline and the
        trajectory of each treatment."""
        experiment, stored = await self.latest(experiment_id)
        found = resolve_metric(stored.snapshot.metrics, metric, experiment_id)
        view: dict[str, Any] = {
            "experiment": {"id": experiment.experiment_id, "name": experiment.name},
            "snapshot": views.snapshot_meta(stored),
            "metric": views.metric_header(found),
            "variations": views.metric_rows(found),
        }
        if variant_comparison:
            view["comparisons"] = views.comparison_view(found)
        if include_history:
            view["history"] = {
                v.variation_id: views.trajectory_view(
                    await self._store.metric_history(experiment_id, found.metric_id, v.variation_id)
                )
                for v in found.variations
                if v.platform_verdict is not Verdict.BASELINE
            }
            view["events"] = [
                views.event_view(e)
                for e in await self._store.history_events(
                    experiment_id, metric_id=found.metric_id, limit=200
                )
            ]
        return view

    async def pulse_report(
        self, experiment_id: str, *, fmt: ReportFormat, include_charts: bool
    ) -> PulseReport:
        """The experiment's latest results as a report: JSON, CSV or a Markdown summary; with
        `include_charts`, its charts too (in the JSON as Vega-Lite specifications, and on the
        report to draw as images)."""
        experiment, stored = await self.latest(experiment_id)
        if fmt == "csv":
            return PulseReport(views.pulse_csv(stored.snapshot))
        warnings = (await self.warnings([experiment]))[experiment_id]
        chart_set = await load_chart_set(self._store, experiment_id) if include_charts else None
        lifts = {
            (t.metric_id, t.variation_id): [p.relative_change for p in t.points]
            for t in (chart_set.trajectories if chart_set else ())
        }
        if fmt == "summary":
            summary = views.pulse_summary(experiment, stored, warnings=warnings, charts=lifts)
            return PulseReport(summary, chart_set)
        report: dict[str, Any] = {
            "experiment": views.experiment_view(experiment),
            "snapshot": views.snapshot_meta(stored),
            "warnings": warnings,
            "srm": views.srm_view(stored.snapshot),
            "metrics": [
                {**views.metric_header(m), "comparisons": views.comparison_view(m)}
                for m in stored.snapshot.metrics
            ],
        }
        result = PulseReport(report, chart_set)
        if chart_set is not None:
            report["charts"] = views.chart_entries(chart_set.charts, drawn=len(result.drawn))
        return result

    # -- history ------------------------------------------------------------------------------

    async def history(
        self,
        experiment_id: str,
        *,
        metric: str | None = None,
        variation: str | None = None,
        since: datetime | None = None,
        at: datetime | None = None,
        limit: int = 200,
    ) -> dict[str, Any]:
        """When metrics became significant, SRM starts and ends, the experiment's events and,
        for a metric, its trajectory; `at` shows the snapshot that was current then."""
        experiment = await self.experiment(experiment_id)
        [summary] = await self._store.experiment_summaries([experiment_id])
        metric_id = None
        if metric is not None:
            stored = await self._store.latest_snapshot(experiment_id)
            metrics = stored.snapshot.metrics if stored else ()
            metric_id = resolve_metric(metrics, metric, experiment_id).metric_id

        def recent(events: list[Event]) -> list[dict[str, Any]]:
            return [views.event_view(e) for e in events if since is None or e.occurred_at >= since]

        events = await self._store.history_events(experiment_id, since=since, limit=100_000)
        view: dict[str, Any] = {
            "experiment": views.experiment_view(experiment),
            "snapshots": {
                "count": summary.snapshots,
                "first_seen_at": views.iso(summary.first_seen_at),
                "latest_fetched_at": views.iso(summary.latest_fetched_at),
            },
            "significance_changes": recent(
                await self._store.significance_changes(experiment_id, metric_id=metric_id)
            ),
            "srm_changes": recent(await self._store.srm_changes(experiment_id)),
            "events": [views.event_view(e) for e in events[-limit:]],
            "events_total": len(events),
        }
        if metric_id is not None:
            variations = (
                [variation] if variation else [v.variation_id for v in experiment.variations[1:]]
            )
            known = {v.variation_id for v in experiment.variations}
            for v in variations:
                if known and v not in known:
                    raise NotFound(
                        f"Experiment {experiment_id!r} has no variation {v!r}; its variations: "
                        f"{', '.join(sorted(known))}."
                    )
            view["trajectory"] = {
                v: views.trajectory_view(
                    await self._store.metric_history(experiment_id, metric_id, v, since=since)
                )
                for v in variations
            }
        if at is not None:
            known_then = await self._store.snapshot_at(experiment_id, at)
            view["snapshot_at"] = views.results_view(experiment, known_then) if known_then else None
        return view

    async def when_significant(
        self, experiment_id: str, metric: str | None = None
    ) -> dict[str, Any]:
        """For each metric × treatment: when expwatch's anytime-valid verdict first became
        significant (and the platform's), and where it stands now."""
        experiment, stored = await self.latest(experiment_id)
        metrics = stored.snapshot.metrics
        if metric is not None:
            metrics = (resolve_metric(metrics, metric, experiment_id),)
        ours = await self._store.significance_changes(experiment_id)
        platform = await self._store.history_events(
            experiment_id, kinds=[EventKind.PLATFORM_VERDICT_CHANGED], limit=100_000
        )
        answers = []
        for m in metrics:
            for v in m.variations:
                if v.platform_verdict is Verdict.BASELINE:
                    continue
                key = (m.metric_id, v.variation_id)
                became = _first_significant(ours, key)
                platform_became = _first_significant(platform, key)
                now = v.ours.verdict.value if v.ours and v.ours.verdict else None
                entry = {
                    "metric": m.metric_id,
                    "metric_name": m.metric_name or m.metric_id,
                    "variation": v.variation_id,
                    "significant_since": views.iso(became.occurred_at) if became else None,
                    "verdict_then": became.after if became else None,
                    "current_verdict": now,
                    "running_p_value": v.ours.running_p_value if v.ours else None,
                    "alpha": v.ours.alpha if v.ours else None,
                    "platform_significant_since": views.iso(platform_became.occurred_at)
                    if platform_became
                    else None,
                    "platform_verdict": v.platform_verdict.value,
                }
                entry["answer"] = _significance_sentence(entry)
                answers.append(entry)
        return {"experiment": {"id": experiment_id, "name": experiment.name}, "metrics": answers}

    async def recent_events(
        self,
        *,
        since: str | None,
        kinds: list[str] | None,
        experiment_id: str | None,
        limit: int,
        after_id: int = 0,
    ) -> dict[str, Any]:
        start = parse_since(since, self._now())
        wanted = parse_kinds(kinds)
        if experiment_id is not None:
            await self.experiment(experiment_id)
        events = await self._store.events_after(
            after_id, experiment_id=experiment_id, kinds=wanted, since=start, limit=limit + 1
        )
        page = events[:limit]
        return {
            "since": views.iso(start),
            "events": [views.event_view(e) for e in page],
            "count": len(page),
            "has_more": len(events) > limit,
            "next_after_id": page[-1].id if len(events) > limit and page else None,
        }

    # -- the watcher --------------------------------------------------------------------------

    async def status(self, configured: list[str]) -> dict[str, Any]:
        """Each source's breaker, rate budget and last cycle, as the watcher saved them, and
        how far behind the store is; and what in this process is failing on the database
        (which cannot record that itself): only that when the database cannot be read."""
        now = self._now()
        database = [
            {
                "task": o.task,
                "error": o.error,
                "since": views.iso(o.since),
                "failed_attempts": o.failures,
                "next_attempt_at": views.iso(o.retry_at),
            }
            for o in self._store.health.outages()
        ]
        try:
            return await self._saved_status(configured, now, database)
        except StoreError as exc:
            return {
                "now": views.iso(now),
                "database_failing": database,
                "note": f"The database cannot be read: {exc}",
            }

    async def _saved_status(
        self, configured: list[str], now: datetime, database: list[dict[str, Any]]
    ) -> dict[str, Any]:
        saved = await self._store.state.sources()
        sources = []
        for name in sorted(set(configured) | set(saved)):
            state = saved.get(name, {})
            status = dict(state.get("status") or {})
            last_cycle_at = status.get("last_cycle_at")
            lag = (
                (now - datetime.fromisoformat(last_cycle_at)).total_seconds()
                if last_cycle_at
                else None
            )
            sources.append(
                {
                    "name": name,
                    "configured": name in configured,
                    "breaker": state.get("breaker") or {"state": "closed"},
                    **{k: v for k, v in status.items() if k != "name"},
                    "seconds_since_last_cycle": round(lag, 3) if lag is not None else None,
                }
            )
        watch_list = await self._store.state.watch_list()
        return {
            "now": views.iso(now),
            "database_failing": database,
            "sources": sources,
            "watch_list": [
                {"source": e.source, "experiment_id": e.experiment_id, "mode": e.mode}
                for e in watch_list
            ],
            "event_log": {"last_event_id": await self._store.last_event_id()},
            "alerts": [
                {
                    "target": t.target,
                    "outbox": t.counts,
                    "oldest_waiting_at": views.iso(t.oldest_pending_at),
                    "last_delivered_at": views.iso(t.last_delivered_at),
                    "last_error": t.last_error,
                }
                for t in await self._store.outbox.summary()
            ],
            "note": f"The database is failing ({database[0]['task']}): "
            f"{database[0]['error'].rstrip('.')}. Polling and alerts resume by themselves once "
            "it works again; until then the sources below are as of their last recorded cycle."
            if database
            else None
            if any(s.get("last_cycle_at") for s in sources)
            else "No poll cycle has been recorded yet: is `expwatch run` (or `expwatch mcp "
            "--watch`) running against this database?",
        }


def resolve_metric(
    metrics: tuple[MetricResult, ...] | list[MetricResult], wanted: str, experiment_id: str
) -> MetricResult:
    """The metric with this id or name (case-insensitive); NotFound lists the metrics."""
    for m in metrics:
        if wanted in (m.metric_id, m.metric_name):
            return m
    folded = wanted.casefold()
    for m in metrics:
        if folded in (m.metric_id.casefold(), m.metric_name.casefold()):
            return m
    if not metrics:
        raise NotFound(f"Experiment {experiment_id!r} has no metric results yet.")
    names = [f"{m.metric_id} ({m.metric_name})" if m.metric_name else m.metric_id for m in metrics]
    close = difflib.get_close_matches(
        wanted, [m.metric_id for m in metrics] + [m.metric_name for m in metrics if m.metric_name]
    )
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise NotFound(
        f"Experiment {experiment_id!r} has no metric {wanted!r}.{hint} Its metrics: "
        f"{', '.join(names)}."
    )


def _recency(summary: ExperimentSummary) -> datetime:
    moment = summary.results_updated_at or summary.last_checked_at or summary.first_seen_at
    return moment


def _first_significant(events: list[Event], key: tuple[str, str]) -> Event | None:
    """The event that started the current significant run of (metric, variation), if any."""
    start = None
    for e in events:
        if (e.metric_id, e.variation_id) != key:
            continue
        significant = e.after in (Verdict.WON.value, Verdict.LOST.value)
        if significant and start is None:
            start = e
        elif not significant:
            start = None
    return start


def _significance_sentence(entry: dict[str, Any]) -> str:
    subject = f"{entry['metric_name']} ({entry['variation']} vs baseline)"
    if entry["significant_since"]:
        text = (
            f"{subject} became significant ({entry['verdict_then']}) on "
            f"{entry['significant_since']} by expwatch's anytime-valid test"
        )
    else:
        p = entry["running_p_value"]
        text = f"{subject} is not significant by expwatch's anytime-valid test" + (
            f" (running p = {p:.4g}, needs ≤ {entry['alpha']})" if p is not None else ""
        )
    if entry["platform_significant_since"]:
        text += (
            f"; the platform's own fixed-horizon test first called it on "
            f"{entry['platform_significant_since']} (not valid under repeated looks)"
        )
    return text + "."
