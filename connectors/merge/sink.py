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

A row is never inserted without a column its table requires (NOT NULL, no default): that
person waits in ``_civsync.waiting`` (table, person, version, the missing columns, since
when), counted by a gauge, until a newer merged version has them; a wait is not a rejection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import structlog
from confluent_kafka import Consumer, KafkaException, Message
from psycopg import sql
from psycopg.rows import class_row, scalar_row

from connectors.capture.slot import APPLY_ORIGINS
from connectors.kafka.admin import TopicAdmin
from connectors.kafka.avro import AvroDecoder, AvroProducer, DecodingError
from connectors.kafka.errors import skip_consumer_error
from connectors.merge import metrics
from connectors.merge.records import MergeTopics
from connectors.merge.settings import MergeSettings
from connectors.postgres import Connection, StoreError, StoreUnavailableError, classify, connect
from connectors.quarantine import QUARANTINE, as_json, quarantine_record
from connectors.registry import SchemaRegistry
from connectors.resilience import run_until_stopped
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
);
CREATE TABLE IF NOT EXISTS _civsync.waiting (
    target text NOT NULL,
    person text NOT NULL,
    version bigint NOT NULL,
    missing text[] NOT NULL,
    since timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, person)
)"""


class OriginsBusyError(FatalError):
    """Every civsync replication origin is in use by another session."""


@dataclass(frozen=True)
class _Target:
    """One mapped table, its staging table, and the statements that apply a batch to it."""

    mapping: TableMapping
    required: frozenset[str]  # mapped columns the table requires: NOT NULL, no default
    stage: str
    copy: sql.Composed
    mark_fresh: sql.Composed
    update: sql.Composed
    update_local: sql.Composed | None  # a provisional person of this store, by local id
    insert: sql.Composed
    wait: sql.Composed  # fresh people missing a required column wait; the others stop waiting
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
                " missing text[] NOT NULL DEFAULT '{{}}', fresh boolean NOT NULL DEFAULT false, {})"
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

        name = sql.Literal(mapping.table)
        return cls(
            mapping=mapping,
            # the person column is always set; the others the merged person may lack
            required=frozenset(
                _required_columns(conn, mapping.table) & set(columns) - {mapping.person_column}
            ),
            stage=stage,
            copy=sql.SQL(
                "COPY {} (person, version, key, local_id, former_pins, former_local, missing, {})"
                " FROM STDIN"
            ).format(sql.Identifier(stage), sql.SQL(", ").join(copy_columns)),
            mark_fresh=sql.SQL(
                "WITH fresh AS ("
                " INSERT INTO _civsync.applied AS a (target, person, version)"
                " SELECT {name}, person, version FROM {stage}"
                " ON CONFLICT (target, person) DO UPDATE SET version = excluded.version"
                " WHERE a.version < excluded.version RETURNING person)"
                " UPDATE {stage} s SET fresh = true FROM fresh WHERE s.person = fresh.person"
            ).format(name=name, stage=sql.Identifier(stage)),
            update=update(key, person),
            update_local=None
            if local is None
            else update(
                sql.Identifier(local), sql.SQL("s.local_id::{}").format(sql.SQL(types[local]))
            ),
            insert=sql.SQL(
                "INSERT INTO {target} ({key}, {columns}) SELECT {person}, {values} FROM {stage} s"
                " WHERE s.fresh AND s.key IS NOT NULL AND cardinality(s.missing) = 0"
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
            # after the insert: every CTE reads the same snapshot, so ``before`` is who
            # waited before this statement, and the result is who starts waiting now
            wait=sql.SQL(
                "WITH staged AS (SELECT s.person, s.version, s.missing,"
                " s.key IS NOT NULL AND cardinality(s.missing) > 0"
                " AND NOT EXISTS (SELECT 1 FROM {target} t WHERE t.{key} = {person}) AS waits"
                " FROM {stage} s WHERE s.fresh),"
                " before AS (SELECT w.person FROM _civsync.waiting w JOIN staged USING (person)"
                " WHERE w.target = {name}),"
                " done AS (DELETE FROM _civsync.waiting w USING staged"
                " WHERE w.target = {name} AND w.person = staged.person AND NOT staged.waits),"
                " waiting AS (INSERT INTO _civsync.waiting AS w (target, person, version, missing)"
                " SELECT {name}, person, version, missing FROM staged WHERE waits"
                " ON CONFLICT (target, person) DO UPDATE"
                " SET version = excluded.version, missing = excluded.missing"
                ' RETURNING w.target AS "table", w.person, w.version, w.missing, w.since)'
                " SELECT * FROM waiting"
                " WHERE NOT EXISTS (SELECT 1 FROM before WHERE before.person = waiting.person)"
            ).format(
                target=target,
                key=key,
                person=person,
                stage=sql.Identifier(stage),
                name=name,
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
        this store's provisional person; its former PINs and former local ids; the required
        columns it has no value for; then each column's merged value and whether the merged
        record has the field at all (a field nobody has set leaves the column alone)."""
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
            fields = record["fields"]
            missing = missing_required(self.required, self.mapping.columns, fields)
            row: list[Any] = [person, record["version"], key, local, pins, own if key else []]
            row += [missing]
            for name in self.mapping.columns:
                merged = fields.get(name)
                row += [None, False] if merged is None else [merged["value"], True]
            rows.append(tuple(row))
        return rows

    def apply(self, conn: Connection, records: list[Mapping[str, Any]]) -> _Applied:
        """Rows written, people skipped as stale and people who start waiting, for
        ``records``, inside the open transaction."""
        records = [r for r in records if self.mapping.accepts(r["person"])]
        if not records:
            return _Applied(0, 0, [])
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
        with conn.cursor(row_factory=class_row(Waiting)) as waits:
            started = waits.execute(self.wait).fetchall()
        return _Applied(written, len(records) - fresh, started)


