"""The composition root: the only place that wires concrete parts together."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
import httpx
from anyio.abc import TaskStatus
from fastmcp import FastMCP

from alerts import AlertDispatcher, AlertTarget, AppriseNotifier, Notifier
from mcp_server import (
    RefreshOutcome,
    ResourceNotifier,
    ResourceSubscriptions,
    ResponseCache,
    ServerOptions,
    build_server,
)
from store import Store, StoreError
from watcher import (
    Clock,
    CycleReport,
    GrowthBookSource,
    RateBudget,
    RetryPolicy,
    Source,
    SourcePolicy,
    StatsigSource,
    StatsPolicy,
    Supervisor,
    SystemClock,
    WatchRules,
)

from .alerting import alert_policy, alert_targets
from .config import Settings, StatsigSourceSettings
from .http_auth import check_exposure, guard_endpoint
from .serving import serve_asgi

logger = logging.getLogger(__name__)

PRUNE_RETRY_SECONDS = 60.0
"""First retry of a prune the database failed; doubles up to the prune interval."""


@dataclass
class App:
    """Every long-lived part of a running expwatch, wired together."""

    settings: Settings
    clock: Clock
    store: Store
    supervisor: Supervisor
    dispatcher: AlertDispatcher
    cache: ResponseCache
    mcp: FastMCP
    subscriptions: ResourceSubscriptions
    notifier: ResourceNotifier

    async def run_once(self) -> None:
        """One poll cycle, then deliver the alerts it raised."""
        await self.store.database.check_writable()
        await self.dispatcher.start_cursor()
        report = await self.supervisor.poll_once()
        logger.info("poll cycle: %s", report.summary())
        await self.dispatcher.deliver_pending()

    async def run(
        self,
        *,
        watch: bool = True,
        mcp_http: tuple[str, int] | None = None,
        on_cycle: Callable[[CycleReport], None] | None = None,
        task_status: TaskStatus[int | None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until cancelled: the MCP side always, the watcher and alerts if `watch`,
        and an MCP endpoint over streamable HTTP if `mcp_http` is given. Reports the
        HTTP port (or None) when everything has started.

        Raises ConfigError before starting anything if `mcp_http` names a host that is not
        a loopback address and no `[mcp] auth_token` is set, and StoreError if `watch` and
        the database refuses writes. Once running, database failures are retried."""
        token = self.settings.mcp.auth_token
        if mcp_http is not None:
            check_exposure(mcp_http[0], token, config_path=self.settings.config_path)
        if watch:  # a read-only or locked database: one clear error now, not at the first poll
            await self.store.database.check_writable()
        async with anyio.create_task_group() as tg:
            await tg.start(self.subscriptions.run)
            await tg.start(self.notifier.run)
            if watch:
                if self.settings.store.retention_days > 0:
                    tg.start_soon(self._prune_forever)
                await tg.start(self.dispatcher.run)
                await tg.start(
                    lambda task_status: self.supervisor.run(
                        on_cycle=on_cycle, task_status=task_status
                    )
                )
            port = None
            if mcp_http is not None:
                host, wanted = mcp_http
                endpoint = guard_endpoint(
                    self.mcp.http_app(),
                    host=host,
                    token=token,
                    allowed_origins=self.settings.mcp.allowed_origins,
                )
                port = await tg.start(
                    lambda task_status: serve_asgi(
                        endpoint, host=host, port=wanted, task_status=task_status
                    )
                )
                logger.info(
                    "MCP endpoint at http://%s:%d/mcp (%s)",
                    host,
                    port,
                    "bearer token required" if token else "no token: loopback only",
                )
            task_status.started(port)

    async def _prune_forever(self) -> None:
        """Retention: prune once at start and then every `prune_interval_seconds`; while the
        database fails, retry with backoff (each batch is its own transaction)."""
        keep = timedelta(days=self.settings.store.retention_days)
        interval = self.settings.store.prune_interval_seconds
        retry_seconds = 0.0
        while True:
            try:
                report = await self.store.prune(older_than=self.clock.now() - keep)
            except StoreError as exc:
                retry_seconds = min(retry_seconds * 2 or PRUNE_RETRY_SECONDS, interval)
                self.store.health.failed("retention", exc, retry_in_seconds=retry_seconds)
                await self.clock.sleep(retry_seconds)
                continue
            retry_seconds = 0.0
            self.store.health.recovered("retention")
            if report.snapshots_deleted:
                logger.info(
                    "retention: pruned %d snapshots (%d metric rows) older than %g days",
                    report.snapshots_deleted,
                    report.metric_rows_deleted,
                    self.settings.store.retention_days,
                )
            await self.clock.sleep(self.settings.store.prune_interval_seconds)


@dataclass(frozen=True)
class SupervisorControl:
    """The MCP server's `WatcherControl`, served by the supervisor of this process."""

    supervisor: Supervisor

    async def refresh(self, source: str, experiment_id: str) -> RefreshOutcome:
        try:
            report = await self.supervisor.refresh_experiment(source, experiment_id)
        except KeyError:
            return RefreshOutcome(
                fetched=False, new_snapshot=False, error=f"source {source!r} is not configured"
            )
        except StoreError as exc:
            return RefreshOutcome(
                fetched=False, new_snapshot=False, error=f"polled, but not recorded: {exc}"
            )
        return RefreshOutcome(
            fetched=report.fetched > 0,
            new_snapshot=report.new_snapshots > 0,
            events=tuple(report.events),
            error="; ".join(report.errors)
            or (
                f"source {source!r} is paused (circuit breaker open)"
                if not report.fetched
                else None
            ),
        )


