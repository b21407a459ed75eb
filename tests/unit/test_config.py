"""Settings: file, environment precedence, partial overrides, errors naming the field; each
engine part's own database role and the TLS settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from civsync.config import load_settings
from civsync.runner import engine_config, part_env
from connectors.settings import PART_STORES
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
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9094"
    assert str(settings.registry.url) == "https://127.0.0.1:8081/apis/ccompat/v7"
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


def test_each_part_has_a_role_of_its_own_and_keeps_the_stores_endpoint() -> None:
    settings = load_settings()
    users = {part: settings.roles.of(part).user for part in PART_STORES}
    assert len(set(users.values())) == len(users)
    assert settings.civil.user not in users.values()

    capture = settings.part_store("capture", "population")
    assert (capture.user, capture.password.get_secret_value()) == (
        "civsync_capture",
        "civsync-capture",
    )
    assert (capture.host, capture.port, capture.dbname, capture.sslmode) == (
        "127.0.0.1",
        5434,
        "population",
        "prefer",
    )
    reconcile = settings.as_part("reconcile")
    assert {reconcile.civil.user, reconcile.population.user} == {"civsync_reconcile"}
    assert set(settings.roles.in_store("civil")) == {"capture", "sink_civil", "reconcile"}
    with pytest.raises(ValueError, match="no part 'merger'"):
        settings.roles.of("merger")


def test_a_roles_password_comes_from_the_environment_and_stays_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CIVSYNC_ROLES__SINK_CIVIL__PASSWORD", "sink-s3cret")
    settings = load_settings()
    assert settings.part_store("sink_civil", "civil").password.get_secret_value() == "sink-s3cret"
    assert settings.roles.sink_civil.user == "civsync_sink_civil"  # the rest is kept
    assert "sink-s3cret" not in repr(settings)


def test_two_parts_cannot_share_a_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVSYNC_ROLES__RECONCILE__USER", "civsync_capture")
    with pytest.raises(ConfigError, match="each part needs a user of its own"):
        load_settings()


def test_the_runner_gives_captures_and_sinks_their_own_login(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(kafka={"security_protocol": "PLAINTEXT"})  # no Kafka users
    assert part_env(settings, "merger") == {}
    env = part_env(settings, "sink-population")
    assert env == {
        "CIVSYNC_POPULATION__USER": "civsync_sink_population",
        "CIVSYNC_POPULATION__PASSWORD": "civsync-sink_population",
    }
    for key, value in part_env(settings, "capture-civil").items():
        monkeypatch.setenv(key, value)
    seen_by_the_part = load_settings()
    assert seen_by_the_part.civil.user == "civsync_capture"
    assert seen_by_the_part.population.user == "civsync"  # the store it does not reach


def test_tls_settings_reach_libpq_and_engine_configs(tmp_path: Path) -> None:
    settings = load_settings(
        _write(tmp_path, '[civil]\nsslmode = "verify-full"\nsslrootcert = "/etc/ca.crt"\n')
    )
    assert "sslmode=verify-full" in settings.civil.conninfo()
    assert "sslrootcert=/etc/ca.crt" in settings.civil.conninfo()
    assert "sslrootcert" not in settings.population.conninfo()
    config = engine_config(
        tmp_path / "engine.toml", settings, {"civil": "a", "population": "b"}, "p"
    )
    engine = load_settings(config)
    assert (engine.civil.dbname, engine.civil.sslmode) == ("a", "verify-full")
    assert engine.civil.sslrootcert == Path("/etc/ca.crt")
    with pytest.raises(ConfigError, match=r"civil\.sslmode"):
        load_settings(_write(tmp_path, '[civil]\nsslmode = "on"\n'))
