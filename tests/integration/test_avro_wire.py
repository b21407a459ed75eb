"""Avro records round-trip through the real broker and registry in the registry wire format."""

from __future__ import annotations

import datetime as dt
import json
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer, TopicPartition

from civsync.config import CivsyncSettings
from connectors.kafka.admin import TopicAdmin, TopicSpec
from connectors.kafka.avro import (
    AvroConsumer,
    AvroDecoder,
    AvroProducer,
    AvroTopic,
    DecodingError,
    EncodingError,
    TransactionalProducer,
    schema_id,
)
from connectors.kafka.errors import KafkaRetriableError
from connectors.registry import BACKWARD_TRANSITIVE, RegistryRejectedError, SchemaRegistry

SCHEMAS = Path(__file__).parent / "schemas"
VALUE_SCHEMA = (SCHEMAS / "citizen_probe.avsc").read_text()
KEY_SCHEMA = (SCHEMAS / "citizen_probe_key.avsc").read_text()

CITIZENS: list[dict[str, Any]] = [
    {
        "pin": "001099012345",
        "full_name": "Nguyễn Thị Hương",
        "birth_date": dt.date(1999, 3, 1),
        "commune_code": "00004",
        "version": 1,
    },
    {
        "pin": "079203000777",
        "full_name": "Trần Đức Lộc",
        "birth_date": None,
        "commune_code": None,
        "version": 2,
    },
    {
        "pin": "036185004321",
        "full_name": "Lê Văn Ửng",
        "birth_date": dt.date(1985, 12, 31),
        "commune_code": "13456",
        "version": 3,
    },
]


@pytest.fixture
def probe_topic(topic_admin: TopicAdmin, fresh_topics: list[str], unique_name: str) -> AvroTopic:
    topic_admin.ensure([TopicSpec(unique_name, partitions=3)])
    fresh_topics.append(unique_name)
    return AvroTopic(unique_name, KEY_SCHEMA, VALUE_SCHEMA)


def _consume(
    settings: CivsyncSettings, registry: SchemaRegistry, topic: str, count: int
) -> list[Any]:
    consumer = AvroConsumer(settings.kafka, registry, group_id=f"{topic}-reader")
    consumer.subscribe([topic])
    records = []
    try:
        for _ in range(120):
            record = consumer.poll(0.5)
            if record is not None:
                records.append(record)
            if len(records) == count:
                break
    finally:
        consumer.close()
    return records


def _publish_first_citizen(
    settings: CivsyncSettings, registry: SchemaRegistry, topic: AvroTopic
) -> None:
    producer = AvroProducer(settings.kafka, registry)
    producer.produce(topic, {"pin": CITIZENS[0]["pin"]}, CITIZENS[0])
    producer.flush()


def test_records_round_trip_with_diacritics_and_dates(
    settings: CivsyncSettings, registry: SchemaRegistry, probe_topic: AvroTopic
) -> None:
    producer = AvroProducer(settings.kafka, registry)
    for citizen in CITIZENS:
        producer.produce(probe_topic, {"pin": citizen["pin"]}, citizen)
    producer.flush()

    records = _consume(settings, registry, probe_topic.name, len(CITIZENS))

    by_pin = {record.key["pin"]: record.value for record in records}
    assert by_pin == {citizen["pin"]: citizen for citizen in CITIZENS}
    for value in by_pin.values():
        assert unicodedata.is_normalized("NFC", value["full_name"])
    assert len({record.value_schema_id for record in records}) == 1


def test_wire_format_carries_a_schema_id_the_registry_serves(
    settings: CivsyncSettings, registry: SchemaRegistry, probe_topic: AvroTopic
) -> None:
    _publish_first_citizen(settings, registry, probe_topic)

    raw = Consumer(
        settings.kafka.client_config()
        | {"group.id": f"{probe_topic.name}-raw", "auto.offset.reset": "earliest"}
    )
    raw.subscribe([probe_topic.name])
    message = None
    for _ in range(60):
        message = raw.poll(0.5)
        if message is not None and message.error() is None:
            break
    raw.close()
    assert message is not None
    payload = message.value()
    assert payload is not None
    assert payload[0] == 0  # magic byte
    registered_id = schema_id(payload)

    served = registry.writer_schema(registered_id)
    assert fastavro.parse_schema(json.loads(served)) == fastavro.parse_schema(
        json.loads(VALUE_SCHEMA)
    )

    for subject in (f"{probe_topic.name}-key", f"{probe_topic.name}-value"):  # TopicNameStrategy
        assert registry.client.get_versions(subject) == [1]


