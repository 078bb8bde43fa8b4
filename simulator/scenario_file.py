"""Scenario files: TOML scripts of experiments for both fake platforms.

A scenario file names a timeline and, for GrowthBook and/or Statsig, the experiments to
script on it; every key is the name of a `ScriptedExperiment` or `StatsigExperiment` field
with the same meaning (see their docstrings), refresh indexes counting from 0::

    [timeline]
    start = 2026-01-01T00:00:00Z      # an offset date-time
    refresh_seconds = 60.0            # optional, default 60

    [[growthbook.experiments]]
    id = "exp_checkout"
    name = "Checkout redesign"
    tracking_key = "checkout"         # optional, default: the id
    variations = [{ id = "var_old", name = "Control" }, { id = "var_new", name = "One page" }]
    weights = [0.5, 0.5]
    significant_from = 3              # ... and any other ScriptedExperiment field
    no_data_between = [8, 10]         # refreshes 8 and 9
    [[growthbook.experiments.metrics]]
    id = "met_conversion"
    name = "Conversion"
    role = "goal"                     # goal | secondary | guardrail, reported in that order
    control_rate = 0.1
    inverse = false                   # optional: true for lower-is-better
    added_at = 0                      # optional

    [[statsig.experiments]]
    id = "checkout_redesign"
    name = "Checkout redesign"
    started_at = 0                    # or "never": the experiment stays in setup
    [[statsig.experiments.groups]]
    name = "Control"
    size = 50.0                       # percent; `id` optional (a stable generated id)
    [[statsig.experiments.metrics]]
    name = "checkout_conversion"
    role = "primary"                  # primary | secondary | other
    control_rate = 0.1

A variation's `key` defaults to its position ("0", "1", ...). Mistakes raise
`ScenarioFileError`, naming the file and the dotted key at fault, list positions counting from
0 (`demo.toml: growthbook.experiments[1].weights: ...`), with the closest valid key for an
unknown one. `EXAMPLE_SCENARIO_FILE` exercises every knob.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, get_args

from simulator.scenario import (
    Scenario,
    ScriptedExperiment,
    ScriptedMetric,
    ScriptedVariation,
    ScriptError,
    Verdict,
)
from simulator.stats import StatsEngine
from simulator.statsig_experiment import (
    ConfidenceInterval,
    Direction,
    EndStatus,
    StatsigExperiment,
    StatsigGroup,
    StatsigMetric,
)
from simulator.statsig_scenario import StatsigScenario, stable_group_id

__all__ = ["EXAMPLE_SCENARIO_FILE", "ScenarioFile", "ScenarioFileError", "load_scenario_file"]

EXAMPLE_SCENARIO_FILE = Path(__file__).resolve().parent / "scenarios" / "example.toml"
"""A scenario file scripting every knob on both platforms."""

_DEFAULT_REFRESH_SECONDS = 60.0
_GROWTHBOOK_ROLES = {"goal": "goals", "secondary": "secondary_metrics", "guardrail": "guardrails"}
_STATSIG_ROLES = {
    "primary": "primary_metrics",
    "secondary": "secondary_metrics",
    "other": "other_metrics",
}
_NEVER = "never"


class ScenarioFileError(ValueError):
    """A scenario file that cannot be read: `path`, the dotted `key` at fault, the `problem`."""

    def __init__(self, path: Path, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}" if key else f"{path}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem


@dataclass(frozen=True, kw_only=True)
class ScenarioFile:
    """What a scenario file scripts: a scenario per platform it names (else None)."""

    path: Path
    growthbook: Scenario | None
    statsig: StatsigScenario | None


def load_scenario_file(path: str | Path) -> ScenarioFile:
    """Read and check a scenario file; raise `ScenarioFileError` on any mistake in it."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioFileError(path, "", f"not valid TOML: {error}") from error
    try:
        return _scenario_file(path, document)
    except _Problem as problem:
        raise ScenarioFileError(path, problem.key, problem.problem) from None


# -- reading ---------------------------------------------------------------------------------


