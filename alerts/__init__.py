"""Alerts: rules, messages and durable delivery through Apprise."""

from .dispatcher import (
    ROUTER_CURSOR,
    AlertDispatcher,
    AppriseNotifier,
    Notifier,
    is_valid_apprise_url,
    redact,
)
from .render import Attachment, Level, Message, level_of, render, render_digest, sample_event
from .rules import (
    AlertPolicy,
    AlertRule,
    AlertTarget,
    Channel,
    QuietHours,
    RateLimit,
    channel_of,
)

__all__ = [
    "ROUTER_CURSOR",
    "AlertDispatcher",
    "AlertPolicy",
    "AlertRule",
    "AlertTarget",
    "AppriseNotifier",
    "Attachment",
    "Channel",
    "Level",
    "Message",
    "Notifier",
    "QuietHours",
    "RateLimit",
    "channel_of",
    "is_valid_apprise_url",
    "level_of",
    "redact",
    "render",
    "render_digest",
    "sample_event",
]
