"""Upstream TLS: always verified, against [watcher] ca_bundle when it is set."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
import trustme

from expwatch import open_app
from expwatch.config import Settings, load_config
from expwatch.serving import serve_asgi
from simulator import build_growthbook_app, default_scenario
from store import ConfigError, EventKind
from tests.helpers import ManualClock

KEY = "secret_tls_key_31337"
WAIT_SECONDS = 30
"""Bound on every wait: generous, since a timeout only ever means a failure."""


@dataclass
class HttpsGrowthBook:
    """The GrowthBook simulator over HTTPS on loopback, with a certificate from a throwaway
    CA whose PEM file is `ca_pem`; `clock` is the simulator's (and the watcher's) clock."""

    url: str
    ca_pem: Path
    clock: ManualClock

    def config(self, directory: Path, *, ca_bundle: str | None) -> Path:
        path = directory / "expwatch.toml"
        text = f'[store]\npath = "tls.db"\n[sources.gb]\nbase_url = "{self.url}"\n'
        text += f'api_key = "{KEY}"\nretry_attempts = 1\n'
        if ca_bundle is not None:
            text += f'[watcher]\nca_bundle = "{ca_bundle}"\n'
        path.write_text(text)
        return path


@pytest.fixture
async def https_growthbook(tmp_path: Path) -> AsyncIterator[HttpsGrowthBook]:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    ca_pem = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    clock = ManualClock()
    scenario = default_scenario(start=clock.now(), refresh_seconds=60)
    clock.advance(timedelta(minutes=3, seconds=1).total_seconds())
    app = build_growthbook_app(scenario, api_key=KEY, clock=clock.now)
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: serve_asgi(app, ssl_context=server_context, task_status=task_status)
        )
        yield HttpsGrowthBook(url=f"https://127.0.0.1:{port}", ca_pem=ca_pem, clock=clock)
        tg.cancel_scope.cancel()


async def poll_once(settings: Settings, clock: ManualClock) -> tuple[int, list[str], list[str]]:
    """One cycle: (new snapshots, the cycle's errors, the recorded source_error reasons)."""
    async with open_app(settings, clock=clock) as app:
        with anyio.fail_after(WAIT_SECONDS):
            report = await app.supervisor.poll_once()
        errors = await app.store.events_after(0, kinds=[EventKind.SOURCE_ERROR])
    return report.new_snapshots, report.errors, [str(e.after) for e in errors]


@pytest.mark.anyio
async def test_with_the_ca_bundle_the_cycle_records_snapshots_over_https(
    https_growthbook: HttpsGrowthBook, tmp_path: Path
) -> None:
    """With [watcher] ca_bundle naming the test CA (relative to the config file), the poll
    verifies the simulator's certificate and records its experiments."""
    settings = load_config(https_growthbook.config(tmp_path, ca_bundle="test-ca.pem"))
    snapshots, errors, source_errors = await poll_once(settings, https_growthbook.clock)
    assert not errors and not source_errors
    assert snapshots >= 1


@pytest.mark.anyio
async def test_without_the_ca_bundle_an_unknown_ca_is_a_source_error_not_a_snapshot(
    https_growthbook: HttpsGrowthBook, tmp_path: Path
) -> None:
    """Without ca_bundle a certificate from an unknown CA fails verification: the cycle
    records a source_error (no key in it) and no snapshot."""
    settings = load_config(https_growthbook.config(tmp_path, ca_bundle=None))
    snapshots, errors, source_errors = await poll_once(settings, https_growthbook.clock)
    assert snapshots == 0
    assert errors and source_errors
    assert all(https_growthbook.url in reason for reason in source_errors)
    assert all(KEY not in text for text in errors + source_errors)


@pytest.mark.anyio
async def test_the_source_error_of_an_unknown_ca_says_certificate_verification_failed(
    https_growthbook: HttpsGrowthBook, tmp_path: Path
) -> None:
    """The source_error recorded for a certificate from an unknown CA says that certificate
    verification failed, so the user knows to set ca_bundle."""
    settings = load_config(https_growthbook.config(tmp_path, ca_bundle=None))
    _, _, source_errors = await poll_once(settings, https_growthbook.clock)
    assert source_errors
    assert all("certificate verif" in reason.lower() for reason in source_errors)


def test_a_missing_or_unusable_ca_bundle_is_a_config_error_naming_the_key_and_file(
    tmp_path: Path,
) -> None:
    """A CA bundle that does not exist, is a directory or holds no certificate is reported
    at load time with watcher.ca_bundle, the file and the config file."""
    (tmp_path / "not-pem.txt").write_text("hello\n")
    (tmp_path / "a-dir").mkdir()
    for name, why in [
        ("nope.pem", "No such file or directory"),
        ("a-dir", ""),
        ("not-pem.txt", "holds no PEM certificate"),
    ]:
        config = tmp_path / "expwatch.toml"
        config.write_text(f'[watcher]\nca_bundle = "{name}"\n')
        with pytest.raises(ConfigError) as caught:
            load_config(config)
        message = str(caught.value)
        assert caught.value.key == "watcher.ca_bundle"
        assert "watcher.ca_bundle" in message and str(tmp_path / name) in message
        assert str(config) in message and why in message
