"""Helpers for capture tests: a capture stream in a thread, a table, and reading its topic."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg import sql

from civsync.config import CivsyncSettings
from connectors.capture.publisher import ChangePublisher, topic_for
from connectors.capture.stream import CaptureConfig, CaptureStream, forget
from connectors.kafka.avro import AvroDecoder
from connectors.kafka.reader import read_to_end
from connectors.postgres import Connection
from connectors.registry import SchemaRegistry
from connectors.settings import CaptureSettings


def q(statement: str, table: str) -> sql.Composed:
    """``statement`` with ``{t}`` replaced by ``table`` as a quoted identifier."""
    return sql.SQL(statement).format(t=sql.Identifier(table))


@contextmanager
def running_capture(
    settings: CivsyncSettings,
    registry: SchemaRegistry,
    store: str,
    slot: str,
    tables: list[str],
    *,
    snapshot_chunk: int = 5_000,
    capture: CaptureSettings | None = None,
) -> Iterator[CaptureStream]:
    """A capture stream of ``tables`` running in a thread until the block ends."""
    publisher = ChangePublisher(settings.kafka, registry, partitions=3, capture=capture)
    config = CaptureConfig(
        store=store,
        slot=slot,
        tables=tuple(f"public.{t}" for t in tables),
        idle_sleep_s=0.05,
        snapshot_chunk=snapshot_chunk,
    )
    stream = CaptureStream(config, settings.stores()[store], publisher)
    stop, failure = threading.Event(), []

    def run() -> None:
        try:
            stream.run(stop)
        except BaseException as exc:  # surfaced in the test thread below
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield stream
    finally:
        stop.set()
        thread.join(timeout=60)
    if failure:
        raise failure[0]


def capture_process(
    table: str, *extra: str, store: str = "civil", env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`civsync capture run <store>` of ``table`` alone, as its own process (slot = table),
    with ``env`` over this process's environment."""
    return civsync_process(
        "capture",
        "run",
        store,
        "--slot",
        table,
        "--table",
        f"public.{table}",
        "--partitions",
        "3",
        *extra,
        env=env,
    )


def civsync_process(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A `civsync` command as its own process, logging warnings and errors only; ``env``
    over this process's environment (a part's own Kafka login)."""
    return subprocess.Popen(
        [sys.executable, "-m", "civsync.cli", *args],
        env={**os.environ, "CIVSYNC_LOG_LEVEL": "WARNING", **(env or {})},
    )


def civsync_output(*args: str) -> str:
    """Run a `civsync` command to completion; its console output (rich writes to stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "civsync.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def wait_caught_up(conn: Connection, slot: str, timeout_s: float = 60.0) -> None:
    """Until capture has caught up: the slot has confirmed everything committed so far, and
    every snapshot queued for it has finished (done, or failed: tests of failures check).

    Also waits for capture to have prepared the slot (its record commits with its initial
    snapshot jobs), so a capture still starting up is waited for. Snapshots count because
    their rows reach the topic after the changes streamed meanwhile.
    """
    target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
    assert target is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _prepared_once(conn):
            time.sleep(0.05)
            continue
        row = conn.execute(
            "SELECT s.confirmed_flush_lsn >= %s FROM pg_replication_slots s"
            " JOIN _civsync.capture_state c USING (slot_name) WHERE slot_name = %s",
            (target[0], slot),
        ).fetchone()
        if row and row[0] and all(state != "pending" for _, _, state in snapshot_jobs(conn, slot)):
            return
        time.sleep(0.05)
    raise AssertionError(
        f"slot {slot} did not catch up within {timeout_s:.0f}s;"
        f" its snapshots (table, rows read, state): {snapshot_jobs(conn, slot)}"
    )


def _prepared_once(conn: Connection) -> bool:
    """Whether any capture has prepared this store (made civsync's tables in it)."""
    row = conn.execute("SELECT to_regclass('_civsync.snapshot_jobs') IS NOT NULL").fetchone()
    return bool(row and row[0])


def snapshot_jobs(conn: Connection, slot: str) -> list[tuple[str, int, str]]:
    """(table, rows read, state) of each snapshot queued for ``slot``, oldest first."""
    rows = conn.execute(
        "SELECT table_name, rows_read, state FROM _civsync.snapshot_jobs"
        " WHERE slot_name = %s ORDER BY id",
        (slot,),
    ).fetchall()
    return [(str(t), int(str(n)), str(s)) for t, n, s in rows]


def versions(conn: Connection, table: str) -> dict[int, int]:
    """What ``table`` (id, version) holds now: each row's version by id."""
    rows = conn.execute(q("SELECT id, version FROM {t}", table))
    return {int(str(row_id)): int(str(version)) for row_id, version in rows}


def drop_slot(conn: Connection, slot: str) -> None:
    forget(conn, slot)


def read_topic(settings: CivsyncSettings, registry: SchemaRegistry, topic: str) -> list[Any]:
    """The values of every committed record of ``topic``, from its start to its end as of now
    (tombstones left out). Call it once the writers have flushed: it waits for nothing more."""
    decoder = AvroDecoder(registry)
    return [
        decoder.decode(value, topic)
        for message in read_to_end(settings.kafka, topic)
        if (value := message.value())
    ]


def events_of(
    settings: CivsyncSettings, registry: SchemaRegistry, store: str, table: str
) -> list[dict[str, Any]]:
    """The change events captured from ``table`` so far, in log order."""
    return sorted(read_topic(settings, registry, topic_for(store, "public", table)), key=_log_order)


def _log_order(value: dict[str, Any]) -> tuple[int, int]:
    return value["source"]["commit_lsn"], int(value["event_id"].rsplit(":", 1)[1])
