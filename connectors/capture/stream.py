"""The capture loop of one store: stream the slot, publish to Kafka, then confirm the slot.

Invariant: the slot is confirmed only up to the end of a transaction whose events Kafka has
all acknowledged (acks=all, idempotent producer). A crash anywhere therefore redelivers from
the last confirmed transaction, with the same event ids; nothing committed is lost.
Between transactions, a keepalive's position is confirmed too, once Kafka has everything
before it: every transaction committed before it has been sent, so an idle store never pins
WAL. A broker, registry or store away for a while ends the attempt, not the process: the
next attempt starts as a restarted process would.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import psycopg
import structlog
from psycopg import sql

from connectors.capture import metrics, snapshot
from connectors.capture.pgoutput import (
    Decoded,
    LogMessage,
    MalformedChangeError,
    PgOutputDecoder,
)
from connectors.capture.publisher import Publisher
from connectors.capture.replication import Keepalive, ReplicationStream, StoreCatalog, XLogData
from connectors.capture.slot import APPLY_ORIGINS, ReplicationSlot, ensure_apply_origins
from connectors.capture.snapshot import IncrementalSnapshot
from connectors.postgres import Connection, classify, connect, ensure_tables
from connectors.resilience import run_until_stopped
from connectors.settings import StoreSettings
from engine.events import ChangeEvent, format_lsn

log = structlog.get_logger(__name__)

STATE_DDL = """
CREATE SCHEMA IF NOT EXISTS _civsync;
CREATE TABLE IF NOT EXISTS _civsync.capture_state (
    slot_name   text PRIMARY KEY,
    created_lsn pg_lsn NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class CaptureConfig:
    store: str
    slot: str
    tables: tuple[str, ...] = ()  # schema.table to capture; empty means every table
    snapshot_chunk: int = 5_000
    batch_changes: int = 20_000  # messages read between two looks at slot lag and snapshots
    flush_every: int = 5_000  # events published before the next transaction end is confirmed
    idle_sleep_s: float = 0.05  # a stream quiet this long: confirm, then look at the snapshots


def prepare(conn: Connection, slot: ReplicationSlot) -> None:
    """Make the store ready for capture.

    Creates civsync's replication origins (its writers bind to them), the publication, and
    on first connection the slot, then queues the initial snapshot of the captured tables,
    read after the slot exists so no change falls between the two. The slot's record in
    ``_civsync.capture_state`` and the snapshot jobs commit together, so a crash in between
    leaves an unrecorded slot, which the next start records and snapshots. A slot that was
    recorded and is gone now is a SlotLostError, never a re-creation.
    """
    try:
        ensure_tables(conn, STATE_DDL, ("_civsync.capture_state",))
        ensure_tables(conn, snapshot.JOBS_DDL, ("_civsync.snapshot_jobs",))
        ensure_apply_origins(conn)
        known = conn.execute(
            "SELECT 1 FROM _civsync.capture_state WHERE slot_name = %s", (slot.name,)
        ).fetchone()
    except psycopg.Error as exc:
        raise classify(exc, "preparing the store for capture") from exc
    slot.publish(conn)
    if known is not None:
        slot.require_usable(conn)  # raises SlotLostError with the remedy
        return
    existing = slot.state(conn)
    start = existing.confirmed_lsn if existing is not None else slot.create(conn)
    with conn.transaction():
        conn.execute(
            "INSERT INTO _civsync.capture_state (slot_name, created_lsn) VALUES (%s, %s::pg_lsn)",
            (slot.name, format_lsn(start)),
        )
        jobs = snapshot.request(conn, slot.name, captured_tables(conn, slot.tables))
    log.info(
        "capture.slot_created" if existing is None else "capture.slot_recorded",
        slot=slot.name,
        lsn=format_lsn(start),
        initial_snapshot_jobs=len(jobs),
    )


def forget(conn: Connection, slot: str) -> None:
    """The reverse of ``prepare``: drop the slot and its publication, and civsync's records
    of them. Capture started again begins anew, with an initial snapshot."""
    try:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name = %s",
            (slot,),
        )
        conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(slot)))
        conn.execute("DELETE FROM _civsync.capture_state WHERE slot_name = %s", (slot,))
        conn.execute("DELETE FROM _civsync.snapshot_jobs WHERE slot_name = %s", (slot,))
    except psycopg.Error as exc:
        raise classify(exc, f"dropping capture slot {slot}") from exc


def captured_tables(conn: Connection, tables: tuple[str, ...]) -> list[str]:
    """``tables``, or when none are named every user table outside civsync's schema."""
    if tables:
        return list(tables)
    rows = conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_civsync')"
        " AND n.nspname NOT LIKE 'pg\\_%%' ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]