class _Problem(Exception):
    """A mistake at a dotted key; `load_scenario_file` adds the file's name."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


_Reader = Callable[[object, str], Any]
"""Checks and converts one value found at a dotted key, or raises `_Problem`."""


@dataclass(frozen=True)
class _Field:
    read: _Reader
    is_required: bool = False


def _fields(table: object, key: str, spec: Mapping[str, _Field]) -> dict[str, Any]:
    """The values of a table, read by `spec`; unknown and missing keys are mistakes."""
    if not isinstance(table, dict):
        raise _Problem(key, f"expected a table, got {_describe(table)}")
    for name in table:
        if name not in spec:
            raise _Problem(_join(key, name), _unknown(name, spec))
    missing = [name for name, field in spec.items() if field.is_required and name not in table]
    if missing:
        raise _Problem(key, f"missing required key {missing[0]!r}")
    return {name: spec[name].read(value, _join(key, name)) for name, value in table.items()}


def _tables(value: object, key: str, read: Callable[[object, str, int], Any]) -> list[Any]:
    """An array of tables, each read by `read(table, dotted key, position)`."""
    if not isinstance(value, list):
        raise _Problem(key, f"expected an array of tables, got {_describe(value)}")
    return [read(item, f"{key}[{i}]", i) for i, item in enumerate(value)]


def _by_role(tagged: list[tuple[str, Any]], fields: Iterable[str]) -> dict[str, tuple[Any, ...]]:
    """Metrics tagged with their field (`goals`, ...) as one tuple per field, in file order."""
    return {field: tuple(m for f, m in tagged if f == field) for field in fields}


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _unknown(name: str, valid: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key; expected one of: {', '.join(sorted(valid))}"


def _describe(value: object) -> str:
    kinds: list[tuple[type, str]] = [
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a float"),
        (str, "a string"),
        (list, "an array"),
        (dict, "a table"),
        (datetime, "a date-time"),
        (date, "a date"),
        (time, "a time"),
    ]
    kind = next((name for t, name in kinds if isinstance(value, t)), type(value).__name__)
    return f"{kind} ({value!r})" if not isinstance(value, list | dict) else kind


def _string(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise _Problem(key, f"expected a string, got {_describe(value)}")
    return value


def _boolean(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise _Problem(key, f"expected true or false, got {_describe(value)}")
    return value


def _integer(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Problem(key, f"expected an integer, got {_describe(value)}")
    return value


def _index(value: object, key: str) -> int:
    """A refresh index: an integer from 0."""
    index = _integer(value, key)
    if index < 0:
        raise _Problem(key, f"expected a refresh index (an integer from 0), got {index}")
    return index


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Problem(key, f"expected a number, got {_describe(value)}")
    return float(value)


def _strings(value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Problem(key, f"expected an array of strings, got {_describe(value)}")
    return tuple(_string(item, f"{key}[{i}]") for i, item in enumerate(value))


def _numbers(value: object, key: str) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise _Problem(key, f"expected an array of numbers, got {_describe(value)}")
    return tuple(_number(item, f"{key}[{i}]") for i, item in enumerate(value))


def _index_pair(value: object, key: str) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise _Problem(key, f"expected two refresh indexes [first, end), got {_describe(value)}")
    return _index(value[0], f"{key}[0]"), _index(value[1], f"{key}[1]")


def _choice(options: tuple[str, ...]) -> _Reader:
    def read(value: object, key: str) -> str:
        text = _string(value, key)
        if text not in options:
            close = difflib.get_close_matches(text, options, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise _Problem(key, f"expected one of {', '.join(options)}, got {text!r}{hint}")
        return text

    return read


def _started_at(value: object, key: str) -> int | None:
    """Statsig's `started_at`: a refresh index, or "never" (the experiment stays in setup)."""
    if value == _NEVER:
        return None
    if isinstance(value, str):
        raise _Problem(key, f'expected a refresh index or "never", got {value!r}')
    return _index(value, key)


