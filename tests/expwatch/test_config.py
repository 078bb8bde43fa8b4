from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from expwatch import config
from expwatch.config import load_config
from store import ID_LENGTH, ConfigError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "expwatch.toml"
    path.write_text(text)
    return path


def test_the_example_config_is_valid_and_documents_every_key() -> None:
    """config.example.toml loads, and each settings key appears in it with a comment."""
    settings = load_config(ROOT / "config.example.toml")
    assert "growthbook" in settings.sources
    text = (ROOT / "config.example.toml").read_text()
    models: list[type[BaseModel]] = [
        config.Settings,
        config.StoreSettings,
        config.WatcherSettings,
        config.GrowthBookSourceSettings,
        config.StatsigSourceSettings,
        config.AlertSettings,
        config.AlertTargetSettings,
        config.AlertRuleSettings,
        config.RateLimitSettings,
        config.QuietHoursSettings,
        config.McpSettings,
    ]
    for model in models:
        for key in model.model_fields:
            if key == "config_path":
                continue
            documented = f"{key} =" in text or re.search(rf"^#? ?\[+[\w.]*\b{key}\b", text, re.M)
            assert documented, f"config.example.toml does not document {model.__name__}.{key}"


def test_a_typo_names_the_key_the_file_and_the_likely_meaning(tmp_path: Path) -> None:
    """An unknown key is an error that says where it is and what was probably meant."""
    path = write(tmp_path, "[watcher]\npoll_intervall_seconds = 5\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert "watcher.poll_intervall_seconds: unknown key" in message
    assert "did you mean 'poll_interval_seconds'" in message
    assert caught.value.key == "watcher.poll_intervall_seconds"


def test_a_bad_value_names_the_key_and_hides_the_value(tmp_path: Path) -> None:
    """A wrong type is reported by key, without echoing the (possibly secret) value."""
    path = write(
        tmp_path,
        '[sources.gb]\napi_key = "k"\nbase_url = "not-a-url-s3cr3t"\n'
        "[watcher]\npoll_interval_seconds = -1\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "sources.gb.base_url" in message and "watcher.poll_interval_seconds" in message
    assert "s3cr3t" not in message


def test_an_id_or_source_name_longer_than_the_store_keeps_is_refused_at_load(
    tmp_path: Path,
) -> None:
    """An experiment id (watched or excluded) or a source name past ID_LENGTH characters is a
    ConfigError naming the key, not a poll whose records no database could keep."""
    long = "x" * (ID_LENGTH + 1)
    path = write(
        tmp_path,
        f'[sources.gb]\napi_key = "k"\nexperiments = ["exp_a", "{long}"]\nexclude = ["{long}"]\n'
        f'[sources.{long}]\napi_key = "k"\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "sources.gb.experiments.1" in message and "sources.gb.exclude.0" in message
    assert f"sources.{long}" in message and f"at most {ID_LENGTH} characters" in message
    fine = write(tmp_path, f'[sources.gb]\napi_key = "k"\nexperiments = ["{long[1:]}"]\n')
    assert load_config(fine).sources["gb"].experiments == [long[1:]]


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    """Pointing at a file that is not there says so, with the path."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_invalid_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    """A syntax error names the file and the parser's position."""
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[watcher\n"))


def test_environment_overrides_merge_into_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EXPWATCH_A__B overrides one key of a file's table and keeps the rest."""
    path = write(
        tmp_path,
        '[watcher]\npoll_timeout_seconds = 7\n[sources.gb]\napi_key = "from-file"\n',
    )
    monkeypatch.setenv("EXPWATCH_WATCHER__POLL_INTERVAL_SECONDS", "42")
    monkeypatch.setenv("EXPWATCH_SOURCES__GB__API_KEY", "from-env")
    settings = load_config(path)
    assert settings.watcher.poll_interval_seconds == 42
    assert settings.watcher.poll_timeout_seconds == 7
    assert settings.sources["gb"].api_key.get_secret_value() == "from-env"


def test_secrets_never_show_in_the_settings_repr(tmp_path: Path) -> None:
    """API keys and alert URLs print masked."""
    settings = load_config(
        write(
            tmp_path,
            '[sources.gb]\napi_key = "secret_abc"\n'
            '[alerts.targets.hook]\nurl = "json://user:pw_xyz@host/"\n',
        )
    )
    assert "secret_abc" not in repr(settings) and "pw_xyz" not in repr(settings)


def test_a_relative_database_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    """The database sits beside the config file, wherever the daemon is started."""
    settings = load_config(write(tmp_path, '[store]\npath = "data/x.db"\n'))
    assert settings.database_url() == f"sqlite+aiosqlite:///{tmp_path.resolve()}/data/x.db"
