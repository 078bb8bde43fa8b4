"""What every PNG chart shares: size, colours, titles, axes, legend, and one drawing at a
time. matplotlib is imported inside the functions (no pyplot: no global figure state), so
importing this module costs nothing."""

from __future__ import annotations

import functools
import io
import math
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

WIDTH_INCHES = 9.0
HEIGHT_INCHES = 5.0
DPI = 100

INK = "#1f2328"
MUTED = "#57606a"
GRID = "#d8dee4"
OURS = "#0969da"
PLATFORM = "#d4700a"
WON = "#1a7f37"
LOST = "#cf222e"
VARIATION_COLOURS = ("#57606a", "#0969da", "#8250df", "#bf3989", "#1a7f37", "#d4700a")
"""Baseline grey, then one colour per treatment."""


T = TypeVar("T")

_DRAWING = threading.Lock()


def one_at_a_time(draw: Callable[[T], bytes]) -> Callable[[T], bytes]:
    """Figures of their own share matplotlib's module-level caches (fonts, text layout):
    draw one at a time, whichever thread asks."""

    @functools.wraps(draw)
    def drawn(chart: T) -> bytes:
        with _DRAWING:
            return draw(chart)

    return drawn


# -- shared layout ------------------------------------------------------------------------------


def new_figure(height_inches: float = HEIGHT_INCHES) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_INCHES, height_inches), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def titles(figure: Figure, ax: Axes, title: str, subtitle: str) -> None:
    """A bold title (what the chart says) and a grey subtitle (which experiment, latest)."""
    figure.suptitle(title, x=0.01, ha="left", fontsize=13, fontweight="bold", color=INK)
    ax.set_title(subtitle, loc="left", fontsize=9.5, color=MUTED, pad=8)


def style(ax: Axes) -> None:
    ax.grid(True, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(MUTED)
    ax.tick_params(colors=MUTED, labelsize=9)


def time_axis(ax: Axes, times: Any) -> None:
    """Dates on the x axis; a lone snapshot gets a day either side (matplotlib would span
    years), no snapshot at all a note instead of ticks."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    ax.set_xlabel("results computed at (UTC)", color=MUTED, fontsize=9.5)
    if len(times) == 0:
        ax.set_xticks([])
        ax.text(0.5, 0.5, "no results yet", transform=ax.transAxes, ha="center", color=MUTED)
        return
    if len(times) == 1:
        ax.set_xlim(times[0] - 1.0, times[0] + 1.0)  # date numbers count days
    # matplotlib's stubs leave these two untyped.
    locator = AutoDateLocator(minticks=4, maxticks=9)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    formatter = ConciseDateFormatter(locator, show_offset=True)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(formatter)


def legend(figure: Figure, axes: Sequence[Axes], *, columns: int) -> None:
    """One legend for the whole figure, under the plots."""
    handles: list[Any] = []
    labels: list[str] = []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    figure.legend(
        handles,
        labels,
        loc="outside lower center",
        ncol=columns,
        frameon=False,
        fontsize=9,
        labelcolor=INK,
    )


def date_numbers(times: Sequence[datetime]) -> Any:
    """Times as matplotlib's date numbers (what its typed plotting functions take)."""
    from matplotlib.dates import date2num

    return date2num(list(times))  # type: ignore[no-untyped-call]  # untyped in the stubs


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def mark(ax: Axes, at: datetime, label: str, colour: str, *, dotted: bool, row: int) -> None:
    """A vertical line at `at`, labelled in the headroom above the data."""
    x = float(date_numbers([at])[0])
    ax.axvline(x, color=colour, linewidth=1.4, linestyle=":" if dotted else "-", zorder=1)
    ax.annotate(
        f" {label} ",
        xy=(x, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(4, -5 - 16 * row),
        textcoords="offset points",
        ha="left",
        va="top",
        fontsize=8.5,
        color="white",
        fontweight="bold",
        bbox={"boxstyle": "round,pad=0.25", "facecolor": colour, "edgecolor": "none"},
    )


def limits(values: Sequence[float | None], *, rows: int) -> tuple[float, float]:
    """Y limits around the finite `values` and zero, with headroom for `rows` labels."""
    finite = [v for v in values if v is not None and math.isfinite(v)] + [0.0]
    low, high = min(finite), max(finite)
    span = (high - low) or abs(high) or 1.0
    return low - 0.05 * span, high + span * (0.06 + 0.11 * rows)


def nan(value: float | None) -> float:
    return math.nan if value is None else value


def clip(value: float | None, low: float, high: float) -> float:
    """A band's bound inside the axis: unbounded sides run to the edge."""
    if value is None:
        return math.nan
    return min(max(value, low), high)


def percent(value: float | None) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "−∞" if value < 0 else "+∞"
    return f"{value * 100:+.1f} %"
