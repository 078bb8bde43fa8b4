"""Alert targets and policy from the settings: the `[alerts]` tables and, optionally, an
Apprise configuration file with tagged URLs."""

from __future__ import annotations

import hashlib
from datetime import time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import apprise

from alerts import AlertPolicy, AlertRule, AlertTarget, Level, QuietHours, RateLimit
from alerts.dispatcher import is_valid_apprise_url
from store import ConfigError

from .config import Settings


def _where(settings: Settings) -> str:
    return str(settings.config_path) if settings.config_path else "the environment"


def alert_targets(settings: Settings) -> list[AlertTarget]:
    """Every target: the `[alerts.targets.*]` tables, then the Apprise config file's URLs.
    A URL Apprise does not understand is a ConfigError naming its key (never its value)."""
    targets = []
    for name, target in settings.alerts.targets.items():
        url = target.url.get_secret_value()
        if not is_valid_apprise_url(url):
            raise ConfigError(
                f"alerts.targets.{name}.url is not a URL Apprise understands "
                f"(in {_where(settings)})",
                path=str(settings.config_path) if settings.config_path else None,
                key=f"alerts.targets.{name}.url",
            )
        targets.append(
            AlertTarget(
                name=name,
                url=url,
                tags=frozenset(t.strip() for t in target.tags if t.strip()),
                digest=timedelta(minutes=target.digest_minutes) if target.digest_minutes else None,
            )
        )
    if settings.alerts.apprise_config is not None:
        targets.extend(_apprise_config_targets(settings))
    return targets


def _apprise_config_targets(settings: Settings) -> list[AlertTarget]:
    """Targets of an Apprise YAML/TEXT config file. Each is named by its service and a
    digest of its URL, so its outbox rows survive reordering the file."""
    assert settings.alerts.apprise_config is not None
    path = settings.resolve(settings.alerts.apprise_config)
    problem = _unreadable(path)
    if problem:
        raise ConfigError(
            f"alerts.apprise_config: {path} {problem} (in {_where(settings)})",
            path=str(path),
            key="alerts.apprise_config",
        )
    config = apprise.AppriseConfig()
    config.add(str(path))
    sender = apprise.Apprise()
    sender.add(config)
    servers = list(sender)
    if not servers:
        raise ConfigError(
            f"alerts.apprise_config: {path} holds no URL Apprise understands "
            f"(in {_where(settings)})",
            path=str(path),
            key="alerts.apprise_config",
        )
    targets = []
    for server in servers:
        url = str(server.url(privacy=False))  # type: ignore[no-untyped-call]
        digest = hashlib.sha256(url.encode()).hexdigest()[:8]
        scheme = url.split(":", 1)[0]
        targets.append(
            AlertTarget(
                name=f"{scheme}-{digest}",
                url=url,
                tags=frozenset(str(t) for t in server.tags),
            )
        )
    return targets


def _unreadable(path: Path) -> str | None:
    if not path.exists():
        return "does not exist"
    if path.is_dir():
        return "is a directory, not a file"
    try:
        path.read_bytes()
    except PermissionError:
        return "cannot be read (permission denied)"
    return None


def alert_policy(settings: Settings) -> AlertPolicy:
    a = settings.alerts
    quiet = None
    if a.quiet_hours is not None:
        q = a.quiet_hours
        quiet = QuietHours(
            start=time.fromisoformat(q.start),
            end=time.fromisoformat(q.end),
            timezone=ZoneInfo(q.timezone),
            allow=frozenset(Level(v) for v in q.allow_levels),
        )
    return AlertPolicy(
        rules=tuple(
            AlertRule(
                tags=frozenset(r.tags),
                kinds=frozenset(r.kinds),
                levels=frozenset(Level(v) for v in r.levels),
                sources=frozenset(r.sources),
                projects=frozenset(r.projects),
                experiments=frozenset(r.experiments),
                experiment_tags=frozenset(r.experiment_tags),
            )
            for r in a.rules
        ),
        event_kinds=frozenset(a.event_kinds),
        rate_limit=RateLimit(
            per_experiment_per_hour=a.rate_limit.per_experiment_per_hour,
            global_per_hour=a.rate_limit.global_per_hour,
            exempt=frozenset(Level(v) for v in a.rate_limit.exempt_levels),
        ),
        quiet_hours=quiet,
    )
