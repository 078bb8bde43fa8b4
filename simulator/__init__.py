"""Fake experimentation platforms for tests and demos: scripted scenarios served over HTTP.

`default_scenario` scripts a handful of experiments on a timeline of analysis refreshes;
`build_growthbook_app` serves a scenario as GrowthBook's REST API v1 (a Starlette app to run
in-process through `httpx.ASGITransport` or on loopback under uvicorn).
`default_statsig_scenario` scripts Statsig experiments (groups, Pulse days, health checks) and
`build_statsig_app` serves them as Statsig's Console API.
`Faults` injects production's faults into either app (5xx bursts, 429 storms, malformed or
drifted bodies, latency, hangs, slow drips, dropped connections, vanishing experiments, looping
pagination) and `RequestLog` records its requests.
`demo_scenarios` scripts the stories `expwatch demo` tells, on both platforms.
`load_scenario_file` reads scenarios for both platforms from a TOML file
(`EXAMPLE_SCENARIO_FILE` scripts every knob).
"""

from simulator.demo_scenarios import DEMO_STORY, DemoScenarios, demo_scenarios
from simulator.faults import (
    ConnectionDroppedError,
    DriftFault,
    DripFault,
    Fault,
    Faults,
    HangFault,
    LatencyFault,
    LoggedRequest,
    MalformedBodyFault,
    PageLoopFault,
    RateLimitFault,
    RequestLog,
    ResetFault,
    Rule,
    StatusFault,
    VanishFault,
    on_item,
    remove_field,
    set_field,
)
from simulator.growthbook import build_growthbook_app
from simulator.scenario import (
    Scenario,
    ScriptedExperiment,
    ScriptedMetric,
    ScriptedSnapshot,
    ScriptedVariation,
    ScriptError,
    default_scenario,
)
from simulator.scenario_file import (
    EXAMPLE_SCENARIO_FILE,
    ScenarioFile,
    ScenarioFileError,
    load_scenario_file,
)
from simulator.statsig import build_statsig_app
from simulator.statsig_experiment import StatsigExperiment, StatsigGroup, StatsigMetric
from simulator.statsig_scenario import StatsigScenario, default_statsig_scenario

__all__ = [
    "DEMO_STORY",
    "EXAMPLE_SCENARIO_FILE",
    "ConnectionDroppedError",
    "DemoScenarios",
    "DriftFault",
    "DripFault",
    "Fault",
    "Faults",
    "HangFault",
    "LatencyFault",
    "LoggedRequest",
    "MalformedBodyFault",
    "PageLoopFault",
    "RateLimitFault",
    "RequestLog",
    "ResetFault",
    "Rule",
    "Scenario",
    "ScenarioFile",
    "ScenarioFileError",
    "ScriptError",
    "ScriptedExperiment",
    "ScriptedMetric",
    "ScriptedSnapshot",
    "ScriptedVariation",
    "StatsigExperiment",
    "StatsigGroup",
    "StatsigMetric",
    "StatsigScenario",
    "StatusFault",
    "VanishFault",
    "build_growthbook_app",
    "build_statsig_app",
    "default_scenario",
    "default_statsig_scenario",
    "demo_scenarios",
    "load_scenario_file",
    "on_item",
    "remove_field",
    "set_field",
]
