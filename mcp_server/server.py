"""The FastMCP server: resources, tools and prompts over the store.

Every read is answered from the local store (through `Reader`), never from the platform;
`refresh_experiment` is the one tool that calls upstream, through the watcher's budget and
breaker. Resources are subscribable (see `ResourceSubscriptions`); `ResourceNotifier` tells
their subscribers when the store records something that changes them.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, TypeVar

import anyio
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ResourceError, ToolError
from fastmcp.server.middleware import Middleware
from fastmcp.tools import ToolResult
from fastmcp.utilities.types import Image
from mcp import types
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import ToolAnnotations
from pydantic import AfterValidator, Field

from charts import to_png
from store import ID_LENGTH, Store, StoreError, utc_now

from .cache import ResponseCache
from .control import RefreshOutcome, WatcherControl
from .middleware import AuditLogMiddleware, ClientRateLimitMiddleware, ResponseCacheMiddleware
from .reader import Mode, NotFound, Reader, ReportFormat, parse_since
from .views import event_view

INDEX_URI = "experiments://index"
STATUS_URI = "watcher://status"
RESULTS_URI = "experiments://{experiment_id}/results"
HEALTH_URI = "experiments://{experiment_id}/health"
HISTORY_URI = "experiments://{experiment_id}/history"
METRIC_URI = "experiments://{experiment_id}/metrics/{metric}"

INSTRUCTIONS = """\
expwatch watches A/B-test experiments (GrowthBook, Statsig) and keeps their full history in a
local store, so every answer here is instant and never spends the platform's rate limit.

Start with experiments://index (or get_experiments) to find an experiment, then read
experiments://{id}/results, /health, /history or /metrics/{metric_id}. Subscribe to any of
them to be told when it changes (a metric turning significant, a sample-ratio mismatch, a
decision). Each variation shows two verdicts: the platform's own fixed-horizon call and
expwatch's anytime-valid one ("ours"), which stays valid however often results are checked;
prefer ours for decisions. when_significant answers "since when", recent_events "what
happened", watcher_status whether the data is fresh."""

READ_ONLY = ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False)


def _usable_id(experiment_id: str) -> str:
    if experiment_id != experiment_id.strip() or any(
        ord(c) < 32 or ord(c) == 127 for c in experiment_id
    ):
        raise ValueError(
            "an experiment id has no control characters and no spaces around it; "
            "get_experiments lists the ids"
        )
    return experiment_id


ExperimentId = Annotated[
    str,
    Field(
        description='The platform\'s experiment id (e.g. GrowthBook "exp_…").',
        min_length=1,
        max_length=ID_LENGTH,  # the longest id the store keeps
    ),
    AfterValidator(_usable_id),
]
"""Checked before anything is looked up, watched or asked of a platform."""

T = TypeVar("T")


def results_uri(experiment_id: str) -> str:
    return RESULTS_URI.format(experiment_id=experiment_id)


def experiment_uris(experiment_id: str, metric_ids: Sequence[str] = ()) -> list[str]:
    """The resources that show one experiment (and those of the given metrics)."""
    return [
        uri.format(experiment_id=experiment_id) for uri in (RESULTS_URI, HEALTH_URI, HISTORY_URI)
    ] + [METRIC_URI.format(experiment_id=experiment_id, metric=m) for m in metric_ids]


CACHED_TOOLS = frozenset(
    {
        "get_experiment_results",
        "get_metric_details",
        "export_pulse_report",
        "get_experiments",
        "get_experiment",
        "get_history",
        "when_significant",
    }
)
"""Tools whose answers depend only on the store (so a new snapshot or event invalidates
them); every resource read is cached too. The rest depend on the clock, the client, or act."""


@dataclass(frozen=True)
class ServerOptions:
    read_only: bool = False
    """Leave out the tools that change what is watched (watch_experiment, unwatch_experiment)."""
    sources: tuple[str, ...] = ()
    """The configured source names (to check a `source` argument and show in the status)."""
    client_rate_limit_per_minute: float = 0.0
    """Calls (tools, resource reads, prompts) per minute per client; 0: unlimited."""
    client_rate_limit_burst: int = 60
    audit_log: bool = True


