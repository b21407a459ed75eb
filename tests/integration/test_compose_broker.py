"""docker/compose.yml's Kafka broker (``docker/kafka/broker.sh``), run here as compose runs
it but with Kafka's jars from Maven Central instead of the apache/kafka image: its first start
makes the certificate and formats the storage with admin's SCRAM credential; admin then logs
in over SASL_SSL verifying the broker with the CA file the script wrote, each part's user
gets its ACLs and is refused everything else, a wrong password is refused, and a restart
keeps the certificate, the storage and the users.

Its own directory (``.run/compose-broker``, made afresh) and ports (controller 39093,
SASL_SSL 39094): it never touches the development broker."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from civsync.config import load_settings
from civsync.services import LocalServices
from connectors.kafka.admin import TopicAdmin, TopicSpec
from connectors.kafka.errors import KafkaFatalError
from connectors.kafka.security import ensure_users
from connectors.merge.settings import MergeSettings
from connectors.quarantine import QUARANTINE_TOPIC
from connectors.settings import KafkaSettings, KafkaUsersSettings
from tests.integration.conftest import RUN_DIR

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docker" / "kafka" / "broker.sh"
HOME = RUN_DIR / "compose-broker"
BOOTSTRAP = "127.0.0.1:39094"
PASSWORD = "compose-admin-secret"  # noqa: S105 - this test's own broker


def _start() -> subprocess.Popen[bytes]:
    """The script in the background, as compose's entrypoint; its output in HOME/stdout.log."""
    dist = LocalServices(RUN_DIR, load_settings()).kafka().distribution()
    with (HOME / "stdout.log").open("ab") as log:
        return subprocess.Popen(
            ["sh", str(SCRIPT)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ
            | {
                "CIVSYNC_KAFKA_ADMIN_PASSWORD": PASSWORD,
                "CIVSYNC_KAFKA_LISTENERS": "SASL_SSL://127.0.0.1:39094",
                "CIVSYNC_KAFKA_ADVERTISED": f"SASL_SSL://{BOOTSTRAP}",
                "CIVSYNC_KAFKA_CONTROLLER_PORT": "39093",
                "CIVSYNC_KAFKA_DATA_DIR": str(HOME / "data"),
                "CIVSYNC_TLS_DIR": str(HOME / "tls"),
                "KAFKA_CLASSPATH": f"{dist / 'lib'}/*",
                "KAFKA_HEAP_OPTS": "-Xms128m -Xmx384m",
            },
        )


def _admin(password: str = PASSWORD) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=BOOTSTRAP,
        sasl_username="admin",
        sasl_password=SecretStr(password),
        ssl_ca_location=HOME / "tls" / "ca.crt",
        client_id="civsync-compose-broker-test",
    )


def _up(process: subprocess.Popen[bytes]) -> None:
    """Until admin logs in; fails with the script's output if it exits or takes 120 s."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            TopicAdmin(_admin(), timeout_s=3).names()
        except KafkaFatalError:
            raise
        except Exception:  # noqa: S112 - not listening yet
            continue
        return
    pytest.fail(f"the broker did not come up:\n{(HOME / 'stdout.log').read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(60)


@pytest.fixture(scope="module")
def broker() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The broker's process (the one running now: a test restarts it)."""
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    running = [_start()]
    try:
        _up(running[0])
        yield running
    finally:
        _stop(running[-1])


def test_the_first_start_makes_a_private_key_and_a_public_ca(
    broker: list[subprocess.Popen[bytes]],
) -> None:
    tls = HOME / "tls"
    assert (tls / "broker.p12").stat().st_mode & 0o777 == 0o600
    assert (HOME / "data" / "server.properties").stat().st_mode & 0o777 == 0o600
    assert (tls / "ca.crt").stat().st_mode & 0o777 == 0o644
    assert (tls / "ca.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert PASSWORD not in (HOME / "stdout.log").read_text()


def test_each_part_gets_its_acls_and_a_wrong_password_is_refused(
    broker: list[subprocess.Popen[bytes]],
) -> None:
    users, merge = KafkaUsersSettings(), MergeSettings(topic_prefix="compose", group="compose-m")
    assert ensure_users(_admin(), users, merge).created > 0
    TopicAdmin(_admin()).ensure([TopicSpec(QUARANTINE_TOPIC, 1)])
    sink = _admin().as_user(users.of("sink_civil"))
    with pytest.raises(KafkaFatalError, match="TOPIC_AUTHORIZATION_FAILED"):
        TopicAdmin(sink, timeout_s=10).ensure([TopicSpec("compose.civil.public.person", 1)])
    with pytest.raises(KafkaFatalError, match="refused this client's login"):
        TopicAdmin(_admin("not-the-password"), timeout_s=10).names()


def test_a_restart_keeps_the_certificate_the_storage_and_the_users(
    broker: list[subprocess.Popen[bytes]],
) -> None:
    ca = (HOME / "tls" / "ca.crt").read_bytes()
    TopicAdmin(_admin()).ensure([TopicSpec("compose.kept", 1)])
    _stop(broker[-1])
    broker.append(_start())
    _up(broker[-1])
    assert (HOME / "tls" / "ca.crt").read_bytes() == ca
    assert "compose.kept" in TopicAdmin(_admin()).names()
