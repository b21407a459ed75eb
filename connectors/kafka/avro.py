"""Avro producer and consumer in the registry wire format (magic byte 0, 4-byte schema id).

Producers encode with fastavro behind the registry header, schemas registered under
TopicNameStrategy subjects; consumers decode with confluent-kafka's ``AvroDeserializer``,
which fetches each writer schema by id. This module adds civsync's defaults
(acks=all, idempotent producer, read_committed consumer, manual commits) and error classes.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError
from fastavro import parse_schema, schemaless_writer

from connectors.kafka.errors import KafkaOperationError, KafkaRetriableError, translate
from connectors.registry import SchemaRegistry
from connectors.registry import translate as translate_registry
from connectors.settings import KafkaSettings
from engine.errors import FatalError

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")

PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    "compression.type": "lz4",
}
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "isolation.level": "read_committed",
}


class EncodingError(FatalError):
    """A record does not fit its topic's schema; the reason says which field and why."""


class DecodingError(FatalError):
    """A message is not a valid Avro message in the registry wire format."""


@dataclass(frozen=True)
class AvroTopic:
    """A topic with the Avro schemas of its keys and values (schema JSON text)."""

    name: str
    key_schema: str
    value_schema: str


@dataclass(frozen=True)
class ConsumedRecord:
    """A decoded message and where it came from."""

    topic: str
    partition: int
    offset: int
    key: Any
    value: Any
    value_schema_id: int | None
    timestamp_ms: int


def schema_id(payload: bytes) -> int:
    """The registry schema id framed in ``payload``; DecodingError if the framing is wrong."""
    if len(payload) < _HEADER.size:
        raise DecodingError(f"message of {len(payload)} bytes is shorter than the wire header")
    magic, registered_id = _HEADER.unpack_from(payload)
    if magic != MAGIC_BYTE:
        raise DecodingError(f"unknown magic byte {magic}; expected {MAGIC_BYTE}")
    return int(registered_id)


@dataclass(frozen=True)
class _RegisteredWriter:
    """A schema registered under its subject, and fastavro's parsed form of it.

    Encoding is fastavro's schemaless writer behind the 5-byte registry header; confluent's
    AvroSerializer does the same but deep-copies every record, which dominated capture time.
    """

    header: bytes
    parsed: Any

    @classmethod
    def register(cls, registry: SchemaRegistry, subject: str, schema: str) -> _RegisteredWriter:
        registered_id = registry.register(subject, schema)
        return cls(_HEADER.pack(MAGIC_BYTE, registered_id), parse_schema(json.loads(schema)))

    def encode(self, record: Mapping[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(self.header)
        schemaless_writer(out, self.parsed, record)
        return out.getvalue()


class AvroProducer:
    """Produces Avro records; ``flush`` raises if any record was not acknowledged."""

    def __init__(self, kafka: KafkaSettings, registry: SchemaRegistry, **overrides: Any) -> None:
        self._producer = Producer(kafka.client_config() | PRODUCER_DEFAULTS | overrides)
        self._registry = registry
        self._writers: dict[tuple[str, MessageField], _RegisteredWriter] = {}
        self._failures: list[KafkaOperationError] = []

    def produce(
        self, topic: AvroTopic, key: Mapping[str, Any], value: Mapping[str, Any] | None
    ) -> None:
        """Queue one record; a ``value`` of None is a tombstone."""
        encoded_key = self._encode(topic, MessageField.KEY, key)
        encoded_value = None if value is None else self._encode(topic, MessageField.VALUE, value)
        while True:
            try:
                self._producer.produce(
                    topic.name, value=encoded_value, key=encoded_key, on_delivery=self._delivered
                )
            except BufferError:
                self._producer.poll(0.1)  # queue full: serve delivery reports, then retry
            except KafkaException as exc:
                raise translate(exc, f"producing to {topic.name}") from exc
            else:
                return

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every queued record; raise the first delivery failure, if any."""
        remaining = self._producer.flush(timeout_s)
        if self._failures:
            failure, self._failures = self._failures[0], []
            raise failure
        if remaining:
            raise KafkaRetriableError(
                f"{remaining} records still unacknowledged after {timeout_s}s"
            )

    def _encode(self, topic: AvroTopic, field: MessageField, record: Mapping[str, Any]) -> bytes:
        writer = self._writers.get((topic.name, field))
        if writer is None:
            schema = topic.key_schema if field == MessageField.KEY else topic.value_schema
            writer = _RegisteredWriter.register(self._registry, f"{topic.name}-{field}", schema)
            self._writers[(topic.name, field)] = writer
        try:
            return writer.encode(record)
        except (ValueError, TypeError, KeyError, AttributeError, struct.error) as exc:
            raise EncodingError(f"{topic.name} {field}: {type(exc).__name__}: {exc}") from exc

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failures.append(translate(error, f"delivering to {message.topic()}"))


class AvroConsumer:
    """Consumes Avro records with the writer schema fetched from the registry by id."""

    def __init__(
        self, kafka: KafkaSettings, registry: SchemaRegistry, group_id: str, **overrides: Any
    ) -> None:
        self._consumer = Consumer(
            kafka.client_config() | CONSUMER_DEFAULTS | {"group.id": group_id} | overrides
        )
        self._deserializer = AvroDeserializer(registry.client)

    def subscribe(self, topics: list[str]) -> None:
        self._consumer.subscribe(topics)

    def poll(self, timeout_s: float = 1.0) -> ConsumedRecord | None:
        """The next record, or None if none arrived within ``timeout_s``."""
        message = self._consumer.poll(timeout_s)
        if message is None:
            return None
        error = message.error()
        if error is not None:
            raise translate(error, "consuming")
        return self._decode(message)

    def commit(self) -> None:
        """Commit the positions of everything polled so far (synchronously)."""
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            raise translate(exc, "committing offsets") from exc

    def close(self) -> None:
        self._consumer.close()

    def _decode(self, message: Message) -> ConsumedRecord:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            raise DecodingError("a consumed message carries no topic, partition or offset")
        raw_value = message.value()
        try:
            key = self._deserializer(message.key(), SerializationContext(topic, MessageField.KEY))
            value = self._deserializer(raw_value, SerializationContext(topic, MessageField.VALUE))
        except (SchemaRegistryError, httpx.HTTPError) as exc:
            raise translate_registry(exc, f"fetching the writer schema for {topic}") from exc
        except (SerializationError, ValueError, TypeError, EOFError) as exc:
            raise DecodingError(f"{topic}[{partition}]@{offset}: {exc}") from exc
        return ConsumedRecord(
            topic=topic,
            partition=partition,
            offset=offset,
            key=key,
            value=value,
            value_schema_id=None if raw_value is None else schema_id(raw_value),
            timestamp_ms=message.timestamp()[1],
        )
