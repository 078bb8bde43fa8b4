"""Helpers shared by the platform clients: reading error bodies, rate-limit hints and
validation failures into the words of a user-facing message."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import ValidationError


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
