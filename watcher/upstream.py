"""Helpers shared by the platform clients: reading error bodies, rate-limit hints and
validation failures into the words of a user-facing message."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from store import PayloadError, SourceUnavailable

M = TypeVar("M", bound=BaseModel)


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
) -> M:
    """GET `url` and validate the body into `model`, translating failures at the boundary:
    timeouts and transport errors become SourceUnavailable, a body that does not fit becomes
    PayloadError naming the path; `check` classifies the HTTP status first. `where` names the
    platform's address in messages (never a URL with credentials)."""
    try:
        response = await client.get(url, params=params, headers=headers, timeout=timeout_seconds)
    except httpx.TimeoutException as exc:
        raise SourceUnavailable(
            f"{platform} did not answer GET {path} in time",
            source=source,
            experiment_id=experiment_id,
        ) from exc
    except httpx.TransportError as exc:
        raise SourceUnavailable(
            f"cannot reach {platform} at {where}: {type(exc).__name__}",
            source=source,
            experiment_id=experiment_id,
        ) from exc
    check(response)
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise PayloadError(
            f"{platform} GET {path} returned an unexpected payload: {summarize_validation(exc)}",
            source=source,
            experiment_id=experiment_id,
        ) from exc


def error_message(response: httpx.Response) -> str:
    """The platform's own error text (its JSON `message`), shortened; else the reason."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:500]
    return response.reason_phrase


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
