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
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from connectors.kafka.avro_encoder import compile_encoder
from connectors.kafka.errors import KafkaOperationError, KafkaRetriableError, fenced, translate
from connectors.registry import RegistryRejectedError, SchemaRegistry
from connectors.registry import translate as translate_registry
from connectors.settings import KafkaSettings
from engine.errors import FatalError

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")
# how long past its own timeout a transactional call may block before it is abandoned
_GRACE_S = 5.0

PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
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

    Encoding is a per-schema compiled encoder (``avro_encoder``: byte-identical to fastavro,
    which it falls back to for anything it does not handle) behind the 5-byte registry
    header, else fastavro's schemaless writer; confluent's AvroSerializer deep-copies every
    record, which dominated capture time.
    """

    header: bytes
    parsed: Any
    compiled: Callable[[Mapping[str, Any]], bytes] | None = None  # same bytes, 4-6 times faster

    @classmethod
    def register(cls, registry: SchemaRegistry, subject: str, schema: str) -> _RegisteredWriter:
        registered_id = registry.register(subject, schema)
        header = _HEADER.pack(MAGIC_BYTE, registered_id)
        return cls(header, parse_schema(json.loads(schema)), compile_encoder(schema))

    def encode(self, record: Mapping[str, Any]) -> bytes:
        if self.compiled is not None:
            return self.header + self.compiled(record)
        out = io.BytesIO()
        out.write(self.header)
        schemaless_writer(out, self.parsed, record)
        return out.getvalue()


class AvroProducer:
    """Produces Avro records; ``flush`` raises if any record was not acknowledged."""

    def __init__(self, kafka: KafkaSettings, registry: SchemaRegistry, **overrides: Any) -> None:
        self._producer = Producer(
            kafka.client_config()
            | PRODUCER_DEFAULTS
            | {"compression.type": kafka.compression}
            | overrides
        )
        self._registry = registry
        self._writers: dict[tuple[str, MessageField, str], _RegisteredWriter] = {}
        self._failures: list[KafkaOperationError] = []

    def produce(
        self,
        topic: AvroTopic,
        key: Mapping[str, Any],
        value: Mapping[str, Any] | None,
        *,
        partition: int | None = None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        """Queue one record; a ``value`` of None is a tombstone."""
        encoded_key = self.encode(topic, MessageField.KEY, key)
        encoded_value = None if value is None else self.encode(topic, MessageField.VALUE, value)
        self.produce_bytes(
            topic.name, encoded_key, encoded_value, partition=partition, headers=headers
        )

    def produce_bytes(
        self,
        topic: str,
        key: bytes,
        value: bytes | None,
        *,
        partition: int | None = None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
        on_delivery: Callable[[Message], None] | None = None,
    ) -> None:
        """Queue one record already encoded; ``on_delivery`` is told where it was written."""
        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    partition=-1 if partition is None else partition,  # -1: the partitioner
                    on_delivery=self._delivered
                    if on_delivery is None
                    else partial(self._delivered, then=on_delivery),
                    headers=headers,
                )
            except BufferError:
                self._producer.poll(0.1)  # queue full: serve delivery reports, then retry
            except KafkaException as exc:
                raise translate(exc, f"producing to {topic}") from exc
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

    def discard_queued(self) -> None:
        """Drop the records not yet sent to a broker, and every failure reported so far.
        Records already sent may still be acknowledged: their producer sends them again."""
        self._producer.purge(in_queue=True, in_flight=False)
        self._producer.poll(0)  # serve the purged records' reports
        self._failures.clear()

    def encode(self, topic: AvroTopic, field: MessageField, record: Mapping[str, Any]) -> bytes:
        """``record`` as ``topic``'s key or value, registry-framed (for ``produce_bytes``)."""
        schema = topic.key_schema if field == MessageField.KEY else topic.value_schema
        writer = self._writers.get((topic.name, field, schema))  # a topic's schema may evolve
        if writer is None:
            writer = _RegisteredWriter.register(self._registry, f"{topic.name}-{field}", schema)
            self._writers[(topic.name, field, schema)] = writer
        try:
            return writer.encode(record)
        except (ValueError, TypeError, KeyError, AttributeError, struct.error) as exc:
            raise EncodingError(f"{topic.name} {field}: {type(exc).__name__}: {exc}") from exc

    def _delivered(
        self,
        error: KafkaError | None,
        message: Message,
        then: Callable[[Message], None] | None = None,
    ) -> None:
        if error is not None:
            self._failures.append(translate(error, f"delivering to {message.topic()}"))
        elif then is not None:
            then(message)


