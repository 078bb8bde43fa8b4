"""Settings: a TOML file plus EXPWATCH_… environment overrides, validated with pydantic.

Every mistake becomes one ConfigError that names the key and the file. Secrets (API keys,
alert URLs) are SecretStr: they print as '**********'.
"""

from __future__ import annotations

import difflib
import os
import ssl
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from store import ConfigError, EventKind

ENV_PREFIX = "EXPWATCH_"
CONFIG_ENV = "EXPWATCH_CONFIG"
MIN_AUTH_TOKEN_LENGTH = 16


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreSettings(_Section):
    path: Path = Field(
        default=Path("expwatch.db"),
        description="SQLite file; a relative path is relative to the config file",
    )
    url: str | None = Field(
        default=None, description="SQLAlchemy URL; overrides `path` (e.g. PostgreSQL)"
    )
    retention_days: float = Field(default=0, ge=0)
    prune_interval_seconds: float = Field(default=86400, gt=0)


class WatcherSettings(_Section):
    poll_interval_seconds: float = Field(default=300.0, gt=0)
    poll_timeout_seconds: float = Field(default=60.0, gt=0)
    srm_threshold: float = Field(default=0.001, gt=0, lt=1)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    sequential_tuning: float = Field(default=5000, gt=0)
    minimum_units: float = Field(default=100, ge=0)
    minimum_conversions: float = Field(default=10, ge=0)
    refresh_unchanged_seconds: float = Field(default=3600.0, gt=0)
    finished_poll_interval_seconds: float = Field(default=21600.0, gt=0)
    jitter: float = Field(default=0.1, ge=0, lt=1)
    ca_bundle: Path | None = Field(
        default=None,
        description="PEM file of the CA certificates upstream HTTPS is verified against "
        "(instead of the default bundle); a relative path is relative to the config file",
    )


class _SourceCommon(_Section):
    """What every kind of source shares: request discipline and which experiments to watch."""

    api_key: SecretStr
    ui_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    max_concurrency: int = Field(default=8, ge=1, le=256)
    retry_attempts: int = Field(default=3, ge=1, le=10)
    retry_after_cap_seconds: float = Field(default=120.0, gt=0)
    tags: list[str] = []
    experiments: list[str] = []
    exclude: list[str] = []
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_seconds: float = Field(default=60.0, ge=0)
    breaker_max_cooldown_seconds: float = Field(default=900.0, ge=0)


class GrowthBookSourceSettings(_SourceCommon):
    kind: Literal["growthbook"] = "growthbook"
    base_url: str = Field(default="https://api.growthbook.io", pattern=r"^https?://\S+$")
    status: str | None = "running"
    project: str | None = None
    rate_limit_per_minute: float = Field(default=60.0, ge=0)
    stale_after_seconds: float = Field(default=86400.0, ge=0)


class StatsigSourceSettings(_SourceCommon):
    kind: Literal["statsig"]
    base_url: str = Field(default="https://statsigapi.net", pattern=r"^https?://\S+$")
    status: str | None = "active"
    api_version: str = "20240601"
    rate_limit_per_minute: float = Field(default=300.0, ge=0)
    stale_after_seconds: float = Field(default=172800.0, ge=0)


def _source_kind(value: Any) -> str:
    kind = value.get("kind", "growthbook") if isinstance(value, dict) else value.kind
    return str(kind)


SourceSettings = Annotated[
    Annotated[GrowthBookSourceSettings, Tag("growthbook")]
    | Annotated[StatsigSourceSettings, Tag("statsig")],
    Discriminator(_source_kind),
]
SOURCE_KINDS = ("growthbook", "statsig")


class AlertTargetSettings(_Section):
    url: SecretStr
    tags: list[str] = Field(
        default=[], description="Rules route to targets by tag; a target without tags hears all"
    )
    digest_minutes: float = Field(
        default=0, ge=0, description="Batch this target's alerts into one message per window"
    )


