"""The FastMCP server: resources and tools over the store, answered through the cache."""

from __future__ import annotations

import json

from fastmcp import FastMCP
from fastmcp.exceptions import ResourceError, ToolError
from mcp.types import ToolAnnotations

from store import Store, UnknownExperiment

from .cache import ResponseCache
from .views import results_view

RESULTS_URI = "experiments://{experiment_id}/results"

INSTRUCTIONS = """\
expwatch watches A/B-test experiments (GrowthBook, Statsig) and keeps their history.
Read experiments://{experiment_id}/results for the latest results of an experiment and
subscribe to it to be told when they change (a metric turning significant, an SRM)."""


def results_uri(experiment_id: str) -> str:
    return RESULTS_URI.format(experiment_id=experiment_id)


def build_server(store: Store, *, cache: ResponseCache) -> FastMCP:
    """A FastMCP server reading from `store`. Subscriptions are installed by the caller."""
    server = FastMCP("expwatch", instructions=INSTRUCTIONS, mask_error_details=True)

    async def render_results(
        experiment_id: str, *, include_metrics: bool = True, include_health: bool = True
    ) -> str:
        view = f"results:{int(include_metrics)}{int(include_health)}"

        async def render() -> str:
            experiment = await store.experiment(experiment_id)
            stored = await store.latest_snapshot(experiment_id)
            return json.dumps(
                results_view(
                    experiment,
                    stored,
                    include_metrics=include_metrics,
                    include_health=include_health,
                ),
                indent=2,
            )

        return await cache.get_or_render(experiment_id, view, render)

    @server.resource(
        RESULTS_URI,
        name="experiment_results",
        description="Latest normalized results of one experiment (subscribable).",
        mime_type="application/json",
    )
    async def experiment_results(experiment_id: str) -> str:
        try:
            return await render_results(experiment_id)
        except UnknownExperiment as exc:
            raise ResourceError(str(exc)) from exc

    @server.tool(
        annotations=ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False)
    )
    async def get_experiment_results(
        experiment_id: str, include_metrics: bool = True, include_health: bool = True
    ) -> str:
        """Latest results of one watched experiment: per metric and variation the estimate,
        interval, chance to win or p-value and verdict; SRM p-value under health.

        Args:
            experiment_id: The platform's experiment id (e.g. GrowthBook "exp_…").
            include_metrics: Include the per-metric results.
            include_health: Include health checks (SRM).
        """
        try:
            return await render_results(
                experiment_id, include_metrics=include_metrics, include_health=include_health
            )
        except UnknownExperiment as exc:
            raise ToolError(str(exc)) from exc

    return server
