"""The store: domain records, their persistence and the durable event log."""

from .database import Database, sqlite_url
from .errors import (
    ConfigError,
    DeliveryError,
    ExpwatchError,
    PayloadError,
    SourceError,
    SourceRejected,
    SourceUnavailable,
    StoreError,
    UnknownExperiment,
)
from .records import (
    Event,
    EventKind,
    Experiment,
    HealthCheck,
    HealthStatus,
    MetricPoint,
    MetricResult,
    MetricRole,
    PollOutcome,
    Snapshot,
    StoredSnapshot,
    Variation,
    VariationResult,
    Verdict,
)
from .retention import PruneReport
from .state import Delivery, RuntimeState
from .store import Detector, Store, utc_now

__all__ = [
    "ConfigError",
    "Database",
    "Delivery",
    "DeliveryError",
    "Detector",
    "Event",
    "EventKind",
    "Experiment",
    "ExpwatchError",
    "HealthCheck",
    "HealthStatus",
    "MetricPoint",
    "MetricResult",
    "MetricRole",
    "PayloadError",
    "PollOutcome",
    "PruneReport",
    "RuntimeState",
    "Snapshot",
    "SourceError",
    "SourceRejected",
    "SourceUnavailable",
    "Store",
    "StoreError",
    "StoredSnapshot",
    "UnknownExperiment",
    "Variation",
    "VariationResult",
    "Verdict",
    "sqlite_url",
    "utc_now",
]