def build_sources(settings: Settings, client: httpx.AsyncClient, clock: Clock) -> list[Source]:
    """One platform client per configured source, each with its own request budget."""
    sources: list[Source] = []
    for name, s in settings.sources.items():
        common: dict[str, Any] = {
            "name": name,
            "base_url": s.base_url,
            "api_key": s.api_key.get_secret_value(),
            "client": client,
            "status": s.status or None,
            "ui_url": s.ui_url,
            "request_timeout_seconds": s.request_timeout_seconds,
            "budget": request_budget(s.rate_limit_per_minute, clock),
            "retry": RetryPolicy(
                attempts=s.retry_attempts, retry_after_cap_seconds=s.retry_after_cap_seconds
            ),
        }
        if isinstance(s, StatsigSourceSettings):
            sources.append(StatsigSource(api_version=s.api_version, **common))
        else:
            sources.append(GrowthBookSource(project=s.project, **common))
    return sources


def request_budget(limit_per_minute: float, clock: Clock) -> RateBudget:
    """A budget that never exceeds `limit_per_minute` in any 60 seconds (0: unlimited), with
    a burst of up to 10 so that a small cycle is not spread over a minute: a bucket of burst
    b and rate r grants at most r + b - 1 in any minute, so r = limit - (b - 1)."""
    if limit_per_minute <= 0:
        return RateBudget(None, clock=clock)
    burst = max(1, min(10, int(limit_per_minute // 6)))
    return RateBudget(limit_per_minute - (burst - 1), burst=burst, clock=clock)


def stats_policy(settings: Settings) -> StatsPolicy:
    """The watcher's statistical settings ([watcher] alpha, SRM threshold, minimums)."""
    return StatsPolicy(
        alpha=settings.watcher.alpha,
        tuning=settings.watcher.sequential_tuning,
        srm_alpha=settings.watcher.srm_threshold,
        minimum_units=settings.watcher.minimum_units,
        minimum_conversions=settings.watcher.minimum_conversions,
    )


def source_policies(settings: Settings) -> dict[str, SourcePolicy]:
    """How each source is polled: its watch rules, concurrency and circuit breaker."""
    return {
        name: SourcePolicy(
            rules=WatchRules(
                tags=frozenset(s.tags),
                include=frozenset(s.experiments),
                exclude=frozenset(s.exclude),
            ),
            max_concurrency=s.max_concurrency,
            failure_threshold=s.breaker_failures,
            cooldown_seconds=s.breaker_cooldown_seconds,
            max_cooldown_seconds=s.breaker_max_cooldown_seconds,
            stale_after_seconds=s.stale_after_seconds or None,
        )
        for name, s in settings.sources.items()
    }


@asynccontextmanager
async def open_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    notifier: Notifier | None = None,
    extra_targets: Sequence[AlertTarget] = (),
) -> AsyncIterator[App]:
    """Open the store and HTTP client and build every part; close them on exit.
    `extra_targets` are alerted beside the configured ones (the demo's terminal)."""
    clock = clock or SystemClock()
    targets = [*alert_targets(settings), *extra_targets]
    # Upstream TLS is always verified: against [watcher] ca_bundle when it is set, otherwise
    # against httpx's default CA bundle. There is deliberately no way to turn it off.
    verify: ssl.SSLContext | bool = settings.upstream_ssl_context() or True
    settings.create_store_directory()
    store = await Store.open(settings.database_url(), clock=clock.now)
    try:
        async with httpx.AsyncClient(transport=transport, verify=verify) as client:
            cache = ResponseCache(ttl_seconds=settings.mcp.cache_ttl_seconds)
            supervisor = Supervisor(
                store,
                build_sources(settings, client, clock),
                clock=clock,
                poll_interval_seconds=settings.watcher.poll_interval_seconds,
                poll_timeout_seconds=settings.watcher.poll_timeout_seconds,
                refresh_unchanged_seconds=settings.watcher.refresh_unchanged_seconds,
                finished_poll_interval_seconds=settings.watcher.finished_poll_interval_seconds,
                jitter=settings.watcher.jitter,
                source_policies=source_policies(settings),
                policy=stats_policy(settings),
            )
            mcp = build_server(
                store,
                cache=cache,
                options=ServerOptions(
                    read_only=settings.mcp.read_only,
                    sources=tuple(settings.sources),
                    client_rate_limit_per_minute=settings.mcp.client_rate_limit_per_minute,
                    client_rate_limit_burst=settings.mcp.client_rate_limit_burst,
                    audit_log=settings.mcp.audit_log,
                ),
                control=SupervisorControl(supervisor),
                now=clock.now,
            )
            subscriptions = ResourceSubscriptions()
            subscriptions.install(mcp)
            yield App(
                settings=settings,
                clock=clock,
                store=store,
                supervisor=supervisor,
                dispatcher=AlertDispatcher(
                    store,
                    targets,
                    notifier=notifier
                    or AppriseNotifier(timeout_seconds=settings.alerts.send_timeout_seconds),
                    policy=alert_policy(settings),
                    poll_interval_seconds=settings.alerts.poll_interval_seconds,
                    retry_initial_seconds=settings.alerts.retry_initial_seconds,
                    retry_max_seconds=settings.alerts.retry_max_seconds,
                    give_up_after=timedelta(hours=settings.alerts.give_up_after_hours),
                ),
                cache=cache,
                mcp=mcp,
                subscriptions=subscriptions,
                notifier=ResourceNotifier(
                    store,
                    cache=cache,
                    publish=subscriptions.publish,
                    poll_interval_seconds=settings.mcp.event_poll_interval_seconds,
                ),
            )
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()
