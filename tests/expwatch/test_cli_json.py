"""`--json` on the commands that change or check something: one JSON object for scripts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from expwatch.cli import main


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "expwatch.toml"
    path.write_text(
        '[store]\npath = "json.db"\n[sources.gb]\napi_key = "secret_json_key"\n'
        '[alerts.targets.hook]\nurl = "json://127.0.0.1:9/"\n'
    )
    return path


def run(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


def test_watch_and_unwatch_report_the_change_as_json(config: Path) -> None:
    """watch/unwatch --json say which source and experiment, the new state, and whether it
    changed (a repeat does not)."""
    watched = {"source": "gb", "experiment_id": "exp_a", "watched": True, "changed": True}
    assert run("watch", "exp_a", "--config", str(config)) == watched
    assert run("watch", "exp_a", "--config", str(config)) == {**watched, "changed": False}
    assert run("unwatch", "exp_a", "--config", str(config)) == {**watched, "watched": False}


def test_check_config_and_prune_report_as_json(config: Path) -> None:
    """check-config --json lists sources and targets (never a key or URL); prune --json
    gives its counts."""
    checked = run("check-config", "--config", str(config))
    assert checked == {
        "sources": {"gb": "growthbook"},
        "alert_targets": ["hook"],
        "database": str(config.parent / "json.db"),
    }
    assert "secret_json_key" not in json.dumps(checked)
    pruned = run("prune", "--older-than-days", "30", "--config", str(config))
    assert pruned == {"snapshots_deleted": 0, "metric_rows_deleted": 0, "older_than_days": 30.0}
