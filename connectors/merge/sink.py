"""The store sink: applies ``civsync.person`` to one store, in batches, idempotently, echo-free.

One store transaction per batch of person records:

1. the newest version of each person in the batch is copied (COPY) into a temporary table;
2. ``_civsync.applied`` advances only for people whose version is newer than the one
   already applied, so an older record never overwrites a newer one (replays, rebalances,
   two sinks during a rebalance);
3. the mapped columns of those people are updated, or their row inserted; a row that
   already holds the merged values is not written at all.

Identity: a record's ``former_keys`` rename the rows still under them first (a re-issued
PIN; a birth's provisional key ``civil#<id>`` gets the PIN the population store assigned,
written back). A provisional person is written to its own store's row by local id, and to
the tables that hold provisional people (the population store's birth notifications).

The session is bound to one of the ``civsync_apply`` replication origins, so capture never
publishes these writes back (no ping-pong). Kafka offsets are committed after the store
commits: a crash in between replays the batch, and step 2 makes the replay a no-op.
A batch the store rejects is split in halves until the people it rejects are alone; each of
them goes to ``civsync.quarantine`` (stage ``apply``) and the stream goes on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog
from confluent_kafka import Consumer, KafkaException, Message
from psycopg import sql

from connectors.capture.slot import APPLY_ORIGINS
from connectors.kafka.admin import TopicAdmin
from connectors.kafka.avro import AvroDecoder, AvroProducer, DecodingError
from connectors.kafka.errors import translate
from connectors.merge import metrics
from connectors.merge.records import MergeTopics
from connectors.merge.settings import MergeSettings
from connectors.postgres import Connection, StoreError, StoreUnavailableError, classify, connect
from connectors.quarantine import QUARANTINE, as_json, quarantine_record
from connectors.registry import SchemaRegistry
from connectors.settings import KafkaSettings, StoreSettings
from engine.errors import FatalError
from engine.mapping import TableMapping, is_provisional, local_id_of

log = structlog.get_logger(__name__)
# A fetch waits at most this long for new records (librdkafka's default, 500 ms, would be
# added to the latency of every hop whose transactions have just committed).
_FETCH_WAIT_MS = 20

_APPLIED_DDL = """
CREATE SCHEMA IF NOT EXISTS _civsync;
CREATE TABLE IF NOT EXISTS _civsync.applied (
    target text NOT NULL,
    person text NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (target, person)
)"""
_RETRY_PAUSE_S = 1.0


class OriginsBusyError(FatalError):
    """Every civsync replication origin is in use by another session."""


@dataclass(frozen=True)
class _Target:
    """One mapped table, its staging table, and the statements that apply a batch to it."""

    mapping: TableMapping
    stage: str
    copy: sql.Composed
    mark_fresh: sql.Composed
    update: sql.Composed
    update_local: sql.Composed | None  # a provisional person of this store, by local id
    insert: sql.Composed
    rename: sql.Composed
    rename_local: sql.Composed | None

    @classmethod
    def build(cls, conn: Connection, mapping: TableMapping, index: int) -> _Target:
        types = _column_types(conn, mapping.table)
        local = mapping.local_key
        wanted = {mapping.person_column, *mapping.columns.values(), *([local] if local else [])}
        missing = sorted(wanted - set(types))
        if missing:
            raise FatalError(f"table {mapping.table} has no column(s) {missing}")
        stage = f"civsync_stage_{index}"
        columns = list(mapping.columns.values())
        stage_columns = [
            sql.SQL("{} {}, {} boolean").format(
                sql.Identifier(c), sql.SQL(types[c]), sql.Identifier(f"{c}__set")
            )
            for c in columns
        ]
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (person text PRIMARY KEY, version bigint,"
                " key text, local_id text, former_pins text[], former_local text[],"
                " fresh boolean NOT NULL DEFAULT false, {})"
                " ON COMMIT DELETE ROWS"
            ).format(sql.Identifier(stage), sql.SQL(", ").join(stage_columns))
        )
        target, key = _qualified(mapping.table), sql.Identifier(mapping.person_column)
        person = sql.SQL("s.key::{}").format(sql.SQL(types[mapping.person_column]))
        merged = [
            sql.SQL("CASE WHEN s.{set} THEN s.{c} ELSE t.{c} END").format(
                c=sql.Identifier(c), set=sql.Identifier(f"{c}__set")
            )
            for c in columns
        ]
        current = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in columns)
        copy_columns = [sql.Identifier(x) for c in columns for x in (c, f"{c}__set")]

        def update(match: sql.Composable, value: sql.Composable) -> sql.Composed:
            """Write the merged columns of the fresh people whose ``match`` column = ``value``."""
            return sql.SQL(
                "UPDATE {target} t SET ({columns}) = ROW({merged}) FROM {stage} s WHERE s.fresh"
                " AND t.{match} = {value} AND ({current}) IS DISTINCT FROM ({merged})"
            ).format(
                target=target,
                columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                merged=sql.SQL(", ").join(merged),
                stage=sql.Identifier(stage),
                match=match,
                value=value,
                current=current,
            )

        return cls(
            mapping=mapping,
            stage=stage,
            copy=sql.SQL(
                "COPY {} (person, version, key, local_id, former_pins, former_local, {}) FROM STDIN"
            ).format(sql.Identifier(stage), sql.SQL(", ").join(copy_columns)),
            mark_fresh=sql.SQL(
                "WITH fresh AS ("
                " INSERT INTO _civsync.applied AS a (target, person, version)"
                " SELECT {name}, person, version FROM {stage}"
                " ON CONFLICT (target, person) DO UPDATE SET version = excluded.version"
                " WHERE a.version < excluded.version RETURNING person)"
                " UPDATE {stage} s SET fresh = true FROM fresh WHERE s.person = fresh.person"
            ).format(name=sql.Literal(mapping.table), stage=sql.Identifier(stage)),
            update=update(key, person),
            update_local=None
            if local is None
            else update(
                sql.Identifier(local), sql.SQL("s.local_id::{}").format(sql.SQL(types[local]))
            ),
            insert=sql.SQL(
                "INSERT INTO {target} ({key}, {columns}) SELECT {person}, {values} FROM {stage} s"
                " WHERE s.fresh AND s.key IS NOT NULL"
                " AND NOT EXISTS (SELECT 1 FROM {target} t WHERE t.{key} = {person})"
                " ON CONFLICT DO NOTHING"
            ).format(
                target=target,
                key=key,
                columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                person=person,
                values=sql.SQL(", ").join(
                    sql.SQL("s.{}").format(sql.Identifier(c)) for c in columns
                ),
                stage=sql.Identifier(stage),
            ),
            rename=sql.SQL(
                "UPDATE {target} t SET {key} = {person} FROM {stage} s,"
                " unnest(s.former_pins) AS f(old) WHERE s.key IS NOT NULL"
                " AND t.{key} = f.old::{type}"
                " AND NOT EXISTS (SELECT 1 FROM {target} x WHERE x.{key} = {person})"
            ).format(
                target=target,
                key=key,
                person=person,
                stage=sql.Identifier(stage),
                type=sql.SQL(types[mapping.person_column]),
            ),
            rename_local=None
            if local is None
            else sql.SQL(
                "UPDATE {target} t SET {key} = {person} FROM {stage} s,"
                " unnest(s.former_local) AS f(old) WHERE s.key IS NOT NULL"
                " AND t.{local} = f.old::{type} AND t.{key} IS NULL"
            ).format(
                target=target,
                key=key,
                person=person,
                stage=sql.Identifier(stage),
                local=sql.Identifier(local),
                type=sql.SQL(types[local]),
            ),
        )

    def rows(self, records: list[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Staging rows: person, version; its key in this table, or its local id if it is
        this store's provisional person; its former PINs and former local ids; then each
        column's merged value and whether the merged record has the field at all (a field
        nobody has set leaves the column alone)."""
        rows = []
        for record in records:
            person = record["person"]
            local = local_id_of(person, self.mapping.store) if self.mapping.local_key else None
            key = None if local is not None else person
            former = record.get("former_keys") or []
            pins = (
                [k for k in former if not is_provisional(k)]
                if key and not is_provisional(key)
                else []
            )
            own = [i for k in former if (i := local_id_of(k, self.mapping.store)) is not None]
            row: list[Any] = [person, record["version"], key, local, pins, own if key else []]
            fields = record["fields"]
            for name in self.mapping.columns:
                merged = fields.get(name)
                row += [None, False] if merged is None else [merged["value"], True]
            rows.append(tuple(row))
        return rows

    def apply(self, conn: Connection, records: list[Mapping[str, Any]]) -> tuple[int, int]:
        """(rows written, people skipped as stale) for ``records``, inside the open transaction."""
        records = [r for r in records if self.mapping.accepts(r["person"])]
        if not records:
            return 0, 0
        with conn.cursor() as cursor:
            with cursor.copy(self.copy) as copy:
                for row in self.rows(records):
                    copy.write_row(row)
            if any(r.get("former_keys") for r in records):
                # rows still under a key the person was known by take its key first
                cursor.execute(self.rename)
                if self.rename_local is not None:
                    cursor.execute(self.rename_local)
            cursor.execute(self.mark_fresh)
            fresh = cursor.rowcount
            cursor.execute(self.update)
            written = cursor.rowcount
            if self.update_local is not None:
                cursor.execute(self.update_local)
                written += cursor.rowcount
            cursor.execute(self.insert)
            written += cursor.rowcount
        return written, len(records) - fresh


