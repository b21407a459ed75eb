"""Incremental snapshots by the watermark method of Netflix's DBLog, interleaved with streaming.

Each table is read in primary-key chunks, without table locks. For one chunk the capture
process commits a *low* watermark message, reads the chunk, and commits a *high* watermark
message. When the stream reaches the low watermark, every change it meets up to the high
watermark removes its key from the chunk (the streamed change is newer); at the high
watermark the remaining rows are published as ``op r``. So a snapshot row never lands after,
nor overrides, a newer streamed change of the same row.

Progress (the last key read) lives in ``_civsync.snapshot_jobs`` and moves only after Kafka
has the chunk's rows: a crash re-reads at most the chunk in flight.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from connectors.capture.pgoutput import LogMessage, value_of
from connectors.postgres import Connection, classify
from engine.events import ChangeEvent, Op, Row, SnapshotMarker, Source, commit_hlc, event_id

WATERMARK_PREFIX = "civsync.watermark"

JOBS_DDL = """
CREATE SCHEMA IF NOT EXISTS _civsync;
CREATE TABLE IF NOT EXISTS _civsync.snapshot_jobs (
    id          bigserial PRIMARY KEY,
    slot_name   text NOT NULL,
    table_name  text NOT NULL,
    last_key    text[],
    rows_read   bigint NOT NULL DEFAULT 0,
    state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    failure     text,
    requested_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
"""


@dataclass(frozen=True)
class TableShape:
    """A table's columns (name, PostgreSQL type as the server names it) and key columns."""

    schema: str
    table: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]

    @property
    def types(self) -> dict[str, str]:
        return dict(self.columns)


@dataclass
class _Chunk:
    job_id: int
    table: TableShape
    rows: dict[tuple[Any, ...], Row]
    last_key: list[str] | None
    full: bool
    read: int = 0  # rows the chunk's SELECT returned, published or superseded
    window_open: bool = False
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


def request(conn: Connection, slot: str, tables: list[str]) -> list[int]:
    """Queue a snapshot of ``tables`` (``schema.table``) for the capture reading ``slot``."""
    try:
        return [
            int(str(row[0]))
            for table in tables
            for row in conn.execute(
                "INSERT INTO _civsync.snapshot_jobs (slot_name, table_name) VALUES (%s, %s)"
                " RETURNING id",
                (slot, table),
            ).fetchall()
        ]
    except psycopg.Error as exc:
        raise classify(exc, "queueing a snapshot") from exc


def progress(conn: Connection, job_ids: list[int]) -> list[tuple[int, str, int, str]]:
    """(id, table, rows read, state: pending, done or failed) of each job."""
    rows = conn.execute(
        "SELECT id, table_name, rows_read, state FROM _civsync.snapshot_jobs"
        " WHERE id = ANY(%s) ORDER BY id",
        (job_ids,),
    ).fetchall()
    return [(int(str(r[0])), str(r[1]), int(str(r[2])), str(r[3])) for r in rows]


