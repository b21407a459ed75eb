"""The quarantine record: input civsync could not use, with a machine-readable reason.

Every stage (capture, merge, apply) builds its records here, so ``civsync.quarantine``
has one shape whoever writes to it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message

from connectors.kafka.admin import TopicSpec
from connectors.kafka.avro import AvroTopic
from schemas import load

QUARANTINE_TOPIC = "civsync.quarantine"
QUARANTINE = AvroTopic(QUARANTINE_TOPIC, load("quarantine_key"), load("quarantine_record"))
RETRY_OF = "civsync-retry-of"  # header of a retried input: the quarantine record it retries
SOURCE_TOPIC = "civsync-source-topic"  # header of a retried input: the topic it was read from


@dataclass(frozen=True)
class Position:
    """Where a record is on Kafka."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def quarantine_spec(partitions: int, replication_factor: int = 1) -> TopicSpec:
    """The quarantine topic, shared by every stage: created with ``partitions`` if missing,
    accepted with whatever partitions it already has."""
    return TopicSpec(QUARANTINE_TOPIC, partitions, replication_factor, fixed_partitions=False)


def quarantine_record(
    reason: str,
    detail: str,
    *,
    stage: str,
    payload: str,
    store: str | None = None,
    table: str | None = None,
    lsn: int | None = None,
    txid: int | None = None,
    event_id: str | None = None,
    source: Position | None = None,
    retry_of: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(key, value) of a quarantine record; the key is the event id, else where the input
    is on Kafka, else the store and LSN."""
    record = {
        "reason": reason,
        "detail": detail,
        "stage": stage,
        "store": store,
        "table": table,
        "lsn": lsn,
        "txid": txid,
        "event_id": event_id,
        "payload": payload,
        "ts_ms": time.time_ns() // 1_000_000,
        "source_topic": None if source is None else source.topic,
        "source_partition": None if source is None else source.partition,
        "source_offset": None if source is None else source.offset,
        "retry_of": retry_of,
    }
    return {"id": event_id or (str(source) if source else f"{store}:{lsn}")}, record


def as_json(record: Any) -> str:
    """A payload as JSON text, keeping non-ASCII text readable."""
    return json.dumps(record, ensure_ascii=False, default=str)


def retried(message: Message) -> tuple[str | None, str]:
    """Of an input sent again by ``civsync quarantine retry``: the quarantine record it
    retries, and the topic it first came from."""
    headers = {
        header[0]: header[1] if isinstance(header[1], str) else bytes(header[1]).decode()
        for header in message.headers() or []
        if header[1] is not None
    }
    return headers.get(RETRY_OF), headers.get(SOURCE_TOPIC, "")
