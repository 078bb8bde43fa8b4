"""The MCP server fuzzed through a real client: every tool called with arguments built from its
input schema (the right shapes with extreme contents) and with arbitrary JSON objects, the
resource templates read with fuzzed ids, arbitrary URIs read.

Every call answers with a result or a proper MCP error that says what is wrong (naming the
argument when an argument breaks the schema; never the masked "Error calling tool"); no
answer carries a traceback, an internal path or a configured secret; the watch list only
ever holds usable ids; the server keeps answering. One server (a watcher that polled the
simulated GrowthBook) serves every example of the module; `--long` runs the long variants.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import pytest
from fastmcp import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from mcp import types
from mcp.shared.exceptions import MCPError
from pydantic import SecretStr

from expwatch import open_app
from expwatch.app import App
from expwatch.config import GrowthBookSourceSettings, McpSettings, Settings, StoreSettings
from simulator import build_growthbook_app, default_scenario
from tests.helpers import ManualClock
from tests.watcher.conftest import REFRESH_SECONDS, at_refresh

pytestmark = pytest.mark.anyio

API_KEY = "secret_canary_api_key_fuzz_5772156649"
AUTH_TOKEN = "canary-mcp-token-fuzz-0123456789abcdefghij"
SECRETS = (API_KEY, AUTH_TOKEN)
WAIT_SECONDS = 10.0
"""Bound on one call: generous, since reaching it only means a hang."""

TOOLS = (
    "get_experiment_results",
    "get_metric_details",
    "export_pulse_report",
    "get_experiments",
    "get_experiment",
    "get_history",
    "when_significant",
    "recent_events",
    "watcher_status",
    "refresh_experiment",
    "watch_experiment",
    "unwatch_experiment",
    "summarize_experiment",
)
TEMPLATES = (
    "experiments://{experiment_id}/results",
    "experiments://{experiment_id}/health",
    "experiments://{experiment_id}/history",
    "experiments://{experiment_id}/metrics/{metric}",
)
ARGUMENT_NAMES = (
    *("experiment_id", "metric_name", "metric", "variation", "since", "at", "kinds", "limit"),
    *("offset", "after_id", "mode", "format", "include_charts", "include_metrics"),
    *("include_health", "variant_comparison", "project", "status", "most_recent", "source"),
)

FUZZ = settings(
    deadline=None,
    print_blob=True,
    # One server serves every example of the module, on purpose.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SHAPED = settings(FUZZ, max_examples=30)
ARBITRARY = settings(FUZZ, max_examples=20)
URIS = settings(FUZZ, max_examples=100)
LONG = settings(FUZZ, max_examples=400)
LONG_TIMEOUT = pytest.mark.timeout(900)

# -- inputs ---------------------------------------------------------------------------------------

KNOWN = (
    "exp_checkout_redesign",
    "exp_pricing_page",
    "exp_onboarding_tour",
    "met_conversion",
    "Conversion",
    "var_checkout_1",
    "gb",
    "running",
    "prj_checkout",
    "srm_detected",
    "7d",
    "90m",
    "2026-01-05T09:00:00Z",
    "json",
    "csv",
    "full",
)
"""Real values, so that fuzzed calls also reach the code behind the lookups."""
NASTY = (
    "",
    " ",
    "\t\n",
    "/",
    "..",
    "../..",
    "../../etc/passwd",
    "%2F",
    "%2F..%2F",
    "a/b",
    "?x=1#y",
    "' OR '1'='1",
    "'; DROP TABLE experiments; --",
    '"',
    "\\",
    "\x00",
    "\x1b[31m",
    "\u202e",
    "😀",
    "ẞ",
    "x" * 10_000,
    "99999999999d",
    "1e400d",
    "-1d",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "NaN",
    "null",
    "%s%n{0}",
    "{experiment_id}",
)
EXTREME_INTEGERS = (-1, 0, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30, -(10**30))

strings = st.one_of(
    st.sampled_from(KNOWN + NASTY),
    st.text(max_size=30),
    st.builds(str.__add__, st.sampled_from(KNOWN), st.sampled_from(NASTY)),
)
integers = st.one_of(st.integers(-5, 300), st.sampled_from(EXTREME_INTEGERS), st.integers())
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), integers, st.floats(), strings),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@dataclass(frozen=True)
class Material:
    """What schema-shaped arguments are built from: values of each JSON type, which optional
    arguments to send, and which alternative of an `anyOf` or `enum` to take."""

    strings: list[str]
    integers: list[int]
    booleans: list[bool]
    include: list[bool]
    picks: list[int]


materials = st.builds(
    Material,
    strings=st.lists(strings, min_size=1, max_size=6),
    integers=st.lists(integers, min_size=1, max_size=4),
    booleans=st.lists(st.booleans(), min_size=1, max_size=4),
    include=st.lists(st.booleans(), min_size=1, max_size=8),
    picks=st.lists(st.integers(0, 7), min_size=1, max_size=8),
)


def arguments_for(schema: dict[str, Any], material: Material) -> dict[str, Any]:
    """Arguments of the shapes `schema` describes (required ones always, optional ones as
    `material.include` says) with the contents `material` holds: in range or not."""
    required = set(schema.get("required", ()))
    arguments = {}
    for index, (name, spec) in enumerate(sorted(schema.get("properties", {}).items())):
        if name in required or material.include[index % len(material.include)]:
            arguments[name] = value_for(spec, material, index)
    return arguments


def value_for(spec: dict[str, Any], material: Material, index: int) -> Any:
    pick = material.picks[index % len(material.picks)]
    if "anyOf" in spec:
        spec = spec["anyOf"][pick % len(spec["anyOf"])]
    if "enum" in spec and pick % 2 == 0:
        return spec["enum"][pick // 2 % len(spec["enum"])]
    kind = spec.get("type")
    if kind == "null":
        return None
    if kind == "integer":
        return material.integers[index % len(material.integers)]
    if kind == "boolean":
        return material.booleans[index % len(material.booleans)]
    if kind == "array":
        return [value_for(spec["items"], material, index + k) for k in range(pick % 4)]
    return material.strings[index % len(material.strings)]


# -- the server -----------------------------------------------------------------------------------


@dataclass
class Served:
    """The server's app, a connected client, and each tool's input schema."""

    app: App
    client: Client
    schemas: dict[str, dict[str, Any]]

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # A failing example shows its fixtures; hypothesis would print every field.
        printer.text("Served(expwatch over the simulated GrowthBook)")


@pytest.fixture(scope="module", autouse=True)
def quiet_fastmcp() -> Iterator[None]:
    """FastMCP logs every error it answers (an unknown experiment included) as a rich
    traceback on its own console handlers; thousands of them would take most of the run.
    The answers are what these tests check."""
    logger = logging.getLogger("fastmcp")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    """expwatch with a canary API key and MCP token, six refreshes of the simulated GrowthBook
    recorded (an SRM included), and one in-memory client. No client rate limit (the fuzzing
    would spend it) and no source request budget (the clock never moves to refill it)."""
    clock = ManualClock()
    scenario = default_scenario(start=clock.now(), refresh_seconds=REFRESH_SECONDS)
    simulator = build_growthbook_app(
        scenario, api_key=API_KEY, clock=clock.now, rate_limit_per_minute=10**9
    )
    settings = Settings(
        store=StoreSettings(path=tmp_path_factory.mktemp("mcp-fuzz") / "mcp.db"),
        sources={
            "gb": GrowthBookSourceSettings(
                base_url="http://gb.test",
                api_key=SecretStr(API_KEY),
                ui_url="https://gb.example",
                rate_limit_per_minute=0,
            )
        },
        mcp=McpSettings(port=0, client_rate_limit_per_minute=0, auth_token=SecretStr(AUTH_TOKEN)),
    )
    async with open_app(settings, clock=clock, transport=httpx.ASGITransport(app=simulator)) as app:
        for refresh in range(1, 7):
            at_refresh(clock, scenario, refresh)
            await app.supervisor.poll_once()
        async with Client(app.mcp) as client:
            tools = await client.list_tools()
            yield Served(app, client, {t.name: t.input_schema for t in tools})


FORBIDDEN = (
    "Traceback (most recent call last)",
    'File "',
    "site-packages",
    str(Path(__file__).resolve().parents[2]),
    *("KeyError", "TypeError", "AttributeError", "IndexError", "ValueError", "OverflowError"),
    *("RecursionError", "AssertionError", "sqlalchemy", "aiosqlite", "sqlite3"),
)
"""What no answer may show: tracebacks, internal paths, raw exception names, the database."""
VALIDATION_ERROR = "validation error for call["
"""How a rejected argument is answered: pydantic's report, each bad argument on its own line."""
MASKED = re.compile(r"^Error (calling tool|reading resource)")
"""FastMCP's text for an unexpected exception (its details masked): a crash, not an answer."""


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, "a configured secret in an answer"
    for forbidden in FORBIDDEN:
        assert forbidden not in text, f"{forbidden!r} in an answer: {text[:2000]}"


