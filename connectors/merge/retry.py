"""Quarantined input, read back and sent again through the normal path once it is fixed.

A quarantine record names where its input is on Kafka (``source_topic``, ``_partition``,
``_offset``). A retry reads that record's original bytes and sends them, headed with the
quarantine id and the topic they first came from, to the retry topic of the part that refused
them: the merger's (``<prefix>.merge.retry``) for the merge stage, the store's sink's
(``<prefix>.sink.<store>.retry``) for the apply stage. That part reads its retry topic beside
its usual input and treats a retried record as it would the original, so a record that fails
again is quarantined again, as a new record whose ``retry_of`` names the one retried; nothing
retries by itself, so there is no loop. Retrying twice is harmless: merging an input again
changes nothing, and a sink never writes a version over a newer one.

Capture-stage records are re-read from the store instead (``civsync snapshot``), and records
written before the source position was kept cannot be retried; both are said, not attempted.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.kafka.admin import TopicAdmin, TopicSpec
from connectors.kafka.avro import AvroDecoder
from connectors.kafka.reader import read_to_end
from connectors.merge.records import MergeTopics
from connectors.quarantine import (
    QUARANTINE_TOPIC,
    RETRY_OF,
    SOURCE_TOPIC,
    Position,
    retried,
)
from connectors.registry import SchemaRegistry
from connectors.settings import KafkaSettings


@dataclass(frozen=True)
class Quarantined:
    """One quarantine record and its id (the record's key)."""

    id: str
    record: Mapping[str, Any]

    @property
    def source(self) -> Position | None:
        topic, partition = self.record.get("source_topic"), self.record.get("source_partition")
        offset = self.record.get("source_offset")
        if topic is None or partition is None or offset is None:
            return None
        return Position(topic, partition, offset)


def quarantined(kafka: KafkaSettings, registry: SchemaRegistry) -> list[Quarantined]:
    """Every quarantine record so far, oldest first."""
    decoder = AvroDecoder(registry)
    found = []
    for message in read_to_end(kafka, QUARANTINE_TOPIC):
        if message.value() is None:
            continue  # nothing writes tombstones here; a hand-made one is not a record
        where = f"{QUARANTINE_TOPIC}[{message.partition()}]@{message.offset()}"
        key = decoder.decode(message.key() or b"", where)
        found.append(
            (
                message.timestamp()[1],
                Quarantined(key["id"], decoder.decode(message.value() or b"", where)),
            )
        )
    return [q for _, q in sorted(found, key=lambda pair: pair[0])]


def retry(
    kafka: KafkaSettings, topics: MergeTopics, partitions: int, records: list[Quarantined]
) -> list[tuple[Quarantined, str]]:
    """Send each of ``records`` again; what became of each, in a few words. ``partitions``:
    the merger's (``[merge] partitions``), which its retry topics have."""
    stores = {r.record["store"] for r in records if r.record["stage"] == "apply"}
    retries = [topics.retry, *(topics.sink_retry(store) for store in sorted(stores))]
    TopicAdmin(kafka).ensure([TopicSpec(name, partitions, 1) for name in retries])
    reader = Consumer(
        kafka.client_config()
        | {"group.id": f"civsync-retry-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
    )
    producer = Producer(kafka.client_config() | {"enable.idempotence": True})
    outcomes = []
    try:
        for item in records:
            outcomes.append((item, _send(reader, producer, topics, item)))
    finally:
        reader.close()
        producer.flush(30)
    return outcomes


def _send(reader: Consumer, producer: Producer, topics: MergeTopics, item: Quarantined) -> str:
    stage, source = item.record["stage"], item.source
    if stage == "capture":
        return "not sent: capture reads it again from the store (civsync snapshot STORE TABLE)"
    if stage not in ("merge", "apply") or source is None:
        return "not sent: the record does not say where its input is on Kafka"
    target = topics.retry if stage == "merge" else topics.sink_retry(item.record["store"])
    reader.assign([TopicPartition(source.topic, source.partition, source.offset)])
    message = next(iter(reader.consume(1, 10.0)), None)
    if message is None or message.error() or message.offset() != source.offset:
        return f"not sent: {source} is no longer on Kafka (retention or compaction)"
    _, first_topic = retried(message)  # a retry of a retry keeps the first topic
    producer.produce(
        target,
        key=message.key(),
        value=message.value(),
        partition=source.partition,
        headers=[(RETRY_OF, item.id), (SOURCE_TOPIC, first_topic or source.topic)],
    )
    return f"sent to {target}"
