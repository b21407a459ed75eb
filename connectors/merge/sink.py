"""The store sink: applies ``civsync.person`` to one store, in batches, idempotently, echo-free.

One store transaction per batch of person records: the newest version of each person in the
batch, written to every mapped table of the store by ``connectors.merge.target`` (set-based
statements; an older version never overwrites a newer one; rows locked in key order).

The session is bound to one of the ``civsync_apply`` replication origins, so capture never
publishes these writes back (no ping-pong). Kafka offsets are committed (asynchronously)
after the store commits: a crash in between replays the batch, and ``_civsync.applied``
makes the replay a no-op. A batch the store rejects is split in halves until the people it
rejects are alone; each of them goes to ``civsync.quarantine`` (stage ``apply``) and the
stream goes on.

The sink shares its tables with officials' transactions, and gives way to them: its session
waits at most ``lock_timeout_ms`` for a row lock, less than PostgreSQL's ``deadlock_timeout``
(1 s by default), so in a lock cycle with a user's transaction it is the sink's batch that
fails (and is retried after a short pause), never the user's work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import psycopg
import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from psycopg.rows import scalar_row

from connectors.capture.slot import APPLY_ORIGINS
from connectors.kafka.admin import TopicAdmin, TopicSpec
from connectors.kafka.avro import AvroDecoder, AvroProducer, DecodingError
from connectors.kafka.errors import skip_consumer_error
from connectors.merge import metrics
from connectors.merge.records import MergeTopics
from connectors.merge.settings import MergeSettings
from connectors.merge.target import APPLIED_DDL, Target
from connectors.postgres import (
    Connection,
    StoreError,
    StoreUnavailableError,
    classify,
    connect,
    ensure_tables,
)
from connectors.quarantine import QUARANTINE, Position, as_json, quarantine_record, retried
from connectors.registry import SchemaRegistry
from connectors.resilience import run_until_stopped
from connectors.settings import KafkaSettings, StoreSettings
from engine.errors import FatalError
from engine.mapping import TableMapping

log = structlog.get_logger(__name__)
# A fetch waits at most this long for new records (librdkafka's default, 500 ms, would be
# added to the latency of every hop whose transactions have just committed).
_FETCH_WAIT_MS = 20
# SQLSTATEs of a batch that lost a lock to another transaction: deadlock, lock timeout,
# serialization failure. The batch is retried in place, up to _LOCK_ATTEMPTS times.
_LOST_LOCK = frozenset({"40P01", "55P03", "40001"})
_LOCK_ATTEMPTS = 8


class OriginsBusyError(FatalError):
    """Every civsync replication origin is in use by another session."""


def sink_mappings(merge: MergeSettings, store: str) -> list[TableMapping]:
    """The mapped tables the sink of ``store`` writes."""
    return [m for m in merge.mappings() if m.store == store and m.apply]


def sink_tables(merge: MergeSettings, store: str) -> list[str]:
    """The names of the tables the sink of ``store`` writes."""
    return [m.table for m in sink_mappings(merge, store)]


def _after(messages: list[Message]) -> list[TopicPartition]:
    """The offsets that commit ``messages``: each partition's last offset plus one."""
    after: dict[tuple[str, int], int] = {}
    for message in messages:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if message.error() is None and topic is not None and partition is not None:
            after[(topic, partition)] = max(after.get((topic, partition), 0), (offset or 0) + 1)
    return [TopicPartition(topic, partition, end) for (topic, partition), end in after.items()]


def _commit_failed(error: KafkaError | None, _: list[TopicPartition]) -> None:
    """The consumer's ``on_commit``: a failed offset commit is logged; its batches replay."""
    if error is not None:
        log.warning("offset commit failed; the batch will be replayed", error=error.str())


