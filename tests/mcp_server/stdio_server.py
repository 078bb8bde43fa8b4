"""A small FastMCP server with resource subscriptions, for the subscription tests.

`build_test_server` is used in-process by the tests; run as a module from the project root
(`python -m tests.mcp_server.stdio_server`) it serves the same server over stdio, with its
`ResourceSubscriptions` running beside it in the process's own task group.
"""

from __future__ import annotations

import json

import anyio
from fastmcp import FastMCP

from mcp_server import ResourceSubscriptions

RESULTS_TEMPLATE = "experiments://{experiment_id}/results"


def results_uri(experiment_id: str) -> str:
    """The concrete resource URI of one experiment's results."""
    return RESULTS_TEMPLATE.format(experiment_id=experiment_id)


class ResultsStore:
    """Experiment results that change: each `record` bumps an experiment's revision."""

    def __init__(self) -> None:
        self._revisions: dict[str, int] = {}

    def record(self, experiment_id: str) -> None:
        self._revisions[experiment_id] = self.revision(experiment_id) + 1

    def revision(self, experiment_id: str) -> int:
        return self._revisions.get(experiment_id, 0)


def build_test_server(subscriptions: ResourceSubscriptions, store: ResultsStore) -> FastMCP:
    """A FastMCP server with the results template, a `poke` tool and `subscriptions` installed."""
    server = FastMCP("expwatch-subscriptions-test")

    @server.resource(RESULTS_TEMPLATE, mime_type="application/json")
    def results(experiment_id: str) -> str:
        """The latest results of one experiment."""
        return json.dumps(
            {"experiment_id": experiment_id, "revision": store.revision(experiment_id)}
        )

    @server.tool
    async def poke(experiment_id: str) -> int:
        """Record new results for an experiment, then notify its subscribers."""
        store.record(experiment_id)
        await subscriptions.publish(results_uri(experiment_id))
        return store.revision(experiment_id)

    subscriptions.install(server)
    return server


async def main() -> None:
    """Serve `build_test_server` over stdio until the client closes stdin."""
    subscriptions = ResourceSubscriptions()
    server = build_test_server(subscriptions, ResultsStore())
    async with anyio.create_task_group() as task_group:
        await task_group.start(subscriptions.run)
        await server.run_stdio_async(show_banner=False, log_level="WARNING")
        task_group.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main)