def _confidence(value: object, key: str) -> str:
    """Statsig's `default_confidence_interval`, as a string or an integer (95)."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    return str(_choice(get_args(ConfidenceInterval))(text, key))


# -- the timeline ----------------------------------------------------------------------------


def _start(value: object, key: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise _Problem(
            key,
            "expected a date-time with a UTC offset such as 2026-01-01T00:00:00Z, "
            f"got {_describe(value)}",
        )
    return value


def _refresh_seconds(value: object, key: str) -> float:
    seconds = _number(value, key)
    if not seconds > 0:
        raise _Problem(key, f"expected a positive number of seconds, got {seconds}")
    return seconds


_TIMELINE = {
    "start": _Field(_start, is_required=True),
    "refresh_seconds": _Field(_refresh_seconds),
}


# -- GrowthBook ------------------------------------------------------------------------------


def _variation(table: object, key: str, position: int) -> ScriptedVariation:
    spec = {
        "id": _Field(_string, is_required=True),
        "name": _Field(_string, is_required=True),
        "key": _Field(_string),
    }
    values = _fields(table, key, spec)
    return ScriptedVariation(key=values.pop("key", str(position)), **values)


def _growthbook_metric(table: object, key: str, position: int) -> tuple[str, ScriptedMetric]:
    spec = {
        "id": _Field(_string, is_required=True),
        "name": _Field(_string, is_required=True),
        "role": _Field(_choice(tuple(_GROWTHBOOK_ROLES)), is_required=True),
        "control_rate": _Field(_number, is_required=True),
        "inverse": _Field(_boolean),
        "added_at": _Field(_index),
    }
    values = _fields(table, key, spec)
    return _GROWTHBOOK_ROLES[values.pop("role")], ScriptedMetric(**values)


_GROWTHBOOK_EXPERIMENT: dict[str, _Field] = {
    "id": _Field(_string, is_required=True),
    "name": _Field(_string, is_required=True),
    "tracking_key": _Field(_string),
    "variations": _Field(lambda v, k: _tables(v, k, _variation), is_required=True),
    "weights": _Field(_numbers, is_required=True),
    "metrics": _Field(lambda v, k: _tables(v, k, _growthbook_metric), is_required=True),
    "project": _Field(_string),
    "hypothesis": _Field(_string),
    "owner": _Field(_string),
    "tags": _Field(_strings),
    "datasource_id": _Field(_string),
    "engine": _Field(_choice(get_args(StatsEngine))),
    "users_per_refresh": _Field(_integer),
    "first_results_at": _Field(_index),
    "significant_from": _Field(_index),
    "significant_until": _Field(_index),
    "guardrail_regresses_from": _Field(_index),
    "srm_from": _Field(_index),
    "no_data_between": _Field(_index_pair),
    "is_draft": _Field(_boolean),
    "starts_at": _Field(_index),
    "stops_at": _Field(_index),
    "verdict": _Field(_choice(get_args(Verdict))),
    "archived_at": _Field(_index),
    "new_phase_at": _Field(_index),
    "new_phase_weights": _Field(_numbers),
    "created_seconds_before_start": _Field(_number),
    "refresh_every": _Field(_integer),
}
# ScriptError.field -> the file's key for it (metrics come in one array, tagged by role).
_GROWTHBOOK_KEYS = {field: "metrics" for field in _GROWTHBOOK_ROLES.values()}


def _growthbook_experiment(table: object, key: str, position: int) -> ScriptedExperiment:
    values = _fields(table, key, _GROWTHBOOK_EXPERIMENT)
    values.update(_by_role(values.pop("metrics"), _GROWTHBOOK_ROLES.values()))
    values.setdefault("tracking_key", values["id"])
    try:
        return ScriptedExperiment(**values)
    except ScriptError as error:
        field = _GROWTHBOOK_KEYS.get(error.field, error.field)
        raise _Problem(_join(key, field), str(error)) from None


def _growthbook(table: object, key: str, start: datetime, refresh_seconds: float) -> Scenario:
    spec = {
        "experiments": _Field(lambda v, k: _tables(v, k, _growthbook_experiment), is_required=True)
    }
    experiments = _fields(table, key, spec)["experiments"]
    try:
        return Scenario(
            start=start, refresh_seconds=refresh_seconds, experiments=tuple(experiments)
        )
    except ValueError as error:
        raise _Problem(_join(key, "experiments"), str(error)) from None


# -- Statsig ---------------------------------------------------------------------------------


def _statsig_group(table: object, key: str, position: int) -> dict[str, Any]:
    spec = {
        "name": _Field(_string, is_required=True),
        "size": _Field(_number, is_required=True),
        "id": _Field(_string),
    }
    return _fields(table, key, spec)


def _statsig_metric(table: object, key: str, position: int) -> tuple[str, StatsigMetric]:
    spec = {
        "name": _Field(_string, is_required=True),
        "role": _Field(_choice(tuple(_STATSIG_ROLES)), is_required=True),
        "control_rate": _Field(_number, is_required=True),
        "type": _Field(_string),
        "direction": _Field(_choice(get_args(Direction))),
        "has_negative_sequential_delta": _Field(_boolean),
    }
    values = _fields(table, key, spec)
    return _STATSIG_ROLES[values.pop("role")], StatsigMetric(**values)


_STATSIG_EXPERIMENT: dict[str, _Field] = {
    "id": _Field(_string, is_required=True),
    "name": _Field(_string, is_required=True),
    "groups": _Field(lambda v, k: _tables(v, k, _statsig_group), is_required=True),
    "metrics": _Field(lambda v, k: _tables(v, k, _statsig_metric), is_required=True),
    "description": _Field(_string),
    "hypothesis": _Field(_string),
    "tags": _Field(_strings),
    "owner_name": _Field(_string),
    "id_type": _Field(_string),
    "duration_days": _Field(_integer),
    "default_confidence_interval": _Field(_confidence),
    "sequential_testing": _Field(_boolean),
    "bonferroni_correction": _Field(_boolean),
    "bonferroni_correction_per_metric": _Field(_boolean),
    "benjamini_hochberg_per_variant": _Field(_boolean),
    "benjamini_hochberg_per_metric": _Field(_boolean),
    "benjamini_primary_metrics_only": _Field(_boolean),
    "users_per_refresh": _Field(_integer),
    "started_at": _Field(_started_at),
    "first_results_at": _Field(_index),
    "significant_from": _Field(_index),
    "balance_warning_from": _Field(_index),
    "balance_failed_from": _Field(_index),
    "ends_at": _Field(_index),
    "end_status": _Field(_choice(get_args(EndStatus))),
    "launched_group_index": _Field(_index),
    "decision_reason": _Field(_string),
    "created_seconds_before_start": _Field(_number),
}


def _statsig_experiment(table: object, key: str, position: int) -> StatsigExperiment:
    values = _fields(table, key, _STATSIG_EXPERIMENT)
    experiment_id: str = values["id"]
    groups = tuple(
        StatsigGroup(
            id=group.get("id") or stable_group_id(experiment_id, group["name"]),
            name=group["name"],
            size=group["size"],
        )
        for group in values.pop("groups")
    )
    values.update(_by_role(values.pop("metrics"), _STATSIG_ROLES.values()))
    launched = values.get("launched_group_index")
    if launched is not None and launched >= len(groups):
        raise _Problem(
            _join(key, "launched_group_index"),
            f"expected the position of one of the {len(groups)} groups (from 0), got {launched}",
        )
    try:
        return StatsigExperiment(**values, groups=groups)
    except ValueError as error:
        raise _Problem(key, str(error)) from None


def _statsig(table: object, key: str, start: datetime, refresh_seconds: float) -> StatsigScenario:
    spec = {
        "experiments": _Field(lambda v, k: _tables(v, k, _statsig_experiment), is_required=True)
    }
    experiments = _fields(table, key, spec)["experiments"]
    try:
        return StatsigScenario(
            start=start, refresh_seconds=refresh_seconds, experiments=tuple(experiments)
        )
    except ValueError as error:
        raise _Problem(_join(key, "experiments"), str(error)) from None


# -- the file --------------------------------------------------------------------------------


def _scenario_file(path: Path, document: dict[str, Any]) -> ScenarioFile:
    spec = {
        "timeline": _Field(lambda v, k: _fields(v, k, _TIMELINE), is_required=True),
        "growthbook": _Field(lambda v, k: v),
        "statsig": _Field(lambda v, k: v),
    }
    sections = _fields(document, "", spec)
    if "growthbook" not in sections and "statsig" not in sections:
        raise _Problem("", "expected a [growthbook] or [statsig] section (or both)")
    timeline = sections["timeline"]
    start = timeline["start"]
    refresh_seconds = timeline.get("refresh_seconds", _DEFAULT_REFRESH_SECONDS)
    return ScenarioFile(
        path=path,
        growthbook=(
            _growthbook(sections["growthbook"], "growthbook", start, refresh_seconds)
            if "growthbook" in sections
            else None
        ),
        statsig=(
            _statsig(sections["statsig"], "statsig", start, refresh_seconds)
            if "statsig" in sections
            else None
        ),
    )
