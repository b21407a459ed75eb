"""Topic creation with explicit partitions, replication and retention, seen by Kafka's own
topic tool too."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from civsync.config import CivsyncSettings
from civsync.services.connect import tools
from civsync.services.kafka import properties_line
from connectors.kafka.admin import FOREVER, TopicAdmin, TopicSpec
from connectors.kafka.errors import KafkaFatalError
from tests.integration.conftest import RUN_DIR

WEEK_MS = 7 * 24 * 3600 * 1000


def test_ensure_creates_topics_as_specified_and_is_idempotent(
    topic_admin: TopicAdmin, fresh_topics: list[str], unique_name: str
) -> None:
    specs = [
        TopicSpec(f"{unique_name}.events", partitions=6, retention_ms=WEEK_MS),
        TopicSpec(f"{unique_name}.person", partitions=3, retention_ms=FOREVER, compacted=True),
    ]
    fresh_topics.extend(spec.name for spec in specs)

    assert topic_admin.ensure(specs) == [spec.name for spec in specs]
    assert topic_admin.ensure(specs) == []

    events = topic_admin.describe(specs[0].name)
    assert (events.partitions, events.replication_factor) == (6, 1)
    assert events.config["retention.ms"] == str(WEEK_MS)
    assert events.config["cleanup.policy"] == "delete"
    person = topic_admin.describe(specs[1].name)
    assert person.partitions == 3
    assert person.config["cleanup.policy"] == "compact"
    assert person.config["retention.ms"] == "-1"


def test_an_existing_topic_that_differs_from_its_spec_is_refused(
    topic_admin: TopicAdmin, fresh_topics: list[str], unique_name: str
) -> None:
    fresh_topics.append(unique_name)
    topic_admin.ensure([TopicSpec(unique_name, partitions=2)])
    with pytest.raises(KafkaFatalError, match="partitions: wanted 4, found 2"):
        topic_admin.ensure([TopicSpec(unique_name, partitions=4)])


def test_kafkas_own_topic_tool_sees_the_topics_the_tests_create(
    settings: CivsyncSettings,
    topic_admin: TopicAdmin,
    fresh_topics: list[str],
    unique_name: str,
    tmp_path: Path,
) -> None:
    """A stock client, logged in as civsync's settings say: Kafka's ``TopicCommand`` (Java).
    (Debian's kcat links librdkafka 2.0.2, whose SCRAM a Kafka 4 broker refuses as invalid
    credentials: edenhill/kcat#462, fixed in librdkafka 2.6.1.)"""
    fresh_topics.append(unique_name)
    topic_admin.ensure([TopicSpec(unique_name, partitions=5)])
    config = tmp_path / "client.properties"
    config.write_text(
        "\n".join(properties_line(k, v) for k, v in settings.kafka.java_properties().items())
    )
    described = subprocess.run(
        [
            "java",
            "-cp",
            f"{tools(RUN_DIR / 'connect') / 'lib'}/*",
            "org.apache.kafka.tools.TopicCommand",
            "--bootstrap-server",
            settings.kafka.bootstrap_servers,
            "--command-config",
            str(config),
            "--describe",
            "--topic",
            unique_name,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert described.returncode == 0, described.stderr[-2000:]
    assert f"Topic: {unique_name}\t" in described.stdout
    assert "PartitionCount: 5\t" in described.stdout


def test_a_groups_progress_and_lag_are_its_committed_offsets(
    settings: CivsyncSettings,
    topic_admin: TopicAdmin,
    fresh_topics: list[str],
    unique_name: str,
) -> None:
    """Read through a consumer of the group, never the admin client's
    ``list_consumer_group_offsets`` (which killed the first demo on a new broker)."""
    fresh_topics.append(unique_name)
    topic_admin.ensure([TopicSpec(unique_name, partitions=2)])
    producer = Producer(settings.kafka.client_config())
    for n in range(10):
        producer.produce(unique_name, value=b"%d" % n, partition=n % 2)
    assert producer.flush(30) == 0
    group = f"{unique_name}-group"
    assert topic_admin.group_progress(group) == (0, 0)  # a group that never committed
    consumer = Consumer(
        settings.kafka.client_config() | {"group.id": group, "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(unique_name, 0, 0), TopicPartition(unique_name, 1, 0)])
    consumer.commit(
        offsets=[TopicPartition(unique_name, 0, 3), TopicPartition(unique_name, 1, 5)],
        asynchronous=False,
    )
    consumer.close()
    assert topic_admin.group_progress(group) == (8, 2)  # 3 + 5 committed, 2 + 0 left
    assert topic_admin.group_lag(group) == {(unique_name, 0): 2, (unique_name, 1): 0}
