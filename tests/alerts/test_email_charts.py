"""Charts in email alerts: the watcher polls the simulated GrowthBook into a real store, and
the alerts about the SRM and the significance it records reach a real SMTP server (aiosmtpd)
with the chart of what they are about attached; the webhook gets text only."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from charts import SrmSeries, load_event_chart
from expwatch import open_app
from expwatch.config import (
    AlertSettings,
    AlertTargetSettings,
    GrowthBookSourceSettings,
    Settings,
    StoreSettings,
)
from simulator import build_growthbook_app, default_scenario
from store import EventKind
from tests.charts.checks import check_readable_png
from tests.helpers import ManualClock, http_receiver, smtp_server
from tests.watcher.conftest import REFRESH_SECONDS, at_refresh

pytestmark = pytest.mark.anyio

KEY = "secret_email_chart_key_6021"


async def test_emails_about_srm_and_significance_carry_their_chart_as_a_png(
    tmp_path: Path,
) -> None:
    """The SRM alert has srm.png attached (drawn as of the SRM's snapshot, not the newest),
    the significance alert the conversion trajectory; both decode as charts; the same alerts
    to a JSON webhook carry no file."""
    clock = ManualClock()
    scenario = default_scenario(start=clock.now(), refresh_seconds=REFRESH_SECONDS)
    simulator = build_growthbook_app(scenario, api_key=KEY, clock=clock.now)
    async with http_receiver() as receiver:
        with smtp_server() as smtp:
            settings = Settings(
                store=StoreSettings(path=tmp_path / "alerts.db"),
                sources={
                    "gb": GrowthBookSourceSettings(
                        base_url="http://gb.test", api_key=SecretStr(KEY)
                    )
                },
                alerts=AlertSettings(
                    targets={
                        "mail": AlertTargetSettings(url=SecretStr(smtp.mailto_url())),
                        "hook": AlertTargetSettings(
                            url=SecretStr(f"json://127.0.0.1:{receiver.port}/alerts")
                        ),
                    }
                ),
            )
            transport = httpx.ASGITransport(app=simulator)
            async with open_app(settings, clock=clock, transport=transport) as app:
                await app.dispatcher.start_cursor()
                for refresh in range(1, 10):
                    at_refresh(clock, scenario, refresh)
                    await app.supervisor.poll_once()
                assert await app.dispatcher.deliver_pending() == 2 * 2
                [srm_event] = await app.store.events_after(0, kinds=[EventKind.SRM_DETECTED])
                as_alerted = await load_event_chart(app.store, srm_event)
            mails = await smtp.messages.wait_for(2)
        hooks = await receiver.bodies.wait_for(2)
    files = {}
    for mail in mails:
        [attachment] = list(mail.iter_attachments())
        assert attachment.get_content_type() == "image/png"
        files[attachment.get_filename()] = attachment.get_content()
        assert mail.get_body(("html",)) is not None
    assert set(files) == {"srm.png", "trajectory-met_conversion-var_checkout_1.png"}
    for png in files.values():
        check_readable_png(png)
    assert [h["json"]["expwatch"]["kind"] for h in hooks] == [
        "srm_detected",
        "significance_changed",
    ]
    assert all(not h["json"].get("attachments") for h in hooks)
    assert isinstance(as_alerted, SrmSeries) and len(as_alerted.points) == 6  # refreshes 1-6
