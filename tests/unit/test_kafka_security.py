"""Kafka security without a broker: the settings, the ACLs each part gets, the environment
``civsync run`` gives a part, and the local broker's listeners."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType
from pydantic import SecretStr
from typer.testing import CliRunner

from civsync import cli
from civsync.config import load_settings
from civsync.runner import engine_config, part_env
from civsync.services import LauncherError, LocalServices
from civsync.services.kafka import KafkaService
from connectors.kafka.security import acl_bindings, part_acls
from connectors.merge.settings import MergeSettings
from connectors.quarantine import QUARANTINE_TOPIC
from connectors.settings import DEVELOPMENT_ADMIN_PASSWORD, KAFKA_PARTS, KafkaUsersSettings
from engine.errors import ConfigError

MERGE = MergeSettings(topic_prefix="p", group="p-merger")


def _allowed(part: str, operation: AclOperation, topic: str) -> bool:
    """Whether ``part``'s ACLs allow ``operation`` on ``topic``."""
    for grant in part_acls(part, MERGE):
        if grant.resource != ResourceType.TOPIC or operation not in grant.operations:
            continue
        if topic == grant.name or (grant.prefixed and topic.startswith(grant.name)):
            return True
    return False


def test_each_part_writes_only_its_own_topics() -> None:
    writers = {
        "p.civil.public.person": {"capture_civil"},
        "p.population.public.citizen": {"capture_population"},
        "p.person": {"merger"},
        "p.merge.state": {"merger"},
        "p.conflicts": {"merger"},
        "p.merge.edits": {"merger", "steward"},
        "p.sink.civil.retry": {"steward"},
        QUARANTINE_TOPIC: {"capture_civil", "capture_population", "merger"}
        | {"sink_civil", "sink_population"},
    }
    for topic, parts in writers.items():
        assert {p for p in KAFKA_PARTS if _allowed(p, AclOperation.WRITE, topic)} == parts, topic


def test_only_the_steward_reads_the_quarantine() -> None:
    assert [p for p in KAFKA_PARTS if _allowed(p, AclOperation.READ, QUARANTINE_TOPIC)] == [
        "steward"
    ]
    readers = {p for p in KAFKA_PARTS if _allowed(p, AclOperation.READ, "p.person")}
    assert readers == {"merger", "sink_civil", "sink_population", "steward"}
    assert not _allowed("capture_civil", AclOperation.READ, "p.civil.public.person")
    assert _allowed("merger", AclOperation.READ, "p.population.public.citizen")


def test_the_merger_has_its_group_and_transactional_ids() -> None:
    grants = {(g.resource, g.name, g.prefixed) for g in part_acls("merger", MERGE)}
    assert (ResourceType.GROUP, "p-merger", False) in grants
    assert (ResourceType.TRANSACTIONAL_ID, "p-merger-", True) in grants
    sink = {(g.resource, g.name) for g in part_acls("sink_civil", MERGE)}
    assert (ResourceType.GROUP, "p-sink-civil") in sink
    assert (ResourceType.GROUP, "p-merger") not in sink


def test_bindings_name_each_part_by_its_user() -> None:
    users = KafkaUsersSettings(merger={"user": "m1"})
    bindings = acl_bindings(users, MERGE)
    principals = {b.principal for b in bindings}
    assert "User:m1" in principals
    assert "User:merger" not in principals
    assert len(principals) == len(KAFKA_PARTS)
    assert {b.resource_pattern_type for b in bindings} <= {
        ResourcePatternType.LITERAL,
        ResourcePatternType.PREFIXED,
    }


def test_kafka_users_come_from_the_environment_and_stay_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CIVSYNC_KAFKA_USERS__MERGER__PASSWORD", "s3cret-merger")
    monkeypatch.setenv("CIVSYNC_KAFKA__SSL_CA_LOCATION", "/etc/civsync/kafka-ca.crt")
    settings = load_settings()
    assert settings.kafka_users.merger.user == "merger"
    assert settings.kafka_users.merger.password.get_secret_value() == "s3cret-merger"
    assert "s3cret-merger" not in repr(settings)
    merger = settings.kafka_part("merger")
    config = merger.client_config()
    assert config["ssl.ca.location"] == "/etc/civsync/kafka-ca.crt"
    assert (merger.sasl_username, config["security.protocol"]) == ("merger", "SASL_SSL")


def test_two_parts_may_not_share_a_kafka_user() -> None:
    with pytest.raises(ConfigError, match="a Kafka user of its own"):
        load_settings(kafka_users={"sink_civil": {"user": "merger"}})
    with pytest.raises(ConfigError, match="super user"):
        load_settings(kafka_users={"steward": {"user": "admin"}})


def test_run_gives_each_part_its_kafka_user_only_with_sasl() -> None:
    plain = load_settings(kafka={"security_protocol": "PLAINTEXT"})
    assert "CIVSYNC_KAFKA__SASL_USERNAME" not in part_env(plain, "merger")
    assert "sasl.username" not in plain.kafka.client_config()
    secure = load_settings(
        kafka={"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"},
        kafka_users={"sink_civil": {"password": "sink-pw"}},
    )
    assert part_env(secure, "merger-1")["CIVSYNC_KAFKA__SASL_USERNAME"] == "merger"
    env = part_env(secure, "sink-civil")
    assert env["CIVSYNC_KAFKA__SASL_USERNAME"] == "sink-civil"
    assert env["CIVSYNC_KAFKA__SASL_PASSWORD"] == "sink-pw"  # noqa: S105
    assert env["CIVSYNC_CIVIL__USER"] == "civsync_sink_civil"  # the store's role, as before
    assert part_env(secure, "capture-population")["CIVSYNC_KAFKA__SASL_USERNAME"] == (
        "capture-population"
    )