def result_text(result: types.CallToolResult) -> str:
    parts = [c.text if isinstance(c, types.TextContent) else repr(c) for c in result.content]
    return "\n".join(parts)


def offending(schema: dict[str, Any], arguments: dict[str, Any]) -> set[str] | None:
    """The argument names `arguments` get wrong by the schema (None when they fit it)."""
    errors = list(Draft202012Validator(schema).iter_errors(arguments))
    if not errors:
        return None
    names: set[str] = set()
    for error in errors:
        if error.path:
            names.add(str(error.path[0]))
        elif error.validator == "required":
            names.update(n for n in schema.get("required", ()) if n not in arguments)
        elif error.validator == "additionalProperties":
            names.update(set(arguments) - set(schema.get("properties", {})))
    return names


ARGUMENT_NAME = st.text(st.characters(exclude_characters="\n"), max_size=10)
"""Any argument name but one holding a newline: the error lists the names one per line, so
such a name could not be found in it (a limit of this check, not of the server)."""


async def call_tool(served: Served, name: str, arguments: dict[str, Any]) -> None:
    """Call `name`: a result, or an error that says what is wrong (naming an offending
    argument when the arguments break the schema); a clean answer either way."""
    with anyio.fail_after(WAIT_SECONDS):
        result = await served.client.session.call_tool(name, arguments)
    text = result_text(result)
    assert_clean(text)
    assert_clean(str(result.structured_content))
    if result.is_error:
        assert text.strip() and not MASKED.match(text), f"{name}({arguments!r}) crashed: {text}"
        wrong = offending(served.schemas[name], arguments)
        if wrong and VALIDATION_ERROR in text:  # (else the server coerced them, e.g. "5" → 5)
            # Each location on a line of its own, `quoted` if it holds a dot ("kinds.0",
            # "`a.b`"); split on newlines only, as an argument may be named "\x1e".
            lines = [line.strip("`") for line in text.split("\n")]
            arguments_named = {*lines, *(line.split(".")[0] for line in lines)}
            schema = served.schemas[name]
            assert arguments_named & (wrong | set(arguments) | set(schema.get("required", ()))), (
                f"{text!r} names no argument; wrong: {wrong}"
            )
    await assert_still_serving(served)


