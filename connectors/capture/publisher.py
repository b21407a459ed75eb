"""Publishing of change events and quarantine records to Kafka, Avro in the registry format.

Each table's topic has its own typed, Debezium-compatible schemas (``envelope``), generated
from the columns the event carries; a table whose columns change (``ALTER TABLE``) registers a
new version, and a version the registry refuses (BACKWARD_TRANSITIVE) stops capture with an
error naming the table. Topics are created on first use with the configured partitions. A
change that cannot be encoded (a value its column's Avro type cannot hold, a column whose name
is no Avro name) goes to ``civsync.quarantine`` with the reason, and so does one larger than
Kafka takes (with its values' sizes for the input: it would be too large there too); the
stream goes on.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException

from connectors.capture import metrics
from connectors.capture.envelope import Column, envelope_schema, key_schema, to_avro_row
from connectors.kafka.admin import TopicAdmin, TopicSpec
from connectors.kafka.avro import AvroProducer, AvroTopic, EncodingError
from connectors.kafka.errors import KafkaOperationError
from connectors.quarantine import (
    QUARANTINE,
    QUARANTINE_TOPIC,
    as_json,
    quarantine_record,
    quarantine_spec,
)
from connectors.registry import BACKWARD_TRANSITIVE, RegistryRejectedError, SchemaRegistry
from connectors.settings import CaptureSettings, KafkaSettings
from engine.errors import FatalError
from engine.events import ChangeEvent, Row, SnapshotMarker
from engine.mapping import person_partition

_NOT_AVRO = re.compile(r"[^A-Za-z0-9_.]")  # Avro names: letters, digits, _ (and . between)


class SchemaRefusedError(FatalError):
    """A table's new schema is not compatible with the versions its topic already has."""


def topic_for(store: str, schema: str, table: str, *, prefix: str = "civsync") -> str:
    """``civsync.<store>.<table>``; tables outside ``public`` keep their schema in the name.
    Another ``prefix`` (``[merge] topic_prefix``) keeps a separate deployment's topics apart."""
    table_part = table if schema == "public" else f"{schema}.{table}"
    return f"{prefix}.{store}.{table_part}"


@dataclass(frozen=True)
class TableTopic:
    """A table's topic, its schemas (as its columns are now), and the converters of its rows
    to typed Avro values."""

    topic: AvroTopic
    key: Callable[[Row], dict[str, Any]]
    row: Callable[[Row], dict[str, Any]]
    route: str | None = None  # the column whose value picks the partition, not the key

    def partition(self, event: ChangeEvent, partitions: int) -> int | None:
        """The partition ``route`` picks for ``event`` (the row after the change, or before
        it for a delete); None, the key's partition, where the row has no value there."""
        if self.route is None:
            return None
        row = event.after if event.after is not None else event.before
        value = None if row is None else row.get(self.route)
        return None if value is None else person_partition(str(value), partitions)

    @classmethod
    def of(cls, name: str, event: ChangeEvent, route: str | None = None) -> TableTopic:
        if route is not None and route not in event.column_types:
            raise FatalError(
                f"[capture] partition_by routes {event.table_id} of {event.source.store} by"
                f" column {route!r}, which the table does not have"
            )
        namespace = _NOT_AVRO.sub("_", name)
        columns = [Column(column, pg_type) for column, pg_type in event.column_types.items()]
        key = [Column(column, event.column_types.get(column, "text")) for column in event.key]
        return cls(
            AvroTopic(
                name,
                json.dumps(key_schema(namespace, key)),
                json.dumps(envelope_schema(namespace, columns, key)),
            ),
            to_avro_row(key),
            to_avro_row(columns),
            route,
        )

    def record(self, event: ChangeEvent, published_ms: int, prefix: str) -> dict[str, Any]:
        """The typed envelope of ``event``. Built field by field: ``dataclasses.asdict``
        deep-copies, and was a third of capture's time."""
        source, hlc, before, after = event.source, event.hlc, event.before, event.after
        return {
            "before": None if before is None else self.row(before),
            "after": None if after is None else self.row(after),
            "source": {
                "version": "civsync",
                "connector": "postgresql",
                "name": prefix,
                "ts_ms": source.commit_ts_ms,
                "snapshot": "false" if source.snapshot is SnapshotMarker.FALSE else "incremental",
                "db": source.db,
                "sequence": None,
                "schema": source.schema,
                "table": source.table,
                "txId": source.txid,
                "lsn": source.lsn,
                "xmin": None,
                "store": source.store,
                "commit_lsn": source.commit_lsn,
            },
            "op": str(event.op),
            "ts_ms": published_ms,
            "transaction": None,
            "event_id": event.event_id,
            "hlc": {"wall_ms": hlc.wall_ms, "logical": hlc.logical, "node": hlc.node},
            "unavailable": list(event.unavailable),
            "previous_key": None if event.previous_key is None else self.key(event.previous_key),
        }


class Publisher(Protocol):
    """What capture publishes through: ``ChangePublisher``, or the same in a process of its
    own (``connectors.capture.handoff.PublisherProcess``)."""

    published: int

    def publish(self, event: ChangeEvent) -> None: ...

    def quarantine(
        self,
        reason: str,
        detail: str,
        *,
        payload: str,
        store: str | None = None,
        table: str | None = None,
        lsn: int | None = None,
        txid: int | None = None,
    ) -> None: ...

    def flush(self, timeout_s: float = 60.0) -> None: ...

    def renew(self) -> None: ...


