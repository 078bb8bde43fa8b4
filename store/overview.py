"""One line per experiment: what an index or a listing shows, read in three queries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from . import schema
from .records import Experiment, Verdict, _Record


class LatestVerdict(_Record):
    """One treatment's verdicts on one metric in the experiment's latest snapshot."""

    metric_id: str
    variation_id: str
    platform: Verdict
    ours: Verdict | None
    our_p_value: float | None
    relative_change: float | None


class ExperimentSummary(_Record):
    """An experiment with when it was seen and checked and its latest verdicts."""

    experiment: Experiment
    first_seen_at: datetime
    last_checked_at: datetime | None
    snapshots: int
    latest_snapshot_id: int | None
    latest_fetched_at: datetime | None
    results_updated_at: datetime | None
    """When the platform last computed the results (or when expwatch first saw them)."""
    verdicts: tuple[LatestVerdict, ...] = ()


async def experiment_summaries(
    conn: AsyncConnection, experiment_ids: list[str] | None = None
) -> list[ExperimentSummary]:
    """Every experiment (or those of `experiment_ids`), ordered by source and id."""
    x, s, m = schema.experiments, schema.snapshots, schema.metric_results
    query = (
        select(
            x.c.id,
            x.c.record,
            x.c.first_seen_at,
            x.c.last_checked_at,
            x.c.latest_snapshot_id,
            s.c.fetched_at,
            s.c.upstream_updated_at,
        )
        .select_from(x.outerjoin(s, s.c.id == x.c.latest_snapshot_id))
        .order_by(x.c.source, x.c.experiment_id)
    )
    if experiment_ids is not None:
        query = query.where(x.c.experiment_id.in_(experiment_ids))
    experiments = list(await conn.execute(query))
    pks = [r.id for r in experiments]
    counts: dict[int, int] = {}
    verdicts: dict[int, list[LatestVerdict]] = {}
    if pks:
        counts = {
            pk: int(n)
            for pk, n in await conn.execute(
                select(s.c.experiment_pk, func.count())
                .where(s.c.experiment_pk.in_(pks))
                .group_by(s.c.experiment_pk)
            )
        }
        latest = [r.latest_snapshot_id for r in experiments if r.latest_snapshot_id is not None]
        for r in await conn.execute(
            select(
                m.c.experiment_pk,
                m.c.metric_id,
                m.c.variation_id,
                m.c.platform_verdict,
                m.c.our_verdict,
                m.c.our_p_value,
                m.c.relative_change,
            )
            .where(m.c.snapshot_id.in_(latest), m.c.platform_verdict != Verdict.BASELINE.value)
            .order_by(m.c.id)
        ):
            verdicts.setdefault(r.experiment_pk, []).append(
                LatestVerdict(
                    metric_id=r.metric_id,
                    variation_id=r.variation_id,
                    platform=Verdict(r.platform_verdict),
                    ours=Verdict(r.our_verdict) if r.our_verdict else None,
                    our_p_value=r.our_p_value,
                    relative_change=r.relative_change,
                )
            )
    return [
        ExperimentSummary(
            experiment=Experiment.model_validate(r.record),
            first_seen_at=r.first_seen_at,
            last_checked_at=r.last_checked_at,
            snapshots=counts.get(r.id, 0),
            latest_snapshot_id=r.latest_snapshot_id,
            latest_fetched_at=r.fetched_at,
            results_updated_at=r.upstream_updated_at or r.fetched_at,
            verdicts=tuple(verdicts.get(r.id, ())),
        )
        for r in experiments
    ]