class IncrementalSnapshot:
    """Drives the pending snapshot jobs of one store, one chunk at a time."""

    def __init__(self, store: str, db: str, slot: str, chunk_size: int) -> None:
        self._store, self._db, self._slot, self._chunk_size = store, db, slot, chunk_size
        self._chunk: _Chunk | None = None
        self._done: _Chunk | None = None

    def start_chunk(self, conn: Connection) -> None:
        """If no chunk is in flight and a job is pending: low mark, read, high mark."""
        if self._chunk is not None or self._done is not None:
            return
        job = conn.execute(
            "SELECT id, table_name, last_key FROM _civsync.snapshot_jobs"
            " WHERE slot_name = %s AND state = 'pending' ORDER BY id LIMIT 1",
            (self._slot,),
        ).fetchone()
        if job is None:
            return
        shape = table_shape(conn, str(job[1]))
        if not shape.key:
            conn.execute(
                "UPDATE _civsync.snapshot_jobs SET state = 'failed', failure = %s WHERE id = %s",
                ("table has no primary key to read it in chunks by", job[0]),
            )
            return
        chunk = _Chunk(int(str(job[0])), shape, {}, _text_list(job[2]), full=False)
        _emit(conn, chunk, "low")
        rows = conn.execute(
            _chunk_query(shape, chunk.last_key, self._chunk_size), chunk.last_key or ()
        ).fetchall()
        _emit(conn, chunk, "high")
        for texts in rows:
            row = {
                name: value_of(pg_type, None if t is None else str(t))
                for (name, pg_type), t in zip(shape.columns, texts, strict=True)
            }
            chunk.rows[tuple(row[k] for k in shape.key)] = row
        if rows:
            key_at = [shape.columns.index((k, shape.types[k])) for k in shape.key]
            chunk.last_key = [str(rows[-1][i]) for i in key_at]
        chunk.read, chunk.full = len(rows), len(rows) == self._chunk_size
        self._chunk = chunk

    @property
    def chunk_closed(self) -> bool:
        """Whether a chunk's rows went out at its high mark and wait for ``record_progress``:
        then the next chunk may start as soon as they are confirmed."""
        return self._done is not None

    def on_change(self, event: ChangeEvent) -> None:
        """A streamed change inside the window is newer than the chunk's copy of its row."""
        chunk = self._chunk
        if chunk is None or not chunk.window_open:
            return
        if (event.source.schema, event.source.table) == (chunk.table.schema, chunk.table.table):
            chunk.rows.pop(tuple(event.key[k] for k in chunk.table.key), None)

    def on_message(self, message: LogMessage) -> list[ChangeEvent]:
        """Open the window at the low mark; at the high mark, the chunk's remaining rows."""
        chunk = self._chunk
        if chunk is None or message.prefix != WATERMARK_PREFIX:
            return []
        mark = json.loads(message.content)
        if mark.get("token") != chunk.token:
            return []  # a mark of a chunk lost in a crash: that chunk is being read again
        if mark["mark"] == "low":
            chunk.window_open = True
            return []
        self._chunk, self._done = None, chunk
        return [
            self._event(chunk.table, row, message, i) for i, row in enumerate(chunk.rows.values())
        ]

    def record_progress(self, conn: Connection) -> None:
        """After Kafka has the rows of the finished chunk: move the job past it."""
        chunk, self._done = self._done, None
        if chunk is None:
            return
        conn.execute(
            "UPDATE _civsync.snapshot_jobs SET last_key = %s, rows_read = rows_read + %s,"
            " state = %s, finished_at = CASE WHEN %s THEN NULL ELSE now() END WHERE id = %s",
            (
                chunk.last_key,
                chunk.read,
                "pending" if chunk.full else "done",
                chunk.full,
                chunk.job_id,
            ),
        )

    def _event(self, table: TableShape, row: Row, mark: LogMessage, index: int) -> ChangeEvent:
        return ChangeEvent(
            event_id=event_id(self._store, mark.commit_lsn, index),
            op=Op.READ,
            source=Source(
                store=self._store,
                db=self._db,
                schema=table.schema,
                table=table.table,
                lsn=mark.lsn,
                commit_lsn=mark.commit_lsn,
                txid=None,
                commit_ts_ms=mark.commit_ts_ms,
                snapshot=SnapshotMarker.INCREMENTAL,
            ),
            key={k: row[k] for k in table.key},
            before=None,
            after=row,
            column_types=table.types,
            hlc=commit_hlc(self._store, mark.commit_ts_ms, index),
        )


def table_shape(conn: Connection, qualified: str) -> TableShape:
    """Columns and primary key of ``schema.table``."""
    schema, _, table = qualified.partition(".")
    columns, key = describe_table(conn, qualified)
    return TableShape(schema, table, columns, key)


def describe_table(
    conn: Connection, relation: str | int
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """(column name, base type as ``format_type`` names it: a domain's underlying type) in
    column order, and the primary key columns in key order, of ``relation`` (``schema.table``
    or an oid)."""
    columns = conn.execute(
        "SELECT a.attname, CASE WHEN t.typtype = 'd'"
        " THEN format_type(t.typbasetype, t.typtypmod)"
        " ELSE format_type(a.atttypid, a.atttypmod) END"
        " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
        " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY a.attnum",
        (str(relation),),
    ).fetchall()
    key = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
        " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary"
        " ORDER BY array_position(i.indkey::int2[], a.attnum)",
        (str(relation),),
    ).fetchall()
    return tuple((str(c[0]), str(c[1])) for c in columns), tuple(str(k[0]) for k in key)


def _chunk_query(shape: TableShape, after: list[str] | None, size: int) -> sql.Composed:
    """The next ``size`` rows after key ``after``, every column as its text output.

    The key is qualified by the table alias: unqualified, ORDER BY would sort by the text
    output column of the same name and the chunks would skip rows.
    """
    src = sql.Identifier("src")
    columns = sql.SQL(", ").join(
        sql.SQL("{}.{}::text").format(src, sql.Identifier(c)) for c, _ in shape.columns
    )
    key = sql.SQL(", ").join(sql.SQL("{}.{}").format(src, sql.Identifier(k)) for k in shape.key)
    where: sql.Composable = sql.SQL("")
    if after is not None:
        bounds = sql.SQL(", ").join(  # type names come from the catalog (format_type)
            sql.SQL("%s::{}").format(sql.SQL(shape.types[k])) for k in shape.key
        )
        where = sql.SQL("WHERE ({}) > ({})").format(key, bounds)
    return sql.SQL("SELECT {} FROM {}.{} AS src {} ORDER BY {} LIMIT {}").format(
        columns,
        sql.Identifier(shape.schema),
        sql.Identifier(shape.table),
        where,
        key,
        sql.Literal(size),
    )


def _emit(conn: Connection, chunk: _Chunk, mark: str) -> None:
    content = json.dumps({"job": chunk.job_id, "token": chunk.token, "mark": mark})
    conn.execute("SELECT pg_logical_emit_message(true, %s, %s)", (WATERMARK_PREFIX, content))


def _text_list(value: object) -> list[str] | None:
    return None if value is None else [str(v) for v in value]  # type: ignore[attr-defined]