def test_the_local_broker_listens_over_sasl_ssl_and_in_clear_only_when_asked(
    tmp_path: Path,
) -> None:
    kafka = KafkaService(tmp_path / "kafka", "127.0.0.1", 29092)
    config = kafka._write_config().read_text()
    assert (kafka.controller_port, kafka.secure_port) == (29093, 29094)
    assert "listeners=SASL_SSL://127.0.0.1:29094,CONTROLLER://127.0.0.1:29093" in config
    assert "PLAINTEXT://127.0.0.1:29092" not in config
    assert "inter.broker.listener.name=SASL_SSL" in config
    assert 'username="admin" password="civsync-admin";' in config
    assert "org.apache.kafka.metadata.authorizer.StandardAuthorizer" in config
    assert "allow.everyone.if.no.acl.found=false" in config
    assert "super.users=User:admin;User:ANONYMOUS" in config
    assert f"ssl.keystore.location={kafka.keystore}" in config
    assert (tmp_path / "kafka" / "server.properties").stat().st_mode & 0o077 == 0  # a password
    plain = KafkaService(tmp_path / "plain", "127.0.0.1", 29092, plaintext=True)
    assert "PLAINTEXT://127.0.0.1:29092" in plain._write_config().read_text()
    assert plain.bootstrap == "127.0.0.1:29092"


def test_the_launcher_finds_the_broker_and_admins_password_in_kafka_settings(
    tmp_path: Path,
) -> None:
    secure = LocalServices(tmp_path, load_settings(kafka={"sasl_password": "pw"})).kafka()
    assert (secure.port, secure.plaintext, secure.bootstrap) == (9092, False, "127.0.0.1:9094")
    assert secure.admin_password.get_secret_value() == "pw"
    steward = load_settings(kafka={"sasl_username": "steward", "sasl_password": "x"})
    assert LocalServices(tmp_path, steward).kafka().admin_password == DEVELOPMENT_ADMIN_PASSWORD
    plain = load_settings(
        kafka={"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    )
    broker = LocalServices(tmp_path, plain).kafka()
    assert (broker.port, broker.plaintext) == (9092, True)


def test_an_engine_config_reaches_the_secured_broker_without_the_admins_password(
    tmp_path: Path,
) -> None:
    """The demo's engine config: the SASL_SSL listener, its mechanism and CA, and no login;
    each part logs in as its own user (``part_env``), a command given it as the defaults or
    the environment say (``admin`` by default)."""
    kafka = KafkaService(tmp_path / "kafka", "127.0.0.1", 29092, SecretStr("admin-pw"))
    admin = kafka.admin_settings(load_settings().kafka)
    assert (admin.bootstrap_servers, admin.sasl_username) == ("127.0.0.1:29094", "admin")
    assert admin.ssl_ca_location == kafka.ca_file
    settings = load_settings(kafka=admin.model_dump())
    config = engine_config(
        tmp_path / "engine.toml", settings, {"civil": "a", "population": "b"}, "p"
    )
    assert "admin-pw" not in config.read_text()
    engine = load_settings(config)
    assert (engine.kafka.security_protocol, engine.kafka.sasl_mechanism) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
    )
    assert engine.kafka.ssl_ca_location == kafka.ca_file
    assert "sasl_username" not in config.read_text()  # the defaults' (admin), or the env's
    assert part_env(engine, "sink-civil")["CIVSYNC_KAFKA__SASL_USERNAME"] == "sink-civil"
    assert settings.kafka_login("steward").sasl_username == "admin"  # as configured
    assert load_settings().kafka_login("steward").sasl_username == "admin"  # the default


def test_a_sasl_client_with_no_login_is_a_configuration_error() -> None:
    """A config that names nobody (``sasl_username = ""``): a command given it says what to
    set, instead of librdkafka's traceback; a steward's command logs in as the steward."""
    settings = load_settings(kafka={"sasl_username": ""})
    with pytest.raises(ConfigError, match=r"names no sasl_username and sasl_password"):
        settings.kafka.client_config()
    assert settings.kafka_login("merger").client_config()["sasl.username"] == "merger"
    assert settings.kafka_login("steward").sasl_username == "steward"


def test_services_env_gives_a_shell_the_local_brokers_secured_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIVSYNC_KAFKA__SASL_PASSWORD", "pw with 'quotes' and spaces")
    result = CliRunner().invoke(cli.app, ["services", "env", "--run-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    exports = dict(
        shlex.split(line)[1].split("=", 1) for line in result.stdout.splitlines() if line
    )
    assert exports["CIVSYNC_KAFKA__BOOTSTRAP_SERVERS"] == "127.0.0.1:9094"
    assert exports["CIVSYNC_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert exports["CIVSYNC_KAFKA__SASL_USERNAME"] == "admin"
    assert exports["CIVSYNC_KAFKA__SASL_PASSWORD"] == "pw with 'quotes' and spaces"  # noqa: S105
    assert exports["CIVSYNC_KAFKA__SSL_CA_LOCATION"] == str(tmp_path / "kafka" / "ca.crt")


def test_the_launcher_refuses_an_admin_password_kafkas_storage_tool_would_split(
    tmp_path: Path,
) -> None:
    kafka = KafkaService(tmp_path / "kafka", "127.0.0.1", 39092, SecretStr("a,b"))
    with pytest.raises(LauncherError, match="cannot take an admin password"):
        kafka.start()
    assert not (tmp_path / "kafka").exists()  # refused before anything was made
