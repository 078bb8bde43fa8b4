"""Helpers shared by the platform clients: reading error bodies, rate-limit hints and
validation failures into the words of a user-facing message, and keeping ids within what the
store keeps.

Ids longer than `store.ID_LENGTH` are a PayloadError for their experiment alone (never
clipped: two experiments could become one). In results, the edge models bound them
(`UpstreamId`), so the error names the path. An experiment object is checked as it is
normalized (`check_ids`), because a listing page carries many: one with an id too long is
left out of the listing with a warning (`HttpSource._listed`), and the others are watched.
Names and status words too long are not errors: the store's records clip them."""

from __future__ import annotations

import difflib
import logging
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, TypeVar

import anyio
import httpx
import stamina
from pydantic import BaseModel, StringConstraints, ValidationError

from store import (
    ID_LENGTH,
    Experiment,
    ExperimentNotFound,
    PayloadError,
    SourceError,
    SourceRejected,
    SourceUnavailable,
    clip,
)

from .budget import RateBudget

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
P = TypeVar("P")

UpstreamId = Annotated[str, StringConstraints(max_length=ID_LENGTH)]
"""An id of a payload's results that the store keys a column with (metric, variation,
experiment): a longer one fails validation, so it is a PayloadError naming its path."""


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How one request is retried when the platform is briefly unavailable (transport errors,
    timeouts, 5xx, 429): `attempts` in all, exponential backoff with jitter between
    `wait_initial` and `wait_max` seconds, and a 429's `Retry-After` / `RateLimit-Reset`
    honoured up to `retry_after_cap_seconds`. Other errors are never retried."""

    attempts: int = 3
    wait_initial: float = 0.5
    wait_max: float = 10.0
    retry_after_cap_seconds: float = 120.0

    def backoff(self, exc: Exception) -> bool | float:
        """stamina's backoff hook: False (do not retry), True (default backoff) or seconds."""
        if not isinstance(exc, SourceUnavailable):
            return False
        if exc.retry_after_seconds is not None:
            return min(exc.retry_after_seconds, self.retry_after_cap_seconds)
        return True


NO_RETRY = RetryPolicy(attempts=1)


async def get_model(
    client: httpx.AsyncClient,
    url: str,
    model: type[M],
    *,
    platform: str,
    source: str,
    path: str,
    where: str,
    headers: Mapping[str, str],
    check: Callable[[httpx.Response], None],
    params: Mapping[str, str | int] | None = None,
    experiment_id: str | None = None,
    timeout_seconds: float = 30.0,
    budget: RateBudget | None = None,
    retry: RetryPolicy = NO_RETRY,
) -> M:
    """GET `url` and validate the body into `model`, translating failures at the boundary:
    timeouts and transport errors become SourceUnavailable, a body that does not fit becomes
    PayloadError naming the path; `check` classifies the HTTP status first. `where` names the
    platform's address in messages (never a URL with credentials).

    Every attempt first takes a token from `budget`; a 429 pauses the whole budget (every
    poller of the source) for the time the platform asked, capped by `retry`. SourceUnavailable
    is retried as `retry` says; the last failure propagates.
    """
    async for attempt in stamina.retry_context(
        on=retry.backoff,
        attempts=retry.attempts,
        timeout=None,
        wait_initial=retry.wait_initial,
        wait_max=retry.wait_max,
    ):
        with attempt:
            if budget is not None:
                await budget.acquire()
            try:
                response = await _get(
                    client,
                    url,
                    params,
                    headers,
                    timeout_seconds,
                    platform,
                    path,
                    where,
                    source=source,
                    experiment_id=experiment_id,
                )
                check(response)
            except SourceUnavailable as exc:
                if budget is not None and exc.status_code == 429:
                    asked = exc.retry_after_seconds  # 0 (retry at once) is an answer too
                    budget.pause_for(
                        min(
                            retry.wait_max if asked is None else asked,
                            retry.retry_after_cap_seconds,
                        )
                    )
                raise
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        first = exc.errors()[0]
        problem = (
            f"malformed JSON ({first['msg']})"
            if first["type"] == "json_invalid"
            else summarize_validation(exc)
        )
        raise PayloadError(
            f"{platform} GET {path} returned an unexpected payload: {problem}",
            source=source,
            experiment_id=experiment_id,
        ) from exc


class PagesRepeat(PayloadError):
    """A page of a list brought nothing that earlier pages had not: the list loops (a
    server ignoring the offset, or promising pages for ever), or it shifted by a whole page
    while it was read. Only a second reading tells them apart (see `read_settled`)."""


R = TypeVar("R")


async def read_settled(
    read_once: Callable[[], Awaitable[tuple[R, bool]]], *, source: str, what: str
) -> R:
    """A paginated list, read with `read_once` (which returns what it read and whether the
    list shrank meanwhile). A reading that shrank or repeated itself (`PagesRepeat`) may have
    skipped items, as the items after a removed or inserted one move: the list is read once
    more, and that reading is taken as it is; a second repetition is the list looping, an
    error for this cycle."""
    try:
        found, shrank = await read_once()
    except PagesRepeat as exc:
        why = str(exc)
    else:
        if not shrank:
            return found
        why = f"the {what} shrank while it was read"
    logger.warning("source %s: %s; reading it again", source, why)
    found, _ = await read_once()
    return found


