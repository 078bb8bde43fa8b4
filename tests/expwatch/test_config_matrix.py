"""Bad configuration, case by case: every key of every settings model with a value of the
wrong type or out of range, unknown and misspelt keys at every level, missing required keys,
bad environment overrides, files that cannot be read, files the settings point to, and alert
URLs Apprise cannot use. Each is one ConfigError naming the key and the file, found when the
configuration is loaded or checked (exit code 2), before anything starts.

The cases are generated from the pydantic models, so a new key is covered (or the guard
tests fail) without editing this file."""

from __future__ import annotations

import json
import os
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import anyio
import pytest
from annotated_types import Ge, Gt, Le, Lt, MinLen
from click.testing import CliRunner
from pydantic import BaseModel, SecretStr

from expwatch import config
from expwatch.alerting import alert_targets
from expwatch.cli import main
from expwatch.config import Settings, load_config
from store import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CANARY = "CANARY_8d1e5b"
"""Planted in secret-looking bad values: no message may echo it."""

# -- the shape of the settings, read from the models --------------------------------------


@dataclass(frozen=True)
class Table:
    """One table of the settings: where it sits and which model validates it."""

    path: tuple[str | int, ...]
    model: type[BaseModel]

    @property
    def dotted(self) -> str:
        return ".".join(str(p) for p in self.path)


@dataclass(frozen=True)
class Leaf:
    """One key that holds a value (not a table)."""

    table: Table
    name: str
    annotation: Any
    metadata: tuple[Any, ...]

    @property
    def path(self) -> tuple[str | int, ...]:
        return (*self.table.path, self.name)

    @property
    def dotted(self) -> str:
        return ".".join(str(p) for p in self.path)


