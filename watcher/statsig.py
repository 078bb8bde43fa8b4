"""Statsig Console API source: list experiments, read Pulse per group pair, normalize them.

`fetch_results` reads one experiment, then Pulse for every (control, test) group pair, and
merges them into one snapshot (see `watcher.statsig_payloads` for the payloads, units and the
verdict rule). Payloads that do not fit become a PayloadError for that experiment naming the
offending path; httpx errors and HTTP statuses become SourceUnavailable (retry) or
SourceRejected (do not), with the API key scrubbed from every message.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from store import Experiment, Snapshot

from .backfill import ExperimentHistory
from .budget import RateBudget
from .statsig_payloads import (
    MAX_EPOCH_MS,
    ExperimentList,
    ExperimentPayload,
    ExperimentResponse,
    ExposuresResponse,
    Group,
    PulseData,
    PulseResponse,
    metrics_of,
    pair_groups,
    to_experiment,
    to_snapshot,
)
from .upstream import (
    NO_RETRY,
    HttpSource,
    PagesRepeat,
    RetryPolicy,
    error_message,
    status_error,
)

__all__ = ["API_VERSION", "DEFAULT_BASE_URL", "StatsigSource"]

API_VERSION = "20240601"
DEFAULT_BASE_URL = "https://statsigapi.net"
PAGE_LIMIT = 100
_KEYS_PAGE = "https://console.statsig.com/api_keys"
_SECRET_PATTERNS = (
    re.compile(r"(Key:\s*)\S+", re.IGNORECASE),
    re.compile(r"\b(console-|secret-)[A-Za-z0-9_\-]+"),
)


class StatsigSource(HttpSource):
    """One Statsig project reached with one Console API key."""

    kind = "statsig"
    platform = "Statsig"

    def __init__(
        self,
        *,
        name: str,
        api_key: str,
        client: httpx.AsyncClient,
        base_url: str = DEFAULT_BASE_URL,
        status: str | None = "active",
        api_version: str = API_VERSION,
        ui_url: str | None = None,
        page_size: int = PAGE_LIMIT,
        request_timeout_seconds: float = 30.0,
        budget: RateBudget | None = None,
        retry: RetryPolicy = NO_RETRY,
    ) -> None:
        self._base = base_url.rstrip("/")
        super().__init__(
            name=name,
            client=client,
            api=self._base + "/console/v1",
            where=self._base,
            headers={"STATSIG-API-KEY": api_key, "STATSIG-API-VERSION": api_version},
            request_timeout_seconds=request_timeout_seconds,
            budget=budget,
            retry=retry,
        )
        self._api_key = api_key
        self._status = status
        self._ui_url = ui_url.rstrip("/") if ui_url else None
        self._page_size = page_size

    async def _list_once(self) -> tuple[dict[str, Experiment], bool]:
        """One reading of the list, following `pagination.nextPage`, and whether it shrank
        meanwhile (a page counting fewer `totalItems` than the first). A page that names a
        next page without bringing a new experiment repeats itself (`PagesRepeat`): following
        it could go on for ever."""
        found: dict[str, Experiment] = {}
        seen: set[str] = set()  # every id listed, those left out too: progress all the same
        first_total: float | None = None
        shrank = False
        page = 1
        while True:
            params: dict[str, str | int] = {"page": page, "limit": self._page_size}
            if self._status:
                params["status"] = self._status
            listed = await self._get("/experiments", ExperimentList, params=params)
            total = listed.pagination.totalItems
            if page == 1:
                first_total = total
            elif total is not None and first_total is not None and total < first_total:
                shrank = True
            before = len(seen)
            seen.update(e.id for e in listed.data)
            for payload in listed.data:
                experiment = self._listed(payload, self._experiment)
                if experiment is not None:
                    found[payload.id] = experiment
            if listed.pagination.nextPage is None:
                break
            next_page = _page_of(listed.pagination.nextPage) or page + 1
            if next_page <= page or len(seen) == before:
                raise PagesRepeat(
                    f"Statsig pagination did not advance (page {page} → {next_page}, "
                    f"{len(seen) - before} new experiments)",
                    source=self.name,
                )
            page = next_page
        return found, shrank

    async def fetch_results(self, experiment: Experiment) -> tuple[Experiment, Snapshot | None]:
        """The experiment as Statsig describes it now and its latest Pulse, merged over pairs.

        The snapshot is None while Pulse is not yet available (or the experiment never started).
        """
        return await self._fetch(experiment.experiment_id, day=None)

    async def fetch_results_on(
        self, experiment: Experiment, day: date
    ) -> tuple[Experiment, Snapshot | None]:
        """Like `fetch_results`, with Pulse's cumulative results as of `day` (history backfill)."""
        return await self._fetch(experiment.experiment_id, day=day)

    async def fetch_exposures(self, experiment: Experiment) -> dict[str, list[tuple[date, float]]]:
        """Cumulative exposures per group (by group id, else name), one (day, units) per day
        since the experiment started: the traffic split over time, for SRM history."""
        experiment_id = experiment.experiment_id
        response = await self._get(
            f"/experiments/{quote(experiment_id, safe='')}/cumulative_exposures",
            ExposuresResponse,
            experiment_id=experiment_id,
        )
        return {
            group.groupID or group.groupName: [(d.date, d.exposures) for d in group.results]
            for group in response.data
        }

    async def history(self, experiment_id: str) -> ExperimentHistory:
        """The experiment's history: Pulse as of each day since it started (one request per
        test group and day), without health checks (Statsig keeps no history of those)."""
        payload = await self._describe(experiment_id)
        started = None if payload.status == "setup" else _day_of(payload.startTime)

        async def read_day(day: date) -> list[Snapshot]:
            snapshot = await self._pulse(payload, day=day)
            if snapshot is None or snapshot.upstream_snapshot_id not in (None, day.isoformat()):
                return []  # not computed (yet), or Statsig answered for another day
            return [snapshot.model_copy(update={"health_checks": ()})]

        return ExperimentHistory(
            experiment=self._experiment(payload),
            started_on=started,
            ended_on=_day_of(payload.endTime),
            read_day=read_day,
        )

    async def _fetch(
        self, experiment_id: str, *, day: date | None
    ) -> tuple[Experiment, Snapshot | None]:
        payload = await self._describe(experiment_id)
        return self._experiment(payload), await self._pulse(payload, day=day)

    async def _describe(self, experiment_id: str) -> ExperimentPayload:
        path = f"/experiments/{quote(experiment_id, safe='')}"
        payload = (await self._get(path, ExperimentResponse, experiment_id=experiment_id)).data
        self._check_answer_is_for(experiment_id, path, payload.id)
        return payload

    async def _pulse(self, payload: ExperimentPayload, *, day: date | None) -> Snapshot | None:
        """Pulse of every (control, test) pair merged into one snapshot: the latest, or as of
        `day`; None while Pulse is not available."""
        control, tests = pair_groups(payload)
        if payload.status == "setup" or control is None or not tests:
            return None
        path = f"/experiments/{quote(payload.id, safe='')}/pulse_results"
        pulses: list[tuple[Group, PulseData]] = []
        for test in tests:
            params: dict[str, str | int] = {"control": str(control.id), "test": str(test.id)}
            if day is not None:
                params["date"] = day.isoformat()
            try:
                response = await self._get(
                    path, PulseResponse, params=params, experiment_id=payload.id
                )
            except _PulseNotAvailable:
                return None  # every pair loads together: no partial snapshot
            pulses.append((test, response.data))
        if not any(metrics_of(data) for _, data in pulses):
            return None
        return to_snapshot(payload, control, pulses, source=self.name, day=day)

    # -- HTTP -----------------------------------------------------------------------------

    def _raise_for_status(
        self, response: httpx.Response, path: str, experiment_id: str | None
    ) -> None:
        status = response.status_code
        if status < 400:
            return
        message = self._redact(error_message(response))
        if status == 400 and "not" in message.lower() and "available" in message.lower():
            raise _PulseNotAvailable
        raise status_error(
            response,
            message,
            platform="Statsig",
            source=self.name,
            path=path,
            experiment_id=experiment_id,
            guidance={
                401: (
                    f"source {self.name!r} needs an active Console API key (console-…); "
                    f"create one at {_KEYS_PAGE} and set it as the source's api_key"
                ),
                403: (
                    f"the Console API key of source {self.name!r} lacks permission to read "
                    "experiments and Pulse results; use a key with read access to this project"
                ),
            },
            is_not_found=status == 404,
            known_ids=self._known_ids,
        )

    def _experiment(self, payload: ExperimentPayload) -> Experiment:
        return to_experiment(payload, source=self.name, ui_url=self._ui_url)

    def _redact(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "[redacted]")
        text = _SECRET_PATTERNS[0].sub(r"\1[redacted]", text)
        return _SECRET_PATTERNS[1].sub(r"\1[redacted]", text)


class _PulseNotAvailable(Exception):
    """Statsig's 400 "Pulse results are not yet available": a state, not an error."""


def _day_of(epoch_ms: object) -> date | None:
    """The UTC day of a Statsig epoch time in milliseconds (None if it is none)."""
    if not isinstance(epoch_ms, int | float) or isinstance(epoch_ms, bool):
        return None
    if not 0 <= epoch_ms <= MAX_EPOCH_MS:  # also NaN
        return None
    return datetime.fromtimestamp(epoch_ms / 1000.0, tz=UTC).date()


def _page_of(next_page: str) -> int | None:
    """The `page` a `nextPage` link names (`/path?page=2`, `host/path?page=2`, `?page=2`)."""
    values = parse_qs(urlsplit(next_page).query).get("page")
    try:
        return int(values[0]) if values else None
    except ValueError:
        return None
