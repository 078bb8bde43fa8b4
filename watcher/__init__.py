"""The watcher: sources, change detection and the polling supervisor."""

from .assess import StatsPolicy, assess
from .clock import Clock, SystemClock
from .detect import DEFAULT_SRM_THRESHOLD, ChangeDetector
from .growthbook import GrowthBookSource
from .statsig import StatsigSource
from .supervisor import CycleReport, Source, Supervisor

__all__ = [
    "DEFAULT_SRM_THRESHOLD",
    "ChangeDetector",
    "Clock",
    "CycleReport",
    "GrowthBookSource",
    "Source",
    "StatsPolicy",
    "StatsigSource",
    "Supervisor",
    "SystemClock",
    "assess",
]