def build_server(
    store: Store,
    *,
    cache: ResponseCache,
    options: ServerOptions | None = None,
    control: WatcherControl | None = None,
    now: Callable[[], Any] = utc_now,
) -> FastMCP:
    """A FastMCP server reading from `store`. Subscriptions are installed by the caller."""
    options = options or ServerOptions()
    reader = Reader(store, now=now)
    middleware: list[Middleware] = []
    if options.audit_log:
        middleware.append(AuditLogMiddleware())
    if options.client_rate_limit_per_minute > 0:
        middleware.append(
            ClientRateLimitMiddleware(
                per_minute=options.client_rate_limit_per_minute,
                burst=options.client_rate_limit_burst,
            )
        )
    middleware.append(ResponseCacheMiddleware(cache, tools=CACHED_TOOLS))
    server = FastMCP(
        "expwatch",
        version=_version(),
        instructions=INSTRUCTIONS,
        mask_error_details=True,
        middleware=middleware,
    )

    async def tool(answer: Awaitable[T]) -> T:
        """The answer, or a ToolError whose message explains (masking hides the rest)."""
        try:
            return await answer
        except (LookupError, ValueError, StoreError) as exc:  # a failing database says why
            raise ToolError(str(exc).strip("'\"")) from exc

    async def resource(answer: Awaitable[Any]) -> str:
        """The answer as JSON text, or a ResourceError whose message explains."""
        try:
            return json.dumps(await answer, indent=2)
        except (LookupError, ValueError, StoreError) as exc:
            raise ResourceError(str(exc).strip("'\"")) from exc

    # -- resources ----------------------------------------------------------------------------

    @server.resource(
        INDEX_URI,
        name="experiment_index",
        description="Every experiment expwatch has recorded: status, freshness, significant "
        "verdicts (ours and the platform's) and warnings (subscribable).",
        mime_type="application/json",
    )
    async def experiment_index() -> str:
        return await resource(reader.index())

    @server.resource(
        STATUS_URI,
        name="watcher_status",
        description="The watcher: each source's circuit breaker, rate budget, last poll cycle "
        "and lag; the watch list; the event log position (subscribable).",
        mime_type="application/json",
    )
    async def watcher_status_resource() -> str:
        return await resource(reader.status(list(options.sources)))

    @server.resource(
        RESULTS_URI,
        name="experiment_results",
        description="Latest normalized results of one experiment: per metric and variation "
        "the platform's numbers and verdict beside expwatch's anytime-valid one (subscribable).",
        mime_type="application/json",
    )
    async def experiment_results(experiment_id: str) -> str:
        return await resource(reader.results(experiment_id))

    @server.resource(
        HEALTH_URI,
        name="experiment_health",
        description="Health of one experiment: sample-ratio mismatch (the platform's test and "
        "expwatch's sequential one), health checks, staleness, polling errors (subscribable).",
        mime_type="application/json",
    )
    async def experiment_health(experiment_id: str) -> str:
        return await resource(reader.health(experiment_id))

    @server.resource(
        HISTORY_URI,
        name="experiment_history",
        description="History of one experiment: when metrics became significant, when SRM "
        "started and cleared, and its events, oldest first (subscribable).",
        mime_type="application/json",
    )
    async def experiment_history(experiment_id: str) -> str:
        return await resource(reader.history(experiment_id))

    @server.resource(
        METRIC_URI,
        name="experiment_metric",
        description="One metric of one experiment (by metric id), all variations: latest "
        "numbers, each treatment against the baseline, and its trajectory (subscribable).",
        mime_type="application/json",
    )
    async def experiment_metric(experiment_id: str, metric: str) -> str:
        return await resource(reader.metric(experiment_id, metric))

    # -- tools: the platforms' familiar ones ---------------------------------------------------

    @server.tool(annotations=READ_ONLY)
    async def get_experiment_results(
        experiment_id: ExperimentId, include_metrics: bool = True, include_health: bool = True
    ) -> dict[str, Any]:
        """Latest results of one experiment: per metric and variation the estimate, interval,
        p-value or chance to win, the platform's verdict and expwatch's anytime-valid verdict
        ("ours"); SRM and health checks under health. Answered from the local store."""
        return await tool(
            reader.results(
                experiment_id, include_metrics=include_metrics, include_health=include_health
            )
        )

    @server.tool(annotations=READ_ONLY)
    async def get_metric_details(
        experiment_id: ExperimentId,
        metric_name: Annotated[str, Field(description="The metric's id or name.")],
        variant_comparison: Annotated[
            bool, Field(description="Compare each treatment with the baseline.")
        ] = True,
    ) -> dict[str, Any]:
        """One metric of one experiment, all variations: the latest numbers, each treatment
        against the baseline (lift, interval, both verdicts), its trajectory and events."""
        return await tool(
            reader.metric(experiment_id, metric_name, variant_comparison=variant_comparison)
        )

    @server.tool(annotations=READ_ONLY)
    async def export_pulse_report(
        experiment_id: ExperimentId,
        format: Annotated[
            ReportFormat,
            Field(
                description="json (structured), csv (one row per metric × variation) or "
                "summary (Markdown)."
            ),
        ] = "json",
        include_charts: Annotated[
            bool,
            Field(
                description="Add charts: each treatment's lift over time with both intervals, "
                "SRM over time and users per variation, as PNG images and (in the JSON) as "
                "Vega-Lite specifications."
            ),
        ] = False,
    ) -> ToolResult:
        """A report of the experiment's latest results (a Pulse-style export), with charts
        as images when asked for."""
        report = await tool(
            reader.pulse_report(experiment_id, fmt=format, include_charts=include_charts)
        )
        body = report.body
        text = body if isinstance(body, str) else json.dumps(body, indent=2)
        content: list[types.ContentBlock] = [types.TextContent(type="text", text=text)]
        drawn = report.drawn
        if drawn:
            images = await anyio.to_thread.run_sync(lambda: [to_png(c) for c in drawn])
            content.extend(Image(data=png, format="png").to_image_content() for png in images)
        return ToolResult(content=content)

    @server.tool(annotations=READ_ONLY)
    async def get_experiments(
        project: Annotated[str | None, Field(description="Only this project.")] = None,
        status: Annotated[
            str | None, Field(description='Only this status (e.g. "running", "stopped").')
        ] = None,
        mode: Annotated[
            Mode,
            Field(
                description="metadata (ids, names, links), summary (+ verdicts, warnings) "
                "or full (+ latest results)."
            ),
        ] = "summary",
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
        offset: Annotated[int, Field(ge=0)] = 0,
        most_recent: Annotated[
            bool, Field(description="Newest results first (default: by source and id).")
        ] = False,
    ) -> dict[str, Any]:
        """List the experiments expwatch watches, a page at a time (see `pagination`)."""
        return await tool(
            reader.experiments(
                project=project,
                status=status,
                mode=mode,
                limit=limit,
                offset=offset,
                most_recent=most_recent,
            )
        )

    @server.tool(annotations=READ_ONLY)
    async def get_experiment(experiment_id: ExperimentId, mode: Mode = "summary") -> dict[str, Any]:
        """One experiment: metadata with the link to it in the platform's UI (`url`), and with
        mode summary its verdicts and warnings, with mode full its latest results."""
        return await tool(reader.experiment_entry(experiment_id, mode))

    # -- tools: history ------------------------------------------------------------------------

    @server.tool(annotations=READ_ONLY)
    async def get_history(
        experiment_id: ExperimentId,
        metric: Annotated[
            str | None, Field(description="Also show this metric's trajectory (id or name).")
        ] = None,
        variation: Annotated[
            str | None, Field(description="The treatment for the trajectory (default: all).")
        ] = None,
        since: Annotated[
            str | None, Field(description="From this time on (ISO 8601, or an age: '7d').")
        ] = None,
        at: Annotated[
            str | None, Field(description="Also show the results as they were at this time.")
        ] = None,
    ) -> dict[str, Any]:
        """An experiment's history from the store: significance changes, SRM starts and
        ends, its events and, for a metric, the trajectory of lift and both verdicts."""

        async def history() -> dict[str, Any]:
            current = now()
            return await reader.history(
                experiment_id,
                metric=metric,
                variation=variation,
                since=parse_since(since, current) if since else None,
                at=parse_since(at, current, name="at") if at else None,
            )

        return await tool(history())

    @server.tool(annotations=READ_ONLY)
    async def when_significant(
        experiment_id: ExperimentId,
        metric: Annotated[str | None, Field(description="Only this metric (id or name).")] = None,
    ) -> dict[str, Any]:
        """When did each metric become significant? For each metric × treatment: since when
        expwatch's anytime-valid verdict has been significant (or how far it is), and when
        the platform's own test first called it."""
        return await tool(reader.when_significant(experiment_id, metric))

    @server.tool(annotations=READ_ONLY)
    async def recent_events(
        since: Annotated[
            str | None,
            Field(description="ISO 8601 time or an age such as '90m', '24h', '7d' (default 24h)."),
        ] = None,
        kinds: Annotated[
            list[str] | None,
            Field(description="Only these kinds, e.g. significance_changed, srm_detected."),
        ] = None,
        experiment_id: Annotated[str | None, Field(description="Only this experiment.")] = None,
        limit: Annotated[int, Field(ge=1, le=1000)] = 100,
        after_id: Annotated[
            int,
            Field(ge=0, le=2**63 - 1, description="Continue after this event id (next_after_id)."),
        ] = 0,
    ) -> dict[str, Any]:
        """What happened recently, oldest first: significance changes, SRM, guardrail
        regressions, decisions, status changes, stale results, source errors."""
        return await tool(
            reader.recent_events(
                since=since,
                kinds=kinds,
                experiment_id=experiment_id,
                limit=limit,
                after_id=after_id,
            )
        )

    # -- tools: the watcher --------------------------------------------------------------------

    @server.tool(annotations=READ_ONLY)
    async def watcher_status() -> dict[str, Any]:
        """Whether the data is fresh: each source's circuit breaker, rate budget, last poll
        cycle and seconds since; the watch list; the event log position."""
        return await tool(reader.status(list(options.sources)))

    @server.tool(annotations=ToolAnnotations(readOnlyHint=False, openWorldHint=True))
    async def refresh_experiment(
        experiment_id: ExperimentId,
        ctx: Context,
        source: Annotated[
            str | None, Field(description="The source, for an experiment not recorded yet.")
        ] = None,
    ) -> dict[str, Any]:
        """Poll one experiment on its platform now (one request, through the source's rate
        budget and circuit breaker), record what changed and return the fresh results.
        Reports progress."""
        if control is None:
            raise ToolError("refreshing is not available: this server runs without a watcher")
        where = await tool(_source_of(experiment_id, source))
        await ctx.report_progress(0, 3, f"asking {where} for {experiment_id}'s results")
        outcome = await control.refresh(where, experiment_id)
        cache.invalidate(experiment_id)
        await ctx.report_progress(
            2,
            3,
            "recorded a new snapshot"
            if outcome.new_snapshot
            else ("unchanged" if outcome.fetched else f"failed: {outcome.error}"),
        )
        answer = _refresh_answer(outcome)
        if outcome.fetched:
            answer["results"] = await tool(reader.results(experiment_id))
        await ctx.report_progress(3, 3, "done")
        return answer

    async def _source_of(experiment_id: str, source: str | None) -> str:
        if source is not None:
            if options.sources and source not in options.sources:
                raise NotFound(
                    f"Unknown source {source!r}; configured sources: {', '.join(options.sources)}."
                )
            return source
        try:
            return (await reader.experiment(experiment_id)).source
        except NotFound:
            if len(options.sources) == 1:
                return options.sources[0]
            raise

    if not options.read_only:

        @server.tool(annotations=ToolAnnotations(readOnlyHint=False, idempotentHint=True))
        async def watch_experiment(
            experiment_id: ExperimentId,
            source: Annotated[
                str | None,
                Field(
                    description="The source (needed only for an experiment not recorded yet "
                    "when several sources are configured)."
                ),
            ] = None,
        ) -> dict[str, Any]:
            """Watch an experiment from the next poll cycle on, whatever the source's filters
            say (kept in the store: survives restarts)."""
            where = await tool(_source_of(experiment_id, source))
            changed = await tool(store.state.watch(where, experiment_id))
            cache.invalidate_all()
            return {
                "source": where,
                "experiment_id": experiment_id,
                "watched": True,
                "changed": changed,
                "message": "watched from the next poll cycle on"
                if changed
                else "already watched explicitly",
            }

        @server.tool(annotations=ToolAnnotations(readOnlyHint=False, idempotentHint=True))
        async def unwatch_experiment(
            experiment_id: ExperimentId,
            source: Annotated[str | None, Field(description="The source, if ambiguous.")] = None,
        ) -> dict[str, Any]:
            """Stop polling an experiment, even one the source's filters match. Its history
            stays in the store."""
            where = await tool(_source_of(experiment_id, source))
            changed = await tool(store.state.unwatch(where, experiment_id))
            cache.invalidate_all()
            return {
                "source": where,
                "experiment_id": experiment_id,
                "watched": False,
                "changed": changed,
                "message": "no longer polled from the next cycle on"
                if changed
                else "already not watched",
            }

    # -- summaries and prompts -----------------------------------------------------------------

    @server.tool(annotations=READ_ONLY)
    async def summarize_experiment(experiment_id: ExperimentId, ctx: Context) -> dict[str, Any]:
        """A short summary of where an experiment stands. When the client can sample an LLM
        (MCP sampling), it writes the prose from expwatch's facts; otherwise expwatch writes a
        structured summary itself. `facts` always holds the numbers it is based on."""
        facts = await tool(_facts(experiment_id))
        text = await _sample(ctx, facts)
        if text is not None:
            return {"summary": text, "generated_by": "client_sampling", "facts": facts}
        return {"summary": _plain_summary(facts), "generated_by": "expwatch", "facts": facts}

    async def _facts(experiment_id: str) -> dict[str, Any]:
        experiment, stored = await reader.latest(experiment_id)
        health = await reader.health(experiment_id)
        significance = await reader.when_significant(experiment_id)
        return {
            "experiment": {
                "id": experiment.experiment_id,
                "name": experiment.name,
                "status": experiment.status,
                "url": experiment.url,
            },
            "users": stored.snapshot.total_users,
            "results_updated_at": health["freshness"]["results_updated_at"],
            "warnings": health["warnings"],
            "metrics": [
                {k: m[k] for k in ("metric_name", "variation", "current_verdict", "answer")}
                for m in significance["metrics"]
            ],
        }

    @server.prompt
    def experiment_analysis(experiment_id: str) -> str:
        """Analyse one experiment: results, health, history, and a recommendation."""
        return f"""\
Analyse the A/B test {experiment_id} with expwatch.

1. Read experiments://{experiment_id}/health first. If it is not healthy (a sample-ratio
   mismatch, stale results, a failing source), say so before anything else: an SRM makes
   the results untrustworthy whatever they show.
2. Read experiments://{experiment_id}/results. For every goal and guardrail metric, give each
   treatment's lift with its interval, and both verdicts: expwatch's anytime-valid one
   ("ours", valid however often the results were looked at) and the platform's fixed-horizon
   one. Base conclusions on ours; mention where the platform's differs and why.
3. Call when_significant("{experiment_id}") and get_history("{experiment_id}") to tell how
   the results developed: when each metric became significant, whether it flipped back.
4. Conclude: ship, stop, or keep running (and roughly what would change the call); list the
   guardrails that regressed, if any. Keep it short and cite the numbers."""

    @server.prompt
    def experiment_review(project: str | None = None) -> str:
        """Review every watched experiment: what needs attention today."""
        scope = f' with project "{project}"' if project else ""
        argument = f', project="{project}"' if project else ""
        return f"""\
Review the experiments expwatch watches{scope}.

1. Call get_experiments(mode="summary", most_recent=true{argument})
   and page through all of them (pagination.next_offset).
2. Call recent_events(since="7d") for what changed this week.
3. Group the experiments: needs attention now (SRM, regressed guardrails, failing or stale
   data: check experiments://<id>/health), ready to decide (expwatch's anytime-valid verdict
   is significant on the goal metric), still running without a call, finished.
4. For each in the first two groups give one line: the experiment, the evidence (lift,
   interval, since when significant) and the suggested next step."""

    return server