class HttpSource:
    """What the platform clients share: their name, HTTP client, address and headers, the
    source's rate budget, retry policy and request timeout; `_get`, one budgeted, retried,
    status-checked GET parsed into a model; and the listing, read until it settles.
    Subclasses classify statuses in `_raise_for_status` and read the list once in
    `_list_once`."""

    platform: ClassVar[str]
    """The platform's name in messages ("GrowthBook", "Statsig")."""

    def __init__(
        self,
        *,
        name: str,
        client: httpx.AsyncClient,
        api: str,
        where: str,
        headers: Mapping[str, str],
        request_timeout_seconds: float,
        budget: RateBudget | None,
        retry: RetryPolicy,
    ) -> None:
        self.name = name
        self.request_timeout_seconds = request_timeout_seconds
        self.budget = budget
        """Shared by every request of this source; None: unlimited."""
        self.retry = retry
        self._client = client
        self._api = api
        self._where = where
        """The platform's address in messages (never a URL with credentials)."""
        self._headers = dict(headers)
        self._known_ids: set[str] = set()
        """Every experiment id listed so far (suggestions for an id not found)."""

    async def list_experiments(self) -> list[Experiment]:
        """Every experiment matching the source's filters, following pagination. An
        experiment listed twice (the list shifted while it was read) is kept once. A list
        that shrank or repeated itself while it was read is read once more (`read_settled`);
        one that loops is a PayloadError."""
        found = await read_settled(self._list_once, source=self.name, what="experiment list")
        self._known_ids.update(found)
        return list(found.values())

    async def _list_once(self) -> tuple[dict[str, Experiment], bool]:
        """One reading of the list, by experiment id, and whether it shrank meanwhile."""
        raise NotImplementedError

    def _listed(self, payload: P, normalize: Callable[[P], Experiment]) -> Experiment | None:
        """A listed experiment normalized; None, with a warning, when it is its own
        PayloadError (an id too long to store): the rest of the page is still watched."""
        try:
            return normalize(payload)
        except PayloadError as exc:
            logger.warning(
                "source %s: left out of the listing: %s",
                self.name,
                exc,
                extra={"source": self.name, "experiment": exc.experiment_id},
            )
            return None

    def _check_answer_is_for(self, experiment_id: str, path: str, *answered: str) -> None:
        """An answer about another experiment than the one asked for is a PayloadError (not
        results to record under the other one's id)."""
        for other in answered:
            if other != experiment_id:
                raise PayloadError(
                    f"{self.platform} GET {path} answered for experiment {other[:200]!r}, "
                    f"not {experiment_id!r}",
                    source=self.name,
                    experiment_id=experiment_id,
                )

    async def _get(
        self,
        path: str,
        model: type[M],
        *,
        params: dict[str, str | int] | None = None,
        experiment_id: str | None = None,
    ) -> M:
        return await get_model(
            self._client,
            self._api + path,
            model,
            platform=self.platform,
            source=self.name,
            path=path,
            where=self._where,
            headers=self._headers,
            check=lambda response: self._raise_for_status(response, path, experiment_id),
            params=params,
            experiment_id=experiment_id,
            timeout_seconds=self.request_timeout_seconds,
            budget=self.budget,
            retry=self.retry,
        )

    def _raise_for_status(
        self, response: httpx.Response, path: str, experiment_id: str | None
    ) -> None:
        raise NotImplementedError


async def _get(
    client: httpx.AsyncClient,
    url: str,
    params: Mapping[str, str | int] | None,
    headers: Mapping[str, str],
    timeout_seconds: float,
    platform: str,
    path: str,
    where: str,
    *,
    source: str,
    experiment_id: str | None,
) -> httpx.Response:
    """One GET, its answer read whole within `timeout_seconds`: httpx's timeouts bound each
    step (connect, every read), so an answer dripping in slowly would never trip them; the
    overall deadline does."""
    try:
        with anyio.fail_after(timeout_seconds):
            return await client.get(url, params=params, headers=headers, timeout=timeout_seconds)
    except (httpx.TimeoutException, TimeoutError) as exc:
        raise SourceUnavailable(
            f"{platform} did not answer GET {path} in time: timed out after "
            f"{timeout_seconds:g} s (request_timeout_seconds)",
            source=source,
            experiment_id=experiment_id,
        ) from exc
    except httpx.TransportError as exc:
        raise SourceUnavailable(
            f"cannot reach {platform} at {where}: {_transport_reason(exc)}",
            source=source,
            experiment_id=experiment_id,
        ) from exc


