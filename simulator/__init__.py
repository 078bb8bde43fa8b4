"""Fake experimentation platforms for tests and demos: scripted scenarios served over HTTP.

`default_scenario` scripts a handful of experiments on a timeline of analysis refreshes;
`build_growthbook_app` serves a scenario as GrowthBook's REST API v1 (a Starlette app to run
in-process through `httpx.ASGITransport` or on loopback under uvicorn).
`default_statsig_scenario` scripts Statsig experiments (groups, Pulse days, health checks) and
`build_statsig_app` serves them as Statsig's Console API.
"""

from simulator.growthbook import build_growthbook_app
from simulator.scenario import (
    Scenario,
    ScriptedExperiment,
    ScriptedMetric,
    ScriptedSnapshot,
    ScriptedVariation,
    default_scenario,
)
from simulator.statsig import build_statsig_app
from simulator.statsig_experiment import StatsigExperiment, StatsigGroup, StatsigMetric
from simulator.statsig_scenario import StatsigScenario, default_statsig_scenario

__all__ = [
    "Scenario",
    "ScriptedExperiment",
    "ScriptedMetric",
    "ScriptedSnapshot",
    "ScriptedVariation",
    "StatsigExperiment",
    "StatsigGroup",
    "StatsigMetric",
    "StatsigScenario",
    "build_growthbook_app",
    "build_statsig_app",
    "default_scenario",
    "default_statsig_scenario",
]
