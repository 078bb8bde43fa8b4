"""`expwatch report` on a store the real watcher filled by polling the simulated GrowthBook
through nine refreshes (the platform calls conversion at 3, our SRM test fires at 6, our
verdict at 9): a table for people, JSON and CSV for scripts, one self-contained HTML page."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import anyio
import httpx
import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from expwatch import open_app
from expwatch.cli_report import report
from expwatch.config import GrowthBookSourceSettings, Settings, StoreSettings
from simulator import build_growthbook_app, default_scenario
from tests.charts.checks import check_readable_png, check_vega_lite
from tests.helpers import ManualClock
from tests.watcher.conftest import REFRESH_SECONDS, at_refresh

KEY = "secret_report_key_5150"
CHECKOUT = "exp_checkout_redesign"


async def _fill(database: Path) -> None:
    clock = ManualClock()
    scenario = default_scenario(start=clock.now(), refresh_seconds=REFRESH_SECONDS)
    simulator = build_growthbook_app(scenario, api_key=KEY, clock=clock.now)
    settings = Settings(
        store=StoreSettings(path=database),
        sources={"gb": GrowthBookSourceSettings(base_url="http://gb.test", api_key=SecretStr(KEY))},
    )
    transport = httpx.ASGITransport(app=simulator)
    async with open_app(settings, clock=clock, transport=transport) as app:
        for refresh in range(1, 10):
            at_refresh(clock, scenario, refresh)
            await app.supervisor.poll_once()


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config (no sources, no key) whose store holds the nine polls."""
    directory = tmp_path_factory.mktemp("report")
    anyio.run(_fill, directory / "report.db", backend="asyncio")
    path = directory / "expwatch.toml"
    path.write_text('[store]\npath = "report.db"\n')
    return path


def run(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(report, [*args, "--config", str(config)])
    assert KEY not in result.stdout + result.stderr
    return result.exit_code, result.stdout, result.stderr


def test_the_summary_shows_both_verdicts_the_sample_ratio_and_the_timeline(config: Path) -> None:
    """By default a person reads the experiment, its health, one row per metric × treatment
    with the platform's verdict beside ours and the trend, and the latest events."""
    code, out, _ = run(config, CHECKOUT)
    assert code == 0, out
    assert out.startswith("Checkout redesign (exp_checkout_redesign) — running")
    assert "sample ratio: MISMATCH" in out
    [conversion] = [line for line in out.splitlines() if line.startswith("Conversion (goal)")]
    assert re.search(r"One-page checkout\s+\S+\s+\+\d+\.\d %.*won\s+won", conversion)
    # Refunds are lower-is-better: the guardrail's one-sided interval is open upwards.
    [refund] = [line for line in out.splitlines() if line.startswith("Refund requested")]
    assert re.search(r"\(guardrail\).*\[[-+]\S+, \+inf\]", refund)
    for kind in ("platform_verdict_changed", "srm_detected", "significance_changed"):
        assert kind in out


def test_json_carries_vega_lite_charts_and_csv_one_row_per_metric_and_variation(
    config: Path,
) -> None:
    """--json (or --format json) is the MCP tool's report with a Vega-Lite spec per chart;
    --no-charts leaves them out; CSV has a row per metric × variation."""
    code, out, _ = run(config, CHECKOUT, "--json")
    _, plain, _ = run(config, CHECKOUT, "--format", "json", "--no-charts")
    _, table, _ = run(config, CHECKOUT, "--format", "csv")
    assert code == 0
    document = json.loads(out)
    assert {m["id"] for m in document["metrics"]} == {
        "met_conversion",
        "met_add_to_cart",
        "met_refund",
    }
    assert [c["kind"] for c in document["charts"]][:2] == ["srm", "exposures"]
    for chart in document["charts"]:
        check_vega_lite(chart["vega_lite"])
    assert "charts" not in json.loads(plain)
    rows = list(csv.DictReader(io.StringIO(table)))
    assert len(rows) == 3 * 2


class _Page(HTMLParser):
    """What a browser would load: images, scripts, stylesheets and links, and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.headings: list[str] = []
        self.text: list[str] = []
        self._tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self._tag = tag
        if tag == "img":
            self.images.append(found["src"] or "")
        if tag in ("script", "link") or (
            tag == "img" and not (found["src"] or "").startswith("data:")
        ):
            self.external.append(tag)

    def handle_endtag(self, tag: str) -> None:
        self._tag = ""

    def handle_data(self, data: str) -> None:
        if self._tag in ("h1", "h2") and data.strip():
            self.headings.append(data.strip())
        self.text.append(data)


def test_html_is_one_self_contained_page_with_the_charts(config: Path, tmp_path: Path) -> None:
    """--format html --output FILE writes one page: inline CSS, every chart a PNG data URI,
    the results table, the sample-ratio section and the timeline; nothing to fetch."""
    page_file = tmp_path / "report.html"
    code, out, err = run(config, CHECKOUT, "--format", "html", "--output", str(page_file))
    _, bare, _ = run(config, CHECKOUT, "--format", "html", "--no-charts")
    assert code == 0 and out == "" and f"wrote {page_file}" in err
    page = _Page()
    page.feed(page_file.read_text())
    assert page.external == []
    assert page.headings[0] == "Checkout redesign"
    assert page.headings[1:] == ["Results", "Sample ratio", "Metrics over time", "Timeline"]
    assert len(page.images) == 5
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        check_readable_png(base64.b64decode(src.removeprefix(prefix)))
    text = " ".join(page.text)
    assert "Sample-ratio mismatch." in text and "significance_changed" in text
    assert "<img" not in bare and "<h2>Timeline</h2>" in bare


def test_an_unknown_experiment_names_the_closest_ids_and_usage_errors_exit_2(
    config: Path,
) -> None:
    """A typo gets the closest known ids (exit 1); --json with another --format is a usage
    error (exit 2)."""
    code, _, err = run(config, "exp_checkout")
    assert code == 1
    assert "Unknown experiment 'exp_checkout'" in err and CHECKOUT in err
    code, _, err = run(config, CHECKOUT, "--json", "--format", "csv")
    assert code == 2 and "--json" in err
