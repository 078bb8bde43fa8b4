"""GrowthBook experiment history: the bulk-results payloads and their normalization.

GET /experiments/{id}/bulk-results (served only when the self-hosted GrowthBook server enables
it) returns one item per dimension of each stored snapshot, paginated by snapshot. Its wire
models, the conversion of an item into the results endpoint's `GBResult` (so that one rule,
`watcher.growthbook_payloads.to_snapshot`, normalizes both), and the date helpers a backfill's
day windows need. The requests themselves are `watcher.growthbook`'s.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pydantic import Field, ValidationError

from store import Experiment, PayloadError

from .growthbook_payloads import GBModel, GBPage, GBResult, GBSettings
from .upstream import summarize_validation

__all__ = ["GBBulkItem", "GBBulkPage", "bulk_result", "day_of", "iso_datetime"]


class GBBulkAnalysis(GBModel):
    """One analysis of a bulk-results variation: nulls for what is missing; `effect` in the
    units of `differenceType` (a fraction for "relative")."""

    engine: str
    differenceType: str = "relative"
    numerator: float | None = None
    denominator: float | None = None
    mean: float | None = None
    stddev: float | None = None
    effect: float | None = None
    ciLow: float | None = None
    ciHigh: float | None = None
    pValue: float | None = None
    chanceToBeatControl: float | None = None


class GBBulkVariation(GBModel):
    variationIndex: int | None = None
    """The authoritative join key (the position in the snapshot's variations)."""
    variationKey: str = ""
    variationId: str | None = None
    """Best-effort display metadata: may be absent."""
    variationName: str | None = None
    users: float | None = None
    analyses: list[GBBulkAnalysis]


class GBBulkMetric(GBModel):
    metricId: str
    metricName: str | None = None
    variations: list[GBBulkVariation]


class GBBulkSlice(GBModel):
    dimensionValue: str = ""
    totalUsers: float | None = None
    checks: dict[str, float | None] = Field(default_factory=dict)
    metrics: list[GBBulkMetric]


class GBBulkDimension(GBModel):
    type: str = "none"


class GBBulkItem(GBModel):
    """One item of GET /experiments/{id}/bulk-results: one dimension of one snapshot."""

    snapshotId: str
    experimentId: str
    phase: str
    dateCreated: datetime
    dimension: GBBulkDimension = GBBulkDimension()
    settings: GBSettings | None = None
    results: list[GBBulkSlice]


class GBBulkPage(GBPage):
    """A page of bulk results: pagination counts snapshots, not items."""

    results: list[GBBulkItem]


def bulk_result(item: GBBulkItem, experiment: Experiment, *, path: str, source: str) -> GBResult:
    """A bulk-results item (read from `path`) as the results endpoint's result: the relative
    analysis of each variation, variations joined by their index to the experiment's; a
    PayloadError for the experiment when it does not fit."""
    ids = [v.variation_id for v in experiment.variations]

    def variation(v: GBBulkVariation) -> dict[str, Any]:
        index = v.variationIndex
        known = index is not None and 0 <= index < len(ids)
        relative = next((a for a in v.analyses if a.differenceType == "relative"), None)
        analyses = [relative or v.analyses[0]] if v.analyses else []
        return {
            "variationId": ids[index]
            if known and index is not None
            else v.variationId or v.variationKey,
            "variationName": v.variationName or "",
            "users": v.users,
            "analyses": [
                {
                    **a.model_dump(exclude={"differenceType", "effect"}),
                    # Another difference type's effect is in other units: no relative change.
                    **(
                        {"percentChange": a.effect}
                        if a is relative
                        else {"ciLow": None, "ciHigh": None}
                    ),
                }
                for a in analyses
            ],
        }

    raw = {
        "id": item.snapshotId,
        "dateUpdated": item.dateCreated,
        "experimentId": item.experimentId,
        "phase": item.phase,
        "settings": item.settings,
        "results": [
            {
                "dimension": r.dimensionValue or "All",
                "totalUsers": r.totalUsers or 0.0,
                "checks": r.checks,
                "metrics": [
                    {
                        "metricId": m.metricId,
                        "metricName": m.metricName or "",
                        "variations": [variation(v) for v in m.variations],
                    }
                    for m in r.metrics
                ],
            }
            for r in item.results
        ],
    }
    try:
        return GBResult.model_validate(raw)
    except ValidationError as exc:
        raise PayloadError(
            f"GrowthBook GET {path} returned an unexpected payload: {summarize_validation(exc)}",
            source=source,
            experiment_id=experiment.experiment_id,
        ) from exc


def day_of(value: object) -> date | None:
    """The UTC day of a GrowthBook ISO date-time (None for "" or anything else)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).date()


def iso_datetime(moment: datetime) -> str:
    """An ISO date-time as GrowthBook's examples write them: UTC, milliseconds, a Z."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )
