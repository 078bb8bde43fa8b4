"""`expwatch alerts ...` and the alert settings, as a user runs them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

from expwatch.alerting import alert_policy, alert_targets
from expwatch.cli import main
from expwatch.config import load_config
from store import ConfigError
from tests.helpers import http_receiver, smtp_server

ROOT = Path(__file__).resolve().parents[2]
SECRET = "pw_never_printed_7731"


@pytest.mark.anyio
async def test_alerts_test_reports_each_target_and_exits_1_when_one_fails(
    tmp_path: Path,
) -> None:
    """A sample alert reaches the webhook and the mailbox; the unreachable target is
    reported as failed without its password; nothing is written to the store."""
    async with http_receiver() as receiver:
        with smtp_server() as smtp:
            config = tmp_path / "expwatch.toml"
            config.write_text(
                f'[store]\npath = "w.db"\n'
                f'[alerts.targets.hook]\nurl = "json://127.0.0.1:{receiver.port}/t"\n'
                f'[alerts.targets.mail]\nurl = "{smtp.mailto_url()}"\n'
                f'[alerts.targets.down]\nurl = "json://ops:{SECRET}@127.0.0.1:9/x"\n'
            )
            result = await anyio.run_process(
                [sys.executable, "-m", "expwatch", "alerts", "test", "--config", str(config)],
                cwd=ROOT,
                check=False,
            )
            [body] = await receiver.bodies.wait_for(1)
            [mail] = await smtp.messages.wait_for(1)
    out = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 1, out
    lines = result.stdout.decode().splitlines()
    assert "hook (json): delivered" in lines and "mail (email): delivered" in lines
    assert any(line.startswith("down (json): FAILED: ") for line in lines), out
    assert SECRET not in out
    assert body["json"]["expwatch"]["test"] is True
    assert "test" in mail["Subject"].lower()
    assert not (tmp_path / "w.db").exists()


def test_alerts_test_names_an_unknown_target(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[alerts.targets.hook]\nurl = "json://127.0.0.1:9/t"\n')
    result = CliRunner().invoke(
        main, ["alerts", "test", "--config", str(config), "--target", "slak"]
    )
    assert result.exit_code == 2
    assert "unknown alert target slak (hook)" in result.output


def test_the_outbox_lists_nothing_on_a_new_database(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[store]\npath = "w.db"\n')
    result = CliRunner().invoke(main, ["alerts", "outbox", "--config", str(config)])
    assert result.exit_code == 0 and "no alert deliveries" in result.output
    result = CliRunner().invoke(main, ["alerts", "outbox", "--json", "--config", str(config)])
    assert json.loads(result.output) == []


def test_targets_come_from_the_tables_and_an_apprise_config_file(tmp_path: Path) -> None:
    """Tags and digests from config.toml, and an Apprise YAML file's tagged URLs."""
    (tmp_path / "apprise.yml").write_text(
        "urls:\n"
        "  - json://hooks.example.com/oncall:\n"
        "      tag: oncall, critical\n"
        '  - "mailto://alerts:pw@smtp.example.com?to=team@example.com":\n'
        "      tag: team\n"
    )
    config = tmp_path / "c.toml"
    config.write_text(
        '[alerts]\napprise_config = "apprise.yml"\n'
        '[alerts.targets.slack]\nurl = "slack://T/B/C"\ntags = ["oncall"]\ndigest_minutes = 15\n'
        '[[alerts.rules]]\nlevels = ["critical"]\ntags = ["oncall"]\n'
        '[alerts.quiet_hours]\nstart = "22:00"\nend = "07:00"\ntimezone = "Europe/Berlin"\n'
    )
    settings = load_config(config)
    targets = {t.name: t for t in alert_targets(settings)}
    slack = targets.pop("slack")
    assert slack.tags == {"oncall"} and slack.digest is not None
    assert slack.digest.total_seconds() == 900
    from_file = sorted((t.url.split(":")[0], sorted(t.tags)) for t in targets.values())
    assert from_file == [("json", ["critical", "oncall"]), ("mailto", ["team"])]
    assert all(name.split("-")[0] in ("json", "mailto") for name in targets)
    policy = alert_policy(settings)
    assert len(policy.rules) == 1 and policy.quiet_hours is not None
    result = CliRunner().invoke(main, ["check-config", "--config", str(config)])
    assert result.exit_code == 0 and "3 alert target(s)" in result.output


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[alerts]\napprise_config = "missing.yml"\n', "alerts.apprise_config"),
        (
            '[alerts.quiet_hours]\nstart = "22:00"\nend = "07:00"\ntimezone = "Mars/Olympus"\n',
            "alerts.quiet_hours.timezone",
        ),
        ('[alerts.quiet_hours]\nstart = "25:00"\nend = "07:00"\n', "alerts.quiet_hours.start"),
        ('[[alerts.rules]]\nkinds = ["srm_detected"]\ntags = []\n', "alerts.rules.0.tags"),
        ('[[alerts.rules]]\nlevels = ["urgent"]\ntags = ["x"]\n', "alerts.rules.0.levels.0"),
        ("[alerts.rate_limit]\nglobal_per_hour = 0\n", "alerts.rate_limit.global_per_hour"),
    ],
)
def test_bad_alert_settings_name_the_key_and_exit_2(tmp_path: Path, toml: str, key: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(toml)
    result = CliRunner().invoke(main, ["check-config", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert key in result.output and str(config) in result.output
    if "apprise_config" in toml:
        with pytest.raises(ConfigError) as caught:
            alert_targets(load_config(config))
        assert caught.value.key == "alerts.apprise_config"