async def assert_still_serving(served: Served) -> None:
    """The server answers a listing, and its watch list holds only usable ids."""
    with anyio.fail_after(WAIT_SECONDS):
        assert {t.name for t in await served.client.list_tools()} == set(TOOLS)
        entries = await served.app.store.state.watch_list()
    for entry in entries:
        assert_usable_id(entry.experiment_id)


def assert_usable_id(experiment_id: str) -> None:
    assert 0 < len(experiment_id) <= 200, experiment_id[:300]
    assert experiment_id == experiment_id.strip(), repr(experiment_id)
    assert not any(ord(c) < 32 or ord(c) == 127 for c in experiment_id), repr(experiment_id)


async def read_resource(served: Served, uri: str) -> None:
    """Read `uri`: its contents, or a JSON-RPC error with a message; a clean answer."""
    try:
        with anyio.fail_after(WAIT_SECONDS):
            result = await served.client.session.read_resource(uri)
    except MCPError as exc:
        message = str(exc.error.message)
        assert message.strip() and not MASKED.match(message), f"{uri!r} crashed: {message}"
        assert_clean(message)
        assert_clean(str(exc.error.data))
    else:
        for content in result.contents:
            assert isinstance(content, types.TextResourceContents)
            assert_clean(content.text)
    await assert_still_serving(served)


