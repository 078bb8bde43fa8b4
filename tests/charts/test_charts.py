"""The charts package on records built by hand: what each series derives (our interval on the
baseline's scale, crossings, one-sided bounds, SRM detection, expected splits), the PNGs and
Vega-Lite specs drawn from them, and that importing it does not load matplotlib."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from charts import (
    ExposureSeries,
    SrmSeries,
    Trajectory,
    load_chart_set,
    to_png,
    to_vega_lite,
)
from store import (
    Experiment,
    MetricPoint,
    MetricResult,
    MetricRole,
    OurSrm,
    Snapshot,
    Store,
    StoredSnapshot,
    UnknownExperiment,
    Variation,
    VariationResult,
    Verdict,
    sqlite_url,
)
from tests.charts.checks import check_readable_png, check_vega_lite, png_size

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EXPERIMENT = Experiment(
    source="gb",
    experiment_id="exp_1",
    name="Checkout redesign",
    status="running",
    variations=(
        Variation(variation_id="v0", name="Control", weight=0.5),
        Variation(variation_id="v1", name="One-page", weight=0.5),
    ),
)
METRIC = MetricResult(metric_id="met_conv", metric_name="Conversion", role=MetricRole.GOAL)


def point(
    day: int,
    *,
    mean: float | None = 0.1,
    change: float | None = 0.01,
    low: float | None = -0.01,
    high: float | None = 0.03,
    ours: Verdict | None = Verdict.INCONCLUSIVE,
    platform: Verdict = Verdict.INCONCLUSIVE,
) -> MetricPoint:
    at = T0 + timedelta(days=day)
    return MetricPoint(
        snapshot_id=day,
        fetched_at=at + timedelta(minutes=5),
        upstream_updated_at=at,
        users=1000.0 * day,
        mean=mean,
        relative_change=None if change is None else change / 0.1,
        ci_low=-0.1,
        ci_high=0.3,
        p_value=None,
        chance_to_win=None,
        platform_verdict=platform,
        our_verdict=ours,
        our_p_value=0.5,
        absolute_change=change,
        absolute_ci_low=low,
        absolute_ci_high=high,
    )


def baseline(days: range, *, mean: float | None = 0.1) -> list[MetricPoint]:
    return [point(d, mean=mean, platform=Verdict.BASELINE, ours=None) for d in days]


def trajectory(treatment: list[MetricPoint], *, mean: float | None = 0.1) -> Trajectory:
    days = range(1, len(treatment) + 1)
    return Trajectory.of(
        EXPERIMENT,
        METRIC,
        "v1",
        treatment=treatment,
        baseline=baseline(days, mean=mean),
        baseline_id="v0",
    )


def snapshot(day: int, control: float, treatment: float, srm_p: float | None) -> StoredSnapshot:
    at = T0 + timedelta(days=day)
    return StoredSnapshot(
        id=day,
        fetched_at=at,
        last_checked_at=at,
        content_hash=str(day),
        snapshot=Snapshot(
            source="gb",
            experiment_id="exp_1",
            upstream_updated_at=at,
            srm_p_value=srm_p,
            our_srm=None
            if srm_p is None
            else OurSrm(p_value=min(1.0, srm_p * 10), chi_square_p_value=srm_p),
            metrics=(
                METRIC.model_copy(
                    update={
                        "variations": (
                            VariationResult(variation_id="v0", users=control),
                            VariationResult(variation_id="v1", users=treatment),
                        )
                    }
                ),
            ),
        ),
    )


def test_our_interval_is_shown_on_the_baseline_scale_and_crossings_start_the_current_run() -> None:
    """Our absolute bounds divided by the baseline mean give the relative band; the crossing
    is the first snapshot of the current significant run, ours and the platform's apart."""
    t = trajectory(
        [
            point(1, platform=Verdict.WON),
            point(2, low=0.002, ours=Verdict.WON, platform=Verdict.WON),
            point(3, low=-0.001, ours=Verdict.INCONCLUSIVE, platform=Verdict.WON),
            point(4, low=0.004, ours=Verdict.WON, platform=Verdict.WON),
        ]
    )
    assert t.is_relative_scale and not t.is_one_sided
    assert t.points[1].ours_low == pytest.approx(0.02)
    assert t.points[1].ours_high == pytest.approx(0.3)
    assert t.our_crossing is not None and t.our_crossing.at == T0 + timedelta(days=4)
    assert t.platform_crossing is not None and t.platform_crossing.at == T0 + timedelta(days=1)
    assert t.title == "Conversion: One-page vs Control — Checkout redesign"


