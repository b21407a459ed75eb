"""Kafka's SASL_SSL listener, each part's SCRAM user and its ACLs (docs/security.md, Kafka):
each part can do its job as itself, and a part given another part's credentials is refused
by the broker; a wrong password and a client that cannot verify the broker's certificate
are refused too, and civsync says so as a fatal error.

The broker is one of this module's own (``.run/secure``: controller 29093, SASL_SSL 29094, no
PLAINTEXT listener), started here and stopped afterwards, so that its users and ACLs never touch
the development broker. Only Kafka: these clients are plain ones, no registry, no store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from pydantic import SecretStr

from civsync.config import load_settings
from civsync.services import LocalServices
from civsync.services.kafka import KafkaService
from connectors.kafka.admin import TopicAdmin, TopicSpec
from connectors.kafka.errors import KafkaFatalError, translate
from connectors.kafka.reader import read_to_end
from connectors.kafka.security import ensure_users
from connectors.merge.records import MergeTopics
from connectors.merge.settings import MergeSettings
from connectors.quarantine import QUARANTINE_TOPIC, quarantine_spec
from connectors.settings import KafkaSettings, KafkaUsersSettings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RUN_DIR = ROOT / ".run" / "secure"
SECURE = "127.0.0.1:29094"
PARTITIONS = 2
# short timeouts: a refusal is quick, and a test waiting for one must not hang
FAST = {"socket.timeout.ms": 5000, "message.timeout.ms": 8000}
USERS = KafkaUsersSettings()


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaService]:
    """This module's broker, up (its admin user ready); stopped afterwards if started here."""
    settings = load_settings(kafka={"bootstrap_servers": SECURE})
    kafka = LocalServices(RUN_DIR, settings).kafka()
    started = kafka.process.pid() is None
    if started:
        kafka.start()
    try:
        kafka.process.wait_healthy(kafka.healthy, 120.0)
        yield kafka
    finally:
        if started:  # also when it never became healthy: no broker left behind
            kafka.process.stop()


@pytest.fixture(scope="module")
def admin(broker: KafkaService) -> KafkaSettings:
    """The administrator over SASL_SSL, verifying the broker with its CA."""
    return broker.admin_settings(KafkaSettings(client_id="civsync-security-test"))


@pytest.fixture(scope="module")
def merge(admin: KafkaSettings) -> MergeSettings:
    """Topics and groups of this run's own; every part's user made, with its ACLs, over the
    secured listener; the source topics exist (the admin made them)."""
    prefix = f"sec{uuid.uuid4().hex[:8]}"
    settings = MergeSettings(topic_prefix=prefix, group=f"{prefix}-merger", partitions=PARTITIONS)
    first = ensure_users(admin, USERS, settings)
    assert first.created > 0
    again = ensure_users(admin, USERS, settings)  # idempotent
    assert (again.created, again.deleted) == (0, 0)
    TopicAdmin(admin).ensure(
        [TopicSpec(_source(settings, store), PARTITIONS) for store in ("civil", "population")]
    )
    return settings


def _as(admin: KafkaSettings, part: str) -> KafkaSettings:
    return admin.as_user(USERS.of(part))


def _source(merge: MergeSettings, store: str) -> str:
    return f"{merge.topic_prefix}.{store}.public.person"


def _produce(kafka: KafkaSettings, topic: str, key: bytes, **config: object) -> KafkaError | None:
    """Produce one record; the delivery's error (None: written)."""
    producer = Producer(kafka.client_config() | FAST | {"enable.idempotence": True} | config)
    outcome: list[KafkaError | None] = []
    producer.produce(topic, key=key, value=b"v", on_delivery=lambda err, _: outcome.append(err))
    producer.flush(15)
    assert outcome, f"no delivery report for {topic} within 15 s"
    return outcome[0]


def _consume(consumer: Consumer, key: bytes, timeout_s: float = 20.0) -> Message:
    """The record keyed ``key``; a consumer error fails the test."""
    for _ in range(int(timeout_s / 0.5)):
        message = consumer.poll(0.5)
        if message is None:
            continue
        error = message.error()
        assert error is None or error.code() == KafkaError._PARTITION_EOF, error
        if error is None and message.key() == key:
            return message
    raise AssertionError(f"no record keyed {key!r} within {timeout_s}s")


def _refused(error: KafkaError | None, code: int) -> None:
    assert error is not None, "written, though it should have been refused"
    assert error.code() == code, error
    assert isinstance(translate(error, "producing"), KafkaFatalError)


