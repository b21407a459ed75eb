"""Settings: file, environment precedence, partial overrides, errors naming the field."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from civsync.config import load_settings
from engine.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CIVSYNC_"):
            monkeypatch.delenv(key)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "civsync.toml"
    path.write_text(text)
    return path


def test_defaults_point_at_the_local_launcher() -> None:
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert str(settings.registry.url) == "http://127.0.0.1:8081/apis/ccompat/v7"
    assert (settings.civil.port, settings.civil.dbname) == (5433, "civil")
    assert (settings.population.port, settings.population.dbname) == (5434, "population")


def test_environment_overrides_the_file_field_by_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _write(tmp_path, '[kafka]\nbootstrap_servers = "kafka-a:9092"\n[civil]\nport = 6000\n')
    monkeypatch.setenv("CIVSYNC_KAFKA__BOOTSTRAP_SERVERS", "kafka-b:9092")
    monkeypatch.setenv("CIVSYNC_POPULATION__HOST", "population.internal")

    settings = load_settings(config)

    assert settings.kafka.bootstrap_servers == "kafka-b:9092"
    assert (settings.civil.port, settings.civil.dbname) == (6000, "civil")
    assert (settings.population.host, settings.population.port) == ("population.internal", 5434)


def test_config_file_comes_from_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIVSYNC_CONFIG", str(_write(tmp_path, "[civil]\ndbname = 'hotich'\n")))
    assert load_settings().civil.dbname == "hotich"


def test_a_bad_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVSYNC_POPULATION__PORT", "not-a-port")
    with pytest.raises(ConfigError, match=r"population\.port"):
        load_settings()


def test_an_unknown_field_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap_server"):
        load_settings(_write(tmp_path, '[kafka]\nbootstrap_server = "typo:9092"\n'))


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")


def test_secrets_stay_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVSYNC_CIVIL__PASSWORD", "s3cret-value")
    settings = load_settings()
    assert "s3cret-value" not in repr(settings)
    assert "password=s3cret-value" in settings.civil.conninfo()
