"""The same charts as Vega-Lite v5 specifications, for clients that draw their own: plain
dicts (JSON-ready: times as ISO 8601 strings, no NaN or infinity), data inline in
`data.values`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from store import Verdict

from .canvas import INK, LOST, MUTED, OURS, PLATFORM, WON
from .series import ExposureSeries, SrmSeries, Trajectory

__all__ = ["VEGA_LITE_SCHEMA", "exposures_spec", "srm_spec", "trajectory_spec"]

VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"

WIDTH = 640
HEIGHT = 300

Spec = dict[str, Any]


def _finite(value: float | None, digits: int = 10) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def _bounded(value: float | None, low: float, high: float) -> float | None:
    """A band's bound inside the y domain: an unbounded side runs to its edge."""
    if value is None:
        return None
    return round(min(max(value, low), high), 10)


def _domain(values: Sequence[float | None]) -> tuple[float, float]:
    finite = [v for v in values if v is not None and math.isfinite(v)] + [0.0]
    low, high = min(finite), max(finite)
    pad = 0.08 * ((high - low) or abs(high) or 1.0)
    return round(low - pad, 10), round(high + pad, 10)


def _legend() -> Spec:
    return {"title": None, "orient": "bottom", "direction": "vertical", "labelLimit": 0}


def _series(label: str, labels: Sequence[str], colours: Sequence[str]) -> Spec:
    """What a layer adds to be one legend entry: a constant `series` field and a colour
    encoding on it. Every layer names the same scale, so the legend lists them all."""
    return {
        "transform": [{"calculate": json.dumps(label), "as": "series"}],
        "colour": {
            "field": "series",
            "type": "nominal",
            "scale": {"domain": list(labels), "range": list(colours)},
            "legend": _legend(),
        },
    }


def _layer(mark: Spec, encoding: Spec, series: Spec | None = None) -> Spec:
    if series is None:
        return {"mark": mark, "encoding": encoding}
    return {
        "transform": series["transform"],
        "mark": mark,
        "encoding": {**encoding, "color": series["colour"]},
    }


def _time(title: str | None = "results computed at (UTC)") -> Spec:
    """The x encoding: times shown in UTC, whatever the viewer's time zone."""
    return {"field": "time", "type": "temporal", "title": title, "scale": {"type": "utc"}}


TIME_TOOLTIP = {
    "field": "time",
    "type": "temporal",
    "title": "time (UTC)",
    "format": "%Y-%m-%d %H:%M",
    "formatType": "utc",
}


def _base(title: str, subtitle: str | Sequence[str], values: list[dict[str, Any]]) -> Spec:
    return {
        "$schema": VEGA_LITE_SCHEMA,
        "title": {"text": title, "subtitle": subtitle, "anchor": "start"},
        "data": {"values": values},
    }


