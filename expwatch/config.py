"""Settings: a TOML file plus EXPWATCH_… environment overrides, validated with pydantic.

Every mistake becomes one ConfigError that names the key and the file. Secrets (API keys,
alert URLs) are SecretStr: they print as '**********'.
"""

from __future__ import annotations

import difflib
import json
import os
import ssl
import tomllib
import types
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
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
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from store import ID_LENGTH, ConfigError, EventKind

ENV_PREFIX = "EXPWATCH_"
CONFIG_ENV = "EXPWATCH_CONFIG"
TEST_ENV_PREFIX = "EXPWATCH_TEST_"
"""Variables the test suite reads (EXPWATCH_TEST_POSTGRES_URL); never settings."""
MIN_AUTH_TOKEN_LENGTH = 16


ExperimentId = Annotated[str, Field(max_length=ID_LENGTH)]
"""An experiment id as the store keeps it: a longer one could never be recorded."""
SourceName = Annotated[str, Field(max_length=ID_LENGTH)]
"""A source's name, which the store keeps beside every record of the source."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreSettings(_Section):
    path: Path = Field(
        default=Path("expwatch.db"),
        description="SQLite file; a relative path is relative to the config file",
    )
    url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL; overrides `path` (e.g. PostgreSQL)"
    )
    retention_days: float = Field(default=0, ge=0)
    prune_interval_seconds: float = Field(default=86400, gt=0)

    @field_validator("url")
    @classmethod
    def _usable_url(cls, value: SecretStr | None) -> SecretStr | None:
        # The messages never quote the URL: it may hold a password.
        if value is None:
            return None
        try:
            dialect = make_url(value.get_secret_value()).get_dialect()
        except ArgumentError:
            raise ValueError(
                "is not a SQLAlchemy URL (e.g. postgresql+asyncpg://user@host/expwatch)"
            ) from None
        if not getattr(dialect, "is_async", False):
            raise ValueError(
                "needs an asyncio driver: sqlite+aiosqlite://… or postgresql+asyncpg://…"
            )
        try:
            dialect.import_dbapi()
        except ImportError as exc:
            raise ValueError(f"needs the {exc.name} package, which is not installed") from None
        return value


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
    experiments: list[ExperimentId] = []
    exclude: list[ExperimentId] = []
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_seconds: float = Field(default=60.0, ge=0)
    breaker_max_cooldown_seconds: float = Field(default=900.0, ge=0)

    @field_validator("base_url", "ui_url", check_fields=False)
    @classmethod
    def _no_credentials_in_url(cls, value: str | None) -> str | None:
        # A user:password@ part would show in every "cannot reach" message and log line.
        if value is not None and urlsplit(value).password is not None:
            raise ValueError(
                "carries a user:password@ part; put the credential in api_key (URLs are shown "
                "in messages and logs)"
            )
        return value

    @field_validator("api_key")
    @classmethod
    def _usable_api_key(cls, value: SecretStr) -> SecretStr:
        # The messages never quote the key.
        key = value.get_secret_value()
        if not key.strip():
            raise ValueError("is empty: set the platform's API key (or its environment variable)")
        if key != key.strip() or any(c < " " or c == "\x7f" for c in key):
            raise ValueError(
                "has surrounding spaces or control characters (a stray newline from a "
                "secrets file?); it is sent in a header as it is"
            )
        return value


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


def _source_kind(value: Any) -> str | None:
    # None (not a table, nor settings) makes pydantic report the source as the wrong type.
    if isinstance(value, dict):
        return str(value.get("kind", "growthbook"))
    return getattr(value, "kind", None)


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
    sources: dict[SourceName, SourceSettings] = {}
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
            return self.store.url.get_secret_value()
        return f"sqlite+aiosqlite:///{self.resolve(self.store.path)}"

    def database_location(self) -> str:
        """The database as a person reads it: the SQLite file, or the URL without password."""
        if self.store.url:
            return make_url(self.database_url()).render_as_string(hide_password=True)
        return str(self.resolve(self.store.path))

    @property
    def origin(self) -> str:
        """Where the settings came from, as error messages name it."""
        return str(self.config_path) if self.config_path else "environment (EXPWATCH_…)"

    def invalid(self, key: str, problem: str) -> ConfigError:
        """The ConfigError of one bad setting of these settings."""
        return invalid_setting(self.origin, key, problem)

    def check_store_path(self) -> None:
        """Raise ConfigError now if the SQLite file cannot be created where [store] path
        says, rather than at the first write."""
        if self.store.url:
            return
        path = self.resolve(self.store.path)
        try:
            if path.is_dir():
                raise self.invalid("store.path", f"{path} is a directory, not a database file")
            existing = path.parent
            while not existing.exists():
                existing = existing.parent
        except OSError as exc:
            raise self.invalid("store.path", f"cannot use {path}: {exc.strerror}") from None
        if not existing.is_dir():
            raise self.invalid(
                "store.path", f"cannot create {path}: {existing} is a file, not a directory"
            )
        if not os.access(existing, os.W_OK | os.X_OK):
            raise self.invalid("store.path", f"cannot create {path}: {existing} is not writable")

    def create_store_directory(self) -> None:
        """Create the SQLite file's directory if it does not exist yet."""
        if self.store.url:
            return
        directory = self.resolve(self.store.path).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self.invalid(
                "store.path", f"cannot create the directory {directory}: {exc.strerror}"
            ) from None

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
        try:
            return ssl.create_default_context(cafile=path)
        except ssl.SSLError:
            why = "it holds no PEM certificate"
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
        except ValueError:  # not text at all (the ssl module decodes the file as ASCII)
            why = "it holds no PEM certificate"
        raise self.invalid(
            "watcher.ca_bundle",
            f"cannot use {path} as the CA bundle: {why} (point it at a readable PEM file of "
            "CA certificates)",
        )