# Recorded and shown (CLI, MCP) but not pushed by default: the platform's own, peeking-prone
# verdict flips, and edits of an analysis's metric list.
_NOT_ALERTED_BY_DEFAULT = (
    EventKind.PLATFORM_VERDICT_CHANGED,
    EventKind.METRIC_ADDED,
    EventKind.METRIC_REMOVED,
)
DEFAULT_ALERT_KINDS = [k.value for k in EventKind if k not in _NOT_ALERTED_BY_DEFAULT]
LEVELS = ("critical", "warning", "info")
Level = Literal["critical", "warning", "info"]


class AlertRuleSettings(_Section):
    """Route matching events to the targets carrying one of `tags`; an empty list in a
    condition matches everything."""

    tags: list[str] = Field(min_length=1)
    kinds: list[EventKind] = []
    levels: list[Level] = []
    sources: list[str] = []
    projects: list[str] = []
    experiments: list[str] = []
    experiment_tags: list[str] = []


class RateLimitSettings(_Section):
    per_experiment_per_hour: int | None = Field(default=10, ge=1)
    global_per_hour: int | None = Field(default=60, ge=1)
    exempt_levels: list[Level] = ["critical"]


class QuietHoursSettings(_Section):
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM")
    timezone: str = "UTC"
    allow_levels: list[Level] = ["critical"]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value


class AlertSettings(_Section):
    targets: dict[str, AlertTargetSettings] = {}
    apprise_config: Path | None = Field(
        default=None,
        description="An Apprise YAML/TEXT config file of more targets (its tags route too)",
    )
    event_kinds: list[EventKind] = Field(
        default_factory=lambda: [EventKind(k) for k in DEFAULT_ALERT_KINDS]
    )
    rules: list[AlertRuleSettings] = []
    rate_limit: RateLimitSettings = RateLimitSettings()
    quiet_hours: QuietHoursSettings | None = None
    poll_interval_seconds: float = Field(default=1.0, gt=0)
    send_timeout_seconds: float = Field(default=30.0, gt=0)
    retry_initial_seconds: float = Field(default=30.0, gt=0)
    retry_max_seconds: float = Field(default=1800.0, gt=0)
    give_up_after_hours: float = Field(default=24.0, gt=0)