class ChangePublisher:
    """Sends events and quarantine records; ``flush`` returns once Kafka has all of them."""

    def __init__(
        self,
        kafka: KafkaSettings,
        registry: SchemaRegistry,
        *,
        partitions: int,
        replication_factor: int = 1,
        topic_prefix: str = "civsync",
        capture: CaptureSettings | None = None,
    ) -> None:
        self._kafka = kafka
        self._producer = AvroProducer(kafka, registry)
        self._admin = TopicAdmin(kafka)
        self._registry = registry
        self._partitions, self._replication = partitions, replication_factor
        self._prefix = topic_prefix
        self._capture = capture or CaptureSettings()
        self._topics: dict[str, AvroTopic] = {}
        self._tables: dict[tuple[Any, ...], TableTopic] = {}  # by topic, key and columns
        self.published = 0
        self.quarantined = 0

    def publish(self, event: ChangeEvent) -> None:
        received: dict[str, Any] = {"event_id": event.event_id, "op": str(event.op)}
        received["key"] = event.key
        try:
            table = self._table(event)  # ValueError: a column name that is no Avro name
            record = table.record(event, _now_ms(), self._prefix)
            partition = table.partition(event, self._partitions)
            self._producer.produce(table.topic, table.key(event.key), record, partition=partition)
        except (EncodingError, ValueError) as exc:
            received |= {"before": event.before, "after": event.after}
            self._refused(event, "capture.encoding_failed", str(exc), received)
            return
        except KafkaOperationError as exc:
            if not _too_large(exc):
                raise
            # the input as received would be too large as well: its values' sizes instead
            received |= {"sizes": {"before": _sizes(event.before), "after": _sizes(event.after)}}
            self._refused(event, "capture.too_large", str(exc), received)
            return
        self.published += 1
        metrics.events(event.source.store, event.table_id, str(event.op)).inc()

    def _refused(self, event: ChangeEvent, reason: str, detail: str, received: Any) -> None:
        source = event.source
        self.quarantine(
            reason,
            detail,
            payload=as_json(received),
            store=source.store,
            table=event.table_id,
            lsn=source.lsn,
            txid=source.txid,
            event_id=event.event_id,
        )

    def quarantine(
        self,
        reason: str,
        detail: str,
        *,
        payload: str,
        store: str | None = None,
        table: str | None = None,
        lsn: int | None = None,
        txid: int | None = None,
        event_id: str | None = None,
    ) -> None:
        """Put unusable input on ``civsync.quarantine`` with a machine-readable ``reason``."""
        self._ensure(QUARANTINE_TOPIC, QUARANTINE)
        key, record = quarantine_record(
            reason,
            detail,
            stage="capture",
            payload=payload,
            store=store,
            table=table,
            lsn=lsn,
            txid=txid,
            event_id=event_id,
        )
        self._producer.produce(QUARANTINE, key, record)
        self.quarantined += 1
        metrics.QUARANTINED.labels(store or "", reason).inc()

    def flush(self, timeout_s: float = 60.0) -> None:
        self._producer.flush(timeout_s)

    def renew(self) -> None:
        """A new producer, as a restarted process has: what the old one still queued is
        dropped (capture reads it again from the slot's confirmed position), and a producer
        that a broker restart left unusable is replaced."""
        self._producer.discard_queued()
        self._producer = AvroProducer(self._kafka, self._registry)

    def _table(self, event: ChangeEvent) -> TableTopic:
        """The topic and schemas of ``event``'s table as its columns are now: a new version
        is registered when they change."""
        source = event.source
        name = topic_for(source.store, source.schema, source.table, prefix=self._prefix)
        shape = (name, tuple(event.key), tuple(event.column_types.items()))
        table = self._tables.get(shape)
        if table is None:
            route = self._capture.route(source.store, source.schema, source.table)
            table = TableTopic.of(name, event, route)
            try:
                self._ensure(name, table.topic)
            except RegistryRejectedError as exc:
                raise SchemaRefusedError(
                    f"{source.store} table {event.table_id}: its columns now"
                    f" ({', '.join(f'{c} {t}' for c, t in event.column_types.items())}) give a"
                    f" schema the registry refuses for {name}: {exc}"
                ) from exc
            self._tables[shape] = table
        return table

    def _ensure(self, name: str, topic: AvroTopic) -> AvroTopic:
        """Create ``name`` if it is new, and register ``topic``'s schemas under its subjects
        (held to BACKWARD_TRANSITIVE: a later version that would break a reader is refused)."""
        if self._topics.get(name) == topic:
            return topic
        if name not in self._topics:
            spec = (
                quarantine_spec(self._partitions, self._replication)
                if name == QUARANTINE_TOPIC
                else TopicSpec(name, self._partitions, self._replication)
            )
            self._admin.ensure([spec])
        for subject, schema in (
            (f"{name}-key", topic.key_schema),
            (f"{name}-value", topic.value_schema),
        ):
            self._registry.register(subject, schema)
            self._registry.set_compatibility(subject, BACKWARD_TRANSITIVE)
        self._topics[name] = topic
        return topic


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _too_large(error: KafkaOperationError) -> bool:
    """Whether Kafka refused a record for its size (``message.max.bytes``, 1 MB by default):
    producing it again cannot help, so its change is quarantined, not retried."""
    cause = error.__cause__
    code = cause.args[0].code() if isinstance(cause, KafkaException) and cause.args else None
    return code == KafkaError.MSG_SIZE_TOO_LARGE


def _sizes(row: Row | None) -> dict[str, int] | None:
    """The length of each value of ``row`` as text."""
    return None if row is None else {c: len(str(v)) for c, v in row.items() if v is not None}
