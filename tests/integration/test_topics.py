"""Topic creation with explicit partitions, replication and retention, seen by kcat too."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from civsync.config import CivsyncSettings
from connectors.kafka.admin import FOREVER, TopicAdmin, TopicSpec
from connectors.kafka.errors import KafkaFatalError

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

    listing = subprocess.run(
        [kcat, "-L", "-J", "-b", settings.kafka.bootstrap_servers],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    topics = {topic["topic"]: topic for topic in json.loads(listing.stdout)["topics"]}
    assert unique_name in topics
    assert len(topics[unique_name]["partitions"]) == 5