class TransactionalProducer(AvroProducer):
    """An Avro producer whose records, and a consumer's offsets, commit atomically.

    ``transactional_id`` must be stable across restarts of the same instance: the broker
    then aborts the transaction a crashed instance left open as soon as it comes back.

    A fenced producer is fatal (another instance took its id over), except when its
    transaction had outlived ``transaction.timeout.ms``: the broker aborts such a
    transaction and bumps the producer's epoch, which librdkafka reports as fenced too (a
    broker paused or unreachable for longer than the timeout). That transaction is lost to
    the broker, not to a rival, so the error is retriable: the part starts again.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        registry: SchemaRegistry,
        transactional_id: str,
        *,
        timeout_s: float = 30.0,
        transaction_timeout_ms: int = 60_000,
        **overrides: Any,
    ) -> None:
        # Committing flushes, and a flush does not wait for linger.ms (librdkafka #3489), so a
        # long linger costs no latency here; it makes fewer, fuller produce requests, which
        # cut the broker's CPU per merged record from ~840 to ~320 µs (docs/benchmarks.md).
        config = {
            "transactional.id": transactional_id,
            "transaction.timeout.ms": transaction_timeout_ms,
            "linger.ms": 50,
        }
        super().__init__(kafka, registry, **config | overrides)
        self._timeout_s = timeout_s
        self._stuck = False
        self._transaction_timeout_s = transaction_timeout_ms / 1000
        self._began = time.monotonic()
        self._call(lambda: self._producer.init_transactions(timeout_s), "initialising transactions")

    def begin(self) -> None:
        self._call(self._producer.begin_transaction, "beginning a transaction")
        self._began = time.monotonic()

    def commit(self, offsets: list[TopicPartition], group: Any) -> None:
        """Commit the records produced since ``begin`` with the consumer ``offsets``; their
        delivery reports have been served when it returns."""
        timeout = self._timeout_s
        if self._stuck:
            raise KafkaRetriableError("a transactional call of this producer never returned")
        doing = "sending offsets to the transaction"
        sending = partial(self._producer.send_offsets_to_transaction, offsets, group, timeout)
        if not _returns_within(partial(self._call, sending, doing), timeout + _GRACE_S):
            self._stuck = True  # abandoned: the next producer's fencing aborts its transaction
            raise KafkaRetriableError(f"{doing}: no answer after {timeout + _GRACE_S:.0f}s")
        self._call(lambda: self._producer.commit_transaction(timeout), "committing a transaction")
        self._producer.poll(0)
        self._failures.clear()

    def abort(self) -> None:
        if self._stuck:  # a call is still blocked in librdkafka: this one would be refused
            return
        self._failures.clear()
        timeout = self._timeout_s
        self._call(lambda: self._producer.abort_transaction(timeout), "aborting a transaction")

    def _call(self, operation: Callable[[], Any], doing: str) -> None:
        try:
            operation()
        except KafkaException as exc:
            error = translate(exc, doing)
            open_s = time.monotonic() - self._began
            if fenced(exc) and open_s >= self._transaction_timeout_s:
                error = KafkaRetriableError(
                    f"{error}: the transaction had been open {open_s:.0f}s, past its"
                    f" {self._transaction_timeout_s:.0f}s timeout, so the broker aborted it"
                )
            raise error from exc


def _returns_within(operation: Callable[[], Any], seconds: float) -> bool:
    """Run ``operation`` in a thread of its own; whether it returned within ``seconds`` (its
    exception, if it raised one in time, is raised here).

    For ``send_offsets_to_transaction``, which can block past its timeout when the group
    coordinator goes away mid-transaction (librdkafka #5456, #5511: seen here after a
    broker kill -9, the merger waited for minutes with nothing logged). A call that does not
    return is left blocked in its daemon thread with its producer, which the caller abandons.
    """
    raised: list[BaseException] = []

    def call() -> None:
        try:
            operation()
        except BaseException as exc:  # handed to the caller's thread
            raised.append(exc)

    thread = threading.Thread(target=call, name="kafka-transactional-call", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        return False
    if raised:
        raise raised[0]
    return True


class AvroDecoder:
    """Decodes registry-framed Avro with fastavro, caching each writer schema by id."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self._registry = registry
        self._schemas: dict[int, Any] = {}

    def decode(self, payload: bytes, where: str) -> Any:
        writer_id = schema_id(payload)
        parsed = self._schemas.get(writer_id)
        if parsed is None:
            try:
                parsed = parse_schema(json.loads(self._registry.writer_schema(writer_id)))
            except RegistryRejectedError as exc:  # an id the registry never gave: no input of ours
                raise DecodingError(f"{where}: {exc}") from exc
            self._schemas[writer_id] = parsed
        try:
            return schemaless_reader(io.BytesIO(payload[_HEADER.size :]), parsed, None)
        except (ValueError, TypeError, EOFError, IndexError, UnicodeDecodeError) as exc:
            raise DecodingError(f"{where}: {type(exc).__name__}: {exc}") from exc


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
