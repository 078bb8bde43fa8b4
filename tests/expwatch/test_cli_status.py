"""`expwatch status` from what the watcher persisted: lag since the last successful cycle,
the rate budget and a Retry-After pause, the breaker, what fails, and the tables people read."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from expwatch import open_app
from expwatch.cli import main
from expwatch.cli_status import collect, print_status
from expwatch.config import GrowthBookSourceSettings, Settings, StoreSettings, load_config
from simulator import Faults, RateLimitFault, build_growthbook_app, default_scenario
from tests.helpers import HostRouter, ManualClock

pytestmark = pytest.mark.anyio

KEY = "secret_status_key"


async def test_status_shows_lag_budget_pause_and_open_breaker_after_a_429_storm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a good cycle and then one the platform answers with 429s only: the lag counts
    from the good cycle (across a restart too), the budget shows the configured rate and the
    Retry-After pause, the breaker is open with its reason, and the experiments show when
    they were last checked; the human form puts each in a table row."""
    clock = ManualClock()
    faults = Faults()
    app_ = build_growthbook_app(
        default_scenario(start=clock.now(), refresh_seconds=60),
        api_key=KEY,
        clock=clock.now,
        faults=faults,
    )
    settings = Settings(
        store=StoreSettings(path=tmp_path / "status.db"),
        sources={
            "gb": GrowthBookSourceSettings(
                base_url="http://gb.test",
                api_key=SecretStr(KEY),
                rate_limit_per_minute=30,
                breaker_failures=1,
            )
        },
    )
    async with open_app(settings, clock=clock, transport=HostRouter({"gb.test": app_})) as app:
        clock.advance(1)
        good = await app.supervisor.poll_once()
        assert not good.errors and good.new_snapshots >= 1
        succeeded_at = clock.now()

        clock.advance(300)
        faults.add(RateLimitFault(retry_after_seconds=90))
        async with anyio.create_task_group() as tg:  # the retries wait on the test's clock
            tg.start_soon(clock.run_until, clock.now() + timedelta(hours=1))
            with anyio.fail_after(30):
                storm = await app.supervisor.poll_once()
            tg.cancel_scope.cancel()
        assert storm.errors
        clock.advance(20)
        now = clock.now()
        result = await collect(app.store, settings, now=now)
    # A restart keeps the time of the last good cycle while the source still fails.
    async with open_app(settings, clock=clock, transport=HostRouter({"gb.test": app_})) as app:
        clock.advance(10)
        assert (await app.supervisor.poll_once()).skipped_sources == ["gb"]  # breaker open
        restarted = await collect(app.store, settings, now=clock.now())
    assert restarted["sources"][0]["last_success_at"] == succeeded_at

    [source] = result["sources"]
    assert source["last_success_at"] == succeeded_at
    assert source["lag_seconds"] == (now - succeeded_at).total_seconds()
    assert source["last_cycle_at"] > succeeded_at
    budget = source["budget"]
    assert budget["rate_limit_per_minute"] == 30 and 0 < budget["refill_per_minute"] <= 30
    assert budget["paused_until"] is not None and budget["paused_until"] > now
    assert source["breaker"]["state"] == "open"
    assert "429" in source["failing"][""]
    checked = {e["experiment_id"]: e["last_checked_seconds_ago"] for e in result["experiments"]}
    assert checked == {
        "exp_checkout_redesign": (now - succeeded_at).total_seconds(),
        "exp_pricing_page": (now - succeeded_at).total_seconds(),
    }

    print_status(result)
    out = capsys.readouterr().out
    lag = (now - succeeded_at).total_seconds() / 60
    row = re.search(r"^gb +growthbook +open until .+$", out, re.MULTILINE)
    assert row, out
    paused = f"30/min, paused until {budget['paused_until']:%Y-%m-%d %H:%M:%S} (Retry-After)"
    assert paused in row[0]
    assert f"{int(lag)} min" in row[0] and "listing: " in row[0] and "429" in row[0]
    assert re.search(rf"^exp_checkout_redesign +gb +running +\d +{int(lag)} min", out, re.M)
    assert all(line == line.rstrip() for line in out.splitlines())


async def test_status_of_a_fresh_database_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before any cycle: no lag (never polled), the breaker closed, and the tables say that
    nothing has been recorded yet instead of printing empty tables."""
    clock = ManualClock()
    settings = Settings(
        store=StoreSettings(path=tmp_path / "fresh.db"),
        sources={"gb": GrowthBookSourceSettings(api_key=SecretStr(KEY))},
    )
    async with open_app(settings, clock=clock) as app:
        result = await collect(app.store, settings, now=clock.now())
    [source] = result["sources"]
    assert source["lag_seconds"] is None and source["last_success_at"] is None
    assert source["breaker"] == {"state": "closed"}
    assert source["budget"]["rate_limit_per_minute"] == 60
    assert source["budget"]["paused_until"] is None
    print_status(result)
    out = capsys.readouterr().out
    assert re.search(r"^gb +growthbook +closed +60/min +- +- ", out, re.MULTILINE), out
    assert "Alert targets: none configured" in out
    assert "Experiments: none recorded yet" in out


def recorded_config(tmp_path: Path) -> Path:
    """A config and a database holding one poll at refresh 12 (significant, SRM)."""
    config = tmp_path / "expwatch.toml"
    config.write_text(
        f'[store]\npath = "read.db"\n[sources.gb]\nbase_url = "http://gb.test"\napi_key = "{KEY}"\n'
    )

    async def poll() -> None:
        clock = ManualClock()
        scenario = default_scenario(start=clock.now(), refresh_seconds=60)
        clock.advance(timedelta(minutes=12, seconds=1).total_seconds())
        gb = build_growthbook_app(scenario, api_key=KEY, clock=clock.now)
        settings = load_config(config)
        async with open_app(settings, clock=clock, transport=HostRouter({"gb.test": gb})) as app:
            assert not (await app.supervisor.poll_once()).errors

    anyio.run(poll, backend="asyncio")
    return config


def test_status_and_history_print_tables_a_person_can_read(tmp_path: Path) -> None:
    """`status` and `history --metric` (through the CLI) print one table row per source,
    experiment, significance change, SRM change and snapshot, with no trailing spaces."""
    config = recorded_config(tmp_path)
    runner = CliRunner()
    status = runner.invoke(main, ["status", "--config", str(config)])
    assert status.exit_code == 0, status.output
    assert re.search(r"^gb +growthbook +closed +60/min +\S", status.stdout, re.MULTILINE)
    assert re.search(r"^exp_checkout_redesign +gb +running +1 ", status.stdout, re.MULTILINE)

    history = runner.invoke(
        main,
        ["history", "exp_checkout_redesign", "--metric", "met_conversion", "--config", str(config)],
    )
    assert history.exit_code == 0, history.output
    out = history.stdout
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    assert out.startswith("exp_checkout_redesign — Checkout redesign (running)\n")
    assert re.search(rf"^{stamp} +met_conversion +var_checkout_1 +first seen +won$", out, re.M)
    assert re.search(rf"^{stamp} +srm_detected +\d", out, re.MULTILINE), out
    assert "met_conversion / var_checkout_1: 1 snapshots" in out
    assert re.search(
        rf"^{stamp} +\d+ +\+\d+\.\d\d% +\[.+\] +chance to win .+ won +won +", out, re.M
    )
    for text in (status.stdout, out):
        assert all(line == line.rstrip() for line in text.splitlines())
