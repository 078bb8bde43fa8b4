"""What the MCP server shows: JSON views of the store's records."""

from __future__ import annotations

from typing import Any

from store import Experiment, StoredSnapshot


def results_view(
    experiment: Experiment,
    stored: StoredSnapshot | None,
    *,
    include_metrics: bool = True,
    include_health: bool = True,
) -> dict[str, Any]:
    """The latest normalized results of one experiment."""
    view: dict[str, Any] = {
        "experiment": {
            "id": experiment.experiment_id,
            "source": experiment.source,
            "name": experiment.name,
            "status": experiment.status,
            "phase": experiment.phase,
            "url": experiment.url,
            "variations": [v.model_dump(mode="json") for v in experiment.variations],
        },
        "has_results": stored is not None,
    }
    if stored is None:
        view["message"] = "The platform has no results for this experiment yet."
        return view
    snapshot = stored.snapshot
    view["snapshot"] = {
        "id": stored.id,
        "fetched_at": stored.fetched_at.isoformat(),
        "upstream_updated_at": (
            snapshot.upstream_updated_at.isoformat() if snapshot.upstream_updated_at else None
        ),
        "engine": snapshot.engine,
        "total_users": snapshot.total_users,
    }
    if include_health:
        view["health"] = {
            "srm_p_value": snapshot.srm_p_value,
            "our_srm": snapshot.our_srm.model_dump(mode="json", exclude={"state"})
            if snapshot.our_srm
            else None,
            "checks": [c.model_dump(mode="json") for c in snapshot.health_checks],
        }
    if include_metrics:
        view["metrics"] = [
            {
                "id": m.metric_id,
                "name": m.metric_name,
                "role": m.role.value,
                "variations": [v.model_dump(mode="json", exclude_none=True) for v in m.variations],
            }
            for m in snapshot.metrics
        ]
    return view
