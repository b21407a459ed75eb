"""Publishing of change events and quarantine records to Kafka, Avro in the registry format.

Topics are created on first use with the configured partitions; their value subjects are
set to BACKWARD_TRANSITIVE so a schema change that would break a reader is refused.
A record that cannot be encoded goes to ``civsync.quarantine`` with the reason; the
stream goes on.
"""

from __future__ import annotations

import time
from typing import Any

from connectors.capture import metrics
from connectors.kafka.admin import TopicAdmin, TopicSpec
from connectors.kafka.avro import AvroProducer, AvroTopic, EncodingError
from connectors.quarantine import (
    QUARANTINE,
    QUARANTINE_TOPIC,
    as_json,
    quarantine_record,
    quarantine_spec,
)
from connectors.registry import BACKWARD_TRANSITIVE, SchemaRegistry
from connectors.settings import KafkaSettings
from engine.events import ChangeEvent
from schemas import load

_CHANGE = (load("change_key"), load("change_event"))


def topic_for(store: str, schema: str, table: str, *, prefix: str = "civsync") -> str:
    """``civsync.<store>.<table>``; tables outside ``public`` keep their schema in the name.
    Another ``prefix`` (``[merge] topic_prefix``) keeps a separate deployment's topics apart."""
    table_part = table if schema == "public" else f"{schema}.{table}"
    return f"{prefix}.{store}.{table_part}"


def to_avro(event: ChangeEvent, published_ms: int) -> dict[str, Any]:
    """The Avro record (``change_event.avsc``) of ``event``. Built field by field:
    ``dataclasses.asdict`` deep-copies, and was a third of capture's time."""
    source, hlc = event.source, event.hlc
    return {
        "event_id": event.event_id,
        "op": str(event.op),
        "before": event.before,
        "after": event.after,
        "previous_key": event.previous_key,
        "unavailable": event.unavailable,
        "column_types": event.column_types,
        "source": {
            "connector": "civsync",
            "store": source.store,
            "db": source.db,
            "schema": source.schema,
            "table": source.table,
            "lsn": source.lsn,
            "commit_lsn": source.commit_lsn,
            "txid": source.txid,
            "ts_ms": source.commit_ts_ms,
            "snapshot": str(source.snapshot),
        },
        "hlc": {"wall_ms": hlc.wall_ms, "logical": hlc.logical, "node": hlc.node},
        "ts_ms": published_ms,
    }


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
    ) -> None:
        self._kafka = kafka
        self._producer = AvroProducer(kafka, registry)
        self._admin = TopicAdmin(kafka)
        self._registry = registry
        self._partitions, self._replication = partitions, replication_factor
        self._prefix = topic_prefix
        self._topics: dict[str, AvroTopic] = {}
        self.published = 0
        self.quarantined = 0

    def publish(self, event: ChangeEvent) -> None:
        source = event.source
        topic = self._topic(
            topic_for(source.store, source.schema, source.table, prefix=self._prefix)
        )
        record = to_avro(event, _now_ms())
        try:
            self._producer.produce(topic, {"pk": dict(event.key)}, record)
        except EncodingError as exc:
            self.quarantine(
                "capture.encoding_failed",
                str(exc),
                payload=as_json(record),
                store=event.source.store,
                table=event.table_id,
                lsn=event.source.lsn,
                txid=event.source.txid,
                event_id=event.event_id,
            )
            return
        self.published += 1
        metrics.EVENTS.labels(event.source.store, str(event.op)).inc()

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

    def _topic(self, name: str) -> AvroTopic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._ensure(name, AvroTopic(name, *_CHANGE))
        return topic

    def _ensure(self, name: str, topic: AvroTopic) -> AvroTopic:
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
        return self._topics[name]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