# -- tools -----------------------------------------------------------------------------------------


async def test_the_fuzzing_covers_every_tool_and_template(served: Served) -> None:
    """The fuzzed lists are the server's: a new tool or template is fuzzed too, or this fails."""
    assert set(served.schemas) == set(TOOLS)
    templates = await served.client.session.list_resource_templates()
    assert {t.uri_template for t in templates.resource_templates} == set(TEMPLATES)
    assert set(ARGUMENT_NAMES) == {n for s in served.schemas.values() for n in s["properties"]}


@pytest.mark.parametrize("tool", TOOLS)
@SHAPED
@given(material=materials)
async def test_schema_shaped_arguments_get_a_result_or_an_error_that_says_why(
    served: Served, tool: str, material: Material
) -> None:
    """The right shapes with extreme contents: huge and negative numbers, empty, long,
    control-character and Unicode strings, ids with `/`, `..`, `%2F` or SQL in them."""
    await call_tool(served, tool, arguments_for(served.schemas[tool], material))


@pytest.mark.parametrize("tool", TOOLS)
@ARBITRARY
@given(
    arguments=st.dictionaries(
        st.one_of(st.sampled_from(ARGUMENT_NAMES), ARGUMENT_NAME), json_values, max_size=5
    )
)
async def test_arbitrary_argument_objects_get_a_result_or_an_error_naming_the_argument(
    served: Served, tool: str, arguments: dict[str, Any]
) -> None:
    """Any JSON object as arguments: wrong types, unknown keys, required ones missing."""
    await call_tool(served, tool, arguments)


async def test_unknown_tools_and_no_arguments_get_errors_that_say_so(served: Served) -> None:
    """An unknown tool is named as unknown; a tool called without its required argument is
    told which one is missing."""
    result = await served.client.session.call_tool("drop_experiments", {})
    assert result.is_error and "drop_experiments" in result_text(result)
    result = await served.client.session.call_tool("get_experiment", None)
    assert result.is_error and "experiment_id" in result_text(result)
    await assert_still_serving(served)


CHECKOUT = "exp_checkout_redesign"
FOUND_CASES = [
    # Parsed outside the tool's error handling: masked as "Error calling tool 'get_history'".
    ("get_history", {"experiment_id": CHECKOUT, "at": "last tuesday"}, "at='last tuesday'"),
    ("get_history", {"experiment_id": CHECKOUT, "since": "yesterday"}, "since='yesterday'"),
    # An age past the year 1: OverflowError, masked.
    ("recent_events", {"since": "99999999999d"}, "reaches back before the year 1"),
    ("get_history", {"experiment_id": CHECKOUT, "at": "9999999999w"}, "at='9999999999w' reaches"),
    # An event id past SQLite's integers: OverflowError in the driver, masked.
    ("recent_events", {"after_id": 2**63}, "after_id"),
]


@pytest.mark.parametrize(("tool", "arguments", "expected"), FOUND_CASES)
async def test_what_the_fuzzing_found_gets_an_error_that_says_what_is_wrong(
    served: Served, tool: str, arguments: dict[str, Any], expected: str
) -> None:
    """Each call the fuzzing found answered with a masked internal error: now an error
    naming the argument and what it takes."""
    result = await served.client.session.call_tool(tool, arguments)
    assert result.is_error and expected in result_text(result), result_text(result)
    assert_clean(result_text(result))