def test_each_part_does_its_job_as_itself(admin: KafkaSettings, merge: MergeSettings) -> None:
    key = uuid.uuid4().hex.encode()
    topics = MergeTopics(merge.topic_prefix)
    source = _source(merge, "civil")
    # capture-civil: ensures and writes its store's topics, and the quarantine
    capture = _as(admin, "capture_civil")
    TopicAdmin(capture, timeout_s=10).ensure([TopicSpec(source, PARTITIONS)])
    TopicAdmin(capture, timeout_s=10).ensure([quarantine_spec(PARTITIONS)])
    assert _produce(capture, source, key) is None
    assert _produce(capture, QUARANTINE_TOPIC, key) is None
    # the merger: ensures its topics and the sources (Merger.prepare), reads the source in
    # its group, and writes the person in a transaction with the group's offsets
    merger = _as(admin, "merger")
    sources = [TopicSpec(_source(merge, s), PARTITIONS) for s in ("civil", "population")]
    TopicAdmin(merger, timeout_s=10).ensure([*sources, *topics.specs(PARTITIONS)])
    consumer = Consumer(
        merger.client_config()
        | FAST
        | {"group.id": merge.group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe([source])
    producer = Producer(merger.client_config() | {"transactional.id": f"{merge.group}-0"})
    try:
        read = _consume(consumer, key)
        producer.init_transactions(15)
        producer.begin_transaction()
        producer.produce(topics.person.name, key=key, value=read.value())
        position = consumer.position(consumer.assignment())
        producer.send_offsets_to_transaction(position, consumer.consumer_group_metadata(), 15)
        producer.commit_transaction(15)
    finally:
        consumer.close()
    # sink-civil: ensures the merger's topics and its retry topic, reads the person
    sink = _as(admin, "sink_civil")
    retry = topics.sink_retry("civil")
    TopicAdmin(sink, timeout_s=10).ensure([*topics.specs(PARTITIONS), TopicSpec(retry, 2)])
    consumer = Consumer(
        sink.client_config()
        | FAST
        | {
            "group.id": f"{merge.topic_prefix}-sink-civil",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topics.person.name, retry])
    try:
        assert _consume(consumer, key).value() == b"v"
    finally:
        consumer.close()
    # the steward: reads the quarantine and the conflicts, writes a decision (an edit)
    steward = _as(admin, "steward")
    assert key in {m.key() for m in read_to_end(steward, QUARANTINE_TOPIC, timeout_s=20)}
    assert list(read_to_end(steward, topics.conflicts.name, timeout_s=20)) == []
    assert _produce(steward, topics.edits.name, key) is None


def test_a_part_with_another_parts_credentials_is_refused(
    admin: KafkaSettings, merge: MergeSettings
) -> None:
    key = uuid.uuid4().hex.encode()
    topics = MergeTopics(merge.topic_prefix)
    capture = _as(admin, "capture_civil")
    # capture-civil may not write the other store's topics, nor read the merged people
    _refused(
        _produce(capture, _source(merge, "population"), key), KafkaError.TOPIC_AUTHORIZATION_FAILED
    )
    with pytest.raises(KafkaFatalError, match="TOPIC_AUTHORIZATION_FAILED"):
        list(read_to_end(capture, topics.person.name, timeout_s=20))
    # ... nor join the merger's group, nor use its transactional id
    consumer = Consumer(capture.client_config() | FAST | {"group.id": merge.group})
    consumer.subscribe([_source(merge, "civil")])
    try:
        error = _first_error(consumer)
    finally:
        consumer.close()
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, error
    assert isinstance(translate(error, "consuming"), KafkaFatalError)
    producer = Producer(capture.client_config() | {"transactional.id": f"{merge.group}-0"})
    with pytest.raises(Exception, match="TRANSACTIONAL_ID_AUTHORIZATION_FAILED"):
        producer.init_transactions(15)
    # a sink may not write the captured topics, nor the people
    sink = _as(admin, "sink_civil")
    _refused(_produce(sink, _source(merge, "civil"), key), KafkaError.TOPIC_AUTHORIZATION_FAILED)
    _refused(_produce(sink, topics.person.name, key), KafkaError.TOPIC_AUTHORIZATION_FAILED)
    # the merger may read the sources but never write them
    merger = _as(admin, "merger")
    _refused(_produce(merger, _source(merge, "civil"), key), KafkaError.TOPIC_AUTHORIZATION_FAILED)


def _first_error(consumer: Consumer, timeout_s: float = 20.0) -> KafkaError:
    for _ in range(int(timeout_s / 0.5)):
        message = consumer.poll(0.5)
        if message is not None and message.error() is not None:
            error = message.error()
            assert error is not None
            return error
    raise AssertionError(f"no error within {timeout_s}s")


def test_only_the_steward_reads_the_quarantine(admin: KafkaSettings, merge: MergeSettings) -> None:
    capture = _as(admin, "capture_civil")
    TopicAdmin(capture, timeout_s=10).ensure([quarantine_spec(PARTITIONS)])
    assert _produce(capture, QUARANTINE_TOPIC, b"q") is None
    for part in ("capture_civil", "capture_population", "merger", "sink_civil"):
        with pytest.raises(KafkaFatalError, match="TOPIC_AUTHORIZATION_FAILED"):
            list(read_to_end(_as(admin, part), QUARANTINE_TOPIC, timeout_s=20))
    steward = _as(admin, "steward")
    assert b"q" in {m.key() for m in read_to_end(steward, QUARANTINE_TOPIC, timeout_s=20)}
    # and the steward may not write the sources, nor the people
    _refused(
        _produce(steward, _source(merge, "civil"), b"s"), KafkaError.TOPIC_AUTHORIZATION_FAILED
    )
    topics = MergeTopics(merge.topic_prefix)
    _refused(_produce(steward, topics.person.name, b"s"), KafkaError.TOPIC_AUTHORIZATION_FAILED)


def test_a_wrong_password_is_refused_as_fatal(admin: KafkaSettings, merge: MergeSettings) -> None:
    wrong = admin.model_copy(
        update={"sasl_username": "merger", "sasl_password": SecretStr("not-its-password")}
    )
    with pytest.raises(KafkaFatalError, match=r"refused this client's login.*_AUTHENTICATION"):
        TopicAdmin(wrong, timeout_s=5).names()
    unknown = wrong.model_copy(update={"sasl_username": "nobody"})
    with pytest.raises(KafkaFatalError, match="refused this client's login"):
        TopicAdmin(unknown, timeout_s=5).names()
    # a reader alone (``civsync quarantine list``, ``conflicts list``) says so too
    with pytest.raises(KafkaFatalError, match=r"reading civsync\.quarantine: the broker refused"):
        list(read_to_end(wrong, QUARANTINE_TOPIC, timeout_s=5))


def test_a_client_that_cannot_verify_the_broker_is_refused(admin: KafkaSettings) -> None:
    no_ca = admin.model_copy(update={"ssl_ca_location": None})
    with pytest.raises(KafkaFatalError, match=r"refused this client's TLS connection.*_SSL"):
        TopicAdmin(no_ca, timeout_s=5).names()
    assert "__consumer_offsets" not in TopicAdmin(admin, timeout_s=10).names()  # with it: in


def test_kafka_users_keeps_exactly_the_settings_acls(
    admin: KafkaSettings, merge: MergeSettings
) -> None:
    """An ACL added by hand is deleted by the next provisioning, as ``civsync roles`` revokes
    a grant added by hand."""
    extra = AclBinding(
        ResourceType.TOPIC,
        QUARANTINE_TOPIC,
        ResourcePatternType.LITERAL,
        "User:capture-civil",
        "*",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )
    client = AdminClient(admin.client_config())
    for future in client.create_acls([extra]).values():
        future.result(15)
    done = ensure_users(admin, USERS, merge)
    assert (done.created, done.deleted) == (0, 1)


def test_the_command_provisions_and_refuses_clearly(
    broker: KafkaService, admin: KafkaSettings, merge: MergeSettings
) -> None:
    """``civsync kafka-users`` as the admin over SASL_SSL; with a wrong admin password it
    stops with one line and exit code 4 (refused)."""
    env = {
        **os.environ,
        "CIVSYNC_KAFKA__BOOTSTRAP_SERVERS": broker.secure_bootstrap,
        "CIVSYNC_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "CIVSYNC_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "CIVSYNC_KAFKA__SASL_USERNAME": "admin",
        "CIVSYNC_KAFKA__SASL_PASSWORD": broker.admin_password.get_secret_value(),
        "CIVSYNC_KAFKA__SSL_CA_LOCATION": str(broker.ca_file),
        "CIVSYNC_MERGE__TOPIC_PREFIX": merge.topic_prefix,
        "CIVSYNC_MERGE__GROUP": merge.group,
    }
    env.pop("CIVSYNC_CONFIG", None)
    command = [sys.executable, "-m", "civsync.cli", "kafka-users"]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "capture-civil" in done.stderr
    assert "steward" in done.stderr
    env["CIVSYNC_KAFKA__SASL_PASSWORD"] = "not-the-admin-password"  # noqa: S105
    refused = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert refused.returncode == 4, refused.stderr
    assert "refused this client's login" in refused.stderr