def test_backward_transitive_rejects_an_incompatible_schema(
    settings: CivsyncSettings, registry: SchemaRegistry, probe_topic: AvroTopic
) -> None:
    _publish_first_citizen(settings, registry, probe_topic)
    subject = f"{probe_topic.name}-value"
    registry.set_compatibility(subject, BACKWARD_TRANSITIVE)
    assert registry.compatibility(subject) == BACKWARD_TRANSITIVE

    widened = json.loads(VALUE_SCHEMA)
    widened["fields"].append({"name": "ethnicity", "type": "string"})  # new field, no default
    incompatible = AvroTopic(probe_topic.name, KEY_SCHEMA, json.dumps(widened))
    with pytest.raises(RegistryRejectedError, match=f"under {probe_topic.name}-value"):
        AvroProducer(settings.kafka, registry).produce(
            incompatible, {"pin": "x"}, {**CITIZENS[0], "ethnicity": "Kinh"}
        )

    widened["fields"][-1]["default"] = "unknown"  # with a default it is backward compatible
    compatible = AvroTopic(probe_topic.name, KEY_SCHEMA, json.dumps(widened))
    evolved = AvroProducer(settings.kafka, registry)
    evolved.produce(compatible, {"pin": "x"}, {**CITIZENS[0], "ethnicity": "Kinh"})
    evolved.flush()


def test_a_record_that_does_not_fit_its_schema_is_an_encoding_error(
    settings: CivsyncSettings, registry: SchemaRegistry, probe_topic: AvroTopic
) -> None:
    producer = AvroProducer(settings.kafka, registry)
    with pytest.raises(EncodingError, match=probe_topic.name):
        producer.produce(probe_topic, {"pin": "1"}, {**CITIZENS[0], "version": "not a long"})


def test_processes_setting_up_the_same_new_subjects_at_once_all_succeed(
    settings: CivsyncSettings, unique_name: str
) -> None:
    """Mergers that start together register the same new subjects and set their
    compatibility at once. The registry lets one request create each subject and rule and
    answers the others 409 "already exists"; none of them may fail for it."""
    subjects = [f"{unique_name}-{n}-value" for n in range(8)]

    def set_up(subject: str) -> None:
        with SchemaRegistry(settings.registry) as registry:
            registry.register(subject, VALUE_SCHEMA)
            registry.set_compatibility(subject, BACKWARD_TRANSITIVE)

    with ThreadPoolExecutor(max_workers=8) as pool:  # eight processes per subject, at once
        list(pool.map(set_up, [subject for subject in subjects for _ in range(8)]))
    with SchemaRegistry(settings.registry) as registry:
        assert [registry.compatibility(s) for s in subjects] == [BACKWARD_TRANSITIVE] * 8
        for subject in subjects:
            registry.client.delete_subject(subject)
            registry.client.delete_subject(subject, permanent=True)


def test_a_record_naming_a_schema_id_the_registry_never_gave_is_undecodable(
    registry: SchemaRegistry,
) -> None:
    """Anyone who can produce to a topic could write one: it is bad input (quarantined by
    whoever reads it), not a registry failure that stops the reader."""
    unknown = b"\x00" + (2**31 - 7).to_bytes(4, "big") + b"\x02\x06abc"
    with pytest.raises(DecodingError, match="offset 7"):
        AvroDecoder(registry).decode(unknown, "offset 7")


def test_a_transaction_the_broker_aborted_for_its_timeout_is_retriable(
    settings: CivsyncSettings, registry: SchemaRegistry, probe_topic: AvroTopic
) -> None:
    """A transaction left open past ``transaction.timeout.ms`` (a broker paused longer than
    that) is aborted by the broker, which bumps the producer's epoch; librdkafka calls that
    fenced. The merger used to exit for it; it is a reason to start again."""
    producer = TransactionalProducer(
        settings.kafka,
        registry,
        f"{probe_topic.name}-txn",
        timeout_s=10.0,
        transaction_timeout_ms=1000,
    )
    reader = Consumer(settings.kafka.client_config() | {"group.id": f"{probe_topic.name}-g"})
    try:
        producer.begin()
        producer.produce(probe_topic, {"pin": CITIZENS[0]["pin"]}, CITIZENS[0])
        producer.flush()
        time.sleep(12.0)  # the broker looks for timed-out transactions every 10 s
        with pytest.raises(KafkaRetriableError, match="past its 1s timeout, so the broker"):
            producer.commit(
                [TopicPartition(probe_topic.name, 0, 1)], reader.consumer_group_metadata()
            )
    finally:
        reader.close()
