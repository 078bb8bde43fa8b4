"""The whole path: simulator → expwatch → MCP subscribers (both eras) and alert targets."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client, types
from mcp.client.subscriptions import ResourceUpdated
from pydantic import SecretStr

from alerts import ROUTER_CURSOR
from expwatch import open_app
from expwatch.config import (
    AlertSettings,
    AlertTargetSettings,
    GrowthBookSourceSettings,
    McpSettings,
    Settings,
    StoreSettings,
)
from simulator import build_growthbook_app, default_scenario
from store import DeliveryStatus, EventKind
from tests.helpers import ManualClock, http_receiver, smtp_server
from tests.mcp_server.clients import UpdateInbox, handshake_http_client, legacy_subscribe
from tests.watcher.conftest import REFRESH_SECONDS, at_refresh

pytestmark = pytest.mark.anyio

KEY = "secret_e2e_key_789"
EXPERIMENT = "exp_checkout_redesign"
URI = f"experiments://{EXPERIMENT}/results"


async def conversion_verdicts(client: Client) -> tuple[str | None, str]:
    """(ours, the platform's) verdict on checkout conversion, as the resource shows them."""
    result = await client.read_resource(URI)
    content = result.contents[0]
    assert isinstance(content, types.TextResourceContents)
    assert KEY not in content.text
    metrics = {m["id"]: m for m in json.loads(content.text)["metrics"]}
    treatment = metrics["met_conversion"]["variations"][1]
    ours = treatment.get("ours") or {}
    return ours.get("verdict"), treatment["platform_verdict"]


async def test_significance_and_srm_reach_subscribers_and_alert_targets_once(
    tmp_path: Path,
) -> None:
    """Subscribers of both MCP eras are told of every change and re-read it; the platform's
    early verdict is shown but not alerted; the SRM and, later, our anytime-valid significance
    each give the webhook and the mailbox exactly one alert; nothing is sent twice."""
    clock = ManualClock()
    scenario = default_scenario(start=clock.now(), refresh_seconds=REFRESH_SECONDS)
    simulator = build_growthbook_app(scenario, api_key=KEY, clock=clock.now)
    async with http_receiver() as receiver:
        with smtp_server() as smtp:
            settings = Settings(
                store=StoreSettings(path=tmp_path / "e2e.db"),
                sources={
                    "gb": GrowthBookSourceSettings(
                        base_url="http://gb.test", api_key=SecretStr(KEY)
                    )
                },
                alerts=AlertSettings(
                    targets={
                        "hook": AlertTargetSettings(
                            url=SecretStr(f"json://127.0.0.1:{receiver.port}/alerts")
                        ),
                        "mail": AlertTargetSettings(url=SecretStr(smtp.mailto_url())),
                    }
                ),
                mcp=McpSettings(port=0),
            )
            transport = httpx.ASGITransport(app=simulator)
            async with open_app(settings, clock=clock, transport=transport) as app:
                async with anyio.create_task_group() as tg:
                    port = await tg.start(
                        lambda task_status: app.run(
                            watch=False, mcp_http=("127.0.0.1", 0), task_status=task_status
                        )
                    )
                    await tg.start(app.dispatcher.run)
                    at_refresh(clock, scenario, 1)
                    first = await app.supervisor.poll_once()
                    assert first.new_snapshots == 2 and not first.events
                    await app.notifier.settled()  # its notifications went out to nobody

                    url = f"http://127.0.0.1:{port}/mcp"
                    inbox = UpdateInbox()
                    async with (
                        handshake_http_client(url, inbox) as legacy,
                        Client(url) as modern,
                        modern.listen(resource_subscriptions=[URI]) as listening,
                    ):
                        await legacy_subscribe(legacy, URI)
                        assert await conversion_verdicts(legacy) == ("inconclusive", "inconclusive")
                        assert await conversion_verdicts(modern) == ("inconclusive", "inconclusive")

                        # Refresh 3: the platform calls it; that is recorded and pushed to
                        # subscribers, but not alerted (its test is not valid under peeking).
                        at_refresh(clock, scenario, 3)
                        report = await app.supervisor.poll_once()
                        kinds = [e.kind for e in report.events]
                        assert kinds == [EventKind.PLATFORM_VERDICT_CHANGED]
                        with anyio.fail_after(10):
                            assert await anext(listening) == ResourceUpdated(uri=URI)
                        assert await inbox.wait_for(URI) == [URI]
                        assert await conversion_verdicts(legacy) == ("inconclusive", "won")

                        # Refresh 6: our sequential SRM test fires; one alert per target.
                        for refresh in (4, 5, 6):
                            at_refresh(clock, scenario, refresh)
                            report = await app.supervisor.poll_once()
                        assert [e.kind for e in report.events] == [EventKind.SRM_DETECTED]
                        [srm_post] = await receiver.bodies.wait_for(1)
                        [srm_mail] = await smtp.messages.wait_for(1)

                        # Refresh 9: our anytime-valid verdict crosses; subscribers of both
                        # eras are told and re-read it; one alert per target.
                        for refresh in (7, 8, 9):
                            at_refresh(clock, scenario, refresh)
                            report = await app.supervisor.poll_once()
                        kinds = [e.kind for e in report.events]
                        assert kinds == [EventKind.SIGNIFICANCE_CHANGED]
                        with anyio.fail_after(10):
                            while True:  # earlier refreshes notified too; wait for the re-read
                                assert await anext(listening) == ResourceUpdated(uri=URI)
                                if (await conversion_verdicts(modern))[0] == "won":
                                    break
                        assert await conversion_verdicts(legacy) == ("won", "won")

                        posts = await receiver.bodies.wait_for(2)
                        mails = await smtp.messages.wait_for(2)
                        title = "Checkout redesign: Conversion is now won for One-page checkout"
                        assert posts[1]["json"]["title"] == mails[1]["Subject"] == title
                    tg.cancel_scope.cancel()

                # Stopped: a last pass finds nothing unconfirmed, so nothing goes out twice.
                assert await app.dispatcher.deliver_pending() == 0
                assert await app.store.cursor(ROUTER_CURSOR) == await app.store.last_event_id()
                outbox = await app.store.outbox.deliveries()
                assert {(d.target, d.status) for d in outbox} == {
                    ("hook", DeliveryStatus.DELIVERED),
                    ("mail", DeliveryStatus.DELIVERED),
                }
                assert len(outbox) == 4
    assert len(receiver.bodies.items) == len(smtp.messages.items) == 2
    assert "sample ratio mismatch detected" in srm_post["json"]["title"]
    assert "sample ratio mismatch detected" in srm_mail["Subject"]
    for body in [p["json"]["message"] for p in posts] + [
        m.get_body(("plain", "html")).get_content() for m in mails
    ]:
        assert KEY not in body