def unwrap(annotation: Any) -> Any:
    """Strip Annotated and Optional."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (Union, types.UnionType):
            members = [m for m in get_args(annotation) if m is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def models_of(annotation: Any) -> list[type[BaseModel]]:
    """The settings models an annotation holds (each member of a union)."""
    annotation = unwrap(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for member in get_args(annotation) for m in models_of(member)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def walk(table: Table) -> Iterator[Table]:
    """`table` and every table below it: nested models, each kind of a table of named
    models (named after its position: sources.s0, sources.s1), the first of an array."""
    yield table
    for name, field in table.model.model_fields.items():
        annotation = unwrap(field.annotation)
        origin = get_origin(annotation)
        if origin is dict:
            for i, model in enumerate(models_of(get_args(annotation)[1])):
                yield from walk(Table((*table.path, name, f"{name[0]}{i}"), model))
        elif origin is list and models_of(get_args(annotation)[0]):
            [model] = models_of(get_args(annotation)[0])
            yield from walk(Table((*table.path, name, 0), model))
        else:
            for model in models_of(annotation):
                yield from walk(Table((*table.path, name), model))


TABLES = list(walk(Table((), Settings)))


def is_leaf(annotation: Any) -> bool:
    annotation = unwrap(annotation)
    if get_origin(annotation) is dict or models_of(annotation):
        return False
    return not (get_origin(annotation) is list and models_of(get_args(annotation)[0]))


LEAVES = [
    Leaf(table, name, field.annotation, tuple(field.metadata))
    for table in TABLES
    for name, field in table.model.model_fields.items()
    if name != "config_path" and is_leaf(field.annotation)
]

# Valid values for the required keys that a type alone does not give.
SAMPLES: dict[str, Any] = {
    "url": "json://127.0.0.1:9/hook",
    "start": "22:00",
    "end": "07:00",
    "api_key": "secret_matrix_key",
}


def sample(name: str, annotation: Any) -> Any:
    """A valid value for a required key."""
    if name in SAMPLES:
        return SAMPLES[name]
    annotation = unwrap(annotation)
    if get_origin(annotation) is Literal:
        return get_args(annotation)[0]
    if get_origin(annotation) is list:
        return [sample("", get_args(annotation)[0])]
    return "sample"


def minimal(model: type[BaseModel]) -> dict[str, Any]:
    return {
        name: sample(name, field.annotation)
        for name, field in model.model_fields.items()
        if field.is_required()
    }


def base_config() -> dict[str, Any]:
    """A valid configuration that has every table, each with its required keys."""
    document: dict[str, Any] = {"store": {"path": "matrix.db"}}
    for table in TABLES[1:]:
        node: Any = document
        for part, following in zip(table.path, (*table.path[1:], None), strict=True):
            if isinstance(part, int):
                while len(node) <= part:
                    node.append({})
                node = node[part]
            else:
                node = node.setdefault(part, [] if isinstance(following, int) else {})
        node.update(minimal(table.model))
    return document


def with_value(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    document = base_config()
    parent: Any = document
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return document


def without(path: tuple[str | int, ...]) -> dict[str, Any]:
    document = base_config()
    parent: Any = document
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    return document


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml(document: dict[str, Any]) -> str:
    """The document as TOML: one top-level key per line, tables inline."""
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in document.items())


# -- the cases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    document: dict[str, Any]
    key: str
    says: str = ""
    """A phrase the message must hold besides the key and the file."""


def wrong_values(leaf: Leaf) -> list[tuple[str, Any]]:
    """Values of the wrong type for `leaf`: always a table, plus one per kind of value."""
    annotation = unwrap(leaf.annotation)
    wrong: list[tuple[str, Any]] = [("table", {"x": 1})]
    origin = get_origin(annotation)
    if origin is list:
        wrong.append(("string-for-array", f"{CANARY}"))
        element = unwrap(get_args(annotation)[0])
        if get_origin(element) is Literal or (isinstance(element, type) and element is not str):
            wrong.append(("bad-element", [f"not_allowed_{CANARY}"]))
    elif origin is Literal:
        wrong.append(("number-for-choice", 7))
    elif annotation is bool:
        wrong.append(("string-for-bool", f"maybe_{CANARY}"))
    elif annotation in (int, float):
        wrong.append(("string-for-number", f"abc_{CANARY}"))
        if annotation is int:
            wrong.append(("fraction-for-integer", 1.5))
    elif annotation in (str, SecretStr, Path):
        wrong.append(("number-for-string", 7))
        wrong.append(("array-for-string", [CANARY]))
    else:
        raise AssertionError(f"no wrong values for {leaf.dotted}: {annotation}")
    return wrong


def out_of_range(leaf: Leaf) -> list[tuple[str, Any]]:
    """Values that break each constraint of `leaf` (bounds, lengths, patterns)."""
    out: list[tuple[str, Any]] = []
    for constraint in leaf.metadata:
        if isinstance(constraint, Gt):
            out.append((f"not-above-{constraint.gt}", constraint.gt))
        elif isinstance(constraint, Ge):
            out.append((f"below-{constraint.ge}", constraint.ge - 1))
        elif isinstance(constraint, Lt):
            out.append((f"not-below-{constraint.lt}", constraint.lt))
        elif isinstance(constraint, Le):
            out.append((f"above-{constraint.le}", constraint.le + 1))
        elif isinstance(constraint, MinLen):
            out.append(("too-short", [] if constraint.min_length == 1 else [1]))
        elif getattr(constraint, "pattern", None):
            out.append(("pattern", f"does not match {CANARY}"))
        else:
            raise AssertionError(f"no value breaks {constraint!r} of {leaf.dotted}")
    return out


# Values a field validator refuses, per validated key: a new validator without a case here
# fails test_every_field_validator_has_a_case.
REFUSED_BY_VALIDATORS: dict[tuple[type[BaseModel], str], list[tuple[str, Any, str]]] = {
    (config.QuietHoursSettings, "timezone"): [("unknown-zone", "Mars/Olympus", "time zone")],
    (config.McpSettings, "auth_token"): [
        ("short-token", f"s_{CANARY}", "at least"),
        ("token-with-space", f"a token with spaces {CANARY}", "printable"),
    ],
    (config.McpSettings, "allowed_origins"): [
        ("origin-with-path", ["https://app.example.com/path"], "not an origin")
    ],
    **{
        (model, "api_key"): [
            ("empty-key", "  ", "is empty"),
            ("key-with-newline", f"{CANARY}\n", "control characters"),
        ]
        for model in (config.GrowthBookSourceSettings, config.StatsigSourceSettings)
    },
    **{
        (model, name): [("url-with-password", f"https://user:{CANARY}@h.example", "user:password")]
        for model in (config.GrowthBookSourceSettings, config.StatsigSourceSettings)
        for name in ("base_url", "ui_url")
    },
    (config.StoreSettings, "url"): [
        ("not-a-url", f"nothing://{CANARY}:pw@", "SQLAlchemy URL"),
        ("sync-driver", f"sqlite:///{CANARY}.db", "asyncio driver"),
    ],
}


def type_cases() -> list[Case]:
    cases = []
    for leaf in LEAVES:
        for label, value in wrong_values(leaf) + out_of_range(leaf):
            cases.append(Case(f"{leaf.dotted}:{label}", with_value(leaf.path, value), leaf.dotted))
        for (model, name), refused in REFUSED_BY_VALIDATORS.items():
            if leaf.table.model is model and leaf.name == name:
                for label, value, says in refused:
                    document = with_value(leaf.path, value)
                    cases.append(Case(f"{leaf.dotted}:{label}", document, leaf.dotted, says))
    return cases


def typo(name: str) -> str:
    """A likely slip: the last letter dropped (a short name gets one added instead)."""
    return name[:-1] if len(name) > 4 else name + "s"


def unknown_key_cases() -> list[Case]:
    cases = []
    for table in TABLES:
        here = f"{table.dotted}." if table.path else ""
        document = with_value((*table.path, "zz_unknown"), 1)
        cases.append(Case(f"{here}zz_unknown", document, f"{here}zz_unknown", "unknown key"))
        for name in table.model.model_fields:
            if name == "config_path":
                continue
            slip = typo(name)
            cases.append(
                Case(
                    f"{here}{slip}:typo",
                    with_value((*table.path, slip), 1),
                    f"{here}{slip}",
                    f"did you mean {name!r}",
                )
            )
    return cases


def missing_key_cases() -> list[Case]:
    return [
        Case(
            f"{table.dotted}.{name}:missing",
            without((*table.path, name)),
            f"{table.dotted}.{name}",
            "required key is missing",
        )
        for table in TABLES
        for name, field in table.model.model_fields.items()
        # kind has a default through the discriminator: without it a source is GrowthBook
        if field.is_required() and name != "kind"
    ]


def structure_cases() -> list[Case]:
    """A table replaced by a value, and named tables that are not tables."""
    cases = [
        Case(f"{t.dotted}:not-a-table", with_value(t.path, 5), t.dotted, "should be a table")
        for t in TABLES[1:]
    ]
    cases += [
        Case("sources:not-a-table", with_value(("sources",), 5), "sources", "should be a table"),
        Case("sources.s0.kind:unknown", with_value(("sources", "s0", "kind"), "optimizely"),
             "sources.s0.kind", "unknown source kind"),
        Case("sources.s0.kind:number", with_value(("sources", "s0", "kind"), 7),
             "sources.s0.kind", "unknown source kind"),
    ]  # fmt: skip
    return cases


CASES = type_cases() + unknown_key_cases() + missing_key_cases() + structure_cases()


def write(tmp_path: Path, text: str, name: str = "expwatch.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_names_the_key(error: ConfigError, path: Path, key: str, says: str = "") -> None:
    message = str(error)
    assert str(path) in message, message
    assert re.search(rf"^  {re.escape(key)}(\.\d+)?: ", message, re.M), message
    assert error.key is not None and error.key.startswith(key), (error.key, message)
    assert says in message, message
    assert CANARY not in message, message
    assert "Traceback" not in message and "pydantic" not in message, message


# -- the tests ----------------------------------------------------------------------------


def test_the_base_configuration_is_valid_and_reaches_every_settings_model(tmp_path: Path) -> None:
    """The matrix starts from a configuration that loads, has alert targets Apprise accepts,
    and holds a table of every settings model of expwatch.config."""
    settings = load_config(write(tmp_path, toml(base_config())))
    assert alert_targets(settings)
    defined = {
        obj
        for obj in vars(config).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseModel)
        and obj.__module__ == config.__name__
        and not obj.__name__.startswith("_")
    }
    assert defined == {t.model for t in TABLES}
    assert len(LEAVES) > 60


def test_every_field_validator_has_a_case() -> None:
    """A field validator refuses values no type or bound describes: each needs a case."""
    validated = {
        (table.model, field)
        for table in TABLES
        for decorator in table.model.__pydantic_decorators__.field_validators.values()
        for field in decorator.info.fields
    }
    assert validated == set(REFUSED_BY_VALIDATORS)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_value_is_one_config_error_naming_the_key_and_the_file(
    case: Case, tmp_path: Path
) -> None:
    """Wrong type, out of range, refused by a validator, unknown (with the likely meaning),
    missing or not a table: a ConfigError naming the dotted key and the file, never the
    value."""
    path = write(tmp_path, toml(case.document))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert_names_the_key(caught.value, path, case.key, case.says)


# -- the environment ----------------------------------------------------------------------


def env_name(leaf: Leaf) -> str:
    return "EXPWATCH_" + "__".join(str(p) for p in leaf.path).upper()


def env_cases() -> list[tuple[str, Leaf, str, str]]:
    """(id, leaf, the variable's bad text, a phrase of the message) for every key the
    environment can set (not inside an array of tables) whose text can be wrong."""
    cases = []
    for leaf in LEAVES:
        if any(isinstance(p, int) for p in leaf.path):
            continue
        annotation = unwrap(leaf.annotation)
        if get_origin(annotation) is list:
            cases.append((f"{leaf.dotted}:not-json", leaf, "a,b", "must be JSON"))
        elif annotation in (int, float):
            cases.append((f"{leaf.dotted}:not-a-number", leaf, f"abc{CANARY}", "should be a valid"))
        elif annotation is bool:
            cases.append((f"{leaf.dotted}:not-a-bool", leaf, f"maybe{CANARY}", "boolean"))
        elif get_origin(annotation) is Literal:
            cases.append((f"{leaf.dotted}:not-a-choice", leaf, f"nope{CANARY}", ""))
        elif any(getattr(c, "pattern", None) for c in leaf.metadata):
            cases.append((f"{leaf.dotted}:pattern", leaf, f"no {CANARY}", "pattern"))
    return cases


ENV_CASES = env_cases()


@pytest.mark.parametrize(
    ("leaf", "text", "says"), [c[1:] for c in ENV_CASES], ids=[c[0] for c in ENV_CASES]
)
def test_a_bad_environment_override_names_the_variable(
    leaf: Leaf, text: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EXPWATCH_A__B=<bad> over a valid file: the message names the key, the file and the
    variable, without its value."""
    path = write(tmp_path, toml(base_config()))
    monkeypatch.setenv(env_name(leaf), text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert_names_the_key(caught.value, path, leaf.dotted, says)
    assert env_name(leaf) in str(caught.value)


@pytest.mark.parametrize(
    ("name", "meant"),
    [("EXPWATCH_STOR__PATH", "EXPWATCH_STORE"), ("EXPWATCH_LOGLEVEL", "EXPWATCH_LOG_LEVEL")],
)
def test_a_variable_that_names_no_setting_is_refused_with_the_likely_one(
    name: str, meant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelt top-level EXPWATCH_ variable is an error naming it and the likely key,
    where pydantic-settings alone would ignore it (and write to the default database)."""
    path = write(tmp_path, toml(base_config()))
    monkeypatch.setenv(name, "x")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert name in str(caught.value)
    assert f"did you mean {meant}" in str(caught.value)
    monkeypatch.delenv(name)
    monkeypatch.setenv("EXPWATCH_TEST_ANYTHING", "x")  # reserved for the test suite
    load_config(path)


@pytest.mark.parametrize(
    ("name", "text"),
    [("EXPWATCH_WATCHER", "{not json"), ("EXPWATCH_SOURCES", "[1, 2"), ("EXPWATCH_MCP", "7x")],
)
def test_a_table_from_the_environment_that_is_not_json_names_the_variable(
    name: str, text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole table set through the environment must be JSON; the message says which
    variable is not (pydantic-settings alone raised an error naming only the field)."""
    path = write(tmp_path, toml(base_config()))
    monkeypatch.setenv(name, text)
    with pytest.raises(ConfigError, match=f"{name} must be JSON"):
        load_config(path)


# -- the config file itself ---------------------------------------------------------------


def test_a_missing_file_a_directory_and_a_dangling_link_are_named(tmp_path: Path) -> None:
    """Each says what the path is and names it."""
    (tmp_path / "dir.toml").mkdir()
    (tmp_path / "link.toml").symlink_to(tmp_path / "gone.toml")
    for name, says in [
        ("nope.toml", "does not exist"),
        ("dir.toml", "is a directory"),
        ("link.toml", f"symbolic link to {tmp_path / 'gone.toml'}, which does not exist"),
    ]:
        with pytest.raises(ConfigError) as caught:
            load_config(tmp_path / name)
        assert str(tmp_path / name) in str(caught.value) and says in str(caught.value)
        assert caught.value.path == str(tmp_path / name)


def test_a_file_that_is_not_utf8_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    """TOML is UTF-8: a Latin-1 file says so (it raised UnicodeDecodeError before)."""
    path = tmp_path / "latin1.toml"
    path.write_bytes('[mcp]\nhost = "Zürich"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=f"{re.escape(str(path))} is not UTF-8 text"):
        load_config(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode (chmod 000)")
def test_an_unreadable_file_says_permission_denied(tmp_path: Path) -> None:
    """A file without read permission is named, with the reason."""
    path = write(tmp_path, toml(base_config()))
    path.chmod(0)
    with pytest.raises(ConfigError, match="permission denied"):
        load_config(path)


@pytest.mark.parametrize(
    "text",
    ["[watcher\n", "log_level = INFO\n", 'log_level = "INFO"\nlog_level = "DEBUG"\n',
     f'[sources.gb]\napi_key = {CANARY}\n'],
    ids=["unclosed-table", "bare-string", "duplicate-key", "unquoted-secret"],
)  # fmt: skip
def test_invalid_toml_gives_the_line_and_column(text: str, tmp_path: Path) -> None:
    """A syntax error names the file and where in it, and does not echo the line."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message and "not valid TOML" in message
    assert re.search(r"line \d+, column \d+", message), message
    assert CANARY not in message


# -- files and services the settings point to ---------------------------------------------


def test_a_database_that_cannot_be_created_is_found_at_load_time(tmp_path: Path) -> None:
    """A store path under a file, or naming a directory, is store.path's error now, not a
    failure at the first write; a directory that does not exist yet is fine (created)."""
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-dir").mkdir()
    for value, says in [("a-file/sub/x.db", "is a file, not a directory"), ("a-dir", "directory")]:
        path = write(tmp_path, toml(with_value(("store", "path"), value)))
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert_names_the_key(caught.value, path, "store.path", says)
    settings = load_config(write(tmp_path, toml(with_value(("store", "path"), "new/dir/x.db"))))
    settings.create_store_directory()
    assert (tmp_path / "new" / "dir").is_dir()


def test_a_ca_bundle_that_is_missing_or_not_pem_is_named(tmp_path: Path) -> None:
    """watcher.ca_bundle: missing, a directory, text without a certificate, binary junk."""
    (tmp_path / "text.pem").write_text("hello\n")
    (tmp_path / "junk.pem").write_bytes(bytes(range(256)))
    (tmp_path / "dir.pem").mkdir()
    for name in ("nope.pem", "text.pem", "junk.pem", "dir.pem"):
        path = write(tmp_path, toml(with_value(("watcher", "ca_bundle"), name)))
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert_names_the_key(caught.value, path, "watcher.ca_bundle", name)


APPRISE_FILES = {
    "missing": (None, "does not exist"),
    "directory": (..., "is a directory"),
    "invalid-yaml": (b"urls: [unclosed\n  - x: : :\n", "YAML"),
    "unknown-scheme": (f"urls:\n  - nosuchscheme://{CANARY}\n".encode(), "Unparseable URL"),
    "one-bad-entry": (
        f"urls:\n  - slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnl!zkc_{CANARY}:\n      tag: oncall\n"
        "  - json://127.0.0.1:9/hook\n".encode(),
        "Slack",
    ),
    "empty": (b"", "cannot load it"),
    "not-utf8": ("urls:\n  - json://zürich/\n".encode("latin-1"), "not UTF-8"),
}


@pytest.mark.parametrize("label", list(APPRISE_FILES))
def test_an_apprise_config_file_apprise_cannot_use_is_a_config_error(
    label: str, tmp_path: Path
) -> None:
    """alerts.apprise_config: a file that is missing, not YAML, or has an entry Apprise
    drops is an error at check time (an entry was silently lost before, and Apprise's
    warning quoted its token), and no credential from the file is echoed."""
    content, says = APPRISE_FILES[label]
    target = tmp_path / "apprise.yml"
    if content is ...:
        target.mkdir()
    elif content is not None:
        target.write_bytes(content)
    path = write(tmp_path, toml(with_value(("alerts", "apprise_config"), "apprise.yml")))
    with pytest.raises(ConfigError) as caught:
        alert_targets(load_config(path))
    assert_names_the_key(caught.value, path, "alerts.apprise_config", says)
    assert str(target) in str(caught.value)


BAD_ALERT_URLS = {
    "unknown-scheme": f"nosuchscheme://user:{CANARY}@host/",
    "no-plugin-for-https": f"https://hooks.example.com/{CANARY}",
    "not-a-url": f"just words {CANARY}",
    "empty": "",
    "json-without-host": f"json://user:{CANARY}@",
    "mailto-without-host": f"mailto://user:{CANARY}@",
    "slack-with-a-bad-token": f"slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnl!zkc_{CANARY}",
    "telegram-with-a-bad-token": f"tgram://123456789:{CANARY}!!/",
}


@pytest.mark.parametrize("label", list(BAD_ALERT_URLS))
def test_an_alert_url_apprise_cannot_use_is_named_by_key_never_by_value(
    label: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """alerts.targets.<name>.url that Apprise refuses: a ConfigError at check time naming
    the key, with Apprise's reason but neither the URL nor its tokens, in the message or
    in the log."""
    url = BAD_ALERT_URLS[label]
    path = write(tmp_path, toml(with_value(("alerts", "targets", "t0", "url"), url)))
    with pytest.raises(ConfigError) as caught:
        alert_targets(load_config(path))
    assert_names_the_key(caught.value, path, "alerts.targets.t0.url", "not a URL Apprise")
    assert CANARY not in caplog.text


# -- the command line ---------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    label: str
    command: str
    document: dict[str, Any] | str | bytes
    says: str
    environment: dict[str, str] | None = None


SLACK_URL = BAD_ALERT_URLS["slack-with-a-bad-token"]
INVOCATIONS = [
    Invocation("wrong-type", "check-config",
               with_value(("watcher", "poll_interval_seconds"), {"x": 1}),
               "watcher.poll_interval_seconds: Input should be a valid number (got a table)"),
    Invocation("wrong-type", "run",
               with_value(("watcher", "poll_interval_seconds"), {"x": 1}),
               "watcher.poll_interval_seconds"),
    Invocation("source-not-a-table", "run", with_value(("sources", "s0"), 5),
               "sources.s0: should be a table"),
    Invocation("bad-alert-url", "check-config",
               with_value(("alerts", "targets", "t0", "url"), SLACK_URL),
               "alerts.targets.t0.url: is not a URL Apprise understands"),
    Invocation("bad-alert-url", "run",
               with_value(("alerts", "targets", "t0", "url"), SLACK_URL),
               "alerts.targets.t0.url"),
    Invocation("store-under-a-file", "run", with_value(("store", "path"), "a-file/x.db"),
               "store.path: cannot create"),
    Invocation("bad-environment", "check-config", base_config(),
               "EXPWATCH_MCP__PORT", {"EXPWATCH_MCP__PORT": f"eighty{CANARY}"}),
    Invocation("not-utf8", "run", 'log_level = "DÉBUG"\n'.encode("latin-1"), "is not UTF-8"),
]  # fmt: skip


def prepare(invocation: Invocation, directory: Path) -> Path:
    directory.mkdir()
    (directory / "a-file").write_text("")
    path = directory / "expwatch.toml"
    document = invocation.document
    if isinstance(document, dict):
        document = toml(document)
    path.write_bytes(document if isinstance(document, bytes) else document.encode())
    return path


def command_of(invocation: Invocation, path: Path) -> list[str]:
    extra = ["--mcp-http"] if invocation.command == "run" else []
    return [invocation.command, "--config", str(path), *extra]


def assert_one_clear_message(
    invocation: Invocation, path: Path, code: int, out: str, err: str
) -> None:
    """Exit code 2, nothing on stdout, one message naming the file and the key on stderr
    (no traceback, no log lines), and no database file."""
    where = f"{invocation.label} ({invocation.command}): {err}"
    assert code == 2, where
    assert out == "", where
    assert err.startswith(
        (f"expwatch: invalid configuration in {path}:\n", f"expwatch: config file {path} ")
    ), where
    assert invocation.says in err, where
    assert all(line.startswith("  ") for line in err.splitlines()[1:]), where
    assert "Traceback" not in err and CANARY not in err, where
    assert not list(path.parent.glob("*.db*")), where


@pytest.mark.parametrize(
    "invocation", INVOCATIONS, ids=[f"{i.command}:{i.label}" for i in INVOCATIONS]
)
@pytest.mark.usefixtures("restore_logging")
def test_the_command_exits_2_with_one_message_and_starts_nothing(
    invocation: Invocation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`expwatch run --mcp-http` and `expwatch check-config` on a sample of the cases (the
    click commands, in this process)."""
    path = prepare(invocation, tmp_path / "case")
    for name in [k for k in os.environ if k.upper().startswith("EXPWATCH_")]:
        monkeypatch.delenv(name)
    for name, value in (invocation.environment or {}).items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, command_of(invocation, path))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert_one_clear_message(invocation, path, result.exit_code, result.stdout, result.stderr)


@pytest.mark.anyio
async def test_the_process_exits_2_with_one_message_and_starts_nothing(tmp_path: Path) -> None:
    """The same as a user sees it, in real processes (side by side): `run --mcp-http` with an
    alert URL Apprise refuses, and `check-config` with a value of the wrong type."""
    chosen = [i for i in INVOCATIONS if (i.command, i.label) in PROCESS_SAMPLE]
    assert len(chosen) == len(PROCESS_SAMPLE)
    paths = [prepare(invocation, tmp_path / f"case{i}") for i, invocation in enumerate(chosen)]
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EXPWATCH_")}
    outcomes: dict[int, tuple[int, str, str]] = {}

    async def one(i: int) -> None:
        command = [sys.executable, "-m", "expwatch", *command_of(chosen[i], paths[i])]
        result = await anyio.run_process(command, env=env, cwd=ROOT, check=False)
        outcomes[i] = (result.returncode, result.stdout.decode(), result.stderr.decode())

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for i in range(len(chosen)):
                tg.start_soon(one, i)
    for i, invocation in enumerate(chosen):
        assert_one_clear_message(invocation, paths[i], *outcomes[i])


PROCESS_SAMPLE = {("check-config", "wrong-type"), ("run", "bad-alert-url")}
