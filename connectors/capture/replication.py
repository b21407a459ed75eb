"""A logical replication slot read over PostgreSQL's streaming replication protocol.

``ReplicationStream`` opens a replication connection, starts pgoutput on the slot for
civsync's publication (``messages 'true'``: the snapshot watermarks), and yields what the
server sends: ``XLogData`` (one pgoutput message and its WAL position) and ``Keepalive``
(the position the server has sent up to). ``confirm`` sends a standby status update; the
caller confirms only positions whose events Kafka has acknowledged, so a crash resumes from
the last confirmed transaction. A server that asks for a reply always gets one, with the
position last confirmed, never a later one.
"""

from __future__ import annotations

import select
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg import pq, sql
from psycopg.errors import error_from_result

from connectors.capture.pgoutput import TableInfo
from connectors.capture.snapshot import describe_table
from connectors.postgres import Connection, StoreError, StoreUnavailableError, classify
from connectors.settings import StoreSettings

_PG_EPOCH_US = 946_684_800_000_000
_STATUS_EVERY_S = 10.0  # well inside wal_sender_timeout (60 s by default)


@dataclass(frozen=True)
class XLogData:
    lsn: int  # where the message's record starts in the WAL
    payload: bytes


@dataclass(frozen=True)
class Keepalive:
    wal_end: int  # every transaction committed before this has been sent
    reply: bool = False  # the server waits for an answer (as it does when shutting down)


class ReplicationStream:
    """pgoutput from one slot, over one replication connection."""

    def __init__(self, store: StoreSettings, slot: str, publication: str) -> None:
        self._slot, self._confirmed, self._status_at = slot, 0, 0.0
        try:
            self._conn = psycopg.connect(store.conninfo(), autocommit=True, replication="database")
            self._conn.execute(
                sql.SQL(
                    "START_REPLICATION SLOT {} LOGICAL 0/0 (proto_version '1',"
                    " publication_names {}, messages 'true')"
                ).format(sql.Identifier(slot), sql.Literal(publication))
            )
        except psycopg.Error as exc:
            raise classify(exc, f"starting replication from slot {slot}") from exc
        self._pgconn = self._conn.pgconn

    def __enter__(self) -> ReplicationStream:
        return self

    def __exit__(self, *_: object) -> None:
        self._conn.close()

    def messages(self, idle_s: float) -> Iterator[XLogData | Keepalive]:
        """What the server sends, until nothing has come for ``idle_s`` seconds."""
        while True:
            data = self._next(idle_s)
            if data is None:
                return
            kind = data[:1]
            if kind == b"w":
                start, _end, _sent = struct.unpack_from("!qqq", data, 1)
                yield XLogData(start, data[25:])
            elif kind == b"k":
                wal_end, _sent, reply = struct.unpack_from("!qqB", data, 1)
                if reply:
                    self._status(self._confirmed)
                yield Keepalive(wal_end, bool(reply))
            if time.monotonic() - self._status_at > _STATUS_EVERY_S:
                self._status(self._confirmed)

    def confirm(self, lsn: int) -> None:
        """Tell the server everything before ``lsn`` is safely in Kafka."""
        if lsn > self._confirmed:
            self._status(lsn)

    def _next(self, idle_s: float) -> bytes | None:
        deadline = time.monotonic() + idle_s
        try:
            while True:
                size, data = self._pgconn.get_copy_data(1)
                if size > 0:
                    return bytes(data)
                if size < 0:
                    raise self._ended()
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                select.select([self._pgconn.socket], [], [], left)
                self._pgconn.consume_input()
        except psycopg.Error as exc:
            raise classify(exc, f"reading slot {self._slot}") from exc

    def _ended(self) -> StoreError:
        """Why the server ended the stream: its error, classified by SQLSTATE (a walsender
        that could not save the slot on a full disk: ``53100``, waited out), or retriable
        when it gave none (the slot keeps the position to read on from)."""
        doing = f"reading slot {self._slot}"
        result = self._pgconn.get_result()
        if result is not None and result.status == pq.ExecStatus.FATAL_ERROR:
            return classify(error_from_result(result, self._conn.info.encoding), doing)
        return StoreUnavailableError(f"{doing}: the server ended replication without an error")

    def _status(self, lsn: int) -> None:
        now_us = time.time_ns() // 1000 - _PG_EPOCH_US
        update = b"r" + struct.pack("!qqqqB", lsn, lsn, lsn, now_us, 0)
        try:
            self._pgconn.put_copy_data(update)
            self._pgconn.flush()
        except psycopg.Error as exc:
            raise classify(exc, f"confirming a position on slot {self._slot}") from exc
        self._confirmed, self._status_at = lsn, time.monotonic()


class StoreCatalog:
    """``pgoutput.Catalog`` over a store connection: primary key and type names of a table."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def describe(self, relid: int) -> TableInfo:
        try:
            columns, key = describe_table(self._conn, relid)
        except psycopg.Error as exc:
            raise classify(exc, f"describing relation {relid}") from exc
        return TableInfo(key, dict(columns))

    def type_name(self, oid: int, typmod: int) -> str:
        try:
            row = self._conn.execute(
                "SELECT CASE WHEN typtype = 'd' THEN format_type(typbasetype, typtypmod)"
                " ELSE format_type(oid, %s) END FROM pg_type WHERE oid = %s",
                (typmod, oid),
            ).fetchone()
        except psycopg.Error as exc:
            raise classify(exc, f"naming type {oid}") from exc
        return "text" if row is None else str(row[0])  # a type dropped since: its text form
