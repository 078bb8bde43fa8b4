"""PNG charts with matplotlib (Agg, no display; no pyplot, so no global state and safe to call
from a worker thread). matplotlib is imported inside the functions: importing `charts` stays
cheap for processes that never draw.

Every chart says what and which experiment in its title, labels its axes with units, has a
legend, and is about 900 × 500 pixels (under 100 KB), readable in an email.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from store import MetricRole, Verdict

from .canvas import (
    HEIGHT_INCHES,
    INK,
    LOST,
    MUTED,
    OURS,
    PLATFORM,
    VARIATION_COLOURS,
    WON,
    clip,
    date_numbers,
    legend,
    limits,
    mark,
    nan,
    new_figure,
    one_at_a_time,
    percent,
    png_bytes,
    style,
    time_axis,
    titles,
)
from .series import Crossing, ExposurePoint, ExposureSeries, SrmSeries, Trajectory

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["exposures_png", "srm_png", "trajectory_png"]

# -- (a) a metric's trajectory ------------------------------------------------------------------


def _crossing_label(crossing: Crossing) -> str:
    return f"{crossing.by}: {crossing.verdict.value} from {crossing.at:%b %d %H:%M}"


def _crossing_colour(crossing: Crossing) -> str:
    if crossing.by == "platform":
        return PLATFORM
    return WON if crossing.verdict is Verdict.WON else LOST


def _subtitle(t: Trajectory) -> str:
    direction = "higher is better" if t.higher_is_better else "lower is better"
    role = {MetricRole.GOAL: "goal", MetricRole.GUARDRAIL: "guardrail"}.get(t.role, "secondary")
    first = f"{t.experiment_name} ({t.experiment_id})  ·  {role} metric, {direction}"
    if not t.points:
        return f"{first}\nno results yet"
    last = t.points[-1]
    if t.is_relative_scale and last.has_ours:
        ours = f"expwatch [{percent(last.ours_low)}, {percent(last.ours_high)}]"
    else:
        ours = "expwatch " + (last.our_verdict.value if last.our_verdict else "not judged yet")
    return (
        f"{first}\nlatest ({last.at:%Y-%m-%d %H:%M} UTC): {percent(last.relative_change)}  ·  "
        f"platform [{percent(last.platform_low)}, {percent(last.platform_high)}]  ·  {ours}"
    )


def _our_band_label(t: Trajectory, *, relative: bool) -> str:
    sided = "one-sided, " if t.is_one_sided else ""
    scale = "; absolute ÷ baseline mean" if relative else ""
    return f"expwatch's confidence sequence ({sided}anytime-valid{scale})"


@one_at_a_time
def trajectory_png(trajectory: Trajectory) -> bytes:
    """The metric's relative change over time for one treatment against the baseline: the
    platform's estimate and interval, expwatch's confidence sequence (on the baseline's
    scale, see `Trajectory`), and where each verdict became significant. Without a usable
    baseline mean, a second panel shows our sequence on the absolute scale."""
    from matplotlib.ticker import PercentFormatter

    t = trajectory
    points = t.points
    times = date_numbers([p.at for p in points])
    relative = t.is_relative_scale
    figure = new_figure(HEIGHT_INCHES if relative else HEIGHT_INCHES + 2.2)
    axes: list[Axes] = (
        [figure.add_subplot()] if relative else list(figure.subplots(2, 1, sharex=True))
    )
    ax = axes[0]
    titles(figure, ax, f"{t.metric_name}: {t.variation_name} vs {t.baseline_name}", _subtitle(t))
    crossings = [c for c in (t.our_crossing, t.platform_crossing) if c is not None]
    if not relative:
        crossings = [c for c in crossings if c.by == "platform"]
    shown = [p.relative_change for p in points]
    shown += [p.platform_low for p in points] + [p.platform_high for p in points]
    if relative:
        shown += [p.ours_low for p in points] + [p.ours_high for p in points]
    low, high = limits(shown, rows=len(crossings))
    if relative:
        ax.fill_between(
            times,
            [clip(p.ours_low, low, high) for p in points],
            [clip(p.ours_high, low, high) for p in points],
            color=OURS,
            alpha=0.22,
            linewidth=0,
            label=_our_band_label(t, relative=True),
        )
    for bound, label in (
        ("platform_low", "platform's interval (fixed horizon: not valid when checked repeatedly)"),
        ("platform_high", None),
    ):
        ax.plot(
            times,
            [nan(getattr(p, bound)) for p in points],
            color=PLATFORM,
            linewidth=1.3,
            linestyle="--",
            label=label,
        )
    if len(points) == 1:  # a band needs two snapshots: show the intervals as bars
        p = points[0]
        if relative and p.has_ours:
            ours_bar = (clip(p.ours_low, low, high), clip(p.ours_high, low, high))
            ax.vlines(times, *ours_bar, color=OURS, alpha=0.22, linewidth=18)
        ax.vlines(times, nan(p.platform_low), nan(p.platform_high), color=PLATFORM, linestyle="--")
    ax.plot(
        times,
        [nan(p.relative_change) for p in points],
        color=INK,
        linewidth=2.0,
        marker="o",
        markersize=4,
        label="estimated change",
    )
    ax.axhline(0, color=INK, linewidth=0.9, zorder=1)
    ax.set_ylim(low, high)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.set_ylabel(f"change vs {t.baseline_name} (%)", color=MUTED, fontsize=9.5)
    for row, crossing in enumerate(crossings):
        mark(
            ax,
            crossing.at,
            _crossing_label(crossing),
            _crossing_colour(crossing),
            dotted=crossing.by == "platform",
            row=row,
        )
    if not relative:
        _absolute_panel(axes[1], t, times)
    for each in axes:
        style(each)
    time_axis(axes[-1], times)
    legend(figure, axes, columns=1 if relative else 2)
    return png_bytes(figure)


def _absolute_panel(ax: Axes, t: Trajectory, times: Any) -> None:
    """Our confidence sequence on its own scale (when the baseline mean cannot convert it)."""
    points = t.points
    crossing = t.our_crossing
    low, high = limits(
        [p.our_absolute_change for p in points]
        + [p.ours_absolute_low for p in points]
        + [p.ours_absolute_high for p in points],
        rows=1 if crossing else 0,
    )
    ax.fill_between(
        times,
        [clip(p.ours_absolute_low, low, high) for p in points],
        [clip(p.ours_absolute_high, low, high) for p in points],
        color=OURS,
        alpha=0.22,
        linewidth=0,
        label=_our_band_label(t, relative=False),
    )
    ax.plot(
        times,
        [nan(p.our_absolute_change) for p in points],
        color=INK,
        linewidth=2.0,
        marker="o",
        markersize=4,
        label="estimated difference",
    )
    ax.axhline(0, color=INK, linewidth=0.9, zorder=1)
    ax.set_ylim(low, high)
    ax.set_ylabel(
        f"{t.variation_name} − {t.baseline_name}\n(metric units)", color=MUTED, fontsize=9.5
    )
    if crossing is not None:
        mark(
            ax,
            crossing.at,
            _crossing_label(crossing),
            _crossing_colour(crossing),
            dotted=False,
            row=0,
        )


# -- (b) SRM over time --------------------------------------------------------------------------


def _log_floor(values: Sequence[float], alpha: float) -> float:
    """A decade below the smallest positive p-value (and the threshold); at least 1e-16."""
    low = min([v for v in values if v > 0] + [alpha])
    return max(10.0 ** (math.floor(math.log10(low)) - 1), 1e-16)


@one_at_a_time
def srm_png(series: SrmSeries) -> bytes:
    """The SRM p-values over time on a log scale, with our test's threshold and the moment
    it fired."""
    s = series
    points = s.points
    times = date_numbers([p.at for p in points])
    alpha = s.alpha
    ours = [p.our_p_value for p in points]
    others = [p.platform_p_value if s.shows_platform else p.chi_square_p_value for p in points]
    floor = _log_floor([v for v in ours + others if v is not None], alpha)
    figure = new_figure()
    ax = figure.add_subplot()
    detected = s.detected_at
    latest = next((v for v in reversed(ours) if v is not None), None)
    state = (
        f"mismatch detected {detected:%Y-%m-%d %H:%M} UTC"
        if detected is not None
        else "no mismatch" + (f" (latest p = {latest:.3g})" if latest is not None else "")
    )
    titles(
        figure,
        ax,
        f"Sample-ratio test: {state}",
        f"{s.experiment_name} ({s.experiment_id})\nbelow the red line, the split of users "
        "between variations differs from the configured one",
    )
    ax.axhspan(floor, alpha, color=LOST, alpha=0.07, linewidth=0)
    ax.axhline(alpha, color=LOST, linewidth=1.3, linestyle="--", label=f"threshold α = {alpha:g}")
    ax.plot(
        times,
        [max(v, floor) if v is not None else math.nan for v in others],
        color=PLATFORM if s.shows_platform else MUTED,
        linewidth=1.4,
        linestyle="--",
        marker="s",
        markersize=3.5,
        label="platform's SRM p-value (fixed-horizon chi-square)"
        if s.shows_platform
        else "chi-square p-value (fixed horizon, for reference)",
    )
    ax.plot(
        times,
        [max(v, floor) if v is not None else math.nan for v in ours],
        color=OURS,
        linewidth=2.2,
        marker="o",
        markersize=4,
        label="expwatch's sequential test (running minimum, valid at every look)",
    )
    if detected is not None:
        mark(ax, detected, "SRM detected", LOST, dotted=False, row=0)
    ax.set_yscale("log")
    ax.set_ylim(floor, 1.6)
    ax.set_ylabel("p-value (log scale)", color=MUTED, fontsize=9.5)
    style(ax)
    time_axis(ax, times)
    legend(figure, [ax], columns=1)
    return png_bytes(figure)


# -- (c) exposures ------------------------------------------------------------------------------


def _total(point: ExposurePoint) -> float:
    return sum(point.users.values())


def _share(point: ExposurePoint, variation_id: str) -> float:
    total = _total(point)
    return point.users.get(variation_id, math.nan) / total if total > 0 else math.nan


@one_at_a_time
def exposures_png(series: ExposureSeries) -> bytes:
    """Users per variation over time (top) and each variation's share of them against the
    configured split (bottom), where a sample-ratio mismatch shows at a glance."""
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    s = series
    points = s.points
    times = date_numbers([p.at for p in points])
    figure = new_figure(HEIGHT_INCHES + 1.0)
    ax, share_ax = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    total = _total(points[-1]) if points else 0.0
    split = ""
    if points and total > 0:
        split = "\nlatest split: " + ", ".join(
            f"{name} {_share(points[-1], vid):.1%}"
            + (f" (expected {s.weights[vid]:.0%})" if s.weights and vid in s.weights else "")
            for vid, name in s.variations
        )
    titles(
        figure,
        ax,
        f"Users per variation: {total:,.0f} in all",
        f"{s.experiment_name} ({s.experiment_id}){split}",
    )
    colours = {
        vid: VARIATION_COLOURS[i % len(VARIATION_COLOURS)]
        for i, (vid, _) in enumerate(s.variations)
    }
    for vid, name in s.variations:
        line: dict[str, Any] = {
            "color": colours[vid],
            "linewidth": 2.0,
            "marker": "o",
            "markersize": 4,
        }
        ax.plot(times, [p.users.get(vid, math.nan) for p in points], label=name, **line)
        share_ax.plot(times, [_share(p, vid) for p in points], **line)
    if s.weights is not None:
        # One dashed line per distinct expected share (a 50/50 split has one, not two).
        by_share: dict[float, list[str]] = {}
        for vid, _ in s.variations:
            by_share.setdefault(round(s.weights[vid], 6), []).append(vid)
        for share, vids in by_share.items():
            colour = colours[vids[0]] if len(vids) == 1 else MUTED
            names = ", ".join(n for v, n in s.variations if v in vids)
            ax.plot(
                times,
                [_total(p) * share for p in points],
                color=colour,
                linewidth=1.2,
                linestyle="--",
                label=f"expected by the configured split ({share:.0%}: {names})",
            )
            share_ax.axhline(share, color=colour, linewidth=1.2, linestyle="--")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.set_ylabel("users exposed (cumulative)", color=MUTED, fontsize=9.5)
    share_ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=1))
    share_ax.set_ylabel("share of users (%)", color=MUTED, fontsize=9.5)
    for each in (ax, share_ax):
        style(each)
    time_axis(share_ax, times)
    legend(figure, [ax], columns=2)
    return png_bytes(figure)


def _thousands(value: float, _position: Any) -> str:
    return f"{value:,.0f}"