class StoreSink:
    """Applies civsync.person to the mapped tables of one store until stopped."""

    def __init__(
        self,
        store: str,
        store_settings: StoreSettings,
        merge: MergeSettings,
        kafka: KafkaSettings,
        registry: SchemaRegistry,
        *,
        poll_s: float = 0.02,
    ) -> None:
        self._store, self._store_settings, self._merge = store, store_settings, merge
        self._kafka, self._poll_s = kafka, poll_s
        self._mappings = sink_mappings(merge, store)
        self._tables = [m.table for m in self._mappings]
        if not self._mappings:
            raise FatalError(f"no table of store {store!r} is mapped in [merge.tables]")
        self._registry = registry
        self._decoder = AvroDecoder(registry)
        self._inputs: dict[str, tuple[Position, str | None]] = {}  # person -> input, retry of
        self._quarantine = AvroProducer(kafka, registry)

    def run(self, stop: threading.Event) -> None:
        """Apply until ``stop``. A store, broker or registry away for a while is waited out
        (``connectors.resilience``): the next attempt replays from the committed offsets, and
        ``_civsync.applied`` makes the replay a no-op."""
        run_until_stopped(f"sink-{self._store}", lambda: self._apply_all(stop), stop)

    def _apply_all(self, stop: threading.Event) -> None:
        self._quarantine.discard_queued()  # a new producer, as a restarted process has
        self._quarantine = AvroProducer(self._kafka, self._registry)
        topics, n = MergeTopics(self._merge.topic_prefix), self._merge.partitions
        retry = topics.sink_retry(self._store)
        TopicAdmin(self._kafka).ensure([*topics.specs(n), TopicSpec(retry, n, 1)])
        conn, targets = self._open()
        consumer = Consumer(
            self._kafka.client_config()
            | {
                "group.id": f"{self._merge.topic_prefix}-sink-{self._store}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "partition.assignment.strategy": "cooperative-sticky",
                "fetch.wait.max.ms": _FETCH_WAIT_MS,
                "on_commit": _commit_failed,
            }
        )
        consumer.subscribe([topics.person.name, retry])
        log.info("sink started", store=self._store, tables=[m.table for m in self._mappings])
        try:
            while not stop.is_set():
                messages = consumer.consume(self._merge.batch, self._poll_s)
                metrics.record_step(f"sink-{self._store}")
                if not messages:
                    continue
                self._apply(conn, targets, self._decode(messages))
                self._quarantine.flush()
                # Asynchronous: a synchronous commit can wait forever for a group coordinator
                # lost in a broker restart (seen: a sink stalled 5 minutes, then was expelled
                # from its group). An offset not committed replays its batch, harmlessly.
                # The offsets are this batch's, named: "the current positions" are read when
                # librdkafka's thread gets to the commit, by when the next batch may have
                # been consumed (seen: 4 changes lost when that batch then failed).
                try:
                    consumer.commit(offsets=_after(messages), asynchronous=True)
                except KafkaException as exc:
                    _commit_failed(exc.args[0], [])
        finally:
            consumer.close()
            conn.close()

    def _open(self) -> tuple[Connection, list[Target]]:
        conn = connect(self._store_settings, autocommit=True)
        try:
            ensure_tables(conn, APPLIED_DDL, ("_civsync.applied", "_civsync.waiting"))
            conn.execute(
                "SELECT set_config('lock_timeout', %s, false)",
                (f"{self._merge.lock_timeout_ms}ms",),
            )
            _bind_origin(conn)
            targets = [Target.build(conn, m, i) for i, m in enumerate(self._mappings)]
            self._count_waiting(conn)
        except psycopg.Error as exc:
            conn.close()
            raise classify(exc, f"preparing the {self._store} sink") from exc
        return conn, targets

    def _decode(self, messages: list[Message]) -> list[Mapping[str, Any]]:
        """The newest record of each person in ``messages``, in key order; where each came
        from is kept in ``_inputs`` for the quarantine."""
        newest: dict[str, Mapping[str, Any]] = {}
        self._inputs.clear()
        for message in messages:
            if skip_consumer_error(message, f"sink-{self._store}"):
                continue
            if message.value() is None:
                continue  # a tombstone: the person moved to a new key, whose record follows
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None and partition is not None and offset is not None  # noqa: S101, PT018
            where, retry_of = Position(topic, partition, offset), retried(message)[0]
            try:
                record = self._decoder.decode(message.value() or b"", str(where))
            except DecodingError as exc:
                payload = (message.value() or b"").hex()
                self._quarantined("apply.undecodable", str(exc), payload, where, retry_of)
                continue
            seen = newest.get(record["person"])
            if seen is None or seen["version"] < record["version"]:
                newest[record["person"]] = record
                self._inputs[record["person"]] = (where, retry_of)
        return [newest[person] for person in sorted(newest)]

    def _apply(
        self, conn: Connection, targets: list[Target], records: list[Mapping[str, Any]]
    ) -> None:
        started = time.perf_counter()
        written, stale = self._write_giving_way(conn, targets, records)
        metrics.APPLIED.labels(self._store).inc(written)
        metrics.STALE.labels(self._store).inc(stale)
        try:
            self._count_waiting(conn)
        except psycopg.Error as exc:
            raise classify(exc, f"counting the people waiting in {self._store}") from exc
        took_s = time.perf_counter() - started
        metrics.SINK_BATCH.labels(self._store).observe(took_s)
        log.debug(
            "batch applied",
            store=self._store,
            people=len(records),
            written=written,
            ms=round(took_s * 1000, 1),
        )

    def _write_giving_way(
        self, conn: Connection, targets: list[Target], records: list[Mapping[str, Any]]
    ) -> tuple[int, int]:
        """Write ``records``; a batch that lost a lock to another transaction (a deadlock,
        the lock timeout) is rolled back and tried again after a pause that doubles."""
        for attempt in range(_LOCK_ATTEMPTS):
            try:
                return self._write_or_split(conn, targets, records)
            except StoreUnavailableError as exc:
                if exc.sqlstate not in _LOST_LOCK or attempt == _LOCK_ATTEMPTS - 1:
                    raise
                metrics.LOCK_RETRIES.labels(self._store).inc()
                log.info(
                    "batch gave way to another transaction's lock; retrying",
                    store=self._store,
                    sqlstate=exc.sqlstate,
                    attempt=attempt + 1,
                )
                time.sleep(min(0.05 * 2**attempt, 2.0))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _write_or_split(
        self, conn: Connection, targets: list[Target], records: list[Mapping[str, Any]]
    ) -> tuple[int, int]:
        """Write ``records``; if the store rejects the batch, write each half the same way,
        so k bad people in n cost about k·log(n) extra transactions. A person the store
        rejects alone is quarantined."""
        try:
            return self._write(conn, targets, records)
        except StoreUnavailableError:
            raise
        except StoreError as exc:
            if len(records) == 1:
                where = self._inputs.get(records[0]["person"], (None, None))
                self._quarantined("apply.rejected", str(exc), as_json(records[0]), *where)
                return 0, 0
        half = len(records) // 2
        first = self._write_or_split(conn, targets, records[:half])
        second = self._write_or_split(conn, targets, records[half:])
        return first[0] + second[0], first[1] + second[1]

    def _write(
        self, conn: Connection, targets: list[Target], records: list[Mapping[str, Any]]
    ) -> tuple[int, int]:
        written, stale, started = 0, 0, []
        try:
            with conn.transaction():
                for target in targets:
                    applied = target.apply(conn, records)
                    written, stale = written + applied.written, max(stale, applied.stale)
                    started += applied.started_waiting
        except psycopg.Error as exc:
            raise classify(exc, f"applying {len(records)} people to {self._store}") from exc
        for waiting in started:  # committed: they do wait (the person's key is not logged)
            log.info(
                "person waits for required columns",
                store=self._store,
                table=waiting.table,
                missing=waiting.missing,
                version=waiting.version,
            )
        return written, stale

    def _count_waiting(self, conn: Connection) -> None:
        with conn.cursor(row_factory=scalar_row) as cursor:
            count: int | None = cursor.execute(
                "SELECT count(*) FROM _civsync.waiting WHERE target = ANY(%s)", (self._tables,)
            ).fetchone()
        metrics.WAITING.labels(self._store).set(count or 0)

    def _quarantined(
        self,
        reason: str,
        detail: str,
        payload: str,
        source: Position | None = None,
        retry_of: str | None = None,
    ) -> None:
        key, record = quarantine_record(
            reason,
            detail,
            stage="apply",
            payload=payload,
            store=self._store,
            source=source,
            retry_of=retry_of,
        )
        self._quarantine.produce(QUARANTINE, key, record)
        metrics.SINK_QUARANTINED.labels(self._store, reason).inc()
        log.warning("quarantined", reason=reason, store=self._store)


def _bind_origin(conn: Connection) -> str:
    """Bind the session to a free civsync origin, so capture skips what it writes."""
    for name in APPLY_ORIGINS:
        try:
            conn.execute("SELECT pg_replication_origin_session_setup(%s)", (name,))
        except psycopg.errors.ObjectInUse:
            continue
        except psycopg.errors.UndefinedObject as exc:  # a store capture has not prepared yet
            raise StoreUnavailableError(
                f"replication origin {name} does not exist yet: capture creates civsync's"
                " origins when it first starts on this store; waiting for it"
            ) from exc
        return name
    raise OriginsBusyError(
        f"all {len(APPLY_ORIGINS)} civsync replication origins are in use; run fewer sinks"
        " per store, or stop the session holding one"
    )
