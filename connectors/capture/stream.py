"""The capture loop of one store: read the slot, publish to Kafka, then confirm the slot.

Invariant: the slot is confirmed only up to the end of a transaction whose events Kafka has
all acknowledged (acks=all, idempotent producer). A crash anywhere therefore redelivers from
the last confirmed transaction, with the same event ids; nothing committed is lost.
When a read returns less than a full batch, every transaction committed before the read's
upper bound has been seen, so the slot is confirmed up to that bound even if nothing was
published: an idle store never pins WAL. A broker, registry or store away for a while
ends the attempt, not the process: the next attempt starts as a restarted process would.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import psycopg
import structlog

from connectors.capture import metrics, snapshot
from connectors.capture.publisher import ChangePublisher
from connectors.capture.slot import ReplicationSlot, ensure_apply_origins
from connectors.capture.wal2json import (
    LogMessage,
    MalformedChangeError,
    TransactionEnd,
    Wal2JsonDecoder,
)
from connectors.postgres import Connection, classify, connect
from connectors.resilience import run_until_stopped
from connectors.settings import StoreSettings
from engine.events import ChangeEvent, format_lsn, parse_lsn

log = structlog.get_logger(__name__)

_STATE_DDL = """
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
    batch_changes: int = 20_000
    flush_every: int = 5_000
    idle_sleep_s: float = 0.05  # an idle store is polled 20 times a second: latency vs load


def prepare(conn: Connection, slot: ReplicationSlot) -> tuple[int, ...]:
    """Make the store ready for capture; the ids of civsync's own replication origins.

    Creates the slot on first connection and queues the initial snapshot of the captured
    tables, read after the slot exists so no change falls between the two. The slot's record
    in ``_civsync.capture_state`` and the snapshot jobs commit together, so a crash in between
    leaves an unrecorded slot, which the next start records and snapshots. A slot that was
    recorded and is gone now is a SlotLostError, never a re-creation.
    """
    try:
        conn.execute(_STATE_DDL)
        conn.execute(snapshot.JOBS_DDL)
        origins = ensure_apply_origins(conn)
        known = conn.execute(
            "SELECT 1 FROM _civsync.capture_state WHERE slot_name = %s", (slot.name,)
        ).fetchone()
    except psycopg.Error as exc:
        raise classify(exc, "preparing the store for capture") from exc
    if known is not None:
        slot.require_usable(conn)  # raises SlotLostError with the remedy
        return origins
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
    return origins


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

    def __init__(
        self, config: CaptureConfig, store: StoreSettings, publisher: ChangePublisher
    ) -> None:
        self._config, self._store, self._publisher = config, store, publisher
        self._slot = ReplicationSlot(config.slot, config.tables)
        self._fresh_state()

    def run(self, stop: threading.Event) -> None:
        """Stream until ``stop``; a store, broker or registry away for a while is waited out
        (``connectors.resilience``), each new attempt resuming from the slot's confirmed
        position with the state a restarted process would have."""
        run_until_stopped(f"capture-{self._config.store}", lambda: self._stream(stop), stop)

    def _stream(self, stop: threading.Event) -> None:
        self._publisher.renew()  # nothing queued, nothing half sent: as a restarted process
        self._fresh_state()
        with connect(self._store, autocommit=True) as control, connect(self._store) as reader:
            origins = prepare(control, self._slot)
            _warn_without_full_identity(control, self._config.tables)
            while not stop.is_set():
                if self.step(control, reader, origins) == 0:
                    stop.wait(self._config.idle_sleep_s)

    def _fresh_state(self) -> None:
        """What a newly started process holds: no open snapshot chunk, no transaction half
        decoded (what was read is read again from the slot's confirmed position)."""
        config = self._config
        self._decoder = Wal2JsonDecoder(config.store, self._store.dbname)
        self._snapshot = snapshot.IncrementalSnapshot(
            config.store, self._store.dbname, config.slot, config.snapshot_chunk
        )

    def step(self, control: Connection, reader: Connection, origins: tuple[int, ...]) -> int:
        """One read of the slot; the number of rows read."""
        state = self._slot.require_usable(control)
        metrics.SLOT_LAG.labels(self._config.store, self._slot.name).set(state.lag_bytes)
        self._snapshot.start_chunk(control)  # its watermarks commit before `upto`
        upto = _current_lsn(control)
        rows, confirmable, pending = 0, None, 0
        changes = self._slot.changes(reader, upto, self._config.batch_changes, exclude=origins)
        for lsn, data in changes:
            rows += 1
            for item in self._decode(lsn, data):
                if isinstance(item, ChangeEvent):
                    self._snapshot.on_change(item)
                    self._publisher.publish(item)
                    pending += 1
                elif isinstance(item, LogMessage):
                    for row in self._snapshot.on_message(item):
                        self._publisher.publish(row)
                        metrics.SNAPSHOT_ROWS.labels(self._config.store).inc()
                        pending += 1
                elif isinstance(item, TransactionEnd):
                    confirmable = item.end_lsn
                    if pending >= self._config.flush_every:
                        self._confirm(control, confirmable)
                        pending = 0
        if rows < self._config.batch_changes:
            confirmable = upto  # every transaction committed before `upto` has been read
        if confirmable is not None:
            self._confirm(control, confirmable)
        metrics.record_step(self._config.store)
        return rows

    def _decode(self, lsn: str, data: str) -> list[ChangeEvent | TransactionEnd | LogMessage]:
        try:
            return list(self._decoder.decode(lsn, data))
        except (MalformedChangeError, KeyError, TypeError, ValueError) as exc:
            self._publisher.quarantine(
                "capture.malformed_change",
                f"{type(exc).__name__}: {exc}",
                payload=data,
                store=self._config.store,
                lsn=parse_lsn(lsn),
            )
            return []

    def _confirm(self, control: Connection, lsn: int) -> None:
        self._publisher.flush()
        self._snapshot.record_progress(control)  # only once Kafka has the chunk's rows
        self._slot.confirm(control, lsn)
        metrics.CONFIRMED_LSN.labels(self._config.store, self._slot.name).set(lsn)
        log.debug("capture.confirmed", lsn=format_lsn(lsn), published=self._publisher.published)


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


def _current_lsn(conn: Connection) -> int:
    row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None  # noqa: S101 - always one row
    return parse_lsn(str(row[0]))
