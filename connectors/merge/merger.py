"""The merger: a consumer group that merges every person's edits, in Kafka transactions.

Each merger process reads the mapped source topics and the edits topic, one batch per
Kafka transaction:

- a source event becomes a ``PersonEdit`` on the edits topic, partitioned by person (source
  topics are keyed by row, so this re-keying is what puts all of a person's edits in order
  in one place);
- an edit on partition p is merged into its person's state, which the process holds for the
  partitions it owns and logs to partition p of the compacted state changelog; conflicts go
  to ``civsync.conflicts`` and the new merged record to ``civsync.person``;
- the consumed offsets commit with those records, atomically.

A crash leaves an open transaction that the broker aborts, so outputs and offsets roll back
together and a restart replays the batch exactly. State is restored from the changelog
whenever partitions are assigned. See docs/merge.md.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import structlog
from confluent_kafka import Consumer, Message, TopicPartition

from connectors.capture.publisher import topic_for
from connectors.capture.reader import ChangeEventReader
from connectors.kafka.admin import TopicAdmin, TopicSpec
from connectors.kafka.avro import AvroDecoder, DecodingError, TransactionalProducer
from connectors.kafka.errors import (
    KafkaOperationError,
    KafkaRetriableError,
    skip_consumer_error,
)
from connectors.kafka.reader import read_to_end
from connectors.merge import metrics
from connectors.merge.records import (
    MergeTopics,
    conflict_to_avro,
    edit_from_avro,
    edit_to_avro,
    person_to_avro,
    state_from_json,
    state_to_json,
)
from connectors.merge.settings import KeyKind, MergeSettings
from connectors.place_data import pre_2025_province_codes
from connectors.quarantine import QUARANTINE, as_json, quarantine_record
from connectors.registry import BACKWARD_TRANSITIVE, SchemaRegistry
from connectors.resilience import run_until_stopped
from connectors.settings import KafkaSettings
from engine.mapping import (
    PersonEdit,
    PersonMapper,
    UnusableChange,
    is_provisional,
    person_partition,
)
from engine.merge import Conflict
from engine.person import MergedPerson, link, merge
from engine.pin import Severity, check_pin

log = structlog.get_logger(__name__)
# Header of an edit merged by the process that re-keyed it, because that process owned the
# person's partition. The merge and the edit commit in one transaction, so whoever owns the
# partition when the edit is read already has its effect in the state changelog: it skips it.
MERGED_HEADER = "civsync-merged"
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


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _merged_at_rekey(message: Message) -> bool:
    return any(header[0] == MERGED_HEADER for header in message.headers() or [])


class Merger:
    """One member of the merger group."""

    def __init__(self, config: MergerConfig, kafka: KafkaSettings, registry: SchemaRegistry):
        self._config, self._kafka, self._registry = config, kafka, registry
        settings = config.settings
        self._topics = MergeTopics(settings.topic_prefix)
        self._policies = settings.policies()
        self._mapper = PersonMapper(settings.mappings())
        self._sources = sorted(
            {
                topic_for(m.store, *m.table.split(".", 1), prefix=settings.topic_prefix)
                for m in settings.mappings()
            }
        )
        self._decoder = AvroDecoder(registry)
        self._events = ChangeEventReader(registry)
        self._provinces = pre_2025_province_codes()
        self._people: dict[int, dict[str, MergedPerson]] = {}  # edits partition -> person

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

    def run(self, stop: threading.Event) -> None:
        """Merge until ``stop`` is set; the open transaction commits first. A broker or
        registry away for a while is waited out (``connectors.resilience``): each new attempt
        starts as a restarted process would, its open transaction aborted by the new
        producer's fencing, its state restored from the changelog."""
        run_until_stopped(f"merger-{self._config.instance}", lambda: self._merge_all(stop), stop)

    def _merge_all(self, stop: threading.Event) -> None:
        self._people.clear()
        self.prepare()
        settings = self._config.settings
        consumer = Consumer(
            self._kafka.client_config()
            | {
                "group.id": settings.group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "partition.assignment.strategy": "cooperative-sticky",
                "fetch.wait.max.ms": _FETCH_WAIT_MS,
                # a member that dies hands its partitions over within this time
                "session.timeout.ms": self._config.session_timeout_ms,
            }
        )
        producer = TransactionalProducer(
            self._kafka,
            self._registry,
            f"{settings.group}-{self._config.instance}",
            **{"transaction.timeout.ms": self._config.transaction_timeout_ms},
        )
        consumer.subscribe(
            [*self._sources, self._topics.edits.name],
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
        producer.flush()  # a clean stop; after a fatal error the producer has nothing to say

    def _transaction(
        self, consumer: Consumer, producer: TransactionalProducer, messages: list[Message]
    ) -> None:
        producer.begin()
        try:
            offsets, unread = self._process(producer, messages)
            producer.commit(offsets, consumer.consumer_group_metadata())
        except KafkaRetriableError:
            with contextlib.suppress(KafkaOperationError):  # else the next producer aborts it
                producer.abort()
            raise  # the part starts again: new clients, offsets and state as committed
        for position in unread:  # the rest of the batch is read again, by the next transaction
            consumer.seek(position)
        metrics.TRANSACTIONS.inc()

    def _process(
        self, producer: TransactionalProducer, messages: list[Message]
    ) -> tuple[list[TopicPartition], list[TopicPartition]]:
        """Process ``messages`` for as long as a transaction should last; the offsets to
        commit, and where to read again for the messages left for the next transaction."""
        edits_topic = self._topics.edits.name
        offsets: dict[tuple[str, int], int] = {}
        unread: dict[tuple[str, int], int] = {}
        dirty: dict[tuple[int, str], bool] = {}  # (partition, person) -> merged view changed
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
            if topic == edits_topic:
                if not _merged_at_rekey(message):
                    self._merge(producer, message, partition, dirty)
            else:
                self._rekey(producer, message, dirty)
            offsets[(topic, partition)] = offset + 1
        for (partition, person), changed in dirty.items():
            merged = self._people[partition][person]
            producer.produce_bytes(
                self._topics.state, person.encode(), state_to_json(merged), partition=partition
            )
            if changed:
                self._publish(producer, merged)
        commit = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        return commit, [TopicPartition(t, p, o) for (t, p), o in unread.items()]

    def _rekey(
        self,
        producer: TransactionalProducer,
        message: Message,
        dirty: dict[tuple[int, str], bool],
    ) -> None:
        where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
        try:
            event = self._events.read(message.value() or b"", where)
            edits = self._mapper.edits_of(event)
        except DecodingError as exc:
            self._quarantine(
                producer, "merge.undecodable", str(exc), (message.value() or b"").hex()
            )
            return
        except UnusableChange as exc:
            self._quarantine(producer, exc.reason, exc.detail, as_json(event), event)
            return
        for edit in edits:
            if self._pin_usable(producer, edit, event):
                self._send(producer, edit, dirty)

    def _send(
        self, producer: TransactionalProducer, edit: PersonEdit, dirty: dict[tuple[int, str], bool]
    ) -> None:
        """Publish ``edit`` on its person's partition of the edits topic; if this process
        owns that partition, merge it now, one hop earlier."""
        partition = person_partition(edit.person, self._config.settings.partitions)
        ours = partition in self._people
        producer.produce(
            self._topics.edits,
            {"person": edit.person},
            edit_to_avro(edit),
            partition=partition,
            headers=[(MERGED_HEADER, self._config.instance.encode())] if ours else None,
        )
        if ours:
            self._apply(producer, partition, edit, dirty)

    def _pin_usable(
        self, producer: TransactionalProducer, edit: PersonEdit, event: dict[str, Any]
    ) -> bool:
        """Check the person's PIN, and the PIN a link moves it to (DESIGN.md, Identity): a
        malformed one is quarantined, any other finding is a warning, counted and logged, and
        the edit flows. A provisional key (a birth awaiting its PIN) has no PIN to check."""
        fields = edit.fields
        findings = [
            finding
            for pin in (edit.person, edit.link_to)
            if pin is not None and not is_provisional(pin)
            for finding in check_pin(
                pin,
                birth_date=_text(fields.get("birth_date")),
                sex=_text(fields.get("sex")),
                provinces=self._provinces,
            )
        ]
        for finding in findings:
            if finding.severity is Severity.QUARANTINE:
                self._quarantine(producer, finding.code, finding.detail, as_json(event), event)
                return False
            metrics.PIN_WARNINGS.labels(finding.code).inc()
            log.warning(
                "PIN finding", code=finding.code, detail=finding.detail, event_id=edit.event_id
            )
        return True

    def _merge(
        self,
        producer: TransactionalProducer,
        message: Message,
        partition: int,
        dirty: dict[tuple[int, str], bool],
    ) -> None:
        where = f"{message.topic()}[{partition}]@{message.offset()}"
        try:
            edit = edit_from_avro(self._decoder.decode(message.value() or b"", where))
        except DecodingError as exc:
            self._quarantine(
                producer, "merge.undecodable", str(exc), (message.value() or b"").hex()
            )
            return
        self._apply(producer, partition, edit, dirty)

    def _apply(
        self,
        producer: TransactionalProducer,
        partition: int,
        edit: PersonEdit,
        dirty: dict[tuple[int, str], bool],
    ) -> None:
        unknown = sorted(set(edit.touched) - set(self._policies))
        if unknown:
            detail = f"fields without a policy: {unknown}"
            self._quarantine(producer, "merge.unknown_field", detail, as_json(edit_to_avro(edit)))
            return
        people = self._people.setdefault(partition, {})
        person = people.get(edit.person) or MergedPerson.new(edit.person)
        if person.successor is not None:  # the person moved: so does the edit
            self._send(producer, replace(edit, person=person.successor), dirty)
            return
        if edit.link_to is not None:
            self._link(producer, partition, person, edit, dirty)
            return
        result = merge(person, edit, self._policies)
        self._conflicts(producer, result.conflicts)
        if result.person is not person:
            people[edit.person] = result.person
            key = (partition, edit.person)
            dirty[key] = dirty.get(key, False) or result.changed
        metrics.EDITS.labels(edit.origin).inc()

    def _link(
        self,
        producer: TransactionalProducer,
        partition: int,
        person: MergedPerson,
        edit: PersonEdit,
        dirty: dict[tuple[int, str], bool],
    ) -> None:
        """Move ``person`` to the key ``edit`` links it to, with all that is known of it."""
        target = edit.link_to
        if target == edit.person or target in person.former_keys:
            detail = "an identity link back to a key this person was already known by"
            self._quarantine(producer, "identity.cycle", detail, as_json(edit_to_avro(edit)))
            return
        result = link(person, edit)
        if result.person is person:
            return
        self._people[partition][edit.person] = result.person
        dirty[(partition, edit.person)] = True
        self._conflicts(producer, result.conflicts)
        for forwarded in result.forwarded:
            self._send(producer, forwarded, dirty)
        metrics.LINKS.inc()

    def _conflicts(self, producer: TransactionalProducer, conflicts: list[Conflict]) -> None:
        for conflict in conflicts:
            producer.produce(
                self._topics.conflicts,
                {"conflict_id": conflict.conflict_id},
                conflict_to_avro(conflict),
            )
            metrics.CONFLICTS.labels(conflict.field, str(conflict.rule), conflict.decision).inc()

    def _publish(self, producer: TransactionalProducer, merged: MergedPerson) -> None:
        """The new merged record on civsync.person: a tombstone for a person that moved; a
        person still missing what the policy needs is quarantined instead, naming the
        fields, and published by the edit that completes it."""
        person = merged.state.person
        if merged.successor is not None:
            producer.produce(self._topics.person, {"person": person}, None)
            return
        kind: KeyKind = "provisional" if is_provisional(person) else "pin"
        required = self._config.settings.required.get(kind, ())
        view = merged.view(self._policies)
        missing = [name for name in required if name not in view or view[name].value is None]
        if missing:  # an act alone waits silently: its person's row may link it to a PIN
            if kind == "pin" or merged.has_row:
                detail = (
                    f"a {kind}-keyed person needs {', '.join(missing)}: not published until set"
                )
                payload = state_to_json(merged).decode()
                self._quarantine(producer, "merge.incomplete", detail, payload)
            return
        producer.produce(
            self._topics.person, {"person": person}, person_to_avro(merged, self._policies)
        )

    def _quarantine(
        self,
        producer: TransactionalProducer,
        reason: str,
        detail: str,
        payload: str,
        event: Any = None,
    ) -> None:
        source = event.get("source", {}) if isinstance(event, dict) else {}
        key, record = quarantine_record(
            reason,
            detail,
            stage="merge",
            payload=payload,
            store=source.get("store"),
            table=f"{source['schema']}.{source['table']}" if source else None,
            lsn=source.get("lsn"),
            txid=source.get("txId"),
            event_id=event.get("event_id") if isinstance(event, dict) else None,
        )
        producer.produce(QUARANTINE, key, record)
        metrics.QUARANTINED.labels(reason).inc()
        log.warning("quarantined", reason=reason, detail=detail)

    # --- partitions and state ---

    def _assigned(self, partitions: list[TopicPartition]) -> None:
        mine = sorted(tp.partition for tp in partitions if tp.topic == self._topics.edits.name)
        log.info("partitions assigned", edits_partitions=mine)
        self._restore(mine)

    def _revoked(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp.topic == self._topics.edits.name:
                self._people.pop(tp.partition, None)

    def _restore(self, partitions: list[int]) -> None:
        """Load the people of ``partitions`` from the state changelog, to its end."""
        started = time.monotonic()
        for partition in partitions:
            self._people[partition] = {}
        if partitions:
            for message in read_to_end(self._kafka, self._topics.state, partitions):
                self._load(message)
        log.info(
            "state restored",
            partitions=partitions,
            people=sum(len(self._people[p]) for p in partitions),
            seconds=round(time.monotonic() - started, 2),
        )

    def _load(self, message: Message) -> None:
        partition, key, value = message.partition(), message.key(), message.value()
        assert partition is not None, "consumed messages have a partition"  # noqa: S101
        assert key is not None, "state records are keyed by person"  # noqa: S101
        if value is None:
            self._people[partition].pop(key.decode(), None)
        else:
            self._people[partition][key.decode()] = state_from_json(value)
