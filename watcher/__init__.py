"""The watcher: sources, change detection and the polling supervisor."""

from .assess import StatsPolicy, assess
from .backfill import (
    Backfiller,
    BackfillJob,
    BackfillReport,
    BackfillStatus,
    DayDone,
    ExperimentHistory,
    ExperimentReport,
    HistorySource,
)
from .breaker import BreakerOpen, BreakerState, CircuitBreaker, CircuitState
from .budget import RateBudget
from .clock import Clock, SystemClock
from .detect import DEFAULT_SRM_THRESHOLD, ChangeDetector
from .growthbook import GrowthBookSource
from .polling import CycleReport, Source, SourcePolicy, SourceStatus, WatchRules
from .statsig import StatsigSource
from .supervisor import Supervisor
from .upstream import NO_RETRY, RetryPolicy

__all__ = [
    "DEFAULT_SRM_THRESHOLD",
    "NO_RETRY",
    "BackfillJob",
    "BackfillReport",
    "BackfillStatus",
    "Backfiller",
    "BreakerOpen",
    "BreakerState",
    "ChangeDetector",
    "CircuitBreaker",
    "CircuitState",
    "Clock",
    "CycleReport",
    "DayDone",
    "ExperimentHistory",
    "ExperimentReport",
    "GrowthBookSource",
    "HistorySource",
    "RateBudget",
    "RetryPolicy",
    "Source",
    "SourcePolicy",
    "SourceStatus",
    "StatsPolicy",
    "StatsigSource",
    "Supervisor",
    "SystemClock",
    "WatchRules",
    "assess",
]