def invalid_setting(where: str, key: str, problem: str) -> ConfigError:
    """The ConfigError of one bad setting, in the format every check uses:
    `invalid configuration in <file>:` then `  <dotted.key>: <what is wrong>`."""
    return ConfigError(
        f"invalid configuration in {where}:\n  {key}: {problem}", path=where, key=key
    )


def load_config(path: Path | str | None = None) -> Settings:
    """Load settings from `path` (or $EXPWATCH_CONFIG) and the environment.

    With neither, the defaults and the environment alone apply. Any mistake, in the file,
    the environment or a file the settings name (CA bundle, database directory), is one
    ConfigError naming the key, the file and, for a value from the environment, the variable.
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
    elif any(k.upper().startswith(ENV_PREFIX) for k in os.environ):
        where = "environment (EXPWATCH_…)"
    environment = _environment()
    _check_environment_names(environment, where)
    _check_environment_json(environment, where)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise _config_error(exc, where, environment) from None
    except SettingsError as exc:  # what _check_environment_json did not foresee
        raise ConfigError(
            f"invalid configuration in {where}:\n  the EXPWATCH_… environment: {exc}", path=where
        ) from None
    settings.upstream_ssl_context()  # a CA bundle that cannot be used is a ConfigError now
    settings.check_store_path()
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        if path.is_symlink():
            why = f"is a symbolic link to {os.readlink(path)}, which does not exist"
        else:
            why = "does not exist (copy config.example.toml to start)"
        raise ConfigError(f"config file {path} {why}", path=str(path)) from None
    except IsADirectoryError:
        raise ConfigError(
            f"config path {path} is a directory, not a file", path=str(path)
        ) from None
    except PermissionError:
        raise ConfigError(
            f"config file {path} cannot be read (permission denied)", path=str(path)
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"config file {path} cannot be read ({exc.strerror or type(exc).__name__})",
            path=str(path),
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.start} cannot be decoded); "
            "TOML files are UTF-8",
            path=str(path),
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", path=str(path)) from None


# -- the environment ----------------------------------------------------------------------


def _environment() -> dict[str, tuple[str, ...]]:
    """Each EXPWATCH_… variable that may set a key, with that key's path (as pydantic-settings
    reads it: case-insensitive, nested with "__")."""
    return {
        name: tuple(name[len(ENV_PREFIX) :].lower().split("__"))
        for name in os.environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() != CONFIG_ENV
    }


def _check_environment_names(environment: Mapping[str, tuple[str, ...]], where: str) -> None:
    """An EXPWATCH_… variable that names no setting is a mistake (pydantic-settings would
    ignore a misspelt top-level key silently: EXPWATCH_STOR__PATH, and the data lands in the
    default database). EXPWATCH_TEST_… is left to the test suite."""
    keys = sorted(k for k in Settings.model_fields if k != "config_path")
    for name, parts in sorted(environment.items()):
        if parts[0] in keys or name.upper().startswith(TEST_ENV_PREFIX):
            continue
        close = difflib.get_close_matches(parts[0], keys, n=1)
        hint = f"did you mean {ENV_PREFIX}{close[0].upper()}…? " if close else ""
        raise invalid_setting(
            where,
            parts[0],
            f"{name} names no setting ({hint}the top-level keys are {', '.join(keys)})",
        )


def _check_environment_json(environment: Mapping[str, tuple[str, ...]], where: str) -> None:
    """A table or list set through the environment must be JSON; say which variable is not
    (pydantic-settings only names the top-level field)."""
    for name, parts in sorted(environment.items()):
        annotation = _annotation_at(Settings, parts)
        if annotation is None or not _is_structured(annotation):
            continue
        try:
            json.loads(os.environ[name])
        except ValueError:
            raise invalid_setting(
                where,
                ".".join(parts),
                f"{name} must be JSON (a table or an array from the environment is written as "
                'JSON, e.g. \'["a", "b"]\' or \'{"key": 1}\')',
            ) from None


def _environment_variable(
    loc: Sequence[int | str], environment: Mapping[str, tuple[str, ...]]
) -> str | None:
    """The variable that set the key at `loc` (or a table holding it), if one did."""
    path = tuple(str(p).lower() for p in loc)
    setting = [
        (len(parts), name) for name, parts in environment.items() if path[: len(parts)] == parts
    ]
    return max(setting)[1] if setting else None


# -- validation errors --------------------------------------------------------------------


def _config_error(
    exc: ValidationError, where: str, environment: Mapping[str, tuple[str, ...]]
) -> ConfigError:
    problems = []
    first_key = None
    for error in exc.errors():
        loc, tag = error["loc"], None
        if len(loc) > 2 and loc[0] == "sources" and loc[2] in SOURCE_KINDS:
            tag = str(loc[2])
            loc = (*loc[:2], *loc[3:])  # the union's tag is not a key the user wrote
        if error["type"] == "union_tag_invalid":
            loc = (*loc, "kind")
        key = ".".join(str(p) for p in loc)
        first_key = first_key or key
        notes = []
        if error["type"] in _TABLE_ERRORS or error["type"].endswith(("_type", "_parsing")):
            notes.append(f"got {_toml_type(error['input'])}")
        variable = _environment_variable(loc, environment)
        if variable is not None:
            notes.append(f"set by the environment variable {variable}")
        problem = _problem(error, loc, tag) + (f" ({'; '.join(notes)})" if notes else "")
        problems.append(f"{key}: {problem}")
    listing = "\n  ".join(problems)
    return ConfigError(f"invalid configuration in {where}:\n  {listing}", path=where, key=first_key)


_TABLE_ERRORS = ("model_type", "model_attributes_type", "dict_type", "union_tag_not_found")


def _problem(error: Any, loc: tuple[int | str, ...], tag: str | None) -> str:
    """What is wrong, in words; the input value is left out on purpose: it may be a secret."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key{_suggest(loc, tag)}"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"unknown source kind (use {' or '.join(repr(k) for k in SOURCE_KINDS)})"
    if kind in _TABLE_ERRORS:
        return "should be a table"
    return str(error["msg"]).removeprefix("Value error, ")


