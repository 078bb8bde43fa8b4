"""Alerts: rules, messages and durable delivery through Apprise."""

from .dispatcher import (
    AlertDispatcher,
    AlertTarget,
    AppriseNotifier,
    Notifier,
    is_valid_apprise_url,
)
from .render import Message, render

__all__ = [
    "AlertDispatcher",
    "AlertTarget",
    "AppriseNotifier",
    "Message",
    "Notifier",
    "is_valid_apprise_url",
    "render",
]