@dataclass(frozen=True)
class _Applied:
    written: int
    stale: int
    started_waiting: list[Waiting]


@dataclass(frozen=True)
class Waiting:
    """A person a sink has not inserted into ``table``: it has no value yet for ``missing``,
    columns the table requires."""

    table: str
    person: str
    version: int
    missing: list[str]
    since: datetime


def missing_required(
    required: Collection[str], columns: Mapping[str, str], fields: Mapping[str, Any]
) -> list[str]:
    """The ``required`` columns (of ``columns``: field -> column) whose field the merged
    record's ``fields`` lacks or holds as null, in mapping order."""
    return [
        column
        for name, column in columns.items()
        if column in required and ((merged := fields.get(name)) is None or merged["value"] is None)
    ]


def sink_mappings(merge: MergeSettings, store: str) -> list[TableMapping]:
    """The mapped tables the sink of ``store`` writes."""
    return [m for m in merge.mappings() if m.store == store and m.apply]


def sink_tables(merge: MergeSettings, store: str) -> list[str]:
    """The names of the tables the sink of ``store`` writes."""
    return [m.table for m in sink_mappings(merge, store)]


def waiting_people(conn: Connection, tables: list[str]) -> list[Waiting]:
    """The people waiting to be inserted into ``tables``, longest waiting first; none if no
    sink has run on this store yet."""
    try:
        with conn.cursor(row_factory=class_row(Waiting)) as cursor:
            exists = conn.execute("SELECT to_regclass('_civsync.waiting') IS NOT NULL").fetchone()
            if not exists or not exists[0]:
                return []
            return cursor.execute(
                'SELECT target AS "table", person, version, missing, since FROM _civsync.waiting'
                " WHERE target = ANY(%s) ORDER BY since, target, person",
                (tables,),
            ).fetchall()
    except psycopg.Error as exc:
        raise classify(exc, "reading the people waiting to be inserted") from exc


def _required_columns(conn: Connection, table: str) -> set[str]:
    """Columns of ``table`` an insert must give a value: NOT NULL, without a default, and
    neither an identity nor a generated column."""
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0"
        " AND NOT attisdropped AND attnotnull AND NOT atthasdef AND attidentity = ''"
        " AND attgenerated = ''",
        (table,),
    ).fetchall()
    return {str(name) for (name,) in rows}


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
        self._mappings = sink_mappings(merge, store)
        self._tables = [m.table for m in self._mappings]
        if not self._mappings:
            raise FatalError(f"no table of store {store!r} is mapped in [merge.tables]")
        self._registry = registry
        self._decoder = AvroDecoder(registry)
        self._quarantine = AvroProducer(kafka, registry)

    def run(self, stop: threading.Event) -> None:
        """Apply until ``stop``. A store, broker or registry away for a while is waited out
        (``connectors.resilience``): the next attempt replays from the committed offsets, and
        ``_civsync.applied`` makes the replay a no-op."""
        run_until_stopped(f"sink-{self._store}", lambda: self._apply_all(stop), stop)

    def _apply_all(self, stop: threading.Event) -> None:
        self._quarantine.discard_queued()  # a new producer, as a restarted process has
        self._quarantine = AvroProducer(self._kafka, self._registry)
        topics = MergeTopics(self._merge.topic_prefix)
        TopicAdmin(self._kafka).ensure(topics.specs(self._merge.partitions))
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
            }
        )
        consumer.subscribe([topics.person.name])
        log.info("sink started", store=self._store, tables=[m.table for m in self._mappings])
        try:
            while not stop.is_set():
                messages = consumer.consume(self._merge.batch, self._poll_s)
                metrics.record_step(f"sink-{self._store}")
                if not messages:
                    continue
                self._apply(conn, targets, self._decode(messages))
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
            self._count_waiting(conn)
        except psycopg.Error as exc:
            conn.close()
            raise classify(exc, f"preparing the {self._store} sink") from exc
        return conn, targets

    def _decode(self, messages: list[Message]) -> list[Mapping[str, Any]]:
        """The newest record of each person in ``messages``."""
        newest: dict[str, Mapping[str, Any]] = {}
        for message in messages:
            if skip_consumer_error(message, f"sink-{self._store}"):
                continue
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
        try:
            self._count_waiting(conn)
        except psycopg.Error as exc:
            raise classify(exc, f"counting the people waiting in {self._store}") from exc
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
