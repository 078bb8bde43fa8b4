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
from store import EventKind
from tests.helpers import ManualClock, http_receiver, smtp_server
from tests.mcp_server.clients import UpdateInbox, handshake_http_client, legacy_subscribe
from tests.watcher.conftest import REFRESH_SECONDS, at_refresh

pytestmark = pytest.mark.anyio

KEY = "secret_e2e_key_789"
EXPERIMENT = "exp_checkout_redesign"
URI = f"experiments://{EXPERIMENT}/results"


async def conversion_verdict(client: Client) -> str:
    result = await client.read_resource(URI)
    content = result.contents[0]
    assert isinstance(content, types.TextResourceContents)
    assert KEY not in content.text
    metrics = {m["id"]: m for m in json.loads(content.text)["metrics"]}
    verdict: str = metrics["met_conversion"]["variations"][1]["platform_verdict"]
    return verdict


async def test_significance_and_srm_reach_subscribers_and_alert_targets_once(
    tmp_path: Path,
) -> None:
    """When conversion turns significant, both kinds of MCP subscriber are notified and
    re-read the new verdict, and the webhook and the mailbox get one alert; the SRM that
    follows gives one more alert each; nothing is sent twice."""
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

                    url = f"http://127.0.0.1:{port}/mcp"
                    inbox = UpdateInbox()
                    async with (
                        handshake_http_client(url, inbox) as legacy,
                        Client(url) as modern,
                        modern.listen(resource_subscriptions=[URI]) as listening,
                    ):
                        await legacy_subscribe(legacy, URI)
                        assert await conversion_verdict(legacy) == "inconclusive"
                        assert await conversion_verdict(modern) == "inconclusive"

                        at_refresh(clock, scenario, 3)
                        report = await app.supervisor.poll_once()
                        assert [e.kind for e in report.events] == [EventKind.SIGNIFICANCE_CHANGED]

                        with anyio.fail_after(10):
                            assert await anext(listening) == ResourceUpdated(uri=URI)
                        assert await inbox.wait_for(URI) == [URI]
                        assert await conversion_verdict(legacy) == "won"
                        assert await conversion_verdict(modern) == "won"

                        [post] = await receiver.bodies.wait_for(1)
                        [mail] = await smtp.messages.wait_for(1)
                        title = "Checkout redesign: Conversion is now won for One-page checkout"
                        assert post["json"]["title"] == mail["Subject"] == title

                        at_refresh(clock, scenario, 6)
                        report = await app.supervisor.poll_once()
                        assert [e.kind for e in report.events] == [EventKind.SRM_DETECTED]
                        posts = await receiver.bodies.wait_for(2)
                        mails = await smtp.messages.wait_for(2)
                    tg.cancel_scope.cancel()

                # Stopped: a last pass finds nothing unconfirmed, so nothing goes out twice.
                assert await app.dispatcher.deliver_pending() == 0
                last = await app.store.last_event_id()
                assert await app.store.cursor("alerts:hook") == last
                assert await app.store.cursor("alerts:mail") == last
    assert len(receiver.bodies.items) == len(smtp.messages.items) == 2
    assert "sample ratio mismatch detected" in posts[1]["json"]["title"]
    assert "sample ratio mismatch detected" in mails[1]["Subject"]
    for body in [p["json"]["message"] for p in posts] + [
        m.get_body(("plain", "html")).get_content() for m in mails
    ]:
        assert KEY not in body
