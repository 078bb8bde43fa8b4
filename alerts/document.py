"""The JSON documents that webhooks receive, for programs rather than people.

`event_document` gives one event as `expwatch.alert/v1` and `digest_document` a batch as
`expwatch.alert.digest/v1` (both documented in docs/alert-payload.md): the event's id, kind
and level, its experiment, metric and variation, before and after, the verdict numbers under
`values`, and the title and plain text the other channels show. Every value is JSON-native
(times in UTC, ISO 8601; non-finite floats null), so any receiver can parse it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from store import Event, EventKind

from .levels import Level
from .markup import safe_url
from .wording import experiment_name, is_test

_SCHEMA = "expwatch.alert/v1"
_DIGEST_SCHEMA = "expwatch.alert.digest/v1"


def utc(moment: datetime) -> datetime:
    """`moment` in UTC (a naive time is taken to be UTC already)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_VALUES = {
    # value name: detail key, for events judged by expwatch (significance, guardrails)
    "relative_change": "relative_change",
    "relative_ci_low": "relative_ci_low",
    "relative_ci_high": "relative_ci_high",
    "absolute_change": "absolute_change",
    "absolute_ci_low": "absolute_ci_low",
    "absolute_ci_high": "absolute_ci_high",
    "p_value": "p_value",
    "alpha": "alpha",
    "platform_verdict": "platform_verdict",
    "platform_relative_change": "platform_relative_change",
    "platform_relative_ci_low": "platform_ci_low",
    "platform_relative_ci_high": "platform_ci_high",
    "platform_p_value": "platform_p_value",
    "platform_chance_to_win": "platform_chance_to_win",
}
_PLATFORM_VALUES = {
    # value name: detail key, for platform_verdict_changed (the platform's own numbers)
    "platform_relative_change": "relative_change",
    "platform_relative_ci_low": "ci_low",
    "platform_relative_ci_high": "ci_high",
    "platform_p_value": "p_value",
    "platform_chance_to_win": "chance_to_win",
    "our_verdict": "our_verdict",
}


def _json(value: Any) -> Any:
    """`value` as JSON-native types only (non-finite floats become null)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, datetime):
        return utc(value).isoformat()
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json(v) for v in value]
    return str(value)


def _values(event: Event) -> dict[str, Any]:
    d = event.details
    values: dict[str, Any] = {}
    if event.kind in (EventKind.SIGNIFICANCE_CHANGED, EventKind.GUARDRAIL_REGRESSED):
        values = {name: d.get(key) for name, key in _VALUES.items()}
        values["our_verdict"] = event.after
    elif event.kind is EventKind.PLATFORM_VERDICT_CHANGED:
        values = {name: d.get(key) for name, key in _PLATFORM_VALUES.items()}
        values["platform_verdict"] = event.after
    return {k: v for k, v in _json(values).items() if v is not None}


def event_document(
    event: Event, *, level: Level, title: str, text: str, possible_duplicate: bool
) -> dict[str, Any]:
    """The `expwatch.alert/v1` document of `event`, with the `title` and `text` it was sent as."""
    d = event.details
    experiment: dict[str, Any] | None = None
    if event.experiment_id is not None:
        experiment = {
            "id": event.experiment_id,
            "name": experiment_name(event),
            "url": safe_url(d.get("url")),
        }
        if d.get("project"):
            experiment["project"] = str(d["project"])
    metric = variation = None
    if event.metric_id is not None:
        metric = {
            "id": event.metric_id,
            "name": str(d.get("metric_name") or event.metric_id),
            "role": d.get("metric_role"),
        }
    if event.variation_id is not None:
        name = d.get("variation_name") or event.variation_id
        variation = {"id": event.variation_id, "name": str(name)}
    return {
        "schema": _SCHEMA,
        "event_id": event.id,
        "kind": event.kind.value,
        "level": level.value,
        "occurred_at": _json(event.occurred_at),
        "recorded_at": _json(event.recorded_at),
        "source": event.source,
        "experiment": _json(experiment),
        "metric": _json(metric),
        "variation": variation,
        "before": _json(event.before),
        "after": _json(event.after),
        "values": _values(event),
        "title": title,
        "text": text,
        "possible_duplicate": possible_duplicate,
        "test": is_test(event),
    }


def digest_document(
    *,
    title: str,
    text: str,
    level: Level,
    critical: int,
    events: Sequence[Event],
    event_documents: Sequence[dict[str, Any]],
    possible_duplicate: bool,
) -> dict[str, Any]:
    """The `expwatch.alert.digest/v1` document: `events` in the digest's order, each with its
    `expwatch.alert/v1` document."""
    return {
        "schema": _DIGEST_SCHEMA,
        "title": title,
        "text": text,
        "level": level.value,
        "count": len(events),
        "critical": critical,
        "event_ids": [e.id for e in events],
        "possible_duplicate": possible_duplicate,
        "events": list(event_documents),
    }