def _version() -> str:
    try:
        return version("expwatch")
    except PackageNotFoundError:
        return "unknown"


def _refresh_answer(outcome: RefreshOutcome) -> dict[str, Any]:
    return {
        "refreshed": outcome.fetched,
        "new_snapshot": outcome.new_snapshot,
        "events": [event_view(e) for e in outcome.events],
        "error": outcome.error,
    }


async def _sample(ctx: Context, facts: dict[str, Any]) -> str | None:
    """Ask the client's LLM for a summary, if it offers sampling (handshake-era protocol);
    None when it does not or the request fails."""
    session = ctx.session
    capable = session.check_client_capability(
        types.ClientCapabilities(sampling=types.SamplingCapability())
    )
    if not capable:
        return None
    prompt = (
        "Summarise this A/B test for a product team in at most five sentences: whether it "
        "can be trusted (warnings), what it shows per metric (prefer expwatch's anytime-valid "
        "verdict), and what to do next. Facts (JSON):\n" + json.dumps(facts, indent=1)
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # serving older clients
            result = await session.create_message(
                [
                    types.SamplingMessage(
                        role="user", content=types.TextContent(type="text", text=prompt)
                    )
                ],
                max_tokens=400,
            )
    except Exception:  # the client refused or failed: fall back to our own summary
        return None
    content = result.content
    return content.text if isinstance(content, types.TextContent) else None


def _plain_summary(facts: dict[str, Any]) -> str:
    experiment = facts["experiment"]
    lines = [
        f"{experiment['name']} ({experiment['id']}) is {experiment['status']} with "
        f"{facts['users']:g} users; results computed {facts['results_updated_at']}."
    ]
    lines.append(
        "Warnings: " + "; ".join(facts["warnings"]) if facts["warnings"] else "No health warnings."
    )
    lines.extend(m["answer"] for m in facts["metrics"])
    return " ".join(lines)
