"""Topic creation with explicit partitions, replication and retention, seen by kcat too."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from civsync.config import CivsyncSettings
from civsync.services import LocalServices
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


def test_kcat_lists_the_topics_the_tests_create(
    settings: CivsyncSettings, topic_admin: TopicAdmin, fresh_topics: list[str], unique_name: str
) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "kcat is part of the test setup (make setup installs the Debian package)"
    fresh_topics.append(unique_name)
    topic_admin.ensure([TopicSpec(unique_name, partitions=5)])

    # Over the PLAINTEXT listener: Debian's kcat links librdkafka 2.0.2, whose SCRAM a Kafka 4
    # broker refuses as invalid credentials (edenhill/kcat#462; fixed in librdkafka 2.6.1).
    plaintext = LocalServices(RUN_DIR, settings).kafka().bootstrap
    listing = subprocess.run(
        [kcat, "-L", "-J", "-b", plaintext],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    topics = {topic["topic"]: topic for topic in json.loads(listing.stdout)["topics"]}
    assert unique_name in topics
    assert len(topics[unique_name]["partitions"]) == 5


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
