"""Fake experimentation platforms for tests and demos: scripted scenarios served over HTTP.

`default_scenario` scripts a handful of experiments on a timeline of analysis refreshes;
`build_growthbook_app` serves a scenario as GrowthBook's REST API v1 (a Starlette app to run
in-process through `httpx.ASGITransport` or on loopback under uvicorn).
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

__all__ = [
    "Scenario",
    "ScriptedExperiment",
    "ScriptedMetric",
    "ScriptedSnapshot",
    "ScriptedVariation",
    "build_growthbook_app",
    "default_scenario",
]
