"""The merger: a consumer group that merges every person's edits, in Kafka transactions.

This is the Kafka shell around ``engine.step.MergeStep``, which takes every decision. Each
member reads the mapped source topics and the edits topic, one batch per transaction:

- a source event is decoded and handed to the step, which merges its edits into the people
  this member owns (their partition, ``person_partition``, is assigned to it) and leaves the
  edits of people another member owns; those go to their person's partition of the edits
  topic, re-keyed. A source topic routed by the person's column (``[capture]
  partition_by``) has each person's events in the person's partition, and the group's range
  assignment gives partition p of every topic to one member: its changes take one hop;
- the people whose state changed are logged to their partition of the compacted state
  changelog (Avro, the provenance); conflicts go to ``civsync.conflicts``, the new merged
  record to ``civsync.person``, and the step to the person's hash-chained history
  (``civsync.person.history``, kept forever: what auditors read);
- the consumed offsets commit with those records, atomically.

A crash leaves an open transaction that the broker aborts, so outputs and offsets roll back
together and a restart replays the batch exactly. State is restored from the changelog
whenever partitions are assigned. See docs/merge.md.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import structlog
from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.serialization import MessageField

from connectors.capture.publisher import topic_for
from connectors.capture.reader import ChangeEventReader
from connectors.kafka.admin import TopicAdmin, TopicSpec
from connectors.kafka.avro import AvroDecoder, AvroTopic, DecodingError, TransactionalProducer
from connectors.kafka.errors import (
    KafkaOperationError,
    KafkaRetriableError,
    skip_consumer_error,
)
from connectors.merge import metrics
from connectors.merge.people import OwnedPeople
from connectors.merge.records import (
    MergeTopics,
    conflict_to_avro,
    edit_from_avro,
    edit_to_avro,
    history_step,
    legacy_state_from_json,
    merged_values,
    person_to_avro,
    state_from_avro,
    state_to_avro,
)
from connectors.merge.settings import MergeSettings
from connectors.place_data import pre_2025_province_codes
from connectors.quarantine import QUARANTINE, Position, as_json, quarantine_record, retried
from connectors.registry import BACKWARD_TRANSITIVE, SchemaRegistry
from connectors.resilience import run_until_stopped
from connectors.settings import KafkaSettings
from engine.events import Change
from engine.mapping import PersonEdit, PersonMapper, person_partition
from engine.merge import Conflict
from engine.person import MergedPerson
from engine.step import Effects, Finding, MergeStep, Publish

log = structlog.get_logger(__name__)
# A fetch waits at most this long for new records (librdkafka's default, 500 ms, would be
# added to the latency of every hop whose transactions have just committed).
_FETCH_WAIT_MS = 20


@dataclass(frozen=True)
class MergerConfig:
    settings: MergeSettings
    instance: str = "0"  # stable per process: its transactional id, so a restart fences
    poll_s: float = 0.02
    replication_factor: int = 1
    transaction_timeout_ms: int = 10_000  # a batch stops taking messages after a quarter
    session_timeout_ms: int = 10_000


class _Inputs:
    """Which input of a batch each finding came from: where it is on Kafka, and the
    quarantine record it retries, if it is a retry."""

    def __init__(self) -> None:
        self._by_finding: dict[int, tuple[Position, str | None]] = {}
        self._current: tuple[Position, str | None] | None = None
        self._first = 0

    def reading(self, position: Position, retry_of: str | None, effects: Effects) -> None:
        self._current, self._first = (position, retry_of), len(effects.findings)

    def read(self, effects: Effects) -> None:
        assert self._current is not None, "read after reading"  # noqa: S101
        for n in range(self._first, len(effects.findings)):
            self._by_finding[n] = self._current

    def of(self, finding: int) -> tuple[Position | None, str | None]:
        return self._by_finding.get(finding, (None, None))


class Merger:
    """One member of the merger group."""

    def __init__(self, config: MergerConfig, kafka: KafkaSettings, registry: SchemaRegistry):
        self._config, self._kafka, self._registry = config, kafka, registry
        settings = config.settings
        self._topics = MergeTopics(settings.topic_prefix)
        self._step = MergeStep(
            PersonMapper(settings.mappings()),
            settings.policies(),
            settings.required,
            pre_2025_province_codes(),
        )
        self._sources = sorted(
            {
                topic_for(m.store, *m.table.split(".", 1), prefix=settings.topic_prefix)
                for m in settings.mappings()
            }
        )
        self._decoder = AvroDecoder(registry)
        self._events = ChangeEventReader(registry)
        self._people = OwnedPeople(
            settings.state_dir / settings.group / config.instance,
            settings.partitions,
            self._state,
            cache_people=settings.cache_people,
        )
        self._state_ends: dict[int, int] = {}  # changelog partition -> offset after our last

    def prepare(self) -> None:
        """Create the topics (source topics too, so the group can subscribe before capture
        runs) and hold the published schemas to BACKWARD_TRANSITIVE."""
        n, rf = self._config.settings.partitions, self._config.replication_factor
        topics = self._topics
        TopicAdmin(self._kafka).ensure(
            [TopicSpec(name, n, rf) for name in self._sources] + topics.specs(n, rf)
        )
        for topic in (topics.edits, topics.person, topics.conflicts, QUARANTINE):
            for suffix, schema in (("key", topic.key_schema), ("value", topic.value_schema)):
                subject = f"{topic.name}-{suffix}"
                self._registry.register(subject, schema)
                self._registry.set_compatibility(subject, BACKWARD_TRANSITIVE)
        for topic in (topics.state, topics.history):  # keyed by the person's key, as UTF-8
            subject = f"{topic.name}-value"
            self._registry.register(subject, topic.value_schema)
            self._registry.set_compatibility(subject, BACKWARD_TRANSITIVE)

    def run(self, stop: threading.Event) -> None:
        """Merge until ``stop`` is set; the open transaction commits first. A broker or
        registry away for a while is waited out (``connectors.resilience``): each new attempt
        starts as a restarted process would, its open transaction aborted by the new
        producer's fencing, its state restored from the changelog."""
        run_until_stopped(f"merger-{self._config.instance}", lambda: self._merge_all(stop), stop)

    def _merge_all(self, stop: threading.Event) -> None:
        self._people.close()
        self.prepare()
        settings = self._config.settings
        consumer = Consumer(
            self._kafka.client_config()
            | {
                "group.id": settings.group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                # partition p of every topic (same partition count) to one member: a source
                # topic routed by person is then merged where it is read (one hop)
                "partition.assignment.strategy": "range",
                "fetch.wait.max.ms": _FETCH_WAIT_MS,
                # a member that dies hands its partitions over within this time
                "session.timeout.ms": self._config.session_timeout_ms,
            }
        )
        producer = TransactionalProducer(
            self._kafka,
            self._registry,
            f"{settings.group}-{self._config.instance}",
            transaction_timeout_ms=self._config.transaction_timeout_ms,
        )
        consumer.subscribe(
            [*self._sources, self._topics.edits.name, self._topics.retry],
            on_assign=lambda _, parts: self._assigned(parts),
            on_revoke=lambda _, parts: self._revoked(parts),
            on_lost=lambda _, parts: self._revoked(parts),
        )
        log.info("merger started", group=settings.group, instance=self._config.instance)
        try:
            while not stop.is_set():
                messages = consumer.consume(settings.batch, self._config.poll_s)
                metrics.record_step("merger")
                if messages:
                    self._transaction(consumer, producer, messages)
        finally:
            consumer.close()
            self._people.close()
        producer.flush()  # a clean stop; after a fatal error the producer has nothing to say

    def _transaction(
        self, consumer: Consumer, producer: TransactionalProducer, messages: list[Message]
    ) -> None:
        started = time.monotonic()
        producer.begin()
        self._state_ends.clear()
        try:
            offsets, unread, written = self._process(producer, messages)
            producer.commit(offsets, consumer.consumer_group_metadata())
        except KafkaRetriableError:
            self._people.aborted()
            with contextlib.suppress(KafkaOperationError):  # else the next producer aborts it
                producer.abort()
            raise  # the part starts again: new clients, offsets and state as committed
        partitions = {person_partition(p, self._config.settings.partitions) for p in written}
        if not partitions <= set(self._state_ends):
            raise KafkaRetriableError("committed state records without a delivery report")
        self._people.committed(written, {p: self._state_ends[p] for p in partitions})
        for position in unread:  # the rest of the batch is read again, by the next transaction
            consumer.seek(position)
        metrics.TRANSACTIONS.inc()
        metrics.MERGE_BATCH.observe(time.monotonic() - started)

    def _process(
        self, producer: TransactionalProducer, messages: list[Message]
    ) -> tuple[list[TopicPartition], list[TopicPartition], dict[str, bytes]]:
        """Process ``messages`` for as long as a transaction should last; the offsets to
        commit, where to read again for the messages left for the next transaction, and
        the state records written (person -> bytes)."""
        offsets: dict[tuple[str, int], int] = {}
        unread: dict[tuple[str, int], int] = {}
        effects, inputs = Effects(), _Inputs()
        deadline = time.monotonic() + self._config.transaction_timeout_ms / 4000
        for message in messages:
            if unread or time.monotonic() > deadline:
                unread.setdefault(
                    (message.topic() or "", message.partition() or 0), message.offset() or 0
                )
                continue
            if skip_consumer_error(message, "merger"):
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None, "consumed messages have a topic"  # noqa: S101
            assert partition is not None and offset is not None, "and a position"  # noqa: S101, PT018
            position, payload = Position(topic, partition, offset), message.value() or b""
            retry_of, origin = retried(message) if topic == self._topics.retry else (None, topic)
            inputs.reading(position, retry_of, effects)
            try:
                if origin == self._topics.edits.name:
                    edit = edit_from_avro(self._decoder.decode(payload, str(position)))
                    self._step.edit(edit, self._people, effects)
                else:
                    change = self._events.read(payload, str(position))
                    self._step.change(change, self._people, effects)
            except DecodingError as exc:
                effects.findings.append(Finding("merge.undecodable", str(exc), payload))
            inputs.read(effects)
            offsets[(topic, partition)] = offset + 1
        written = self._write(producer, effects, inputs)
        commit = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        return commit, [TopicPartition(t, p, o) for (t, p), o in unread.items()], written

    def _write(
        self, producer: TransactionalProducer, effects: Effects, inputs: _Inputs
    ) -> dict[str, bytes]:
        """Everything the batch's step left, in the open transaction: edits re-keyed to the
        members that own their people, conflicts, findings, and the people it changed
        (``_log_people``); the state records written (person -> bytes)."""
        partitions = self._config.settings.partitions
        for edit in effects.elsewhere:
            partition = person_partition(edit.person, partitions)
            producer.produce(
                self._topics.edits, {"person": edit.person}, edit_to_avro(edit), partition=partition
            )
        for conflict in effects.conflicts:
            producer.produce(
                self._topics.conflicts,
                {"conflict_id": conflict.conflict_id},
                conflict_to_avro(conflict),
            )
            metrics.CONFLICTS.labels(conflict.field, str(conflict.rule), conflict.decision).inc()
        for n, finding in enumerate(effects.findings):
            self._quarantined(producer, finding, *inputs.of(n))
        for warning in effects.warnings:
            metrics.PIN_WARNINGS.labels(warning.reason).inc()
            event_id = warning.refused.event_id if isinstance(warning.refused, Change) else None
            log.warning(
                "PIN finding", code=warning.reason, detail=warning.detail, event_id=event_id
            )
        for origin, count in effects.merged.items():
            metrics.EDITS.labels(origin).inc(count)
        metrics.LINKS.inc(effects.links)
        return self._log_people(producer, effects)

    def _log_people(self, producer: TransactionalProducer, effects: Effects) -> dict[str, bytes]:
        """For each person the batch changed: its state, and unless it is not published yet
        (an act waiting for its person, a person incomplete) its history step, chained to
        the one before, and if its merged view changed the new record on civsync.person (a
        tombstone for a person who moved)."""
        conflicts: dict[str, list[Conflict]] = {}
        for conflict in effects.conflicts:
            conflicts.setdefault(conflict.person, []).append(conflict)
        written, ts_ms = {}, time.time_ns() // 1_000_000
        for person, (merged, changed) in list(self._people.changed.items()):
            publication = self._step.publication(merged)
            if isinstance(publication, Finding) or publication is Publish.WAIT:
                if changed and isinstance(publication, Finding):
                    self._quarantined(producer, publication)
                written[person] = self._log_state(producer, merged)
                continue
            moved = publication is Publish.TOMBSTONE
            step = history_step(
                merged,
                {} if moved else merged_values(merged, self._step.policies),
                published=changed,
                causes=effects.causes.get(person, []),
                conflicts=conflicts.get(person, []),
                ts_ms=ts_ms,
            )
            chained = replace(merged, chain=step["hash"])
            self._people.put(chained, changed=changed)
            written[person] = self._log_state(producer, chained)
            self._produce_keyed(producer, self._topics.history, person, step)
            if changed:
                key = {"person": person}
                record = None if moved else person_to_avro(chained, step)
                producer.produce(self._topics.person, key, record)
        return written

    def _log_state(self, producer: TransactionalProducer, merged: MergedPerson) -> bytes:
        """Log ``merged`` to the state changelog; the record's bytes."""
        return self._produce_keyed(
            producer, self._topics.state, merged.state.person, state_to_avro(merged), self._logged
        )

    def _produce_keyed(
        self,
        producer: TransactionalProducer,
        topic: AvroTopic,
        person: str,
        record: dict[str, Any],
        on_delivery: Callable[[Message], None] | None = None,
    ) -> bytes:
        """Write ``record`` to the person's partition of ``topic``, keyed by its key as UTF-8."""
        value = producer.encode(topic, MessageField.VALUE, record)
        partition = person_partition(person, self._config.settings.partitions)
        producer.produce_bytes(
            topic.name, person.encode(), value, partition=partition, on_delivery=on_delivery
        )
        return value

    def _logged(self, message: Message) -> None:
        """A state record was written: the changelog partition ends after it."""
        partition, offset = message.partition(), message.offset()
        assert partition is not None and offset is not None, "a delivered record has a place"  # noqa: S101, PT018
        self._state_ends[partition] = max(self._state_ends.get(partition, 0), offset + 1)

    def _quarantined(
        self,
        producer: TransactionalProducer,
        finding: Finding,
        source: Position | None = None,
        retry_of: str | None = None,
    ) -> None:
        refused, where = finding.refused, {"source": source, "retry_of": retry_of}
        if isinstance(refused, bytes):  # undecodable
            self._quarantine(producer, finding.reason, finding.detail, refused.hex(), **where)
        elif isinstance(refused, Change):
            logged = refused.source
            self._quarantine(
                producer,
                finding.reason,
                finding.detail,
                as_json(asdict(refused)),
                store=logged.store,
                table=refused.table_id,
                lsn=logged.lsn,
                txid=logged.txid,
                event_id=refused.event_id,
                **where,
            )
        elif isinstance(refused, PersonEdit):
            payload = as_json(edit_to_avro(refused))
            self._quarantine(producer, finding.reason, finding.detail, payload, **where)
        else:
            payload = as_json(state_to_avro(refused))
            self._quarantine(producer, finding.reason, finding.detail, payload)

    def _quarantine(
        self,
        producer: TransactionalProducer,
        reason: str,
        detail: str,
        payload: str,
        **source: Any,
    ) -> None:
        key, record = quarantine_record(reason, detail, stage="merge", payload=payload, **source)
        producer.produce(QUARANTINE, key, record)
        metrics.QUARANTINED.labels(reason).inc()
        log.warning("quarantined", reason=reason, detail=detail)

    # --- partitions and state ---

    def _assigned(self, partitions: list[TopicPartition]) -> None:
        mine = sorted(tp.partition for tp in partitions if tp.topic == self._topics.edits.name)
        log.info("partitions assigned", edits_partitions=mine)
        self._people.restore(self._kafka, self._topics.state.name, mine)

    def _revoked(self, partitions: list[TopicPartition]) -> None:
        edits = self._topics.edits.name
        self._people.revoke([tp.partition for tp in partitions if tp.topic == edits])

    def _state(self, payload: bytes, where: str) -> MergedPerson:
        """A person's state from its changelog record."""
        if payload.startswith(b"{"):  # written by an earlier release, in JSON
            return legacy_state_from_json(payload)
        return state_from_avro(self._decoder.decode(payload, where))