def trajectory_spec(trajectory: Trajectory) -> Spec:
    """The relative change, the platform's interval and our confidence sequence (as a share
    of the baseline mean, see `Trajectory`) over time, with the significance crossings; two
    panels (relative, absolute) when our sequence cannot be put on the relative scale."""
    t = trajectory
    relative = t.is_relative_scale
    points = t.points
    shown = [p.relative_change for p in points]
    shown += [p.platform_low for p in points] + [p.platform_high for p in points]
    if relative:
        shown += [p.ours_low for p in points] + [p.ours_high for p in points]
    low, high = _domain(shown)
    abs_low, abs_high = _domain(
        [p.our_absolute_change for p in points]
        + [p.ours_absolute_low for p in points]
        + [p.ours_absolute_high for p in points]
    )
    values = [
        {
            "time": p.at.isoformat(),
            "users": p.users,
            "relative_change": _finite(p.relative_change),
            "platform_low": _finite(p.platform_low),
            "platform_high": _finite(p.platform_high),
            "ours_low": _bounded(p.ours_low, low, high) if relative else None,
            "ours_high": _bounded(p.ours_high, low, high) if relative else None,
            "our_absolute_change": _finite(p.our_absolute_change),
            "our_absolute_low": _bounded(p.ours_absolute_low, abs_low, abs_high),
            "our_absolute_high": _bounded(p.ours_absolute_high, abs_low, abs_high),
            "our_verdict": p.our_verdict.value if p.our_verdict else None,
            "platform_verdict": p.platform_verdict.value,
        }
        for p in points
    ]
    ours_label = "expwatch's confidence sequence (anytime-valid" + (
        "; absolute ÷ baseline mean)" if relative else ")"
    )
    platform_label = "platform's interval (fixed horizon)"
    estimate_label = "estimated change"
    crossings = []
    for c in (t.our_crossing, t.platform_crossing):
        if c is not None:
            crossings.append(
                {
                    "time": c.at.isoformat(),
                    "verdict": c.verdict.value,
                    "by": c.by,
                    "label": f"{c.by}: {c.verdict.value} from {c.at:%b %d %H:%M}",
                    "colour": PLATFORM
                    if c.by == "platform"
                    else (WON if c.verdict is Verdict.WON else LOST),
                }
            )
    labels = [ours_label, platform_label, estimate_label, *(c["label"] for c in crossings)]
    colours = [OURS, PLATFORM, INK, *(c["colour"] for c in crossings)]
    y_relative = {
        "type": "quantitative",
        "title": f"change vs {t.baseline_name} (%)",
        "axis": {"format": "%"},
        "scale": {"domain": [low, high]},
    }
    tooltip = [
        TIME_TOOLTIP,
        {"field": "users", "type": "quantitative", "format": ",.0f"},
        {"field": "relative_change", "type": "quantitative", "format": "+.1%"},
        {"field": "platform_low", "type": "quantitative", "format": "+.1%"},
        {"field": "platform_high", "type": "quantitative", "format": "+.1%"},
        {"field": "our_verdict", "type": "nominal"},
        {"field": "platform_verdict", "type": "nominal"},
    ]
    ours_series = _series(ours_label, labels, colours)
    platform_series = _series(platform_label, labels, colours)
    estimate_series = _series(estimate_label, labels, colours)
    area = {"type": "area", "opacity": 0.25, "clip": True}
    top: list[Spec] = []
    if relative:
        top.append(
            _layer(
                area,
                {"y": {"field": "ours_low", **y_relative}, "y2": {"field": "ours_high"}},
                ours_series,
            )
        )
    for bound in ("platform_low", "platform_high"):
        top.append(
            _layer(
                {"type": "line", "strokeDash": [5, 3], "clip": True},
                {"y": {"field": bound, **y_relative}},
                platform_series,
            )
        )
    top.append(
        _layer(
            {"type": "line", "point": True, "strokeWidth": 2},
            {"y": {"field": "relative_change", **y_relative}, "tooltip": tooltip},
            estimate_series,
        )
    )
    top.append(_layer({"type": "rule", "color": INK}, {"y": {"datum": 0}}))
    crossing_layer = {
        "data": {"values": crossings},
        "mark": {"type": "rule", "strokeWidth": 2},
        "encoding": {
            "x": _time(),
            "color": {
                "field": "label",
                "type": "nominal",
                "scale": {"domain": labels, "range": colours},
                "legend": _legend(),
            },
            "strokeDash": {
                "field": "by",
                "type": "nominal",
                "scale": {"domain": ["expwatch", "platform"], "range": [[1, 0], [2, 3]]},
                "legend": None,
            },
            "tooltip": [
                {"field": "by", "type": "nominal"},
                {"field": "verdict", "type": "nominal"},
                TIME_TOOLTIP,
            ],
        },
    }
    if relative or any(c["by"] == "platform" for c in crossings):
        visible = crossings if relative else [c for c in crossings if c["by"] == "platform"]
        top.append({**crossing_layer, "data": {"values": visible}})
    subtitle = [
        f"{t.experiment_name} ({t.experiment_id}) · {t.role.value} metric, "
        + ("higher is better" if t.higher_is_better else "lower is better")
    ]
    spec = _base(f"{t.metric_name}: {t.variation_name} vs {t.baseline_name}", subtitle, values)
    if relative:
        spec.update({"width": WIDTH, "height": HEIGHT, "encoding": {"x": _time()}, "layer": top})
        return spec
    y_absolute = {
        "type": "quantitative",
        "title": f"{t.variation_name} − {t.baseline_name} (metric units)",
        "scale": {"domain": [abs_low, abs_high]},
    }
    bottom: list[Spec] = [
        _layer(
            area,
            {
                "y": {"field": "our_absolute_low", **y_absolute},
                "y2": {"field": "our_absolute_high"},
            },
            ours_series,
        ),
        _layer(
            {"type": "line", "point": True, "strokeWidth": 2},
            {"y": {"field": "our_absolute_change", **y_absolute}},
            estimate_series,
        ),
        _layer({"type": "rule", "color": INK}, {"y": {"datum": 0}}),
    ]
    ours_crossings = [c for c in crossings if c["by"] == "expwatch"]
    if ours_crossings:
        bottom.append({**crossing_layer, "data": {"values": ours_crossings}})
    spec["vconcat"] = [
        {"width": WIDTH, "height": HEIGHT // 2, "encoding": {"x": _time(None)}, "layer": top},
        {"width": WIDTH, "height": HEIGHT // 2, "encoding": {"x": _time()}, "layer": bottom},
    ]
    spec["resolve"] = {"scale": {"x": "shared"}}
    return spec


def srm_spec(series: SrmSeries) -> Spec:
    """The SRM p-values over time on a log scale, with our threshold."""
    s = series
    ours_label = "expwatch's sequential test (running minimum)"
    other_label = (
        "platform's SRM p-value (fixed-horizon chi-square)"
        if s.shows_platform
        else "chi-square p-value (fixed horizon, for reference)"
    )
    alpha = s.alpha
    all_values = [
        v
        for p in s.points
        for v in (p.our_p_value, p.platform_p_value if s.shows_platform else p.chi_square_p_value)
        if v is not None and v > 0
    ]
    floor = max(10.0 ** (math.floor(math.log10(min([*all_values, alpha]))) - 1), 1e-16)
    values = []
    for p in s.points:
        other = p.platform_p_value if s.shows_platform else p.chi_square_p_value
        for test, value in ((ours_label, p.our_p_value), (other_label, other)):
            if value is not None:
                values.append(
                    {"time": p.at.isoformat(), "test": test, "p_value": max(value, floor)}
                )
    detected = s.detected_at
    labels = [ours_label, other_label, f"threshold α = {alpha:g}"]
    colours = [OURS, PLATFORM if s.shows_platform else MUTED, LOST]
    layers: list[Spec] = [
        {
            "mark": {"type": "line", "point": True},
            "encoding": {
                "x": _time(),
                "y": {
                    "field": "p_value",
                    "type": "quantitative",
                    "title": "p-value (log scale)",
                    "scale": {"type": "log", "domain": [floor, 1]},
                    "axis": {"format": ".0e"},
                },
                "color": {
                    "field": "test",
                    "type": "nominal",
                    "scale": {"domain": labels, "range": colours},
                    "legend": {
                        "title": None,
                        "orient": "bottom",
                        "direction": "vertical",
                        "labelLimit": 0,
                    },
                },
                "tooltip": [
                    TIME_TOOLTIP,
                    {"field": "test", "type": "nominal"},
                    {"field": "p_value", "type": "quantitative", "format": ".3g"},
                ],
            },
        },
        _layer(
            {"type": "rule", "strokeDash": [6, 4]},
            {"y": {"datum": alpha}},
            _series(labels[2], labels, colours),
        ),
    ]
    if detected is not None:
        layers.append(
            {
                "data": {"values": [{"time": detected.isoformat(), "label": "SRM detected"}]},
                "mark": {"type": "rule", "color": LOST, "strokeWidth": 2},
                "encoding": {"x": _time(), "tooltip": [{"field": "label", "type": "nominal"}]},
            }
        )
    state = f"mismatch detected {detected:%Y-%m-%d %H:%M} UTC" if detected else "no mismatch"
    spec = _base(
        f"Sample-ratio test: {state}",
        [
            f"{s.experiment_name} ({s.experiment_id})",
            "below the red line, the split of users differs from the configured one",
        ],
        values,
    )
    spec.update({"width": WIDTH, "height": HEIGHT, "layer": layers})
    return spec


def exposures_spec(series: ExposureSeries) -> Spec:
    """Users per variation and their shares over time, beside the configured split."""
    s = series
    names = [name for _, name in s.variations]
    values = []
    for p in s.points:
        total = sum(p.users.values())
        for vid, name in s.variations:
            if vid not in p.users:
                continue
            values.append(
                {
                    "time": p.at.isoformat(),
                    "variation": name,
                    "users": p.users[vid],
                    "share": round(p.users[vid] / total, 10) if total > 0 else None,
                    "expected_users": _finite(s.expected(p, vid)),
                    "expected_share": _finite(s.weights.get(vid)) if s.weights else None,
                }
            )
    colour = {
        "field": "variation",
        "type": "nominal",
        "scale": {"domain": names},
        "legend": _legend(),
    }
    tooltip = [
        TIME_TOOLTIP,
        {"field": "variation", "type": "nominal"},
        {"field": "users", "type": "quantitative", "format": ",.0f"},
        {"field": "share", "type": "quantitative", "format": ".2%"},
        {"field": "expected_share", "type": "quantitative", "format": ".0%"},
    ]

    def panel(field: str, expected: str, title: str, height: int, fmt: str) -> Spec:
        layers: list[Spec] = [
            {
                "mark": {"type": "line", "point": True, "strokeWidth": 2},
                "encoding": {
                    "y": {
                        "field": field,
                        "type": "quantitative",
                        "title": title,
                        "axis": {"format": fmt},
                        "scale": {"zero": field == "users"},
                    },
                    "color": colour,
                    "tooltip": tooltip,
                },
            }
        ]
        if s.weights is not None:
            layers.append(
                {
                    "mark": {"type": "line", "strokeDash": [5, 3], "strokeWidth": 1.2},
                    "encoding": {"y": {"field": expected, "type": "quantitative"}, "color": colour},
                }
            )
        return {"width": WIDTH, "height": height, "encoding": {"x": _time()}, "layer": layers}

    total = sum(s.points[-1].users.values()) if s.points else 0.0
    spec = _base(
        f"Users per variation: {total:,.0f} in all",
        [
            f"{s.experiment_name} ({s.experiment_id})",
            "dashed: what the configured split expects",
        ],
        values,
    )
    spec["vconcat"] = [
        panel("users", "expected_users", "users exposed (cumulative)", HEIGHT * 3 // 5, ",.0f"),
        panel("share", "expected_share", "share of users (%)", HEIGHT * 2 // 5, ".1%"),
    ]
    return spec