def _toml_type(value: Any) -> str:
    """The kind of a TOML value (or of an environment variable's text), never the value."""
    for python_type, name in (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a number"),
        (str, "a string"),
        (dict, "a table"),
        (list, "an array"),
        (datetime, "a date-time"),
        (date, "a date"),
        (time, "a time"),
    ):
        if isinstance(value, python_type):
            return name
    return type(value).__name__


def _suggest(loc: tuple[int | str, ...], tag: str | None) -> str:
    model = _model_in(_annotation_at(Settings, loc[:-1], tag=tag), tag)
    if model is None:
        return ""
    known = [k for k in model.model_fields if k != "config_path"]
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(known)})"


# -- the settings' shape ------------------------------------------------------------------

_SOURCE_MODELS: dict[str, type[BaseModel]] = {
    "growthbook": GrowthBookSourceSettings,
    "statsig": StatsigSourceSettings,
}


def _annotation_at(annotation: Any, path: Sequence[int | str], *, tag: str | None = None) -> Any:
    """The type of the setting at `path` (keys, table names and array indices) below
    `annotation`; None when no setting is there."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if not path:
        return annotation
    head, rest = path[0], path[1:]
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        for member in _members(annotation, tag):
            found = _annotation_at(member, path, tag=tag)
            if found is not None:
                return found
        return None
    if origin is dict:
        return _annotation_at(get_args(annotation)[1], rest, tag=tag)
    if origin is list:
        return _annotation_at(get_args(annotation)[0], rest, tag=tag)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(head))
        return None if field is None else _annotation_at(field.annotation, rest, tag=tag)
    return None


def _members(union: Any, tag: str | None) -> list[Any]:
    """The alternatives of a union, the source model of kind `tag` first."""
    members = [m for m in get_args(union) if m is not type(None)]
    preferred = _SOURCE_MODELS.get(tag or "")
    return sorted(members, key=lambda m: _model_in(m, None) is not preferred)


def _model_in(annotation: Any, tag: str | None) -> type[BaseModel] | None:
    """The settings model an annotation stands for (through Annotated and Optional)."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        models = [_model_in(m, None) for m in _members(annotation, tag)]
        return next((m for m in models if m is not None), None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _is_structured(annotation: Any) -> bool:
    """Whether pydantic-settings reads this setting from the environment as JSON."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_is_structured(m) for m in get_args(annotation))
    if origin in (list, dict, set, tuple):
        return True
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
