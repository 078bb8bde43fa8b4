"""GrowthBook REST API v1 source: list experiments, read results, normalize them.

`GrowthBookSource` makes the requests: experiment lists and the results portfolio read page by
page (a few pages in flight), one experiment's results, its history from the bulk-results
endpoint, and the metric definitions (cached) that give each metric's direction. Payloads are
validated into the typed models of `watcher.growthbook_payloads` (and, for history,
`watcher.growthbook_history`) at the edge and converted there; anything that does not fit
becomes a PayloadError for that experiment. httpx errors become SourceUnavailable /
SourceRejected.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar
from urllib.parse import quote

import anyio
import httpx
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream
from pydantic import ValidationError

from store import (
    Experiment,
    HistoryUnavailable,
    PayloadError,
    Snapshot,
    SourceError,
    SourceRejected,
)

from .backfill import ExperimentHistory
from .budget import RateBudget
from .growthbook_history import GBBulkItem, GBBulkPage, bulk_result, day_of, iso_datetime
from .growthbook_payloads import (
    GBExperiment,
    GBExperimentList,
    GBMetricList,
    GBOneExperiment,
    GBPage,
    GBPortfolioPage,
    GBResult,
    GBResultsResponse,
    GBSettings,
    metric_ids,
    to_experiment,
    to_snapshot,
)
from .upstream import (
    NO_RETRY,
    HttpSource,
    PagesRepeat,
    RetryPolicy,
    error_message,
    read_settled,
    status_error,
    summarize_validation,
)

__all__ = ["PAGES_IN_FLIGHT", "PAGE_LIMIT", "GrowthBookSource"]

logger = logging.getLogger(__name__)

NO_RESULTS_MESSAGE = "No results found"
UNKNOWN_ENDPOINT_MESSAGE = "Unknown API endpoint"
UNKNOWN_EXPERIMENT_MESSAGE = "Could not find experiment"
PAGE_LIMIT = 100
PAGES_IN_FLIGHT = 4


_P = TypeVar("_P", bound=GBPage)
_T = TypeVar("_T")


class GrowthBookSource(HttpSource):
    """One GrowthBook organisation reached with one API key."""

    kind = "growthbook"
    platform = "GrowthBook"

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str,
        client: httpx.AsyncClient,
        status: str | None = "running",
        project: str | None = None,
        ui_url: str | None = None,
        page_size: int = PAGE_LIMIT,
        pages_in_flight: int = PAGES_IN_FLIGHT,
        request_timeout_seconds: float = 30.0,
        budget: RateBudget | None = None,
        retry: RetryPolicy = NO_RETRY,
    ) -> None:
        api = base_url.rstrip("/").removesuffix("/api") + "/api/v1"
        super().__init__(
            name=name,
            client=client,
            api=api,
            where=api,
            headers={"Authorization": f"Bearer {api_key}"},
            request_timeout_seconds=request_timeout_seconds,
            budget=budget,
            retry=retry,
        )
        self._status = status
        self._project = project
        self._ui_url = ui_url.rstrip("/") if ui_url else None
        self._page_size = page_size
        self._pages_in_flight = max(1, pages_in_flight)
        self._directions: dict[str, bool] = {}
        self._directions_tried: set[str] = set()

    # -- reading ----------------------------------------------------------------------------

    async def _list_once(self) -> tuple[dict[str, Experiment], bool]:
        """One reading of the list, and whether it shrank meanwhile (a later page's `total`
        below the first's)."""
        found: dict[str, Experiment] = {}

        async def read(page: GBExperimentList) -> list[Experiment]:
            listed = (self._listed(e, self._experiment) for e in page.experiments)
            return [e for e in listed if e is not None]

        async def keep(experiments: list[Experiment]) -> None:
            for experiment in experiments:
                found.setdefault(experiment.experiment_id, experiment)

        shrank = await self._read_pages("/experiments", GBExperimentList, read, keep)
        return found, shrank

    async def get_experiment(self, experiment_id: str) -> Experiment:
        """One experiment, with GrowthBook's `enhancedStatus` as its detailed status."""
        path = f"/experiments/{quote(experiment_id, safe='')}"
        response = await self._get(path, GBOneExperiment, experiment_id=experiment_id)
        self._check_answer_is_for(experiment_id, path, response.experiment.id)
        return self._experiment(response.experiment)

    async def history(self, experiment_id: str) -> ExperimentHistory:
        """The history of the experiment's current phase, from the bulk-results endpoint:
        every standard snapshot GrowthBook stored, one day per request (paginated).
        GrowthBook serves it only when the self-hosted server enables it; otherwise the
        first day read raises HistoryUnavailable."""
        path = f"/experiments/{quote(experiment_id, safe='')}"
        response = await self._get(path, GBOneExperiment, experiment_id=experiment_id)
        self._check_answer_is_for(experiment_id, path, response.experiment.id)
        payload = response.experiment
        experiment = self._experiment(payload)
        phase = len(payload.phases) - 1
        current = payload.phases[-1] if payload.phases else None

        async def read_day(day: date) -> list[Snapshot]:
            return await self._snapshots_of_day(experiment, max(phase, 0), day)

        return ExperimentHistory(
            experiment=experiment,
            started_on=(
                day_of(current.dateStarted)
                if current is not None and payload.status != "draft"
                else None
            ),
            ended_on=day_of(current.dateEnded) if current is not None else None,
            read_day=read_day,
        )

    async def _snapshots_of_day(
        self, experiment: Experiment, phase: int, day: date
    ) -> list[Snapshot]:
        """The standard snapshots of `phase` GrowthBook generated on `day`, oldest first."""
        experiment_id = experiment.experiment_id
        path = f"/experiments/{quote(experiment_id, safe='')}/bulk-results"
        start = datetime.combine(day, time(0), UTC)
        window: dict[str, str | int] = {
            "dateStart": iso_datetime(start),
            "dateEnd": iso_datetime(start + timedelta(days=1) - timedelta(milliseconds=1)),
            "phase": phase,
            "snapshotType": "standard",
            "limit": self._page_size,
        }
        found: dict[str, Snapshot] = {}
        offset: int | None = 0
        while offset is not None:
            page = await self._get(
                path, GBBulkPage, params={**window, "offset": offset}, experiment_id=experiment_id
            )
            self._check_answer_is_for(experiment_id, path, *(i.experimentId for i in page.results))
            for item in page.results:
                if item.dimension.type == "none" and item.snapshotId not in found:
                    found[item.snapshotId] = await self._bulk_snapshot(item, experiment, path)
            offset = self._next_offset(path, page, offset)
        return sorted(found.values(), key=lambda s: s.upstream_updated_at or start)

    async def fetch_results(
        self, experiment: Experiment, *, dimension: str | None = None
    ) -> tuple[Experiment, Snapshot | None]:
        """The experiment as the results endpoint describes it and its latest results.

        The snapshot is None while GrowthBook has no results for the experiment yet. With
        `dimension`, the rows of that dimension's values are kept in `Snapshot.slices`.
        """
        params: dict[str, str | int] | None = {"dimension": dimension} if dimension else None
        path = f"/experiments/{quote(experiment.experiment_id, safe='')}/results"
        try:
            response = await self._get(
                path, GBResultsResponse, params=params, experiment_id=experiment.experiment_id
            )
        except _NoResultsYet:
            return experiment, None
        self._check_answer_is_for(
            experiment.experiment_id, path, response.experiment.id, response.result.experimentId
        )
        current = self._experiment(response.experiment)
        settings = response.result.settings or response.experiment.settings
        snapshot = await self._snapshot(response.result, settings, current)
        return current, snapshot

    async def read_portfolio(
        self,
        experiments: Mapping[str, Experiment],
        pages: MemoryObjectSendStream[dict[str, Snapshot | PayloadError]],
    ) -> None:
        """Send the latest results of every experiment matching the source's filters to
        `pages`, in order, then close it: a page of a hundred experiments per request
        (GET /experiments/results), at most `pages_in_flight` requested ahead of the pages
        taken (so memory holds a few pages, whatever the size of the portfolio).

        Experiments without results are absent. An experiment whose results do not have the
        documented shape maps to its PayloadError, and the others are still read.
        `experiments` (by id, as listed) supplies the variation order; an experiment missing
        from it is read with its first reported variation as the baseline. When the list
        shrank or repeated itself while it was read, it is read once more (`read_settled`):
        an experiment may then come twice, and its first reading counts.
        """

        async def read(page: GBPortfolioPage) -> dict[str, Snapshot | PayloadError]:
            return await self._portfolio_page(page, experiments)

        async def read_once() -> tuple[None, bool]:
            path = "/experiments/results"
            return None, await self._read_pages(path, GBPortfolioPage, read, pages.send)

        async with pages:
            await read_settled(read_once, source=self.name, what="portfolio")

    async def _portfolio_page(
        self, page: GBPortfolioPage, experiments: Mapping[str, Experiment]
    ) -> dict[str, Snapshot | PayloadError]:
        found: dict[str, Snapshot | PayloadError] = {}
        for raw in page.experimentResults:
            experiment_id = str(raw.get("experimentId", "")) if isinstance(raw, dict) else ""
            try:
                result = GBResult.model_validate(raw)
            except ValidationError as exc:
                error = PayloadError(
                    "GrowthBook GET /experiments/results returned an unexpected payload "
                    f"for this experiment: {summarize_validation(exc)}",
                    source=self.name,
                    experiment_id=experiment_id or None,
                )
                if experiment_id:
                    found[experiment_id] = error
                    continue
                raise error from exc
            experiment = experiments.get(result.experimentId) or Experiment(
                source=self.name,
                experiment_id=result.experimentId,
                name=result.experimentId,
                status="",
            )
            try:
                found[result.experimentId] = await self._snapshot(
                    result, result.settings or GBSettings(), experiment
                )
            except PayloadError as error:
                found[result.experimentId] = error
        return found

    # -- HTTP -----------------------------------------------------------------------------

    async def _pages(
        self,
        path: str,
        model: type[_P],
        *,
        offset: int | None = 0,
        paging: _Paging | None = None,
    ) -> AsyncIterator[_P]:
        """Every page of a paginated list endpoint from `offset`, with the source's filters,
        one after another, each checked by `paging` (one reading of the list)."""
        paging = paging or _Paging(self.name, path)
        while offset is not None:
            page = await self._get(path, model, params=self._page_params(path, offset))
            paging.check(page, offset)
            yield page
            offset = self._next_offset(path, page, offset)

    async def _read_pages(
        self,
        path: str,
        model: type[_P],
        read: Callable[[_P], Awaitable[_T]],
        deliver: Callable[[_T], Awaitable[None]],
    ) -> bool:
        """Every page of a paginated list endpoint, each `read` as it arrives and handed to
        `deliver` in order; returns whether the list shrank while it was read.

        The first page says how many items there are (`total`) and how far a page reaches
        (`nextOffset`); the pages after it are then requested `pages_in_flight` at a time,
        never more than that many ahead of `deliver`. Without a `total`, or past it (the list
        grew meanwhile), page after page. The first failure propagates, once the other
        requests are cancelled.

        A page holding only items of earlier pages ends the reading with `PagesRepeat`: the
        list loops (a server ignoring the offset, or promising pages for ever), or it shifted
        by a whole page. A page counting fewer items than the first (its `total`) means items
        were removed while the list was read: those after a removed one moved up a place, so
        one may have been skipped. Either way the caller reads it again (`read_settled`).
        """
        paging = _Paging(self.name, path)
        first = await self._get(path, model, params=self._page_params(path, 0))
        paging.check(first, 0)
        await deliver(await read(first))
        offset = self._next_offset(path, first, 0)
        if offset is not None and first.total is not None:
            offset = await self._read_ahead(
                path, model, read, deliver, range(offset, first.total, offset), paging
            )
        async for page in self._pages(path, model, offset=offset, paging=paging):
            await deliver(await read(page))
        return paging.shrank

    async def _read_ahead(
        self,
        path: str,
        model: type[_P],
        read: Callable[[_P], Awaitable[_T]],
        deliver: Callable[[_T], Awaitable[None]],
        offsets: range,
        paging: _Paging,
    ) -> int | None:
        """The pages at `offsets`, requested concurrently and delivered in order; returns
        where the page after the last one starts (None: there is none)."""
        if not offsets:
            return offsets.start
        read_pages: dict[int, _T] = {}
        arrived = [anyio.Event() for _ in offsets]
        window = anyio.Semaphore(self._pages_in_flight)
        failures: list[SourceError] = []
        after_last: int | None = None

        async def fetch(index: int, scope: anyio.CancelScope) -> None:
            nonlocal after_last
            try:
                page = await self._get(path, model, params=self._page_params(path, offsets[index]))
                paging.check(page, offsets[index])
                read_pages[index] = await read(page)
                if index == len(offsets) - 1:
                    after_last = self._next_offset(path, page, offsets[index])
            except SourceError as exc:
                failures.append(exc)  # raised below, once every request is stopped
                scope.cancel()
            arrived[index].set()

        async def start_requests(tg: TaskGroup) -> None:
            for index in range(len(offsets)):
                await window.acquire()  # released as each page is delivered
                tg.start_soon(fetch, index, tg.cancel_scope)

        async with anyio.create_task_group() as tg:
            tg.start_soon(start_requests, tg)
            for index in range(len(offsets)):
                await arrived[index].wait()
                if index not in read_pages:
                    break  # its request failed, and every other one is being cancelled
                await deliver(read_pages.pop(index))
                window.release()
        if failures:
            raise failures[0]
        return after_last

    def _page_params(self, path: str, offset: int) -> dict[str, str | int]:
        params: dict[str, str | int] = {"limit": self._page_size, "offset": offset}
        if self._status and path != "/metrics" and path != "/fact-metrics":
            params["status"] = self._status
        if self._project:
            params["projectId"] = self._project
        return params

    def _next_offset(self, path: str, page: GBPage, offset: int) -> int | None:
        """Where the page after `page` (read at `offset`) starts; None after the last."""
        next_offset = page.nextOffset if page.hasMore else None
        if next_offset is not None and next_offset <= offset:
            raise PayloadError(
                f"GrowthBook pagination of {path} did not advance "
                f"(offset {offset} → {next_offset})",
                source=self.name,
            )
        return next_offset

    def _raise_for_status(
        self, response: httpx.Response, path: str, experiment_id: str | None
    ) -> None:
        if response.status_code < 400:
            return
        message = error_message(response)
        if response.status_code == 400 and NO_RESULTS_MESSAGE.lower() in message.lower():
            raise _NoResultsYet
        if (
            response.status_code == 404
            and path.endswith("/bulk-results")
            and UNKNOWN_ENDPOINT_MESSAGE.lower() in message.lower()
        ):
            raise HistoryUnavailable(
                f"GrowthBook does not serve experiment history to source {self.name!r}: "
                f"GET {path} → HTTP 404 {message}. GrowthBook's REST API gives only the latest "
                "results; past snapshots come from its bulk-results endpoint, which is off "
                "unless the self-hosted GrowthBook server sets "
                "EXPERIMENT_BULK_RESULTS_ENABLED=true. Until then, expwatch's history of "
                "this experiment starts with its first poll.",
                source=self.name,
                experiment_id=experiment_id,
                status_code=404,
            )
        raise status_error(
            response,
            message,
            platform="GrowthBook",
            source=self.name,
            path=path,
            experiment_id=experiment_id,
            guidance={
                401: f"check the api_key of source {self.name!r}",
                403: (
                    f"the API key of source {self.name!r} lacks a permission this needs; use a "
                    "secret key or personal access token with read access to experiments and "
                    "metrics"
                ),
            },
            # GrowthBook answers an unknown id with a 400 "Could not find experiment".
            is_not_found=response.status_code == 404
            or UNKNOWN_EXPERIMENT_MESSAGE.lower() in message.lower(),
            known_ids=self._known_ids,
        )

    async def _higher_is_better(self, metric_ids: set[str]) -> dict[str, bool]:
        """Each metric's direction (GrowthBook metric `behavior.goal` / fact metric `inverse`).

        The definitions are read when a metric id is first seen, so a new metric costs one
        pass over the metric list. If the key may not read them, every metric counts as
        higher-is-better.
        """
        for path in ("/metrics", "/fact-metrics"):
            unseen = {
                m
                for m in metric_ids - self._directions_tried
                if m.startswith("fact__") == (path == "/fact-metrics")
            }
            if not unseen:
                continue
            try:
                async for page in self._pages(path, GBMetricList):
                    for definition in page.metrics + page.factMetrics:
                        self._directions[definition.id] = definition.higher_is_better
            except SourceRejected as exc:
                logger.warning(
                    "source %s: cannot read metric definitions (%s); "
                    "treating these metrics as higher-is-better",
                    self.name,
                    exc,
                )
            self._directions_tried |= unseen
        return {m: self._directions.get(m, True) for m in metric_ids}

    # -- normalization --------------------------------------------------------------------
    async def _snapshot(
        self, result: GBResult, settings: GBSettings, experiment: Experiment
    ) -> Snapshot:
        """`result` as a snapshot of `experiment`, with its metrics' directions."""
        directions = await self._higher_is_better(metric_ids(result))
        return to_snapshot(result, settings, experiment, source=self.name, directions=directions)

    def _experiment(self, e: GBExperiment) -> Experiment:
        return to_experiment(e, source=self.name, ui_url=self._ui_url)

    async def _bulk_snapshot(self, item: GBBulkItem, experiment: Experiment, path: str) -> Snapshot:
        """A bulk-results item read as the results endpoint's snapshot."""
        result = bulk_result(item, experiment, path=path, source=self.name)
        return await self._snapshot(result, result.settings or GBSettings(), experiment)


class _Paging:
    """What the pages of one reading of a list have shown: the first page's `total`, the
    ids of the items seen, and whether a later page counted fewer items (the list shrank)."""

    def __init__(self, source: str, path: str) -> None:
        self._source = source
        self._path = path
        self._seen: set[str] = set()
        self._pages = 0
        self._first_total: int | None = None
        self.shrank = False

    def check(self, page: GBPage, offset: int) -> None:
        """Take in the page read at `offset`; `PagesRepeat` if it brings nothing new: only
        items of earlier pages, or none while promising more past the first page's total
        (within it, a portfolio page may hold none: experiments without results are left out)."""
        ids = page.item_ids()
        if self._pages == 0:
            self._first_total = page.total
        else:
            past_the_end = self._first_total is None or offset >= self._first_total
            if self._seen.issuperset(ids) and (ids or (page.hasMore and past_the_end)):
                raise PagesRepeat(
                    f"GrowthBook pagination of {self._path} did not advance: the page at "
                    f"offset {offset} brings nothing earlier pages did not (the list loops)",
                    source=self._source,
                )
            if (
                page.total is not None
                and self._first_total is not None
                and page.total < self._first_total
            ):
                self.shrank = True
        self._seen.update(ids)
        self._pages += 1


class _NoResultsYet(Exception):
    """GrowthBook's HTTP 400 'No results found for that experiment': a state, not an error."""