class CaptureStream:
    """Streams one store's committed changes into Kafka until ``stop`` is set."""

    def __init__(self, config: CaptureConfig, store: StoreSettings, publisher: Publisher) -> None:
        self._config, self._store, self._publisher = config, store, publisher
        self._slot = ReplicationSlot(config.slot, config.tables)

    def run(self, stop: threading.Event) -> None:
        """Stream until ``stop``; a store, broker or registry away for a while is waited out
        (``connectors.resilience``), each new attempt resuming from the slot's confirmed
        position with the state a restarted process would have."""
        run_until_stopped(f"capture-{self._config.store}", lambda: self._attempt(stop), stop)

    def _attempt(self, stop: threading.Event) -> None:
        """One attempt; a PostgreSQL error that escapes it is classified by its SQLSTATE, so
        a server that stops or restarts (57P01 and the like) is waited out, not fatal."""
        try:
            self._follow(stop)
        except psycopg.Error as exc:
            raise classify(exc, f"capturing {self._store.dbname}") from exc

    def _follow(self, stop: threading.Event) -> None:
        config, slot, db = self._config, self._slot, self._store.dbname
        self._publisher.renew()  # nothing queued, nothing half sent: as a restarted process
        with connect(self._store, autocommit=True) as control:
            prepare(control, slot)
            _warn_without_full_identity(control, config.tables)
            with ReplicationStream(self._store, slot.name, slot.publication) as stream:
                _Follow(
                    config,
                    slot,
                    control,
                    stream,
                    self._publisher,
                    PgOutputDecoder(
                        config.store, db, StoreCatalog(control), frozenset(APPLY_ORIGINS)
                    ),
                    IncrementalSnapshot(config.store, db, config.slot, config.snapshot_chunk),
                ).run(stop)


@dataclass
class _Follow:
    """One attempt at following the stream: what it has published and not yet confirmed,
    and how far it has read (the end of the last transaction, or a keepalive's position)."""

    config: CaptureConfig
    slot: ReplicationSlot
    control: Connection
    stream: ReplicationStream
    publisher: Publisher
    decoder: PgOutputDecoder
    snapshot: IncrementalSnapshot
    confirmed: int = 0
    read_to: int = 0
    pending: int = 0

    def run(self, stop: threading.Event) -> None:
        config = self.config
        while not stop.is_set():
            state = self.slot.require_usable(self.control)
            metrics.SLOT_LAG.labels(config.store, self.slot.name).set(state.lag_bytes)
            self.snapshot.start_chunk(self.control)  # its watermarks reach the stream
            read = 0
            for item in self.stream.messages(config.idle_sleep_s):
                if isinstance(item, Keepalive):
                    if not self.decoder.in_transaction:  # all before it has been read
                        self.read_to = max(self.read_to, item.wal_end)
                        if item.reply:  # confirm now: a server shutting down waits for it,
                            break  # pinging again at once, so the stream never goes idle
                    continue
                self._publish(self._decode(item))
                read += 1
                if read >= config.batch_changes:  # housekeeping: slot lag, the next chunk
                    break
                if self.snapshot.chunk_closed and not self.decoder.in_transaction:
                    break  # confirm its rows and start the next at once, busy stream or not
            if self.read_to > self.confirmed and not self.decoder.in_transaction:
                self._confirm(self.read_to)
            metrics.record_step(f"capture-{config.store}")

    def _decode(self, data: XLogData) -> list[Decoded]:
        try:
            return list(self.decoder.decode(data.lsn, data.payload))
        except (MalformedChangeError, KeyError, ValueError) as exc:
            self.publisher.quarantine(
                "capture.malformed_change",
                f"{type(exc).__name__}: {exc}",
                payload=data.payload.hex(),  # the pgoutput message, as the server sent it
                store=self.config.store,
                table=exc.table if isinstance(exc, MalformedChangeError) else None,
                lsn=data.lsn,
            )
            return []

    def _publish(self, decoded: list[Decoded]) -> None:
        for item in decoded:
            if isinstance(item, ChangeEvent):
                self.snapshot.on_change(item)
                self.publisher.publish(item)
                self.pending += 1
            elif isinstance(item, LogMessage):
                for row in self.snapshot.on_message(item):
                    self.publisher.publish(row)
                    metrics.SNAPSHOT_ROWS.labels(self.config.store).inc()
                    self.pending += 1
            else:
                self.read_to = item.end_lsn
                if self.pending >= self.config.flush_every:
                    self._confirm(item.end_lsn)

    def _confirm(self, lsn: int) -> None:
        self.publisher.flush()
        self.snapshot.record_progress(self.control)  # only once Kafka has the chunk's rows
        self.stream.confirm(lsn)
        self.confirmed, self.pending = lsn, 0
        metrics.CONFIRMED_LSN.labels(self.config.store, self.slot.name).set(lsn)
        log.debug("capture.confirmed", lsn=format_lsn(lsn), published=self.publisher.published)


def _warn_without_full_identity(conn: Connection, tables: tuple[str, ...]) -> None:
    """Without REPLICA IDENTITY FULL, before-images hold only the key and an unchanged TOAST
    value cannot be carried into an update's after-image: say so at start-up."""
    rows = conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'r' AND c.relreplident <> 'f' AND n.nspname NOT LIKE 'pg\\_%%'"
        " AND n.nspname NOT IN ('information_schema', '_civsync')"
        " AND (cardinality(%s::text[]) = 0 OR n.nspname || '.' || c.relname = ANY(%s::text[]))",
        (list(tables), list(tables)),
    ).fetchall()
    if rows:
        log.warning("capture.replica_identity_not_full", tables=[str(r[0]) for r in rows])