def _transport_reason(exc: httpx.TransportError) -> str:
    """Why a connection failed, in words a user can act on; never the request's headers."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"TLS certificate verification failed ({cause.verify_message}); if the "
                "platform uses a private CA, set [watcher] ca_bundle"
            )
        cause = cause.__cause__ or cause.__context__
    for kind, words in _TRANSPORT_FAILURES:
        if isinstance(exc, kind):
            return f"{words} ({type(exc).__name__})"
    return type(exc).__name__


_TRANSPORT_FAILURES: tuple[tuple[type[httpx.TransportError], str], ...] = (
    (httpx.ConnectError, "the connection could not be opened"),
    (httpx.RemoteProtocolError, "the connection was dropped before the answer was complete"),
    (httpx.ReadError, "the connection was reset while the answer was read"),
    (httpx.WriteError, "the connection was reset while the request was sent"),
)
"""What a transport error means, in words; httpx's own message is left out (it may quote
what was sent)."""


def status_error(
    response: httpx.Response,
    message: str,
    *,
    platform: str,
    source: str,
    path: str,
    experiment_id: str | None,
    guidance: Mapping[int, str],
    is_not_found: bool,
    known_ids: Iterable[str],
) -> SourceError:
    """The error for a failed answer, classified the same way for every platform: 429 and
    5xx are worth retrying (with the server's wait hint); `guidance[status]` (401, 403) tells
    the user what to change; an unknown experiment (`is_not_found`) names the closest
    `known_ids`; anything else is rejected. `message` is the platform's own text, already
    free of secrets."""
    status = response.status_code
    where = f"{platform} GET {path} → HTTP {status}: {message}"
    if status == 429 or status >= 500:
        return SourceUnavailable(
            where,
            source=source,
            experiment_id=experiment_id,
            status_code=status,
            retry_after_seconds=retry_after_seconds(response),
        )
    if status in guidance:
        where += f" — {guidance[status]}"
    elif is_not_found and experiment_id is not None:
        known = set(known_ids)
        gone = (
            " It was listed before: it may have been deleted, or the key no longer sees it."
            if experiment_id in known
            else ""
        )
        return ExperimentNotFound(
            f"{platform} experiment {experiment_id!r} not found in source {source!r} "
            f"({where}).{gone}",
            source=source,
            experiment_id=experiment_id,
            status_code=status,
            suggestions=difflib.get_close_matches(experiment_id, sorted(known - {experiment_id})),
        )
    return SourceRejected(where, source=source, experiment_id=experiment_id, status_code=status)


def error_message(response: httpx.Response) -> str:
    """The platform's own error text (its JSON `message`), shortened; else the reason.
    A credential the request carried is masked: a platform or a proxy may quote it."""
    try:
        body: Any = response.json()
    except ValueError:
        text = response.text[:200] or response.reason_phrase
    else:
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            text = str(body["message"])[:500]
        else:
            text = response.reason_phrase
    return _without_credentials(text, response)


CREDENTIAL_HEADERS = frozenset({"authorization", "statsig-api-key"})


def _without_credentials(text: str, response: httpx.Response) -> str:
    try:
        headers = response.request.headers
    except RuntimeError:  # a response built without a request carries no credential
        return text
    for name in CREDENTIAL_HEADERS:
        value = headers.get(name, "")
        # The whole header, and its token without the scheme ("Bearer <key>").
        for secret in sorted({value, value.partition(" ")[2]}, key=len, reverse=True):
            if len(secret) >= 4:
                text = text.replace(secret, "[redacted]")
    return text


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Seconds to wait from `Retry-After` or `RateLimit-Reset`, if the response says."""
    for header in ("Retry-After", "RateLimit-Reset"):
        value = response.headers.get(header)
        if value is None:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            continue
    return None


def summarize_validation(exc: ValidationError) -> str:
    """The first offending path and problem of a payload that did not fit its model."""
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "(root)"
    extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{location}: {first['msg']}{extra}"


def check_ids(
    ids: Mapping[str, str | None], *, platform: str, source: str, experiment_id: str
) -> None:
    """A PayloadError for the experiment when its id, or one of its other `ids` (by what
    each is: "the launched group id"), is longer than the store keeps (`store.ID_LENGTH`)."""
    named = f"{platform} experiment {clip(experiment_id, 60)!r}:"
    checked = [(f"{platform} experiment id", experiment_id)]
    checked += [(f"{named} {what}", value) for what, value in ids.items() if value is not None]
    for whose, value in checked:
        if len(value) > ID_LENGTH:
            raise PayloadError(
                f"{whose} is {len(value)} characters long ({clip(value, 60)!r}), longer than "
                f"the {ID_LENGTH} expwatch can store; the experiment is not recorded until "
                "the platform sends a shorter one",
                source=source,
                experiment_id=experiment_id if len(experiment_id) <= ID_LENGTH else None,
            )


def distinct(items: list[T], key: Callable[[T], str], what: str) -> list[T]:
    """`items`, when no two share a `key`; else a ValueError naming the repeated keys (in a
    model's validator: a validation error at that field, so a PayloadError naming it)."""
    repeated = [k for k, count in Counter(key(item) for item in items).items() if count > 1]
    if repeated:
        raise ValueError(f"{what} {', '.join(map(repr, repeated))} listed more than once")
    return items