def _column_types(conn: Connection, table: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
        (table,),
    ).fetchall()
    if not rows:
        raise FatalError(f"the sink's target table {table} does not exist")
    return {str(name): str(type_) for name, type_ in rows}


def _qualified(table: str) -> sql.Composed:
    schema, _, name = table.partition(".")
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


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
        self._mappings = [m for m in merge.mappings() if m.store == store and m.apply]
        if not self._mappings:
            raise FatalError(f"no table of store {store!r} is mapped in [merge.tables]")
        self._decoder = AvroDecoder(registry)
        self._quarantine = AvroProducer(kafka, registry)

    def run(self, stop: threading.Event) -> None:
        consumer = Consumer(
            self._kafka.client_config()
            | {
                "group.id": f"{self._merge.topic_prefix}-sink-{self._store}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "partition.assignment.strategy": "cooperative-sticky",
                "fetch.wait.max.ms": _FETCH_WAIT_MS,
            }
        )
        topics = MergeTopics(self._merge.topic_prefix)
        TopicAdmin(self._kafka).ensure(topics.specs(self._merge.partitions))
        consumer.subscribe([topics.person.name])
        conn, targets = self._open()
        log.info("sink started", store=self._store, tables=[m.table for m in self._mappings])
        try:
            while not stop.is_set():
                messages = consumer.consume(self._merge.batch, self._poll_s)
                metrics.record_step(f"sink-{self._store}")
                if not messages:
                    continue
                records = self._decode(messages)
                while True:
                    try:
                        self._apply(conn, targets, records)
                        break
                    except StoreUnavailableError as exc:
                        log.warning("store unavailable; retrying the batch", error=str(exc))
                        conn.close()
                        stop.wait(_RETRY_PAUSE_S)
                        conn, targets = self._open()
                self._quarantine.flush()
                try:
                    consumer.commit(asynchronous=False)
                except KafkaException as exc:  # the batch replays, harmlessly
                    log.warning("offset commit failed; the batch will be replayed", error=str(exc))
        finally:
            consumer.close()
            conn.close()

    def _open(self) -> tuple[Connection, list[_Target]]:
        conn = connect(self._store_settings, autocommit=True)
        try:
            conn.execute(_APPLIED_DDL)
            _bind_origin(conn)
            targets = [_Target.build(conn, m, i) for i, m in enumerate(self._mappings)]
        except psycopg.Error as exc:
            conn.close()
            raise classify(exc, f"preparing the {self._store} sink") from exc
        return conn, targets

    def _decode(self, messages: list[Message]) -> list[Mapping[str, Any]]:
        """The newest record of each person in ``messages``."""
        newest: dict[str, Mapping[str, Any]] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                raise translate(error, "consuming civsync.person")
            if message.value() is None:
                continue  # a tombstone: the person moved to a new key, whose record follows
            where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
            try:
                record = self._decoder.decode(message.value() or b"", where)
            except DecodingError as exc:
                self._quarantined("apply.undecodable", str(exc), (message.value() or b"").hex())
                continue
            seen = newest.get(record["person"])
            if seen is None or seen["version"] < record["version"]:
                newest[record["person"]] = record
        return list(newest.values())

    def _apply(
        self, conn: Connection, targets: list[_Target], records: list[Mapping[str, Any]]
    ) -> None:
        started = time.perf_counter()
        written, stale = self._write_or_split(conn, targets, records)
        metrics.APPLIED.labels(self._store).inc(written)
        metrics.STALE.labels(self._store).inc(stale)
        log.debug(
            "batch applied",
            store=self._store,
            people=len(records),
            written=written,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )

    def _write_or_split(
        self, conn: Connection, targets: list[_Target], records: list[Mapping[str, Any]]
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
                self._quarantined("apply.rejected", str(exc), as_json(records[0]))
                return 0, 0
        half = len(records) // 2
        first = self._write_or_split(conn, targets, records[:half])
        second = self._write_or_split(conn, targets, records[half:])
        return first[0] + second[0], first[1] + second[1]

    def _write(
        self, conn: Connection, targets: list[_Target], records: list[Mapping[str, Any]]
    ) -> tuple[int, int]:
        written, stale = 0, 0
        try:
            with conn.transaction():
                for target in targets:
                    w, s = target.apply(conn, records)
                    written, stale = written + w, max(stale, s)
        except psycopg.Error as exc:
            raise classify(exc, f"applying {len(records)} people to {self._store}") from exc
        return written, stale

    def _quarantined(self, reason: str, detail: str, payload: str) -> None:
        key, record = quarantine_record(
            reason, detail, stage="apply", payload=payload, store=self._store
        )
        self._quarantine.produce(QUARANTINE, key, record)
        log.warning("quarantined", reason=reason, store=self._store)


def _bind_origin(conn: Connection) -> str:
    """Bind the session to a free civsync origin, so capture skips what it writes."""
    for name in APPLY_ORIGINS:
        try:
            conn.execute("SELECT pg_replication_origin_session_setup(%s)", (name,))
        except psycopg.errors.ObjectInUse:
            continue
        return name
    raise OriginsBusyError(
        f"all {len(APPLY_ORIGINS)} civsync replication origins are in use; run fewer sinks"
        " per store, or stop the session holding one"
    )
