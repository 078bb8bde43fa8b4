"""deploy/expwatch.service: systemd accepts it, and it runs the daemon this package installs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "expwatch.service"
INSTALLED_AT = "/opt/expwatch/bin/expwatch"


def test_systemd_accepts_the_unit_without_a_warning(tmp_path: Path) -> None:
    """`systemd-analyze verify` on the unit, its ExecStart pointed at this virtualenv's
    `expwatch` (verify checks that the command exists); any line about the unit fails."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (Debian package: systemd)")
    expwatch = Path(sys.executable).with_name("expwatch")
    assert expwatch.exists(), "the expwatch console script is not installed"
    text = UNIT.read_text()
    assert INSTALLED_AT in text
    unit = tmp_path / "expwatch.service"
    unit.write_text(text.replace(INSTALLED_AT, str(expwatch)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, check=False
    )
    about_unit = [
        line for line in (result.stdout + result.stderr).splitlines() if "expwatch" in line
    ]
    assert result.returncode == 0 and about_unit == [], result.stdout + result.stderr


def test_the_unit_runs_the_daemon_and_does_not_restart_on_a_config_error() -> None:
    settings = dict(
        line.split("=", 1)
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert settings["ExecStart"].split()[1:3] == ["run", "--config"]
    assert settings["RestartPreventExitStatus"] == "2"  # the CLI's exit code for bad config
    assert settings["KillSignal"] == "SIGTERM"  # the graceful stop