# -- resources -------------------------------------------------------------------------------------


@URIS
@given(
    template=st.sampled_from(TEMPLATES),
    experiment_id=strings,
    metric=strings,
    encoded=st.booleans(),
)
async def test_templates_with_fuzzed_ids_get_contents_or_an_error_that_says_why(
    served: Served, template: str, experiment_id: str, metric: str, encoded: bool
) -> None:
    """Each template with fuzzed segments, sent as they are or percent-encoded."""
    segments = [experiment_id, metric]
    if encoded:
        segments = [quote(s, safe="") for s in segments]
    uri = template.format(experiment_id=segments[0], metric=segments[1])
    await read_resource(served, uri)


@URIS
@given(
    uri=st.one_of(
        st.text(max_size=60),
        st.builds(
            "{}:{}".format,
            st.sampled_from(["experiments", "watcher", "EXPERIMENTS", "file", "http", "data", ""]),
            st.one_of(st.text(max_size=40), st.sampled_from(NASTY)),
        ),
        st.sampled_from(
            [
                "experiments://index/",
                "experiments://",
                "experiments:///results",
                "experiments://x/metrics/",
                "experiments://x/metrics/a/b",
                "watcher://status?x=1",
                "file:///etc/passwd",
            ]
        ),
    )
)
async def test_arbitrary_uris_get_contents_or_a_not_found_error(served: Served, uri: str) -> None:
    """Any string as a URI, schemes of ours and others'."""
    await read_resource(served, uri)


# -- the watch list --------------------------------------------------------------------------------


@pytest.mark.parametrize("experiment_id", ["", " ", "x" * 201, "exp\x00null", "exp\nline", " exp"])
@pytest.mark.parametrize("tool", ["watch_experiment", "unwatch_experiment", "refresh_experiment"])
async def test_an_unusable_id_is_refused_naming_the_argument(
    served: Served, tool: str, experiment_id: str
) -> None:
    """An id no platform has (empty, over 200 characters, control characters, surrounding
    spaces) is refused before it reaches the watch list or the platform."""
    events_before = await served.app.store.last_event_id()
    result = await served.client.session.call_tool(tool, {"experiment_id": experiment_id})
    assert result.is_error, result_text(result)
    assert "experiment_id" in result_text(result)
    assert experiment_id not in {e.experiment_id for e in await served.app.store.state.watch_list()}
    assert await served.app.store.last_event_id() == events_before


# -- long variants ---------------------------------------------------------------------------------


@pytest.mark.long
@LONG_TIMEOUT
@pytest.mark.parametrize("tool", TOOLS)
@LONG
@given(
    material=materials,
    arguments=st.dictionaries(
        st.one_of(st.sampled_from(ARGUMENT_NAMES), ARGUMENT_NAME), json_values, max_size=5
    ),
    shaped=st.booleans(),
)
async def test_long_fuzzed_tool_calls_get_a_result_or_an_error_that_says_why(
    served: Served, tool: str, material: Material, arguments: dict[str, Any], shaped: bool
) -> None:
    """The tool properties, with many more examples."""
    if shaped:
        arguments = arguments_for(served.schemas[tool], material)
    await call_tool(served, tool, arguments)


@pytest.mark.long
@LONG_TIMEOUT
@settings(LONG, max_examples=2000)
@given(template=st.sampled_from(TEMPLATES), experiment_id=strings, metric=strings, uri=strings)
async def test_long_fuzzed_uris_get_contents_or_an_error_that_says_why(
    served: Served, template: str, experiment_id: str, metric: str, uri: str
) -> None:
    """The resource properties, with many more examples."""
    await read_resource(served, template.format(experiment_id=experiment_id, metric=metric))
    await read_resource(served, uri)