def test_a_guardrail_sequence_is_one_sided_and_runs_to_the_edge_of_the_chart() -> None:
    """A missing bound of an interval we have is unbounded (±inf), not missing; the spec
    clips it to the axis so the JSON holds no infinity."""
    t = trajectory([point(d, low=None) for d in (1, 2, 3)])
    assert t.is_one_sided
    assert t.points[0].ours_low == -math.inf and t.points[0].ours_absolute_low == -math.inf
    spec = to_vega_lite(t)
    json.dumps(spec, allow_nan=False)
    rows = spec["data"]["values"]
    assert rows[0]["ours_low"] == spec["layer"][0]["encoding"]["y"]["scale"]["domain"][0]
    check_vega_lite(spec)
    check_readable_png(to_png(t))


def test_without_a_positive_baseline_mean_our_sequence_gets_its_own_absolute_panel() -> None:
    """A baseline mean of zero cannot convert our bounds: the PNG grows a second panel and
    the spec becomes two stacked views, the lower one on the absolute scale."""
    t = trajectory([point(1, ours=Verdict.WON, low=0.001), point(2)], mean=0.0)
    assert not t.is_relative_scale
    assert t.points[0].ours_low is None
    spec = to_vega_lite(t)
    check_vega_lite(spec)
    lower = spec["vconcat"][1]["layer"][0]["encoding"]["y"]
    assert lower["field"] == "our_absolute_low" and "metric units" in lower["title"]
    width, height = png_size(to_png(t))
    assert width == 900 and height > 600


def test_a_lone_snapshot_draws_its_intervals_as_bars() -> None:
    """With one snapshot there is no band to draw: the chart still comes out whole."""
    lone = trajectory([point(1, ours=Verdict.WON, low=0.001)])
    check_readable_png(to_png(lone))
    check_vega_lite(to_vega_lite(lone))


def test_srm_series_finds_when_our_test_crossed_and_the_exposures_their_expected_split() -> None:
    """Detection is the first snapshot of the current run below α (snapshots without a test
    are left out); each variation's expected users are its configured share of the total."""
    snapshots = [
        snapshot(0, 20, 20, None),
        snapshot(1, 500, 500, 0.5),
        snapshot(2, 1050, 950, 0.00005),
        snapshot(3, 1600, 1400, 0.00001),
    ]
    srm = SrmSeries.of(EXPERIMENT, snapshots)
    assert len(srm.points) == 3 and srm.detected_at == T0 + timedelta(days=2)
    assert srm.shows_platform and srm.alpha == 0.001
    exposures = ExposureSeries.of(EXPERIMENT, snapshots)
    assert exposures.variations == (("v0", "Control"), ("v1", "One-page"))
    assert len(exposures.points) == 4
    assert exposures.expected(exposures.points[-1], "v1") == pytest.approx(1500)
    for chart in (srm, exposures):
        check_readable_png(to_png(chart))
        spec = to_vega_lite(chart)
        check_vega_lite(spec)
        json.dumps(spec, allow_nan=False)


@pytest.mark.anyio
async def test_the_store_gives_snapshots_oldest_first_and_the_chart_set_orders_charts(
    tmp_path: Path,
) -> None:
    """`snapshot_history` returns the experiment's snapshots oldest first (the newest `limit`);
    an unknown experiment names the closest ids; the chart set puts SRM and exposures first."""
    store = await Store.open(sqlite_url(tmp_path / "charts.db"))
    try:
        for day, (control, treatment) in enumerate([(500, 500), (1000, 1000), (1600, 1400)]):
            stored = snapshot(day + 1, control, treatment, 0.5)
            await store.record_poll(EXPERIMENT, stored.snapshot, detect=lambda **_: [])
        history = await store.snapshot_history("exp_1")
        newest_two = await store.snapshot_history("exp_1", limit=2)
        with pytest.raises(UnknownExperiment, match="exp_1"):
            await store.snapshot_history("exp_2")
        chart_set = await load_chart_set(store, "exp_1")
    finally:
        await store.aclose()
    users = [s.snapshot.metrics[0].variations[1].users for s in history]
    assert users == [500, 1000, 1400]
    assert [s.id for s in newest_two] == [s.id for s in history[1:]]
    assert [c.name for c in chart_set.charts] == ["srm", "exposures", "trajectory-met_conv-v1"]


def test_importing_charts_does_not_load_matplotlib() -> None:
    """Processes that never draw (the daemon without email targets) do not pay for it."""
    probe = "import sys, charts; print('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
