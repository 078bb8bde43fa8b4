"""Both platforms configured side by side, polled by one daemon."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from expwatch import open_app
from expwatch.app import build_sources
from expwatch.config import (
    GrowthBookSourceSettings,
    Settings,
    StatsigSourceSettings,
    StoreSettings,
    load_config,
)
from simulator import (
    build_growthbook_app,
    build_statsig_app,
    default_scenario,
    default_statsig_scenario,
)
from store import ConfigError, EventKind
from tests.helpers import HostRouter, ManualClock

pytestmark = pytest.mark.anyio

REFRESH = 60.0


def test_a_statsig_source_is_chosen_by_kind_and_its_typos_are_explained(tmp_path: Path) -> None:
    """kind = "statsig" selects the Statsig settings; an unknown key there is named without
    the union's internals and with the likely meaning."""
    path = tmp_path / "c.toml"
    path.write_text('[sources.ss]\nkind = "statsig"\napi_key = "console-x"\napi_verison = "1"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "sources.ss.api_verison: unknown key (did you mean 'api_version'?)" in str(caught.value)
    path.write_text('[sources.ss]\nkind = "statsig"\napi_key = "console-x"\n')
    source = load_config(path).sources["ss"]
    assert isinstance(source, StatsigSourceSettings) and source.status == "active"
    path.write_text('[sources.gb]\napi_key = "secret_x"\n')
    assert isinstance(load_config(path).sources["gb"], GrowthBookSourceSettings)


async def test_one_cycle_polls_growthbook_and_statsig_and_each_story_unfolds(
    tmp_path: Path,
) -> None:
    """With both platforms configured, each cycle records both; on each platform the platform's
    early call (refresh 3) is information and our anytime-valid significance follows once,
    later; Statsig's exposure-balance health check
    going from passed to warning to failed gives one event per change."""
    clock = ManualClock()
    gb = build_growthbook_app(
        default_scenario(start=clock.now(), refresh_seconds=REFRESH),
        api_key="gb_key",
        clock=clock.now,
    )
    ss_scenario = default_statsig_scenario(start=clock.now(), refresh_seconds=REFRESH)
    ss = build_statsig_app(ss_scenario, api_key="console-ss_key", clock=clock.now)
    settings = Settings(
        store=StoreSettings(path=tmp_path / "both.db"),
        sources={
            "gb": GrowthBookSourceSettings(base_url="http://gb.test", api_key=SecretStr("gb_key")),
            "ss": StatsigSourceSettings(
                kind="statsig", base_url="http://ss.test", api_key=SecretStr("console-ss_key")
            ),
        },
    )
    transport = HostRouter({"gb.test": gb, "ss.test": ss})
    async with open_app(settings, clock=clock, transport=transport) as app:
        kinds_by_refresh = {}
        for refresh in range(13):
            clock.advance(REFRESH if refresh else 1)
            report = await app.supervisor.poll_once()
            assert not report.errors, report.errors
            kinds_by_refresh[refresh] = {
                (e.source, e.kind) for e in report.events if "checkout" in (e.experiment_id or "")
            }
        sources = {e.source for e in await app.store.experiments()}
        assert sources == {"gb", "ss"}
        for source in ("gb", "ss"):
            assert (source, EventKind.PLATFORM_VERDICT_CHANGED) in kinds_by_refresh[3]
            ours = [
                r
                for r, kinds in kinds_by_refresh.items()
                if (source, EventKind.SIGNIFICANCE_CHANGED) in kinds
            ]
            assert len(ours) == 1 and ours[0] > 3, (source, ours)
        statsig = await app.store.latest_snapshot("checkout_redesign")
        assert statsig is not None and statsig.snapshot.source == "ss"
        health = await app.store.events_after(
            0, experiment_id="checkout_redesign", kinds=[EventKind.HEALTH_CHECK_CHANGED]
        )
        balance = [(e.before, e.after) for e in health if "balanced" in e.details["check_type"]]
        assert balance == [("passed", "warning"), ("warning", "failed")]


async def test_each_source_uses_its_own_request_timeout() -> None:
    """request_timeout_seconds of a source bounds that source's requests, not a shared max."""
    seen: dict[str, float] = {}

    def record(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = request.extensions["timeout"]["read"]
        return httpx.Response(200, json={"experiments": [], "hasMore": False, "nextOffset": None})

    settings = Settings(
        sources={
            "fast": GrowthBookSourceSettings(
                base_url="http://fast.test", api_key=SecretStr("k"), request_timeout_seconds=2
            ),
            "slow": GrowthBookSourceSettings(
                base_url="http://slow.test", api_key=SecretStr("k"), request_timeout_seconds=45
            ),
        }
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as client:
        for source in build_sources(settings, client, ManualClock()):
            await source.list_experiments()
    assert seen == {"fast.test": 2, "slow.test": 45}
