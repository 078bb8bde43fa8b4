"""Charts of an experiment's history, drawn from store records: PNG (matplotlib, for email
alerts, HTML reports and MCP image content) and Vega-Lite v5 specifications (for clients that
draw their own), each showing the same numbers.

- a metric's trajectory for one treatment: the platform's estimate and interval beside
  expwatch's confidence sequence, and where each verdict became significant (`Trajectory`);
- the sample-ratio tests over time (`SrmSeries`);
- users per variation over time against the configured split (`ExposureSeries`).

Build the series from records (`Trajectory.of`, `SrmSeries.of`, `ExposureSeries.of`) or read
them from a store (`load_chart_set`, `load_trajectory`), then draw with `to_png` or describe
with `to_vega_lite`. Drawing is synchronous and takes a few hundred milliseconds: async callers
run it in a worker thread. Importing this package does not import matplotlib.
"""

from __future__ import annotations

from typing import Any

from .load import CHARTED_KINDS, Chart, ChartSet, load_chart_set, load_event_chart, load_trajectory
from .png import exposures_png, srm_png, trajectory_png
from .series import (
    Crossing,
    ExposurePoint,
    ExposureSeries,
    SrmPoint,
    SrmSeries,
    Trajectory,
    TrajectoryPoint,
)
from .vega import VEGA_LITE_SCHEMA, exposures_spec, srm_spec, trajectory_spec

__all__ = [
    "CHARTED_KINDS",
    "VEGA_LITE_SCHEMA",
    "Chart",
    "ChartSet",
    "Crossing",
    "ExposurePoint",
    "ExposureSeries",
    "SrmPoint",
    "SrmSeries",
    "Trajectory",
    "TrajectoryPoint",
    "exposures_png",
    "exposures_spec",
    "load_chart_set",
    "load_event_chart",
    "load_trajectory",
    "srm_png",
    "srm_spec",
    "to_png",
    "to_vega_lite",
    "trajectory_png",
    "trajectory_spec",
]


def to_png(chart: Chart) -> bytes:
    """The chart as a PNG image."""
    if isinstance(chart, Trajectory):
        return trajectory_png(chart)
    if isinstance(chart, SrmSeries):
        return srm_png(chart)
    return exposures_png(chart)


def to_vega_lite(chart: Chart) -> dict[str, Any]:
    """The chart as a Vega-Lite v5 specification with its data inline."""
    if isinstance(chart, Trajectory):
        return trajectory_spec(chart)
    if isinstance(chart, SrmSeries):
        return srm_spec(chart)
    return exposures_spec(chart)
