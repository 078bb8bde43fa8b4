"""What a cycle of a source fetches: the experiments its watch rules and the run-time watch
list keep (`watch_sets`, `select_watched`), those of them whose results are worth a request
now, least recently checked first (`select_due`), the watched ones that left the listing and
are fetched once more (`select_departed`), and when a portfolio read is cheaper than fetching
one by one (`portfolio_pages`).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from store import Experiment, Store

from .polling import FINISHED_STATUSES, NOT_ENDED_STATUSES
from .runtime import SourceRuntime

PORTFOLIO_PAGE_SIZE = 100


async def watch_sets(store: Store, rt: SourceRuntime) -> tuple[set[str], set[str]]:
    """(ids watched whatever the filters say, ids never watched): the rules and the
    run-time watch list."""
    rules = rt.policy.rules
    entries = await store.state.watch_list(rt.source.name)
    include = set(rules.include) | {e.experiment_id for e in entries if e.is_watched}
    exclude = (set(rules.exclude) | {e.experiment_id for e in entries if not e.is_watched}) - {
        e.experiment_id for e in entries if e.is_watched
    }
    return include, exclude


def is_kept(rt: SourceRuntime, experiment: Experiment, include: set[str]) -> bool:
    tags = rt.policy.rules.tags
    return not tags or bool(tags & set(experiment.tags)) or experiment.experiment_id in include


def select_watched(
    rt: SourceRuntime, listed: list[Experiment], include: set[str], exclude: set[str]
) -> list[Experiment]:
    """The listed experiments the rules keep, plus explicitly watched ones not listed."""
    kept = [e for e in listed if e.experiment_id not in exclude and is_kept(rt, e, include)]
    seen = {e.experiment_id for e in listed}
    for experiment_id in sorted(include - seen - exclude):
        known = rt.known.get(experiment_id)
        kept.append(
            known.experiment.model_copy(update={"upstream_version": None})
            if known
            else Experiment(
                source=rt.source.name,
                experiment_id=experiment_id,
                name=experiment_id,
                status="",
            )
        )
    return kept


def select_due(
    rt: SourceRuntime,
    watched: list[Experiment],
    *,
    now: datetime,
    refresh_unchanged_seconds: float,
    finished_poll_interval_seconds: float,
) -> list[Experiment]:
    """The experiments whose results are worth a request now, least recently checked
    first."""
    due: list[tuple[datetime | None, Experiment]] = []
    for experiment in watched:
        known = rt.known.get(experiment.experiment_id)
        if known is None or known.last_checked_at is None:
            due.append((None, experiment))
            continue
        if experiment.status == "archived" and known.experiment.status == "archived":
            continue  # its final snapshot is recorded
        listed_before = rt.listed_versions.get(
            experiment.experiment_id, known.experiment.upstream_version
        )
        if experiment.upstream_version is None or experiment.upstream_version != listed_before:
            due.append((known.last_checked_at, experiment))
            continue
        interval = (
            finished_poll_interval_seconds
            if experiment.status in FINISHED_STATUSES
            else refresh_unchanged_seconds
        )
        if now - known.last_checked_at >= timedelta(seconds=interval):
            due.append((known.last_checked_at, experiment))
    due.sort(key=lambda item: (item[0] is not None, item[0] or now))
    return [experiment for _, experiment in due]


def select_departed(
    rt: SourceRuntime, listed_ids: set[str], include: set[str], exclude: set[str]
) -> list[Experiment]:
    """Watched experiments last recorded running (or not started) that the listing no
    longer shows. A listing filtered by status (GrowthBook's `running`, Statsig's
    `active`) drops an experiment the moment it stops or is decided, so each is fetched
    on its own once more, until its recorded status says it ended: that poll records
    the `status_changed` and `decision_made`. One the platform no longer knows is
    reported once and left alone (`gone`), as is one that still runs (`chased`: it left
    for another reason, a project or tag that no longer matches)."""
    departed = []
    for experiment_id in sorted(rt.known):
        experiment = rt.known[experiment_id].experiment
        if (
            experiment.status not in NOT_ENDED_STATUSES
            or experiment_id in listed_ids
            or experiment_id in include  # watched explicitly: `select_watched` has it already
            or experiment_id in exclude
            or experiment_id in rt.gone
            or experiment_id in rt.chased
            or not is_kept(rt, experiment, include)
        ):
            continue
        # No version: fetched one by one, never through a (status-filtered) portfolio.
        departed.append(experiment.model_copy(update={"upstream_version": None}))
    return departed


def portfolio_pages(experiments: int) -> int:
    """Requests a portfolio read of a source listing `experiments` takes, at least."""
    return max(1, math.ceil(experiments / PORTFOLIO_PAGE_SIZE))