class McpSettings(_Section):
    cache_ttl_seconds: float = Field(default=300.0, ge=0)
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    event_poll_interval_seconds: float = Field(default=0.25, gt=0)
    read_only: bool = False
    client_rate_limit_per_minute: float = Field(default=600.0, ge=0)
    client_rate_limit_burst: int = Field(default=60, ge=1)
    audit_log: bool = True
    auth_token: SecretStr | None = Field(
        default=None,
        description="Bearer token every MCP HTTP request must carry; required off loopback",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Web origins (scheme://host[:port]) besides loopback ones allowed to call",
    )

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            parts = urlsplit(origin)
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or parts.path
                or parts.query
                or parts.fragment
                or parts.username
            ):
                raise ValueError(
                    f"{origin!r} is not an origin: write scheme://host[:port] with nothing after"
                )
        return value

    @field_validator("auth_token")
    @classmethod
    def _usable_token(cls, value: SecretStr | None) -> SecretStr | None:
        # The messages never quote the token.
        if value is None:
            return None
        token = value.get_secret_value()
        if len(token) < MIN_AUTH_TOKEN_LENGTH:
            raise ValueError(
                f"must be at least {MIN_AUTH_TOKEN_LENGTH} characters (generate one with "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        if not all("!" <= c <= "~" for c in token):
            raise ValueError("must be printable ASCII without spaces (it is sent in a header)")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        nested_model_default_partial_update=True,
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    store: StoreSettings = StoreSettings()
    watcher: WatcherSettings = WatcherSettings()
    sources: dict[str, SourceSettings] = {}
    alerts: AlertSettings = AlertSettings()
    mcp: McpSettings = McpSettings()
    config_path: Path | None = Field(default=None, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file, whose contents arrive as init arguments.
        return (env_settings, init_settings)

    def database_url(self) -> str:
        if self.store.url:
            return self.store.url
        return f"sqlite+aiosqlite:///{self.resolve(self.store.path)}"

    def resolve(self, path: Path) -> Path:
        """A path from the settings: a relative one is relative to the config file."""
        if not path.is_absolute() and self.config_path is not None:
            return self.config_path.parent / path
        return path

    def upstream_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context that verifies upstream servers against [watcher] ca_bundle; None
        when it is not set (the HTTP client's default CAs apply). Verification is never off."""
        if self.watcher.ca_bundle is None:
            return None
        path = self.resolve(self.watcher.ca_bundle)
        where = str(self.config_path) if self.config_path else "environment (EXPWATCH_…)"
        try:
            return ssl.create_default_context(cafile=path)
        except ssl.SSLError:
            why = "it holds no PEM certificate"
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"invalid configuration in {where}:\n  watcher.ca_bundle: cannot use {path} as "
            f"the CA bundle: {why} (point it at a readable PEM file of CA certificates)",
            path=where,
            key="watcher.ca_bundle",
        )


def load_config(path: Path | str | None = None) -> Settings:
    """Load settings from `path` (or $EXPWATCH_CONFIG) and the environment.

    With neither, the defaults and the environment alone apply.
    """
    if path is None and os.environ.get(CONFIG_ENV):
        path = os.environ[CONFIG_ENV]
    data: dict[str, Any] = {}
    where = "environment"
    if path is not None:
        path = Path(path)
        where = str(path)
        data = _read_toml(path)
        data["config_path"] = path.resolve()
    elif any(k.startswith(ENV_PREFIX) for k in os.environ):
        where = "environment (EXPWATCH_…)"
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise _config_error(exc, where) from None
    settings.upstream_ssl_context()  # a CA bundle that cannot be used is a ConfigError now
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist (copy config.example.toml to start)",
            path=str(path),
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"config path {path} is a directory, not a file", path=str(path)
        ) from None
    except PermissionError:
        raise ConfigError(
            f"config file {path} cannot be read (permission denied)", path=str(path)
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", path=str(path)) from None


def _config_error(exc: ValidationError, where: str) -> ConfigError:
    problems = []
    first_key = None
    for error in exc.errors():
        loc, tag = error["loc"], None
        if len(loc) > 2 and loc[0] == "sources" and loc[2] in SOURCE_KINDS:
            tag = str(loc[2])
            loc = (*loc[:2], *loc[3:])  # the union's tag is not a key the user wrote
        key = ".".join(str(p) for p in loc)
        first_key = first_key or key
        if error["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key{_suggest(loc, tag)}")
        elif error["type"] == "missing":
            problems.append(f"{key}: required key is missing")
        else:
            # The input value is left out on purpose: it may be a secret.
            problems.append(f"{key}: {error['msg']}")
    listing = "\n  ".join(problems)
    return ConfigError(f"invalid configuration in {where}:\n  {listing}", path=where, key=first_key)


def _suggest(loc: tuple[int | str, ...], tag: str | None) -> str:
    model = _section_model(loc, tag)
    if model is None:
        return ""
    known = [k for k in model.model_fields if k != "config_path"]
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(known)})"


def _section_model(loc: tuple[int | str, ...], tag: str | None) -> type[BaseModel] | None:
    """The settings model that holds the key at `loc` (None if it cannot be told)."""
    if loc[0] == "sources" and len(loc) == 3:
        return StatsigSourceSettings if tag == "statsig" else GrowthBookSourceSettings
    if loc[:2] == ("alerts", "targets") and len(loc) == 4:
        return AlertTargetSettings
    model: type[BaseModel] = Settings
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model
