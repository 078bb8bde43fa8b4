"""Alert targets and policy from the settings: the `[alerts]` tables and, optionally, an
Apprise configuration file with tagged URLs."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import apprise

from alerts import AlertPolicy, AlertRule, AlertTarget, Level, QuietHours, RateLimit, redact
from alerts.dispatcher import is_valid_apprise_url

from .config import Settings

_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
_WORD = re.compile(r"[^\s/:@?&=,;'\"\[\]{}()#]{6,}")


def alert_targets(settings: Settings) -> list[AlertTarget]:
    """Every target: the `[alerts.targets.*]` tables, then the Apprise config file's URLs.
    A URL Apprise does not understand is a ConfigError naming its key (never its value)."""
    targets = []
    for name, target in settings.alerts.targets.items():
        url = target.url.get_secret_value()
        with _apprise_complaints() as complaints:
            valid = is_valid_apprise_url(url)
        if not valid:
            reasons = [_mask_words(redact(c, url), url) for c in complaints]
            raise settings.invalid(
                f"alerts.targets.{name}.url",
                "is not a URL Apprise understands"
                + (f" ({'; '.join(reasons)})" if reasons else "")
                + "; see https://github.com/caronc/apprise/wiki for each service's URL",
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


@contextmanager
def _apprise_complaints() -> Iterator[list[str]]:
    """What Apprise warns about while it parses URLs, kept out of the logs: its warnings
    quote tokens (e.g. a malformed Slack token) that only a URL redaction would not catch.
    URL-shaped parts of the messages are dropped here already."""
    complaints: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            complaints.append(_URL.sub("[url]", record.getMessage()))
        return False

    logger = logging.getLogger("apprise")
    logger.addFilter(keep)
    try:
        yield complaints
    finally:
        logger.removeFilter(keep)


def _apprise_config_targets(settings: Settings) -> list[AlertTarget]:
    """Targets of an Apprise YAML/TEXT config file. Each is named by its service and a
    digest of its URL, so its outbox rows survive reordering the file. An entry Apprise
    cannot load is a ConfigError, not a target silently missing."""
    assert settings.alerts.apprise_config is not None
    path = settings.resolve(settings.alerts.apprise_config)
    problem, text = _read(path)
    if problem:
        raise settings.invalid("alerts.apprise_config", f"{path} {problem}")
    config = apprise.AppriseConfig()
    sender = apprise.Apprise()
    with _apprise_complaints() as complaints:
        config.add(str(path))
        sender.add(config)
        servers = list(sender)
    if complaints or not servers:
        # Apprise's words may quote a credential from the file: mask every word of it.
        reasons = [_mask_words(complaint, text) for complaint in complaints]
        raise settings.invalid(
            "alerts.apprise_config",
            f"{path}: "
            + (f"Apprise cannot load it ({'; '.join(reasons)})" if reasons else "holds no URL")
            + "; see https://github.com/caronc/apprise/wiki/config",
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


def _mask_words(text: str, source: str) -> str:
    """`text` with every word of `source` (six characters or more) masked."""
    for word in sorted(set(_WORD.findall(source)), key=len, reverse=True):
        text = text.replace(word, "****")
    return text


def _read(path: Path) -> tuple[str | None, str]:
    """(what is wrong with the file or None, its text)."""
    if not path.exists():
        return "does not exist", ""
    if path.is_dir():
        return "is a directory, not a file", ""
    try:
        data = path.read_bytes()
    except PermissionError:
        return "cannot be read (permission denied)", ""
    except OSError as exc:
        return f"cannot be read ({exc.strerror})", ""
    try:
        return None, data.decode()
    except UnicodeDecodeError as exc:
        return f"is not UTF-8 text (byte {exc.start} cannot be decoded)", ""


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
