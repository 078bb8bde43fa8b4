"""A short run of bench/crash_loop.py: `expwatch run` SIGKILLed at random moments and
restarted, then its database and the webhook receiver compared with an uninterrupted run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def crash_loop_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crash_loop", ROOT / "bench" / "crash_loop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


@pytest.mark.anyio
@pytest.mark.timeout(600)
async def test_sigkilled_daemons_lose_and_double_nothing(tmp_path: Path, long_run: bool) -> None:
    """Every snapshot and event of the uninterrupted run is recorded exactly once, every
    alert reaches the receiver, copies after the first are flagged possible_duplicate, and
    the database passes its integrity check (6 kills; 50 with --long)."""
    crash_loop = crash_loop_module()
    report = await crash_loop.run_crash_loop(
        tmp_path,
        kills=50 if long_run else 6,
        experiments=12 if long_run else 6,
        refreshes=60 if long_run else 12,
        seed=11,
        deadline_seconds=1500 if long_run else 240,
    )
    log = (tmp_path / "daemon.log").read_text(errors="replace")
    assert report.problems == [], log[-3000:]
    assert report.kills == report.restarts == (50 if long_run else 6)
    # The comparison covered real work: snapshots, events and alerts all flowed.
    assert report.snapshots_recorded == report.snapshots_expected > 0
    assert report.events_recorded == report.events_expected > 0
    assert report.alerts_expected > 0 and report.alerts_received >= report.alerts_expected
    assert report.integrity == "ok"
    assert "Traceback" not in log
